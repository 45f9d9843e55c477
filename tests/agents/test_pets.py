"""PETS agent: the CLI-level training job runs on every env, resumes bit for bit, and gives a loadable MPC policy."""

import csv
import math
import pathlib

import jax
import numpy as np
import pytest

from saferl.agents import registry
from saferl.agents.pets import MPCPolicy, PETSConfig, preset
from saferl.training import rundir
from saferl.training.checkpoints import Checkpoints
from saferl.training.run import train

# tiny sizes: the point here is the loop, not learning (see test_pets_learning.py)
TINY = {"model.num_members": 2, "model.num_elites": 2, "model.hidden_sizes": [32, 32], "model.epochs": 3,
        "model.batch_size": 32, "rollout.num_particles": 2, "planner.horizon": 5, "planner.population": 32,
        "planner.num_elites": 4, "planner.iterations": 2, "action_repeat": 2, "buffer_capacity": 500}
EPISODE = 20  # env steps per episode (10 planned actions with action_repeat 2)


def _train(out, env="pendulum", steps=3 * EPISODE, resume=None, seed=0):
    if resume is not None:
        return train(None, None, steps=steps, resume=resume, progress=False, tensorboard=False)
    return train("pets", env, steps=steps, seed=seed, overrides=TINY, env_overrides={"episode_length": EPISODE},
                 out=out, progress=False, tensorboard=False)


def _rows(run_dir: pathlib.Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _final_state(run_dir: pathlib.Path):
    from saferl.agents.pets import PETSAgent
    from saferl.training.run import algo_config_from_record, env_config_from_record
    import envs

    record = rundir.read_run(run_dir)
    agent = PETSAgent(envs.make(record.env, config=env_config_from_record(record)), algo_config_from_record(record))
    checkpoints = Checkpoints(run_dir / "checkpoints")
    try:
        return checkpoints.restore(rundir.checkpoint_steps(run_dir)[-1], agent.init(jax.random.PRNGKey(0)))[0]
    finally:
        checkpoints.close()


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("straight")).run_dir


def test_pets_is_registered_with_its_config():
    algorithm = registry.get("pets")
    assert algorithm.config_cls is PETSConfig
    assert preset("paper").planner.population == 400 and preset("paper").planner.horizon == 25


def test_training_logs_one_row_per_episode_with_model_and_planning_metrics(straight_run):
    rows = _rows(straight_run)
    assert [int(float(r["env_steps"])) for r in rows] == [20, 40, 60]
    assert [float(r["random_actions"]) for r in rows] == [1.0, 0.0, 0.0]  # 1 random episode, then MPC
    for row in rows:
        assert math.isfinite(float(row["episode_return"])) and math.isfinite(float(row["model_nll"]))
        assert 0.0 <= float(row["model_coverage_1sigma"]) <= 1.0
    assert all(float(r["plan_ms_per_step"]) > 0 for r in rows[1:])
    assert float(rows[1]["compile_s"]) > 0


def test_resume_continues_bit_for_bit(straight_run, tmp_path):
    first = _train(tmp_path, steps=2 * EPISODE).run_dir
    resumed = _train(None, steps=3 * EPISODE, resume=first).run_dir
    assert resumed == first
    a, b = _final_state(straight_run), _final_state(resumed)
    assert int(a.episode) == int(b.episode) == 3
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # params, optimiser, buffer, key: identical
    assert _rows(resumed)[-1]["episode_return"] == _rows(straight_run)[-1]["episode_return"]


def test_load_policy_plans_actions_in_bounds(straight_run):
    policy = registry.get("pets").load_policy(straight_run)
    assert isinstance(policy, MPCPolicy)
    assert (policy.observation_size, policy.action_size, policy.env_name) == (3, 1, "pendulum")
    action = policy.act(np.array([-1.0, 0.0, 0.0], np.float32), jax.random.PRNGKey(0))
    assert action.shape == (1,) and float(np.abs(action).max()) <= 1.0


@pytest.mark.parametrize("env", ["safe_cartpole", "point_goal"])
def test_short_job_runs_on_safety_envs(env, tmp_path):
    result = _train(tmp_path, env=env, steps=2 * EPISODE)
    rows = _rows(result.run_dir)
    assert len(rows) == 2 and float(rows[-1]["random_actions"]) == 0.0
    assert float(rows[-1]["episode_cost"]) >= 0.0 and math.isfinite(float(rows[-1]["episode_return"]))
