"""SoftAE agent: exploration strategies on the shared episodic loop, bit-for-bit resume, zero-shot task policies
(`load_policy(run, task=...)`, `saferl eval --task`, `saferl tasks`)."""

import json
import math
import pathlib
import shutil
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "training"))
from tiny_configs import PETS_EPISODE, SOFTAE_TINY
from tiny_runs import copy_run, final_agent_state, metric_rows, ppo_run, softae_run

import envs
from saferl import registry
from saferl.agents.pets.policy import MPCMemory
from saferl.agents.softae import SoftAEConfig, make_agent
from saferl.cli.main import main
from saferl.config import apply_overrides
from saferl.errors import UserError
from saferl.policies import episode, load_policy
from saferl.training.run import train


def test_softae_is_registered_and_its_config_rejects_inconsistent_settings():
    algorithm = registry.get("softae")
    assert algorithm.config_cls is SoftAEConfig and algorithm.load_task_policy is not None
    with pytest.raises(ValueError, match="exploration must be one of"):
        SoftAEConfig(exploration="curiosity")
    with pytest.raises(ValueError, match="needs task=NAME"):
        SoftAEConfig(exploration="task")
    with pytest.raises(UserError, match="track_uncertainty"):
        apply_overrides(SoftAEConfig(), {"rollout.track_uncertainty": False})
    with pytest.raises(UserError, match="multiple of"):
        apply_overrides(SoftAEConfig(), {"task_rollout.num_particles": 3})
    with pytest.raises(UserError, match="'task_cost_constraint': value 'strict' is not one of"):
        apply_overrides(SoftAEConfig(), {"task_cost_constraint": "strict"})
    with pytest.raises(ValueError, match="task_cost_constraint must be one of"):
        SoftAEConfig(task_cost_constraint="strict")


def test_the_default_exploration_plans_under_the_envs_cost_budget():
    """Issue #31: `saferl train softae` with no --set explores within the env's budget (the study's
    `feasibility`), each imagined transition charged the env's own cost, with the calibration bounded."""
    default = SoftAEConfig()
    objective = default.exploration_planning().objective
    assert default.planned and (objective.constraint, objective.cost_source) == ("feasibility", "env")
    assert default.task_planning().objective.constraint == "feasibility"  # tasks too (task_cost_constraint="same")
    assert default.model.calibrate and default.rollout.state_bound > 0


def test_tasks_are_planned_with_the_explorations_constraint_unless_told_otherwise():
    safe = SoftAEConfig(cost_constraint="feasibility")
    assert safe.exploration_planning().objective.constraint == "feasibility"
    assert safe.task_planning().objective.constraint == "feasibility"  # task_cost_constraint="same"
    free_tasks = SoftAEConfig(cost_constraint="feasibility", task_cost_constraint="none")
    assert free_tasks.exploration_planning().objective.constraint == "feasibility"
    assert free_tasks.task_planning().objective.constraint == "none"
    assert free_tasks.task_planning().objective.kind == "return"
    penalised = SoftAEConfig(task_cost_constraint="penalty", penalty=3.0).task_planning().objective
    assert (penalised.constraint, penalised.penalty) == ("penalty", 3.0)


@pytest.mark.slow
def test_information_gain_exploration_logs_one_row_per_episode_with_the_planned_gain():
    rows = metric_rows(softae_run("info_gain").run_dir)
    assert [int(float(r["env_steps"])) for r in rows] == [20, 40, 60]
    assert [float(r["random_actions"]) for r in rows] == [1.0, 0.0, 0.0]  # 1 random episode, then planned
    for row in rows[1:]:
        assert float(row["plan_value"]) > 0.0  # predicted information gain over the horizon (nats)
        assert float(row["plan_ms_per_step"]) > 0.0
    assert all(math.isfinite(float(r["model_nll"])) for r in rows)


@pytest.mark.slow
def test_resume_continues_bit_for_bit(tmp_path):
    straight = softae_run("info_gain").run_dir
    interrupted = copy_run(straight, tmp_path)
    shutil.rmtree(interrupted / "checkpoints" / str(3 * PETS_EPISODE))
    resumed = train(None, None, resume=interrupted, progress=False, tensorboard=False).run_dir
    a, b = final_agent_state(straight, make_agent), final_agent_state(resumed, make_agent)
    assert int(a.episode) == int(b.episode) == 3
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=False):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert metric_rows(straight)[-1]["model_nll"] == metric_rows(resumed)[-1]["model_nll"]


@pytest.mark.parametrize("exploration", ["random", "colored_noise", "disagreement", "task"])
def test_every_baseline_strategy_runs_on_the_same_loop(exploration):
    rows = metric_rows(softae_run(exploration, 2).run_dir)
    planned = exploration in ("disagreement", "task")
    assert [float(r["random_actions"]) for r in rows] == [1.0, 0.0 if planned else 1.0]
    assert all(math.isfinite(float(r["episode_return"])) for r in rows)


@pytest.mark.slow
def test_coloured_noise_is_correlated_in_time_bounded_and_new_each_episode():
    config = apply_overrides(
        SoftAEConfig(), {**SOFTAE_TINY, "exploration": "colored_noise", "colored_noise_beta": 2.0, "action_repeat": 1}
    )
    env = envs.make("pendulum", episode_length=200)
    agent = make_agent(config, env)
    policy = agent.noise_policy()
    state = env.reset(jax.random.PRNGKey(0))
    run = jax.jit(lambda key: episode.run(policy, env, state, key, 400)[1].transition.action[:, 0])
    actions = np.asarray(run(jax.random.PRNGKey(1)))  # two episodes' worth of decisions
    assert np.abs(actions).max() <= 1.0 and actions.std() > 0.1
    first, second = actions[:200], actions[200:]
    lag1 = lambda x: np.corrcoef(x[:-1], x[1:])[0, 1]  # noqa: E731
    assert lag1(first) > 0.8 and lag1(second) > 0.8  # brown noise: smooth
    assert not np.allclose(first, second)  # a fresh sequence at the start of each episode
    uniform = np.asarray(jax.random.uniform(jax.random.PRNGKey(2), (200,), minval=-1, maxval=1))
    assert abs(lag1(uniform)) < 0.2


@pytest.mark.slow
def test_task_policy_plans_zero_shot_for_a_named_task_on_the_learned_model():
    run_dir = softae_run("info_gain").run_dir
    policy = load_policy(run_dir, task="swing_up")
    assert policy.algo == "softae" and policy.env_name == "pendulum" and policy.apply is None
    action, carry = policy.act(policy.init_carry(), np.array([-1.0, 0.0, 0.0], np.float32), jax.random.PRNGKey(0))
    assert action.shape == (1,) and float(np.abs(action).max()) <= 1.0 and isinstance(carry.memory, MPCMemory)
    with pytest.raises(UserError, match="available tasks: hold_horizontal, spin, swing_up"):
        load_policy(run_dir, task="fly")
    with pytest.raises(UserError, match="has none"):
        load_policy(ppo_run().run_dir, task="swing_up")


def test_cli_lists_tasks_and_evaluates_a_task_zero_shot(tmp_path, capsys):
    def cli(*args):
        try:
            main([str(a) for a in args])
        except SystemExit as done:
            return done.code or 0
        return 0

    assert cli("tasks", "pendulum") == 0
    out = capsys.readouterr().out
    assert "swing_up:" in out and "spin:" in out and "hold_horizontal:" in out
    assert cli("tasks", "nope") == 2 and "unknown env" in capsys.readouterr().err
    run_dir = copy_run(softae_run("info_gain").run_dir, tmp_path)
    assert cli("eval", run_dir, "--task", "spin", "--episodes", 2) == 0
    assert "(task: spin)" in capsys.readouterr().out
    result = json.loads((run_dir / "eval-task-spin.json").read_text())
    assert result["task"] == "spin" and len(result["returns"]) == 2
    # the task's reward summed per env step: tanh(θ̇/5) per step, so |return| ≤ episode length
    assert all(abs(r) <= PETS_EPISODE for r in result["returns"])
    assert cli("eval", run_dir, "--task", "fly") == 2 and "unknown task 'fly'" in capsys.readouterr().err
