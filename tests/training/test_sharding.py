"""saferl.training.sharding, data-parallel PPO, ensemble fitting and iCEM planning: one code path for 1 and 4
(forced host CPU) devices, and `use_devices` (`saferl train --devices N`).

The device count of a JAX process is fixed at start-up, so the same tiny PPO chunk runs in two subprocesses,
one with 1 CPU device and one with `--xla_force_host_platform_device_count=4`, started side by side. The
ensemble fit and the iCEM plan run in one 4-device subprocess, first on all 4, then restricted to 1 by
`sharding.use_devices(1)` (the mesh the 1-device process has).
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
    from saferl.compilation_cache import enable_compilation_cache
    enable_compilation_cache()  # the test session's (SAFERL_JAX_CACHE / XDG_CACHE_HOME, inherited)
    sys.path.insert(0, sys.argv[3])
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


# A tiny ensemble (2 members, 32x32) fitted for 4 epochs on 256 transitions of a damped 3-d system (minibatch 32,
# 25 held-out rows: 32 splits over 4 devices, 25 does not) and an iCEM plan on it (32 then 25 candidates: the
# second iteration pads 3), once per device count in argv[4]. Writes the params, plan, held-out scores and
# whether the compiled programs hold collectives (an all-reduce of the gradients; gathers of the candidates).
_MODEL_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from saferl.compilation_cache import enable_compilation_cache
    enable_compilation_cache()  # the test session's (SAFERL_JAX_CACHE / XDG_CACHE_HOME, inherited)
    from saferl.agents.pets.policy import model_fns
    from saferl.data.buffer import Transition
    from saferl.models import ensemble, fitting
    from saferl.planning import ICEMConfig, ObjectiveConfig, RolloutConfig, icem, make_objective, make_rollout_fn
    from saferl.training import sharding

    k_obs, k_act = jax.random.split(jax.random.PRNGKey(0))
    obs = jax.random.uniform(k_obs, (256, 3), minval=-1, maxval=1)
    action = jax.random.uniform(k_act, (256, 1), minval=-1, maxval=1)
    delta = 0.1 * jnp.tanh(obs[:, ::-1] + action) - 0.05 * obs
    data = Transition(obs=obs, action=action, next_obs=obs + delta, reward=-jnp.sum(obs**2, -1),
                      cost=jnp.zeros(256), done=jnp.zeros(256))
    config = ensemble.EnsembleConfig(num_members=2, num_elites=2, hidden_sizes=(32, 32), batch_size=32, epochs=4,
                                     patience=100, improvement_threshold=0.0, calibrate=False)
    planner = ICEMConfig(horizon=5, population=30, num_elites=4, iterations=2)
    rollout = RolloutConfig(propagation="ts1", num_particles=2)

    @jax.jit
    def plan(model, obs0, key):
        rollout_fn = make_rollout_fn(model_fns(model), rollout, obs0)
        actions, info = icem.plan(planner, key, rollout_fn, make_objective(ObjectiveConfig()), icem.init_state(planner, 1))
        return actions, info.best_value

    def collectives(hlo):
        return sorted(op for op in ("all-reduce", "all-gather", "all-to-all", "collective-permute") if op in hlo)

    arrays, reports = {}, {}
    for count in [int(c) for c in sys.argv[3].split(",")]:
        sharding.use_devices(count)
        model = ensemble.init(jax.random.PRNGKey(1), config, 3, 1, 5)
        model, metrics = ensemble.fit(jax.random.PRNGKey(2), model, data)
        actions, value = plan(model, obs[0], jax.random.PRNGKey(3))
        fit_hlo = fitting._fit.lower(jax.random.PRNGKey(2), model, data, None, config=config).compile().as_text()
        plan_hlo = plan.lower(model, obs[0], jax.random.PRNGKey(3)).compile().as_text()
        arrays.update({f"d{count}_param_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(model.params))})
        arrays.update({f"d{count}_actions": np.asarray(actions), f"d{count}_value": np.asarray(value),
                       f"d{count}_holdout": np.asarray(metrics.member_holdout_loss),
                       f"d{count}_epochs": np.asarray(metrics.epochs)})
        reports[count] = {"mesh": sharding.device_count(), "fit": collectives(fit_hlo), "plan": collectives(plan_hlo),
                          "params_devices": sorted({len(x.sharding.device_set) for x in jax.tree.leaves(model.params)})}
    np.savez(sys.argv[1], **arrays)
    with open(sys.argv[2], "w") as report_file:
        json.dump({"available": jax.device_count(), "runs": reports}, report_file)
""")


def _start(devices: int, out: pathlib.Path, script: str = _SCRIPT, name: str = "", *extra: str) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    args = [sys.executable, "-c", script, str(out / f"{name}state{devices}.npz"),
            str(out / f"{name}report{devices}.json"), *extra]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{devices: (report dict, npz)} of the chunk on 1 and on 4 devices."""
    out = tmp_path_factory.mktemp("sharding")
    processes = {n: _start(n, out, _SCRIPT, "", str(_TESTS / "training")) for n in (1, 4)}
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


@pytest.fixture(scope="module")
def model_runs(tmp_path_factory):
    """(report, npz) of the ensemble fit and iCEM plan on 4 devices and restricted to 1 (one 4-device process)."""
    out = tmp_path_factory.mktemp("model_sharding")
    process = _start(4, out, _MODEL_SCRIPT, "model", "4,1")
    log, _ = process.communicate(timeout=300)
    assert process.returncode == 0, log[-3000:]
    return json.loads((out / "modelreport4.json").read_text()), np.load(out / "modelstate4.npz")


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
