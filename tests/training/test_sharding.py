"""saferl.sharding, data-parallel PPO, ensemble fitting, iCEM planning and seed batches: one code path
for 1 and 4 (forced host CPU) devices, and `use_devices` (`saferl train --devices N`).

The device count of a JAX process is fixed at start-up, so one subprocess with
`--xla_force_host_platform_device_count=4` writes every 4-device report of `device_reports.py` (a tiny PPO
chunk; an ensemble fit and an iCEM plan on all 4 devices, then restricted to 1 by `sharding.use_devices(1)`;
two seeds of the PPO chunk vmapped), while this process, with its one device, runs the same PPO chunk.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import device_reports
import jax
import numpy as np
import pytest

from saferl import sharding
from saferl.errors import UserError

_HERE = pathlib.Path(__file__).resolve().parent


def _load(out: pathlib.Path, name: str) -> tuple[dict, np.lib.npyio.NpzFile]:
    return json.loads((out / f"{name}.json").read_text()), np.load(out / f"{name}.npz")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """{report name: (JSON report, npz)}: `ppo4`, `model4`, `seeds4` from one 4-device subprocess and `ppo1`
    from this process (one device: the suite's default, or the first of several under forced devices)."""
    out = tmp_path_factory.mktemp("sharding")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    process = subprocess.Popen(
        [sys.executable, str(_HERE / "device_reports.py"), str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        sharding.use_devices(1)  # a no-op in the default 1-device process
        device_reports.ppo_report(out)
    finally:
        sharding.use_devices(None)
        log, _ = process.communicate(timeout=600)
    assert process.returncode == 0, log[-3000:]
    return {name: _load(out, name) for name in ("ppo1", "ppo4", "model4", "seeds4")}


@pytest.fixture(scope="module")
def runs(reports):
    """{devices: (report dict, npz)} of the PPO chunk on 1 and on 4 devices."""
    return {1: reports["ppo1"], 4: reports["ppo4"]}


@pytest.fixture(scope="module")
def model_runs(reports):
    """(report, npz) of the ensemble fit and iCEM plan on 4 devices and restricted to 1 (one 4-device process)."""
    return reports["model4"]


@pytest.mark.slow
def test_env_states_are_split_over_four_devices_and_params_replicated(runs):
    report, _ = runs[4]
    assert report["devices"] == 4
    assert report["env_rows"] == [4]  # PPO_TINY: num_envs 4 ...
    assert report["env_devices"] == [4]  # ... every env-state leaf spans the 4 devices
    assert report["env_shard_rows"] == [1]  # ... one env per device
    assert report["params_replicated"]


@pytest.mark.slow
def test_one_device_run_keeps_everything_on_that_device(runs):
    report, _ = runs[1]
    assert report["devices"] == 1 and report["env_devices"] == [1] and report["env_shard_rows"] == [4]
    assert report["params_replicated"]


@pytest.mark.slow
def test_state_placed_elsewhere_trains_to_the_same_result(runs):
    # a restored state may sit on one device; the chunk moves it onto the mesh first, same program, same bits
    assert runs[4][0]["one_device_input_same"] and runs[1][0]["one_device_input_same"]


@pytest.mark.slow
def test_four_device_chunk_matches_one_device_chunk(runs):
    one, four = runs[1][1], runs[4][1]
    assert set(one.files) == set(four.files)
    for name in one.files:
        a, b = one[name], four[name]
        if a.dtype.kind != "f":  # counters, PRNG keys, done/step flags: identical
            np.testing.assert_array_equal(a, b, err_msg=name)
            continue
        # Sharded reductions (loss means, gradients, normaliser sums) add 4 partial sums instead of one
        # sequential sum: float32 round-off (eps 1.2e-7) of a few eps relative, carried through 4 Adam steps
        # and 32 pendulum steps. Measured: ≤ 6e-6 of each leaf's scale; 1e-4 leaves 15x margin, while a
        # sharding bug (envs mixed up across shards, gradients of one shard only) moves leaves by ≥ 1e-2.
        scale = max(float(np.max(np.abs(a), initial=0.0)), 1e-3)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-4 * scale, err_msg=name)


@pytest.mark.slow
def test_num_envs_not_divisible_by_device_count_is_a_user_error(runs):
    message = runs[4][0]["user_error"]
    assert message is not None and "num_envs=2" in message and "4 devices" in message
    assert runs[1][0]["user_error"] is None  # any num_envs splits over one device


def test_helpers_shard_leading_axis_and_replicate_scalars():
    mesh = sharding.data_mesh()
    count = sharding.device_count(mesh)
    tree = {"obs": np.zeros((2 * count, 3), np.float32), "step": np.zeros((), np.int32)}
    placed = sharding.place(tree, sharding.batch_shardings(tree, mesh=mesh))
    assert placed["obs"].sharding.spec == jax.sharding.PartitionSpec(sharding.DATA_AXIS)
    assert {s.data.shape for s in placed["obs"].addressable_shards} == {(2, 3)}
    assert placed["step"].sharding.is_fully_replicated
    if count > 1:
        with pytest.raises(UserError, match="cannot be split evenly"):
            sharding.batch_shardings({"obs": np.zeros((count + 1, 3))}, mesh=mesh)
    sharding.check_divisible(3 * count, "num_envs", mesh)  # a multiple is fine
    replicated = sharding.place_replicated(tree, mesh)  # every leaf whole on every device of the mesh
    for leaf in jax.tree.leaves(replicated):
        assert leaf.sharding.is_fully_replicated and leaf.sharding.mesh == mesh
        assert {s.data.shape for s in leaf.addressable_shards} == {leaf.shape}


@pytest.mark.slow
def test_use_devices_restricts_the_mesh_and_the_programs(model_runs):
    report, _ = model_runs
    assert report["available"] == 4
    four, one = report["runs"]["4"], report["runs"]["1"]
    assert four["mesh"] == 4 and one["mesh"] == 1
    # 4 devices: the minibatch rows are split, so the gradients need an all-reduce; the planner's candidates are
    # split and gathered for ranking. On the 1-device mesh the same code compiles to programs without collectives.
    assert "all-reduce" in four["fit"] and four["plan"]
    assert one["fit"] == [] and one["plan"] == []
    assert four["params_devices"] == [4] and one["params_devices"] == [1]  # replicated over the mesh


@pytest.mark.slow
def test_ensemble_fit_and_icem_plan_on_four_devices_match_one_device(model_runs):
    _, arrays = model_runs
    np.testing.assert_array_equal(arrays["d4_epochs"], arrays["d1_epochs"])
    for name in [f for f in arrays.files if f.startswith("d1_param_")] + ["d1_holdout"]:
        a, b = arrays[name], arrays["d4" + name[2:]]
        # The loss of a 32-row minibatch is 4 partial sums of 8 rows instead of one sum of 32: float32 round-off
        # (eps 1.2e-7) relative to the leaf, through 4 epochs x 7 AdamW steps. Measured: <= 1e-7 of each leaf's
        # scale; 1e-5 leaves a 100x margin, while a sharding bug (a shard's rows or gradient lost) moves the
        # parameters by a learning-rate step, >= 1e-4 of their scale.
        scale = max(float(np.max(np.abs(a))), 1e-3)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * scale, err_msg=name)
    # The plan ranks candidates whose scores differ in the 7th digit at most, so the elites, the executed sequence
    # and its value agree to float32 round-off (measured: identical bits); padded candidates never win.
    np.testing.assert_allclose(arrays["d4_actions"], arrays["d1_actions"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(arrays["d4_value"], arrays["d1_value"], rtol=1e-5)


def test_use_devices_rejects_counts_outside_the_available_devices():
    available = len(jax.devices())
    for bad in (0, -1, available + 1):
        with pytest.raises(UserError, match=rf"--devices={bad}\b.*"):
            sharding.use_devices(bad)
    assert sharding.device_count() == available  # a rejected count leaves the mesh as it was
    sharding.use_devices(available)  # all of them: the default, nothing to recompile
    assert sharding.devices() == jax.devices()


@pytest.mark.slow
def test_seed_axis_is_replicated_and_env_batch_split_on_four_devices(reports):
    """`saferl train --seeds` on 4 devices (`saferl.training.seeds`): seeds 7 and 8 vmapped over one PPO chunk."""
    report, _ = reports["seeds4"]
    assert report["devices"] == 4 and report["params_replicated"]
    assert report["env_shards"] == [[2, 1]]  # every device: both seeds, 1 of the 4 envs of each
    for name, value in report["single"].items():
        # seed 7 of the batch vs seed 7 alone, both data-parallel on 4 devices (the 1e-4 scale of the PPO test)
        scale = max(1.0, abs(value))
        np.testing.assert_allclose(report["seeds"][name][0], value, rtol=0, atol=1e-4 * scale, err_msg=name)
    assert report["seeds"]["policy_loss"][0] != report["seeds"]["policy_loss"][1]
