"""saferl.training.sharding and data-parallel PPO: one code path for 1 and 4 (forced host CPU) devices.

The device count of a JAX process is fixed at start-up, so the same tiny PPO chunk runs in two subprocesses,
one with 1 CPU device and one with `--xla_force_host_platform_device_count=4`, started side by side.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from saferl.errors import UserError
from saferl.training import sharding

_TESTS = pathlib.Path(__file__).resolve().parents[1]

# One PPO_TINY chunk (num_envs 4) on pendulum; writes the final state's leaves and the metrics to an .npz and
# a JSON report: where the env states and params live, the UserError for num_envs=2, and whether a state that
# sits on one device (as a restored one may) trains to the same result.
_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    jax.config.update("jax_compilation_cache_dir", sys.argv[3])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    sys.path.insert(0, sys.argv[4])
    from tiny_configs import ENV_TINY, PPO_TINY
    import envs
    from saferl.agents import ppo
    from saferl.config import apply_overrides
    from saferl.errors import UserError

    env = envs.make("pendulum", **ENV_TINY)
    config = apply_overrides(ppo.PPOConfig(), PPO_TINY)
    init, train_chunk = ppo.make_train(config, env)
    start = init(jax.random.PRNGKey(7))
    state, metrics = train_chunk(start)
    env_leaves = [x for x in jax.tree.leaves(state.env_state) if x.size]  # MJX has zero-size leaves: no data
    report = {
        "devices": jax.device_count(),
        "env_devices": sorted({len(x.sharding.device_set) for x in env_leaves}),
        "env_shard_rows": sorted({s.data.shape[0] for x in env_leaves for s in x.addressable_shards}),
        "env_rows": sorted({x.shape[0] for x in env_leaves}),
        "params_replicated": all(x.sharding.is_fully_replicated and len(x.sharding.device_set) == jax.device_count()
                                 for x in jax.tree.leaves(state.params)),
    }
    on_one_device = jax.device_put(start, jax.devices()[0])
    again, _ = train_chunk(on_one_device)
    report["one_device_input_same"] = all(np.array_equal(a, b) for a, b in
                                          zip(jax.tree.leaves(state), jax.tree.leaves(again)))
    try:
        ppo.make_train(apply_overrides(config, {"num_envs": 2}), env)
        report["user_error"] = None
    except UserError as err:
        report["user_error"] = str(err)
    leaves = {f"leaf_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(state))}
    np.savez(sys.argv[1], **leaves, **{f"metric_{k}": np.asarray(v) for k, v in metrics.items()})
    with open(sys.argv[2], "w") as report_file:
        json.dump(report, report_file)
""")


def _start(devices: int, out: pathlib.Path) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    args = [sys.executable, "-c", _SCRIPT, str(out / f"state{devices}.npz"), str(out / f"report{devices}.json"),
            str(_TESTS.parent / ".jax_cache"), str(_TESTS / "training")]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{devices: (report dict, npz)} of the chunk on 1 and on 4 devices."""
    out = tmp_path_factory.mktemp("sharding")
    processes = {n: _start(n, out) for n in (1, 4)}
    results = {}
    for n, process in processes.items():
        log, _ = process.communicate(timeout=300)
        assert process.returncode == 0, log[-3000:]
        results[n] = (json.loads((out / f"report{n}.json").read_text()), np.load(out / f"state{n}.npz"))
    return results


def test_env_states_are_split_over_four_devices_and_params_replicated(runs):
    report, _ = runs[4]
    assert report["devices"] == 4
    assert report["env_rows"] == [4]  # PPO_TINY: num_envs 4 ...
    assert report["env_devices"] == [4]  # ... every env-state leaf spans the 4 devices
    assert report["env_shard_rows"] == [1]  # ... one env per device
    assert report["params_replicated"]


def test_one_device_run_keeps_everything_on_that_device(runs):
    report, _ = runs[1]
    assert report["devices"] == 1 and report["env_devices"] == [1] and report["env_shard_rows"] == [4]
    assert report["params_replicated"]


def test_state_placed_elsewhere_trains_to_the_same_result(runs):
    # a restored state may sit on one device; the chunk moves it onto the mesh first, same program, same bits
    assert runs[4][0]["one_device_input_same"] and runs[1][0]["one_device_input_same"]


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
