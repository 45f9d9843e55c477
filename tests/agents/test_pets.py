"""PETS agent: the training job on the shared loop, bit-for-bit resume, NaN stop, and its MPC `Policy`."""

import math
import pathlib
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "training"))
from tiny_configs import PETS_ENV, PETS_EPISODE, PETS_TINY
from tiny_runs import copy_run, final_agent_state, metric_rows, pets_run

import envs
from saferl import registry
from saferl.agents.pets import PETSConfig, make_agent, planned_action, preset
from saferl.agents.pets.policy import MPCMemory
from saferl.config import apply_overrides
from saferl.errors import NonFiniteError
from saferl.policies import Policy, episode, load_policy
from saferl.training import rundir
from saferl.training.run import train

EPISODE = PETS_EPISODE


def test_pets_is_registered_with_its_config():
    algorithm = registry.get("pets")
    assert algorithm.config_cls is PETSConfig
    assert preset("paper").planner.population == 400 and preset("paper").planner.horizon == 25


def test_training_logs_one_row_per_episode_with_model_and_planning_metrics():
    rows = metric_rows(pets_run(3).run_dir)
    assert [int(float(r["env_steps"])) for r in rows] == [20, 40, 60]
    assert [float(r["random_actions"]) for r in rows] == [1.0, 0.0, 0.0]  # 1 random episode, then MPC
    assert [float(r["buffer_size"]) for r in rows] == [10.0, 20.0, 30.0]  # decisions (action_repeat 2)
    for row in rows:
        assert math.isfinite(float(row["episode_return"])) and math.isfinite(float(row["model_nll"]))
        assert 0.0 <= float(row["model_coverage_1sigma"]) <= 1.0
    assert rows[0]["plan_ms_per_step"] == ""  # no planning in the random episode
    assert all(float(r["plan_ms_per_step"]) > 0 for r in rows[1:])
    assert float(rows[1]["compile_s"]) > 0
    assert rundir.checkpoint_steps(pets_run(3).run_dir) == [20, 40, 60]


def test_resume_from_an_earlier_checkpoint_continues_bit_for_bit(tmp_path):
    straight = pets_run(3).run_dir
    interrupted = copy_run(straight, tmp_path)
    shutil.rmtree(interrupted / "checkpoints" / "60")  # as if stopped after episode 2
    resumed = train(None, None, steps=3 * EPISODE, resume=interrupted, progress=False, tensorboard=False).run_dir
    a, b = final_agent_state(straight, make_agent), final_agent_state(resumed, make_agent)
    assert int(a.episode) == int(b.episode) == 3
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=False):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # params, optimiser, buffer, key: identical
    deterministic = ("env_steps", "episode_return", "episode_cost", "model_nll", "model_mse", "buffer_size")
    assert len(metric_rows(resumed)) == 3  # the row past the resumed checkpoint was recomputed, not duplicated
    for row_a, row_b in zip(metric_rows(straight), metric_rows(resumed), strict=False):
        assert {k: row_a[k] for k in deterministic} == {k: row_b[k] for k in deterministic}


def test_policy_is_an_mpc_policy_that_plans_in_bounds_and_holds_actions():
    policy = load_policy(pets_run(3).run_dir)
    assert isinstance(policy, Policy) and policy.algo == "pets"
    assert policy.apply is None and policy.sample is None  # a planner: nothing to export
    assert policy.action_repeat == PETS_TINY["action_repeat"]
    assert (policy.observation_size, policy.action_size, policy.env_name) == (3, 1, "pendulum")
    action, carry = policy.act(policy.init_carry(), np.array([-1.0, 0.0, 0.0], np.float32), jax.random.PRNGKey(0))
    assert action.shape == (1,) and float(np.abs(action).max()) <= 1.0
    assert isinstance(carry.memory, MPCMemory) and float(carry.cost_spent) == 0.0


# --- the MPC policy's carry: the planner's warm start and the remaining budget (untrained model: no run) ---


@pytest.fixture(scope="module")
def planner_setup():
    """A tiny config's agent on pendulum with a budget (so the remaining budget matters), an untrained model."""
    config = apply_overrides(PETSConfig(), {**PETS_TINY, "objective.constraint": "feasibility"})
    env = envs.make("pendulum", episode_length=PETS_EPISODE, cost_budget=1e6)
    agent = make_agent(config, env)
    return config, agent, agent.init(jax.random.PRNGKey(0)).model


def test_mpc_policy_carries_the_planner_warm_start_from_decision_to_decision(planner_setup):
    config, agent, model = planner_setup
    policy, obs = agent.mpc_policy(model), np.array([-1.0, 0.0, 0.5], np.float32)
    fresh = policy.init_carry()
    np.testing.assert_array_equal(fresh.memory.warm_start.mean, np.zeros((config.planner.horizon, 1)))
    _, first = policy.act(fresh, obs, jax.random.PRNGKey(1))
    _, info = planned_action(config, model, jax.random.PRNGKey(1), obs, fresh.memory.warm_start, 1e6)
    for carried, planned in zip(
        jax.tree.leaves(first.memory.warm_start), jax.tree.leaves(info.next_init), strict=False
    ):
        np.testing.assert_allclose(carried, planned, atol=1e-6)  # the plan, shifted by one decision
    assert float(np.abs(first.memory.warm_start.mean).max()) > 0
    second, _ = policy.act(first, obs, jax.random.PRNGKey(2))  # plans from that warm start
    expected, _ = planned_action(config, model, jax.random.PRNGKey(2), obs, first.memory.warm_start, 1e6)
    cold, _ = planned_action(config, model, jax.random.PRNGKey(2), obs, fresh.memory.warm_start, 1e6)
    np.testing.assert_allclose(second, expected, atol=1e-6)
    assert not np.allclose(second, cold)  # (the warm start changes the result)


def test_mpc_policy_plans_against_the_budget_minus_the_cost_spent(planner_setup):
    _, agent, model = planner_setup
    policy, obs = agent.mpc_policy(model), np.zeros(3, np.float32)
    act = jax.jit(policy.act)
    _, within = act(policy.init_carry(), obs, jax.random.PRNGKey(0))
    _, spent = act(policy.init_carry().replace(cost_spent=jnp.asarray(2e6, jnp.float32)), obs, jax.random.PRNGKey(0))
    # remaining 1e6: every candidate is feasible; remaining 1e6 − 2e6 < 0: none is (predicted costs ≈ 0)
    assert float(within.memory.feasible_fraction) == 1.0 and float(spent.memory.feasible_fraction) == 0.0


def test_collection_runs_the_mpc_policy_on_the_episode_loop(planner_setup):
    _, agent, model = planner_setup
    key = jax.random.PRNGKey(3)
    transitions, stats = agent.collect_mpc(model, key)
    assert transitions.reward.shape == (agent.decisions_per_episode,)
    reset_key, act_key = jax.random.split(key)
    _, decisions = jax.jit(
        lambda m: episode.run(
            agent.mpc_policy(m), agent.env, agent.env.reset(reset_key), act_key, agent.decisions_per_episode
        )
    )(model)
    np.testing.assert_allclose(transitions.action, decisions.transition.action, atol=1e-6)
    np.testing.assert_allclose(stats.plan_value, decisions.carry.memory.plan_value.mean(), rtol=1e-5)


def test_exploring_episodes_run_the_random_policy_in_the_same_program(planner_setup):
    _, agent, model = planner_setup
    key = jax.random.PRNGKey(4)
    transitions, stats = agent.collect(model, key, jnp.array(True))  # the program MPC episodes run, too
    reset_key, act_key = jax.random.split(key)
    _, decisions = jax.jit(
        lambda: episode.run(
            agent.random_policy(), agent.env, agent.env.reset(reset_key), act_key, agent.decisions_per_episode
        )
    )()
    np.testing.assert_allclose(transitions.action, decisions.transition.action, atol=1e-6)
    assert float(stats.plan_value) == 0.0 and float(stats.feasible_fraction) == 1.0


@pytest.mark.parametrize("env_name, constraint", [("safe_cartpole", "none"), ("point_goal", "feasibility")])
@pytest.mark.slow
def test_short_job_runs_on_a_safety_env(env_name, constraint, tmp_path):
    overrides = {**PETS_TINY, "objective.constraint": constraint}
    result = train(
        "pets",
        env_name,
        steps=2 * EPISODE,
        overrides=overrides,
        env_overrides=PETS_ENV,
        out=tmp_path,
        progress=False,
        tensorboard=False,
    )
    rows = metric_rows(result.run_dir)
    assert len(rows) == 2 and float(rows[-1]["random_actions"]) == 0.0
    assert float(rows[-1]["episode_cost"]) >= 0.0 and math.isfinite(float(rows[-1]["episode_return"]))
    if constraint == "feasibility":  # the planner ranked candidates against the remaining budget
        assert 0.0 <= float(rows[-1]["feasible_fraction"]) <= 1.0


def test_nonfinite_model_fit_stops_with_the_quantity_and_keeps_the_last_good_checkpoint(tmp_path):
    # Adam with step size 1e30 blows the ensemble up at its first update: the fit reports finite=False
    with pytest.raises(NonFiniteError) as info:
        train(
            "pets",
            "pendulum",
            steps=2 * EPISODE,
            overrides={**PETS_TINY, "model.learning_rate": 1e30},
            env_overrides=PETS_ENV,
            out=tmp_path,
            progress=False,
            tensorboard=False,
        )
    assert info.value.quantity == "model/fit_loss" and info.value.step == EPISODE
    (run_dir,) = tmp_path.iterdir()
    assert rundir.checkpoint_steps(run_dir) == [0]  # the initial state: nothing non-finite was saved
    state = final_agent_state(run_dir, make_agent)
    assert int(state.episode) == 0
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.model.params))
    assert (run_dir / "plots" / "return.png").exists()
