"""Run directories, metrics, checkpoints, plots, resume and NaN handling of `saferl.training.run.train`."""

import csv
import json
import math
import shutil

import jax
import numpy as np
import pytest
from tiny_configs import PPO_CHUNK
from tiny_runs import copy_run, ppo_run

from saferl.errors import NonFiniteError, UserError
from saferl.policies import load_policy
from saferl.training import rundir
from saferl.training.run import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One uninterrupted PPO run of 4 chunks (shared with other modules: never changed here), and a copy of it
    cut back to its checkpoint after 2 chunks and resumed to 4 (same config, same seed)."""
    full = ppo_run(4)
    half = copy_run(full.run_dir, tmp_path_factory.mktemp("half"))
    shutil.rmtree(half / "checkpoints" / str(4 * PPO_CHUNK))  # as if it was a run of 2 chunks (--steps 256)
    config = json.loads((half / "config.json").read_text())
    (half / "config.json").write_text(json.dumps({**config, "steps": 2 * PPO_CHUNK}))
    assert rundir.checkpoint_steps(half) == [2 * PPO_CHUNK]
    resumed = train(None, None, steps=4 * PPO_CHUNK, resume=half, progress=False)
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
    actions, carry = policy.act(policy.init_carry(), obs, jax.random.PRNGKey(1))
    assert float(carry.cost_spent) == 0.0 and carry.memory == ()  # PPO carries only the executor's cost sum
    assert actions.shape == (64, policy.action_size)
    assert float(jax.numpy.abs(actions).max()) <= 1.0
    assert policy.env_name == "pendulum" and policy.algo == "ppo" and policy.cost_budget == 0.0
    # the same map: jitted `act` vs op-by-op `apply` may differ by float32 rounding (XLA fuses and reorders)
    np.testing.assert_allclose(policy.apply(policy.params, obs), actions, rtol=0, atol=1e-6)


def test_resume_rejects_changed_config_and_wrong_algo(runs):
    half = runs[1]
    with pytest.raises(UserError, match="cannot change"):
        train(None, None, resume=half, overrides={"learning_rate": 0.1}, progress=False)
    with pytest.raises(UserError, match="the run is 'ppo'"):
        train("sac", None, resume=half, progress=False)


def test_missing_or_corrupt_run_dir_is_a_user_error_and_nothing_is_deleted(runs, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        rundir.read_run(tmp_path / "nope")
    with pytest.raises(UserError, match=r"config.json is missing"):
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


def test_loaded_policy_is_the_checkpoints_normaliser_and_policy_network_read_alone(runs):
    # rebuilt from the run's network config and the leaves under `.normalizer` and `.params.policy`: the same
    # arrays as the whole training state restored into the trainer's structure
    from saferl.agents import ppo
    from saferl.training.restore import restore_run_state

    policy = load_policy(runs[0].run_dir)
    state = restore_run_state(runs[0].run_dir, lambda c, e, world: ppo.make_train(c, e, world)[0]).state
    same = jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), policy.params, (state.normalizer, state.params.policy))
    assert all(jax.tree.leaves(same))


def test_a_checkpoint_without_the_policys_leaves_is_a_user_error_naming_the_leaf(runs, tmp_path):
    copy = copy_run(runs[0].run_dir, tmp_path)
    record = copy / "checkpoints" / str(rundir.checkpoint_steps(copy)[-1]) / "extra" / "metadata"
    record.write_text(record.read_text().replace(".params.policy", ".params.actor"))
    with pytest.raises(UserError, match=r"holds no \.params\.policy\['params'\]"):
        load_policy(copy)


def _corrupt(checkpoint_dir):
    for path in (checkpoint_dir / "state").rglob("*"):
        if path.is_file() and path.stat().st_size > 0 and "metadata" not in path.name:
            path.write_bytes(b"garbage")


def _snapshot(run_dir):
    """{relative path: bytes} of every file in a run dir."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_resume_from_a_corrupt_checkpoint_fails_in_one_line_touching_nothing_and_names_the_intact_one(runs, tmp_path):
    """Issue #29: validate and restore first, write after. The newest checkpoint is corrupt: `saferl train
    --resume RUN --steps N` exits 2 with one line naming the older intact checkpoint, and the run dir (config.json
    with its old steps, metrics.csv, TensorBoard files, checkpoints) is byte for byte what it was. Removing the
    corrupt checkpoint, as the message says, resumes from the older one."""
    from tiny_runs import cli_in_process

    run_dir = copy_run(runs[0].run_dir, tmp_path)
    steps = rundir.checkpoint_steps(run_dir)
    assert len(steps) >= 2
    _corrupt(run_dir / "checkpoints" / str(steps[-1]))
    before = _snapshot(run_dir)
    code, _, err = cli_in_process(["train", "--resume", str(run_dir), "--steps", str(steps[-1] + PPO_CHUNK), "--quiet"])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"checkpoint {steps[-1]} cannot be restored" in err and f"checkpoint {steps[-2]} is intact" in err, err
    assert _snapshot(run_dir) == before  # nothing written, truncated or created
    shutil.rmtree(run_dir / "checkpoints" / str(steps[-1]))
    code, _, err = cli_in_process(["train", "--resume", str(run_dir), "--steps", str(steps[-1]), "--quiet"])
    assert code == 0, err
    assert rundir.checkpoint_steps(run_dir)[-1] == steps[-1]
    with open(run_dir / "metrics.csv") as f:
        assert [int(float(row["env_steps"])) for row in csv.DictReader(f)][-1] == steps[-1]


def test_nan_in_training_stops_with_the_quantity_and_never_checkpoints_it(runs, tmp_path):
    # a blown-up simulation: the envs' velocities in the resumed state are NaN, so the next chunk's data,
    # normaliser and losses go non-finite (the fresh-run case, where the initial state gets saved, is
    # tested with PETS in tests/agents/test_pets.py)
    from saferl.agents import ppo
    from saferl.training.checkpoints import Checkpoints
    from saferl.training.restore import restore_run_state

    run_dir = copy_run(runs[0].run_dir, tmp_path)
    shutil.rmtree(run_dir / "checkpoints" / str(4 * PPO_CHUNK))
    state = restore_run_state(run_dir, lambda c, e, world: ppo.make_train(c, e, world)[0])[-1]
    qvel = state.env_state.pipeline_state.qvel
    state = state.replace(
        env_state=state.env_state.replace(
            pipeline_state=state.env_state.pipeline_state.replace(qvel=jax.numpy.full_like(qvel, jax.numpy.nan))
        )
    )
    shutil.rmtree(run_dir / "checkpoints" / str(2 * PPO_CHUNK))  # replaced by the blown-up state
    checkpoints = Checkpoints(run_dir / "checkpoints")
    checkpoints.save(2 * PPO_CHUNK, state, {"env_steps": 2 * PPO_CHUNK, "algo": "ppo"})
    checkpoints.close()
    with pytest.raises(NonFiniteError) as info:
        train(None, None, steps=4 * PPO_CHUNK, resume=run_dir, progress=False)
    err = info.value
    assert err.quantity.startswith(("losses/", "params/")) and err.step == 3 * PPO_CHUNK
    assert rundir.checkpoint_steps(run_dir) == [2 * PPO_CHUNK]  # nothing non-finite was saved
    with (run_dir / "metrics.csv").open() as f:
        assert [int(r["env_steps"]) for r in csv.DictReader(f)] == [PPO_CHUNK, 2 * PPO_CHUNK]  # no NaN row
    assert (run_dir / "plots" / "return.png").exists()
    policy = load_policy(run_dir)
    assert all(math.isfinite(float(np.abs(x).max())) for x in jax.tree.leaves(policy.params))


def test_runs_recorded_with_the_old_zero_rollout_bonus_names_read_under_the_shared_names():
    """RolloutConfig.reward_bonus / cost_penalty became optimism / pessimism (λ·σ of the next state, not of the
    heads): old runs carry them as 0, which is the same rollout; a non-zero one meant another σ and is refused."""
    import types

    from saferl.training.restore import algo_config_from_record

    old = {"rollout": {"reward_bonus": 0.0, "cost_penalty": 0.0, "num_particles": 10}}
    config = algo_config_from_record(types.SimpleNamespace(algo="pets", algo_config=old))
    assert (config.rollout.optimism, config.rollout.pessimism, config.rollout.num_particles) == (0.0, 0.0, 10)
    with pytest.raises(UserError, match="reward_bonus"):
        algo_config_from_record(types.SimpleNamespace(algo="pets", algo_config={"rollout": {"reward_bonus": 1.0}}))
