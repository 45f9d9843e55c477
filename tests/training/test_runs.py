"""Run directories, metrics, checkpoints, plots, resume and NaN handling of `saferl.training.run.train`."""

import csv
import json
import math

import jax
import numpy as np
import pytest
from tiny_configs import ENV_TINY, PPO_CHUNK, PPO_TINY

from saferl.errors import NonFiniteError, UserError
from saferl.policies import load_policy
from saferl.training import rundir
from saferl.training.run import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One uninterrupted PPO run of 4 chunks, and one of 2 chunks resumed to 4 (same config, same seed)."""
    out = tmp_path_factory.mktemp("runs")
    kwargs = dict(overrides=PPO_TINY, env_overrides=ENV_TINY, out=out, progress=False, seed=3)
    full = train("ppo", "pendulum", steps=4 * PPO_CHUNK, **kwargs)
    half = train("ppo", "pendulum", steps=2 * PPO_CHUNK, **kwargs)
    resumed = train(None, None, steps=4 * PPO_CHUNK, resume=half.run_dir, progress=False)
    return full, half, resumed


def test_run_dir_holds_config_metrics_tensorboard_checkpoints_and_plots(runs):
    full = runs[0]
    run_dir = full.run_dir
    assert run_dir.name.startswith("ppo-pendulum-")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["algo"] == "ppo" and config["env"] == "pendulum" and config["seed"] == 3
    assert config["steps"] == 4 * PPO_CHUNK and config["env_config"]["episode_length"] == 40
    assert config["algo_config"]["num_envs"] == 4 and "jax" in config["versions"]
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:3] == ["env_steps", "episode_return", "episode_cost"]
    assert {"policy_loss", "v_loss"} <= set(rows[0])
    assert [int(r["env_steps"]) for r in rows] == [PPO_CHUNK * k for k in (1, 2, 3, 4)]
    assert any(r["episode_return"] for r in rows)  # 40-step episodes end within the run
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert rundir.checkpoint_steps(run_dir)[-1] == 4 * PPO_CHUNK
    for name in ("return.png", "cost.png"):
        assert (run_dir / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resumed_run_equals_uninterrupted_run_bit_for_bit(runs):
    full, _, resumed = runs
    a, b = load_policy(full.run_dir), load_policy(resumed.run_dir)
    same = jax.tree.map(lambda x, y: bool(np.array_equal(np.asarray(x), np.asarray(y))), a.params, b.params)
    assert all(jax.tree.leaves(same))
    assert (full.run_dir / "metrics.csv").read_text() == (resumed.run_dir / "metrics.csv").read_text()
    assert json.loads((resumed.run_dir / "config.json").read_text())["steps"] == 4 * PPO_CHUNK


def test_loaded_policy_keeps_actions_in_unit_box_and_knows_its_env(runs):
    policy = load_policy(runs[0].run_dir)
    obs = 100.0 * jax.random.normal(jax.random.PRNGKey(0), (64, policy.observation_size))
    actions = policy.act(obs, jax.random.PRNGKey(1))
    assert actions.shape == (64, policy.action_size)
    assert float(jax.numpy.abs(actions).max()) <= 1.0
    assert policy.env_name == "pendulum" and policy.algo == "ppo" and policy.cost_budget == 0.0
    np.testing.assert_array_equal(policy.apply(policy.params, obs), actions)


def test_resume_rejects_changed_config_and_wrong_algo(runs):
    half = runs[1].run_dir
    with pytest.raises(UserError, match="cannot change"):
        train(None, None, resume=half, overrides={"learning_rate": 0.1}, progress=False)
    with pytest.raises(UserError, match="the run is 'ppo'"):
        train("sac", None, resume=half, progress=False)


def test_missing_or_corrupt_run_dir_is_a_user_error_and_nothing_is_deleted(runs, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        rundir.read_run(tmp_path / "nope")
    with pytest.raises(UserError, match="config.json is missing"):
        rundir.read_run(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        rundir.read_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"algo": "ppo"}))
    with pytest.raises(UserError, match="missing keys"):
        rundir.read_run(tmp_path)
    good = json.loads((runs[0].run_dir / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(good))
    with pytest.raises(UserError, match="no checkpoint"):
        rundir.read_run(tmp_path)
    assert (tmp_path / "config.json").read_text() == json.dumps(good)


def test_corrupt_checkpoint_is_a_user_error(runs, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(runs[0].run_dir, copy)
    last = copy / "checkpoints" / str(rundir.checkpoint_steps(copy)[-1]) / "state"
    for path in last.rglob("*"):
        if path.is_file() and path.stat().st_size > 0 and "metadata" not in path.name:
            path.write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot be restored"):
        load_policy(copy)


def test_nan_in_training_stops_with_the_quantity_and_keeps_last_good_checkpoint(tmp_path):
    # lr = 1e30 makes the first Adam step blow the parameters up to ±1e30 → inf/NaN losses.
    with pytest.raises(NonFiniteError) as info:
        train("ppo", "pendulum", steps=4 * PPO_CHUNK, overrides={**PPO_TINY, "learning_rate": 1e30},
              env_overrides=ENV_TINY, out=tmp_path, progress=False)
    err = info.value
    assert err.quantity.startswith(("losses/", "params/")) and err.step == PPO_CHUNK
    run_dir = next(tmp_path.iterdir())
    assert rundir.checkpoint_steps(run_dir) == [0]  # the initial (last finite) state
    assert (run_dir / "plots" / "return.png").exists()
    policy = load_policy(run_dir)
    assert all(math.isfinite(float(np.abs(x).max())) for x in jax.tree.leaves(policy.params))
