"""SOOPER and its baselines: the pessimistic critic target on known inputs, the shield rules, the imagined MDP's
termination and terminal value, and the training loop on the CLI's path (tiny prior and learner on
safe_cartpole with the heavy pole): per-episode metrics and summary, bit-for-bit resume, the loaded policy
behind its shield, bad priors refused before a run directory exists. The learning test is test_sooper_learning.py.
"""

import dataclasses
import json
import math
import pathlib
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "training"))
from tiny_configs import SOOPER_ENV, SOOPER_EPISODE, SOOPER_TINY
from tiny_runs import copy_run, sooper_prior_run, sooper_run

from saferl import registry
from saferl.agents.sooper import config as sooper_config
from saferl.agents.sooper.critic import (
    calibrated_margin,
    pessimistic_target,
    update_cost_critic,
)
from saferl.agents.sooper.planner import (
    Dual,
    ShieldRule,
    imagine,
    prior_cost_to_go,
    recovery_lookahead,
    scores,
)
from saferl.agents.sooper.prior import load_prior
from saferl.agents.sooper.train import restore_agent
from saferl.config import apply_overrides
from saferl.errors import UserError
from saferl.models import ensemble
from saferl.policies import load_policy
from saferl.policies.evaluate import evaluate
from saferl.policies.worlds import evaluation_env, evaluation_world
from saferl.training.run import train


def _equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


# ---- pure pieces on known inputs -------------------------------------------------------------------------


def test_pessimistic_target_is_the_min_of_the_model_backup_and_the_old_value():
    cost = jnp.array([1.0, 0.5, 0.0])
    next_value = jnp.array([2.0, 10.0, 1.0])
    old = jnp.array([4.0, 3.0, 0.9])
    target = pessimistic_target(cost, next_value, old, 0.9)
    np.testing.assert_allclose(target, [1.0 + 0.9 * 2.0, 3.0, 0.9], rtol=1e-6)  # backup, old, old (tie-free)
    assert bool(jnp.all(target <= old))


def test_shield_rules_fire_exactly_at_the_bound():
    budget = ShieldRule("budget", budget=10.0, scale=2.0)
    spent = jnp.array([0.0, 4.0, 4.0, 9.99])
    q = jnp.array([4.99, 3.0, 2.99, 0.0])
    assert budget.fires(spent, q, jnp.zeros(4)).tolist() == [False, True, False, False]
    advantage = ShieldRule("advantage", budget=10.0, scale=2.0, advantage_threshold=0.2)
    assert advantage.fires(jnp.zeros(3), jnp.array([1.0, 1.21, 1.19]), jnp.array([1.0, 1.0, 1.0])).tolist() == [
        False,
        True,
        False,
    ]
    assert not bool(ShieldRule("none", 10.0, 2.0).fires(jnp.array([100.0]), jnp.array([100.0]), 0.0).any())


@pytest.fixture(scope="module")
def tiny_agent():
    """The agent and last state of the shared tiny SOOPER run (a fitted ensemble, the tiny prior)."""
    agent, restored = restore_agent(sooper_run().run_dir)
    return agent, restored.state


@pytest.mark.slow
def test_imagined_trajectory_ends_where_the_shield_fires_with_the_prior_value(tiny_agent):
    agent, state = tiny_agent
    prior, config = agent.prior, agent.config
    obs = jnp.array([0.1, -1.0, 0.05, 0.2, 0.0])
    deltas = jnp.linspace(-0.5, 0.5, 3)[:, None, None] * jnp.ones((3, config.planner.horizon, 1))
    rule = ShieldRule("budget", budget=5.0, scale=agent.rule.scale)
    # the budget is already spent: the shield fires at the first step of every particle
    spent = jnp.asarray(5.0)
    out = imagine(config, rule, state.model, prior, jax.random.PRNGKey(0), obs, spent, deltas)
    prior_action = prior.action(obs)
    np.testing.assert_allclose(out.value, prior.reward_value(obs, prior_action) * jnp.ones(3), rtol=1e-5)
    np.testing.assert_allclose(
        out.cost, 5.0 + rule.scale * prior.cost_value(obs, prior_action) * jnp.ones(3), rtol=1e-5
    )
    np.testing.assert_allclose(out.shield_fraction, 1.0)
    # terminal reward "zero" (SAILR-like): nothing is gained where the shield ends the trajectory
    zero = dataclasses.replace(config, shield_terminal_reward="zero")
    np.testing.assert_allclose(
        imagine(zero, rule, state.model, prior, jax.random.PRNGKey(0), obs, spent, deltas).value, 0.0, atol=1e-6
    )
    # without a shield every particle reaches the horizon
    free = imagine(
        config, ShieldRule("none", 5.0, rule.scale), state.model, prior, jax.random.PRNGKey(0), obs, spent, deltas
    )
    np.testing.assert_allclose(free.shield_fraction, 0.0)
    assert bool(jnp.all(jnp.isfinite(free.value)))
    # feasibility: the violation is the predicted episode cost minus the budget
    ranked = scores(config, 5.0, free, Dual(jnp.zeros(()), jnp.ones(())))
    np.testing.assert_allclose(ranked.violation, free.cost - 5.0, rtol=1e-6)
    np.testing.assert_allclose(ranked.value, free.value)


@pytest.mark.slow
def test_recovery_lookahead_is_the_worst_members_step_and_the_priors_cost_to_go_after_it(tiny_agent):
    agent, state = tiny_agent
    prior, scale, pessimism = agent.prior, agent.rule.scale, agent.config.pessimism
    obs = jnp.array([0.1, -1.0, 0.05, 0.2, 0.0])
    action = jnp.array([0.9])  # far from the prior's action: the critic is never asked about it
    members = state.model.config.num_members
    # by hand: member e's mean next state and pessimistic cost, then the prior's critic at its own action there
    mean, _ = ensemble.predict(state.model, obs, action)
    next_obs = obs + mean[:, :5]
    sigma = jnp.std(mean[:, :5], axis=0).mean()
    cost = jnp.maximum(mean[:, 6] + pessimism * sigma, 0.0)
    critic_only = jnp.max(cost + scale * prior.cost_value(next_obs, prior.action(next_obs)))
    np.testing.assert_allclose(
        recovery_lookahead(state.model, prior, pessimism, scale, 0)(obs, action), critic_only, rtol=1e-4
    )
    # the H-step rollout of the prior can only add to the critic's view, and grows with H where cost is predicted
    with_rollout = recovery_lookahead(state.model, prior, pessimism, scale, 4)(obs, action)
    assert float(with_rollout) >= float(critic_only) - 1e-4
    rest = prior_cost_to_go(state.model, prior, pessimism, scale, 4, jnp.broadcast_to(obs, (members, 5)))
    assert rest.shape == (members,) and bool(jnp.all(rest >= scale * prior.cost_value(obs, prior.action(obs)) - 1e-4))
    # in imagination the recovery rule with the budget spent ends every particle at once with the prior's value
    config = agent.config
    deltas = jnp.zeros((2, config.planner.horizon, 1))
    out = imagine(
        config,
        ShieldRule("recovery", budget=5.0, scale=scale),
        state.model,
        prior,
        jax.random.PRNGKey(0),
        obs,
        jnp.asarray(5.0),
        deltas,
        margin=1.0,
    )
    np.testing.assert_allclose(out.shield_fraction, 1.0)
    np.testing.assert_allclose(out.value, prior.reward_value(obs, prior.action(obs)) * jnp.ones(2), rtol=1e-5)
    np.testing.assert_allclose(out.cost, 5.0 + 1.0 + scale * prior.cost_value(obs, prior.action(obs)), rtol=1e-5)


@pytest.mark.slow
def test_calibrated_margin_is_the_largest_shortfall_of_the_critic_on_the_priors_real_states(tiny_agent):
    agent, state = tiny_agent
    prior, scale = agent.prior, agent.rule.scale
    obs = jnp.stack([jnp.array([0.1, -1.0, 0.05, 0.2, 0.0]), jnp.array([0.0, 1.0, 0.0, 0.0, 0.0])])[None]  # [1, 2, 5]
    estimate = scale * prior.cost_value(obs, prior.action(obs), state.cost_q_params)[0]
    measured = jnp.stack([estimate[0] + 3.0, estimate[1] - 1.0])[None]  # 3 above the estimate at the first state
    margin = calibrated_margin(prior, state.cost_q_params, obs, measured, jnp.array([True]), scale)
    np.testing.assert_allclose(margin, 3.0, rtol=1e-4)
    assert float(calibrated_margin(prior, state.cost_q_params, obs, measured, jnp.array([False]), scale)) == 0.0
    assert float(calibrated_margin(prior, state.cost_q_params, obs, measured - 10.0, jnp.array([True]), scale)) == 0.0


@pytest.mark.slow
def test_pessimistic_critic_update_lowers_no_target_above_the_old_critic(tiny_agent):
    agent, state = tiny_agent
    prior = agent.prior.replace(cost_q_params=state.cost_q_params)
    params, _, info = update_cost_critic(
        prior,
        state.model,
        state.buffer,
        state.cost_q_params,
        state.critic_optimizer_state,
        jax.random.PRNGKey(1),
        steps=3,
        batch_size=16,
        pessimism=agent.config.pessimism,
        learning_rate=1e-3,
    )
    assert float(info.target_drop) >= 0.0  # the min never asks for more than the old value
    assert not _equal(params, state.cost_q_params)  # it trained
    assert np.isfinite(float(info.loss))


# ---- the loop on the CLI's path ----------------------------------------------------------------------------


@pytest.mark.slow
def test_sooper_run_logs_the_papers_metrics_and_writes_the_summary():
    run = sooper_run()
    summary = json.loads((run.run_dir / "summary.json").read_text())
    rows = [line.split(",") for line in (run.run_dir / "metrics.csv").read_text().splitlines()]
    header, rows = rows[0], [dict(zip(rows[0], map(float, r), strict=False)) for r in rows[1:]]
    assert len(rows) == summary["episodes"] == 3
    assert [r["prior_episode"] for r in rows] == [1.0, 0.0, 0.0]
    costs = [r["episode_cost"] for r in rows]
    assert summary["episode_costs"] == pytest.approx(costs)
    assert summary["safety_margin"] == pytest.approx(SOOPER_ENV["cost_budget"] - max(costs))
    assert rows[-1]["safety_margin"] == pytest.approx(summary["safety_margin"])
    assert summary["prior_return"] == pytest.approx(rows[0]["episode_return"])
    assert summary["normalized_return"] == pytest.approx(rows[-1]["episode_return"] / rows[0]["episode_return"])
    assert summary["cumulative_cost"] == pytest.approx(sum(costs))
    for name in ("interventions", "plan_value", "feasible_fraction", "critic_loss", "model_nll"):
        assert name in header
    # the narrow band makes the learner's actions costly: the shield took over in the learner's episodes
    assert rows[1]["interventions"] > 0 and rows[0]["interventions"] == 0
    assert all(0 <= r["intervention_rate"] <= 1 for r in rows)
    assert (run.run_dir / "plots" / "cost.png").is_file()
    # the prior path was made absolute, so the run can be evaluated from anywhere
    config = json.loads((run.run_dir / "config.json").read_text())
    assert pathlib.Path(config["algo_config"]["prior"]).is_absolute()


@pytest.mark.slow
def test_sooper_resumed_run_equals_uninterrupted_run_bit_for_bit(tmp_path):
    full = sooper_run()
    part = copy_run(full.run_dir, tmp_path)
    shutil.rmtree(part / "checkpoints" / str(3 * SOOPER_EPISODE))
    resumed = train(None, None, steps=3 * SOOPER_EPISODE, resume=part, progress=False, tensorboard=False)
    a, b = restore_agent(full.run_dir)[1].state, restore_agent(resumed.run_dir)[1].state
    assert _equal(a, b)  # ensemble, buffer, updated cost critic and its optimiser, λ, ledger, key, episode
    metrics = lambda p: [line.split(",")[:3] for line in (p / "metrics.csv").read_text().splitlines()]  # noqa: E731
    assert metrics(full.run_dir) == metrics(resumed.run_dir)  # same episodes (timings aside)
    assert json.loads((resumed.run_dir / "summary.json").read_text())["episodes"] == 3


@pytest.mark.slow
def test_loaded_policy_is_the_shielded_learner_and_evaluates_on_the_real_system():
    run = sooper_run()
    policy = load_policy(run.run_dir)
    assert policy.algo == "sooper" and policy.cost_budget == SOOPER_ENV["cost_budget"]
    assert policy.training_env.shift.preset == "heavy_pole"
    carry = policy.init_carry()
    obs = jnp.zeros(policy.observation_size).at[1].set(-1.0)
    action, carry = policy.act(carry, obs, jax.random.PRNGKey(0))
    assert action.shape == (1,) and bool(jnp.all(jnp.abs(action) <= 1.0))
    # with the budget spent, the shield executes the prior's action
    spent = carry.replace(cost_spent=jnp.asarray(SOOPER_ENV["cost_budget"], jnp.float32))
    prior, _ = load_prior(json.loads((run.run_dir / "config.json").read_text())["algo_config"]["prior"])
    shielded, after = policy.act(spent, obs, jax.random.PRNGKey(0))
    assert int(after.memory.interventions) == int(carry.memory.interventions) + 1
    np.testing.assert_allclose(shielded, prior.action(obs), atol=1e-6)  # the actor is never changed
    result = evaluate(policy, evaluation_env(policy, evaluation_world(policy)), episodes=2, seed=0)
    assert result["episodes"] == 2 and math.isfinite(result["mean_return"])


@pytest.mark.slow
def test_primal_dual_steps_its_multiplier_on_the_measured_episode_cost():
    run = sooper_run("primal_dual", 2)
    rows = [line.split(",") for line in (run.run_dir / "metrics.csv").read_text().splitlines()]
    header, rows = rows[0], [dict(zip(rows[0], map(float, r), strict=False)) for r in rows[1:]]
    assert "critic_loss" not in header  # no shield, no critic update
    assert all(r["interventions"] == 0 for r in rows)
    # the episodes cost more than the budget of 5: λ grew after each (c = 0.05, violation clipped to ±d)
    assert rows[0]["episode_cost"] > SOOPER_ENV["cost_budget"]
    assert 0 < rows[0]["multiplier"] < rows[1]["multiplier"]


def test_baselines_are_the_same_learner_with_the_tables_settings():
    assert {"sooper", "sailr", "crpo", "primal_dual", "mbrl"} <= set(registry.names())
    configs = {name: registry.get(name).config_cls() for name in sooper_config.METHOD_CONFIGS}
    assert configs["sooper"].optimism > 0 and configs["sooper"].shield == "recovery"
    assert configs["sailr"].optimism == 0 and configs["sailr"].shield == "advantage"
    assert configs["sailr"].shield_terminal_reward == "zero"
    assert configs["crpo"].shield == "none" and configs["crpo"].planner_constraint == "feasibility"
    assert configs["primal_dual"].planner_constraint == "augmented_lagrangian"
    assert configs["mbrl"].planner_constraint == "none" and configs["mbrl"].shield == "none"
    for name, config in configs.items():
        assert config.method == name
        assert config.model == configs["sooper"].model and config.planner == configs["sooper"].planner


@pytest.mark.parametrize(
    "prior, message",
    [
        ("", "needs a prior"),
        ("/nonexistent/run", "not a run directory"),
    ],
)
def test_bad_priors_are_refused_before_a_run_directory_exists(tmp_path, prior, message):
    with pytest.raises(UserError, match=message):
        train(
            "sooper",
            "safe_cartpole",
            steps=SOOPER_EPISODE,
            overrides={**SOOPER_TINY, "prior": prior},
            env_overrides=SOOPER_ENV,
            out=tmp_path,
            progress=False,
        )
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_a_prior_of_another_env_or_algorithm_is_refused(tmp_path):
    prior = sooper_prior_run().run_dir
    with pytest.raises(UserError, match="trained on env 'safe_cartpole', not 'pendulum'"):
        train(
            "sooper",
            "pendulum",
            steps=40,
            overrides={**SOOPER_TINY, "prior": str(prior)},
            env_overrides={"episode_length": 40, "cost_budget": 1.0},
            out=tmp_path,
            progress=False,
        )
    from tiny_runs import pets_run

    with pytest.raises(UserError, match="a prior must be a 'sac' run"):
        train(
            "sooper",
            "pendulum",
            steps=40,
            overrides={**SOOPER_TINY, "prior": str(pets_run().run_dir)},
            env_overrides={"episode_length": 40, "cost_budget": 1.0},
            out=tmp_path,
            progress=False,
        )
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_a_copy_of_the_priors_actor_and_critics_is_the_same_prior_a_tenth_of_the_size(tmp_path):
    """`save_actor_critics` (how tests/assets' shipped prior was written): the copy loads as the same prior and
    the same policy, holds no replay buffer, and an existing directory is refused, not overwritten."""
    from saferl.agents.sac.policy import save_actor_critics

    run_dir = sooper_prior_run().run_dir
    copy = save_actor_critics(run_dir, tmp_path / "prior")
    (prior, policy), (copy_prior, copy_policy) = load_prior(run_dir), load_prior(copy)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(prior), jax.tree.leaves(copy_prior), strict=True))
    obs = jnp.linspace(-1.0, 1.0, 4 * policy.observation_size).reshape(4, -1)
    key = jax.random.PRNGKey(0)
    assert np.array_equal(
        policy.act(policy.init_carry(), obs, key)[0], copy_policy.act(copy_policy.init_carry(), obs, key)[0]
    )
    size = lambda d: sum(p.stat().st_size for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert size(copy) < size(run_dir / "checkpoints") / 10
    with pytest.raises(UserError, match="exists"):
        save_actor_critics(run_dir, copy)


def test_config_rejects_bad_values():
    for bad in (
        {"shield": "sometimes"},
        {"replan_every": 0},
        {"optimism": -1.0},
        {"budget": 0.0},
        {"planner_constraint": "magic"},
        {"replan_every": 50},
    ):
        with pytest.raises(UserError):
            apply_overrides(sooper_config.SooperConfig(), bad)
