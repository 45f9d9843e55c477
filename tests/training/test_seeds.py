"""`saferl train ALGO --seeds ...` (`saferl.training.seeds`): seeds vmapped in one compiled program, one run
directory per seed equal to the single-seed run, per-seed checkpoints that resume alone or together."""

import json
import shutil

import jax
import numpy as np
import pytest
from tiny_configs import ENV_TINY, PPO_CHUNK, PPO_TINY
from tiny_runs import cli_in_process, copy_run, metric_rows, ppo_run

import envs
from saferl import registry
from saferl.config import apply_overrides
from saferl.errors import UserError
from saferl.policies import load_policy
from saferl.training import rundir, seeds
from saferl.training.restore import algo_config_from_record, env_config_from_record, training_env_from_record
from saferl.training.run import train

CHUNKS = 4  # PPO_TINY checkpoints every 2 chunks: at 2 and 4 chunks
# vmap turns the per-seed matmuls into batched ones, whose float32 sums XLA may reduce in another order, so a
# seed's numbers can differ from its single run in the last bits (measured: ≤ 2e-6 relative after 3 chunks);
# 1e-4 relative leaves room for that rounding to grow over 4 chunks, far below any seed-to-seed difference.
RTOL, ATOL = 1e-4, 1e-6


def _assert_same_metrics(a, b) -> None:
    rows_a, rows_b = metric_rows(a), metric_rows(b)
    assert list(rows_a[0]) == list(rows_b[0]) and len(rows_a) == len(rows_b)
    for row_a, row_b in zip(rows_a, rows_b, strict=False):
        for key in row_a:
            x, y = (float(row_a[key]) if row_a[key] else np.nan), (float(row_b[key]) if row_b[key] else np.nan)
            np.testing.assert_allclose(x, y, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=f"{key} at {row_a}")


def _assert_same_params(a, b) -> None:
    pa, pb = load_policy(a).params, load_policy(b).params
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=False):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=RTOL, atol=1e-5)


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory):
    """`saferl train ppo --seeds 3 5` through the CLI (PPO_TINY, 4 chunks): {seed: run dir}."""
    out = tmp_path_factory.mktemp("seeds")
    sets = [x for k, v in PPO_TINY.items() for x in ("--set", f"{k}={json.dumps(v)}")]
    env_sets = [x for k, v in ENV_TINY.items() for x in ("--set-env", f"{k}={json.dumps(v)}")]
    code, stdout, stderr = cli_in_process(
        [
            "train",
            "ppo",
            "--env",
            "pendulum",
            "--steps",
            str(CHUNKS * PPO_CHUNK),
            "--seeds",
            "3",
            "5",
            "--quiet",
            "--out",
            str(out),
            *sets,
            *env_sets,
        ]
    )
    assert code == 0, stderr
    dirs = {json.loads((d / "config.json").read_text())["seed"]: d for d in out.iterdir()}
    assert stdout.count("run directory:") == 2
    return dirs


@pytest.mark.slow
def test_seeds_write_one_run_dir_per_seed_with_the_single_seed_runs_metrics(seed_runs):
    assert sorted(seed_runs) == [3, 5]
    single = ppo_run(CHUNKS, seed=3).run_dir
    for seed, run_dir in seed_runs.items():
        assert run_dir.name.startswith(f"ppo-pendulum-seed{seed}-")
        assert sorted(p.name for p in run_dir.iterdir()) == sorted(p.name for p in single.iterdir())
        assert rundir.checkpoint_steps(run_dir) == rundir.checkpoint_steps(single) == [2 * PPO_CHUNK, 4 * PPO_CHUNK]
        assert (run_dir / "plots" / "return.png").read_bytes()[:4] == b"\x89PNG"
    config, reference = (json.loads((d / "config.json").read_text()) for d in (seed_runs[3], single))
    assert {k: v for k, v in config.items() if k != "versions"} == {
        k: v for k, v in reference.items() if k != "versions"
    }
    _assert_same_metrics(seed_runs[3], single)
    _assert_same_params(seed_runs[3], single)
    # the other seed is another run: its losses differ far beyond the tolerance
    other = [float(r["policy_loss"]) for r in metric_rows(seed_runs[5])]
    assert not np.allclose(other, [float(r["policy_loss"]) for r in metric_rows(single)], rtol=1e-2)


@pytest.mark.slow
def test_all_seeds_share_one_compiled_chunk(seed_runs):
    record = rundir.read_run(seed_runs[3])
    world = training_env_from_record(record)
    env = envs.make_training_env(record.env, env_config_from_record(record), world)
    parts = registry.seed_batch("ppo").make_parts(algo_config_from_record(record), env, world)
    _, _, chunk_jit = seeds.vmapped(parts)
    assert chunk_jit._cache_size() == 1  # 4 chunks of 2 seeds: traced and compiled once


@pytest.mark.slow
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
    results = seeds.train_seeds(
        None, None, resume=[halves[3], halves[5]], steps=CHUNKS * PPO_CHUNK, progress=False, tensorboard=False
    )
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
    for flags, message in (
        (["--seeds", "1", "2", "1"], "more than once"),
        (["--seeds", "0", "1", "--seed", "2"], "exclusive"),
        (["--seeds", "0,x"], "not an integer"),
        (["--seeds", "0", "--resume", str(tmp_path)], "cannot be given with --resume"),
    ):
        code, _, err = cli_in_process(base + flags)
        assert code == 2 and message in err, (flags, err)
    assert not list(tmp_path.iterdir())  # rejected before any run directory was created


def test_host_side_algorithms_run_seeds_one_after_another():
    assert all(seeds.vmaps_seeds(algo) for algo in ("ppo", "sac", "pets", "softae"))
    assert not seeds.vmaps_seeds("sooper")


@pytest.mark.parametrize("algo", ["pets", "softae"])
@pytest.mark.slow
def test_episodic_seeds_are_vmapped_episodes_with_the_single_seed_runs_metrics(algo, tmp_path):
    from tiny_configs import PETS_ENV, PETS_EPISODE, PETS_TINY, SOFTAE_TINY
    from tiny_runs import pets_run, softae_run

    overrides = PETS_TINY if algo == "pets" else {**SOFTAE_TINY, "exploration": "info_gain"}
    world = envs.TrainingEnvConfig()
    env = envs.make_training_env("pendulum", envs.make_config("pendulum", **PETS_ENV), world)
    episodes = registry.seed_batch(algo).make_seed_chunk(
        apply_overrides(registry.get(algo).config_cls(), overrides), env, world
    )
    compiled_before = (episodes.fit._cache_size(), episodes.add._cache_size())  # other tests may share them
    results = seeds.train_seeds(
        algo,
        "pendulum",
        [0, 2],
        steps=2 * PETS_EPISODE,
        overrides=overrides,
        env_overrides=PETS_ENV,
        out=tmp_path,
        progress=False,
        tensorboard=False,
    )
    reference = pets_run(3) if algo == "pets" else softae_run("info_gain", 3)
    single = metric_rows(reference.run_dir)[:2]  # its first 2 episodes (1 random, 1 planned) = a 2-episode run's
    timing = {"fit_s", "compile_s", "plan_ms_per_step"}  # wall-clock columns: the whole batch's in a --seeds run
    rows = metric_rows(results[0].run_dir)
    assert [list(r) for r in rows] == [list(r) for r in single]
    for row, reference in zip(rows, single, strict=False):
        for key in set(row) - timing:  # the same three programs, batched: equal up to float rounding
            x, y = (float(row[key]) if row[key] else np.nan), (float(reference[key]) if reference[key] else np.nan)
            np.testing.assert_allclose(x, y, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=key)
    assert metric_rows(results[1].run_dir)[0]["episode_return"] != rows[0]["episode_return"]  # seed 2 is another run
    assert [rundir.checkpoint_steps(r.run_dir)[-1] for r in results] == [2 * PETS_EPISODE] * 2
    record = rundir.read_run(results[0].run_dir)
    assert record.algo == algo
    world = training_env_from_record(record)
    assert (
        registry.seed_batch(algo).make_seed_chunk(
            algo_config_from_record(record),
            envs.make_training_env("pendulum", env_config_from_record(record), world),
            world,
        )
        is episodes
    )  # the run used the memoised programs
    grown = (episodes.fit._cache_size() - compiled_before[0], episodes.add._cache_size() - compiled_before[1])
    assert grown[0] <= 1 and grown[1] <= 1  # random and planned episodes of 2 seeds alike: one compile each
