"""`saferl train ALGO --seeds ...` (`saferl.training.seeds`): seeds vmapped in one compiled program, one run
directory per seed equal to the single-seed run, per-seed checkpoints that resume alone or together."""

import contextlib
import csv
import io
import json
import shutil

import jax
import numpy as np
import pytest
from tiny_configs import ENV_TINY, PPO_CHUNK, PPO_TINY
from tiny_runs import copy_run, ppo_run

import envs
from saferl.agents import registry
from saferl.cli.main import main
from saferl.errors import UserError
from saferl.policies import load_policy
from saferl.training import rundir, seeds
from saferl.training.run import train
from saferl.training.restore import algo_config_from_record, env_config_from_record, training_env_from_record

CHUNKS = 4  # PPO_TINY checkpoints every 2 chunks: at 2 and 4 chunks
# vmap turns the per-seed matmuls into batched ones, whose float32 sums XLA may reduce in another order, so a
# seed's numbers can differ from its single run in the last bits (measured: ≤ 2e-6 relative after 3 chunks);
# 1e-4 relative leaves room for that rounding to grow over 4 chunks, far below any seed-to-seed difference.
RTOL, ATOL = 1e-4, 1e-6


def _cli(args: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `saferl args...` in this process."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as done:
            code = done.code or 0
    return code, out.getvalue(), err.getvalue()


def _rows(run_dir) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _assert_same_metrics(a, b) -> None:
    rows_a, rows_b = _rows(a), _rows(b)
    assert list(rows_a[0]) == list(rows_b[0]) and len(rows_a) == len(rows_b)
    for row_a, row_b in zip(rows_a, rows_b):
        for key in row_a:
            x, y = (float(row_a[key]) if row_a[key] else np.nan), (float(row_b[key]) if row_b[key] else np.nan)
            np.testing.assert_allclose(x, y, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=f"{key} at {row_a}")


def _assert_same_params(a, b) -> None:
    pa, pb = load_policy(a).params, load_policy(b).params
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=RTOL, atol=1e-5)


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory):
    """`saferl train ppo --seeds 3 5` through the CLI (PPO_TINY, 4 chunks): {seed: run dir}."""
    out = tmp_path_factory.mktemp("seeds")
    sets = [x for k, v in PPO_TINY.items() for x in ("--set", f"{k}={json.dumps(v)}")]
    env_sets = [x for k, v in ENV_TINY.items() for x in ("--set-env", f"{k}={json.dumps(v)}")]
    code, stdout, stderr = _cli(["train", "ppo", "--env", "pendulum", "--steps", str(CHUNKS * PPO_CHUNK),
                                 "--seeds", "3", "5", "--quiet", "--out", str(out), *sets, *env_sets])
    assert code == 0, stderr
    dirs = {json.loads((d / "config.json").read_text())["seed"]: d for d in out.iterdir()}
    assert stdout.count("run directory:") == 2
    return dirs


def test_seeds_write_one_run_dir_per_seed_with_the_single_seed_runs_metrics(seed_runs):
    assert sorted(seed_runs) == [3, 5]
    single = ppo_run(CHUNKS, seed=3).run_dir
    for seed, run_dir in seed_runs.items():
        assert run_dir.name.startswith(f"ppo-pendulum-seed{seed}-")
        assert sorted(p.name for p in run_dir.iterdir()) == sorted(p.name for p in single.iterdir())
        assert rundir.checkpoint_steps(run_dir) == rundir.checkpoint_steps(single) == [2 * PPO_CHUNK, 4 * PPO_CHUNK]
        assert (run_dir / "plots" / "return.png").read_bytes()[:4] == b"\x89PNG"
    config, reference = (json.loads((d / "config.json").read_text()) for d in (seed_runs[3], single))
    assert {k: v for k, v in config.items() if k != "versions"} == {k: v for k, v in reference.items()
                                                                   if k != "versions"}
    _assert_same_metrics(seed_runs[3], single)
    _assert_same_params(seed_runs[3], single)
    # the other seed is another run: its losses differ far beyond the tolerance
    other = [float(r["policy_loss"]) for r in _rows(seed_runs[5])]
    assert not np.allclose(other, [float(r["policy_loss"]) for r in _rows(single)], rtol=1e-2)


def test_all_seeds_share_one_compiled_chunk(seed_runs):
    record = rundir.read_run(seed_runs[3])
    world = training_env_from_record(record)
    env = envs.make_training_env(record.env, env_config_from_record(record), world)
    parts = registry.seed_batch("ppo").make_parts(algo_config_from_record(record), env, world)
    _, _, chunk_jit = seeds.vmapped(parts)
    assert chunk_jit._cache_size() == 1  # 4 chunks of 2 seeds: traced and compiled once


def test_each_seeds_checkpoint_resumes_alone_and_together(seed_runs, tmp_path):
    halves = {}
    for seed, run_dir in seed_runs.items():  # cut back to the checkpoint after 2 chunks
        half = copy_run(run_dir, tmp_path / str(seed))
        shutil.rmtree(half / "checkpoints" / str(4 * PPO_CHUNK))
        halves[seed] = half
    alone = copy_run(halves[5], tmp_path / "alone")
    train(None, None, steps=CHUNKS * PPO_CHUNK, resume=alone, progress=False, tensorboard=False)
    _assert_same_metrics(alone, seed_runs[5])
    _assert_same_params(alone, seed_runs[5])
    results = seeds.train_seeds(None, None, resume=[halves[3], halves[5]], steps=CHUNKS * PPO_CHUNK, progress=False,
                                tensorboard=False)
    assert [r.run_dir for r in results] == [halves[3], halves[5]]
    for seed, half in halves.items():
        assert rundir.checkpoint_steps(half)[-1] == 4 * PPO_CHUNK
        _assert_same_metrics(half, seed_runs[seed])
        _assert_same_params(half, seed_runs[seed])


def test_bad_seed_lists_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="more than once"):
        seeds.check_seeds([0, 1, 0])
    with pytest.raises(UserError, match="at least one seed"):
        seeds.check_seeds([])
    with pytest.raises(UserError, match="exclusive"):
        seeds.check_seeds([0, 1], seed=2)
    base = ["train", "ppo", "--env", "pendulum", "--quiet", "--out", str(tmp_path)]
    for flags, message in ((["--seeds", "1", "2", "1"], "more than once"), (["--seeds", "0", "1", "--seed", "2"],
                                                                            "exclusive"),
                           (["--seeds", "0,x"], "not an integer"), (["--seeds", "0", "--resume", str(tmp_path)],
                                                                    "cannot be given with --resume")):
        code, _, err = _cli(base + flags)
        assert code == 2 and message in err, (flags, err)
    assert not list(tmp_path.iterdir())  # rejected before any run directory was created


def test_host_side_algorithms_run_seeds_one_after_another():
    assert seeds.vmaps_seeds("ppo") and seeds.vmaps_seeds("sac")
    assert not seeds.vmaps_seeds("sooper") and not seeds.vmaps_seeds("softae")
