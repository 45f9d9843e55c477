"""Env steps/s of the MJX envs (jit + vmap + lax.scan) against `mujoco.rollout` on the same model with all
cores, measured in the same run, and end-to-end trainer throughput (PPO, SAC: env steps/s, compile separately).
Writes env_throughput.json + env_throughput.png into `--out`.

    python experiments/benchmarks/env_throughput.py [--quick] [--envs safe_cartpole ...] [--out DIR]

MJX batches are split over all devices (`saferl.sharding`, as the trainers do; `XLA_FLAGS=
--xla_force_host_platform_device_count=N` for N CPU devices, `experiments/benchmarks/scaling.py` for the scaling).
An env step is `ctrl_dt` of simulated time (n_substeps physics steps). MJX numbers include observation,
reward and cost; native numbers are physics only (what `mujoco.rollout` computes). At each batch >= 1024 MJX
and `rollout` (same batch, all threads and 1 thread, preallocated outputs) alternate `repeats` times and the
best of each is kept, so a busy shared machine slows both alike; the ratio is MJX / the faster rollout.
`mjx_mujoco_defaults` is the MJX rate with MuJoCo's default solver settings (100 iterations, 50 line-search
steps, warm start) for comparison with the env's own settings (issue #13). Trainer rates are the trainers'
default configs (`saferl train ALGO ENV`): `compile_s` is the first chunk's wall time less one steady chunk;
`steps_per_s` is over the following chunks.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time
from collections.abc import Callable
from typing import Any

import jax
import mujoco
import numpy as np
from mujoco import rollout as mj_rollout

import envs
from saferl import sharding

MUJOCO_DEFAULTS = {"solver": "newton", "iterations": 100, "ls_iterations": 50, "warmstart": True}


def mjx_runner(env, batch: int, steps: int) -> tuple[Callable[[int], float], float]:
    """(run(seed) -> env steps/s, compile + first-run seconds) of `steps` random-action steps of `batch` envs,
    the batch split over the devices (left to the compiler where it does not divide)."""

    @jax.jit
    def run(key):
        reset_key, action_key = jax.random.split(key)
        state = sharding.constrain(jax.vmap(env.reset)(jax.random.split(reset_key, batch)), 0)

        def step(state, key):
            action = sharding.constrain(jax.random.uniform(key, (batch, env.action_size), minval=-1, maxval=1), 0)
            state = sharding.constrain(jax.vmap(env.step)(state, action), 0)
            return state, state.reward.sum()

        return jax.lax.scan(step, state, jax.random.split(action_key, steps))[1].sum()

    start = time.perf_counter()
    jax.block_until_ready(run(jax.random.PRNGKey(0)))
    compile_s = time.perf_counter() - start

    def rate(seed: int) -> float:
        start = time.perf_counter()
        jax.block_until_ready(run(jax.random.PRNGKey(seed)))
        return batch * steps / (time.perf_counter() - start)

    return rate, compile_s


def rollout_runner(env, batch: int, steps: int, nthread: int) -> Callable[[int], float]:
    """run(seed) -> env steps/s of `mujoco.rollout` of `batch` envs × `steps` env steps (controls held for
    n_substeps) in `nthread` threads, outputs preallocated (the runner and its buffers are reused)."""
    model = env.mj_model
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    initial = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, initial, spec)
    initial = np.tile(initial, (batch, 1))
    ctrl = np.random.default_rng(0).uniform(-1, 1, (batch, steps, model.nu))
    ctrl = np.repeat(ctrl, env.n_substeps, axis=1)
    state = np.empty((batch, steps * env.n_substeps, initial.shape[1]))
    sensordata = np.empty((batch, steps * env.n_substeps, model.nsensordata))
    runner = mj_rollout.Rollout(nthread=nthread)
    datas = [mujoco.MjData(model) for _ in range(max(nthread, 1))]
    runner.rollout(model, datas, initial, ctrl, state=state, sensordata=sensordata)  # warm-up (page faults)

    def rate(seed: int) -> float:
        start = time.perf_counter()
        runner.rollout(model, datas, initial, ctrl, state=state, sensordata=sensordata)
        return batch * steps / (time.perf_counter() - start)

    return rate


def native_loop_steps_per_second(env, steps: int) -> float:
    """One env, Python loop over `mj_step` (n_substeps per env step) with random controls."""
    model, data = env.mj_model, mujoco.MjData(env.mj_model)
    ctrl = np.random.default_rng(0).uniform(-1, 1, (steps, model.nu))
    start = time.perf_counter()
    for t in range(steps):
        data.ctrl[:] = ctrl[t]
        mujoco.mj_step(model, data, nstep=env.n_substeps)
    return steps / (time.perf_counter() - start)


def compare_at_batch(env, batch: int, steps: int, repeats: int) -> dict[str, float]:
    """MJX vs `mujoco.rollout` at `batch` with all cores and with 1 thread, interleaved `repeats` times, best
    of each. The ratio is against the faster rollout: on a busy machine one thread can beat all cores (a
    descheduled thread stalls the pool), and a ratio against the slower one would flatter MJX."""
    nthread = os.cpu_count() or 1
    mjx_rate, compile_s = mjx_runner(env, batch, steps)
    native_rates = {n: rollout_runner(env, batch, steps, n) for n in sorted({nthread, 1})}
    best_mjx, best_native = 0.0, dict.fromkeys(native_rates, 0.0)
    for seed in range(1, repeats + 1):
        best_mjx = max(best_mjx, mjx_rate(seed))
        for n, rate in native_rates.items():
            best_native[n] = max(best_native[n], rate(seed))
    baseline = max(best_native.values())
    return {
        "steps_per_s": best_mjx,
        "compile_s": compile_s,
        "steps": steps,
        "rollout_steps_per_s": best_native[nthread],
        "rollout_threads": nthread,
        "rollout_1_thread_steps_per_s": best_native[1],
        "ratio": best_mjx / baseline,
    }


def env_row(name: str, batches: list[int], quick: bool, repeats: int) -> dict[str, Any]:
    """MJX rates per batch (with rollout and ratio where batch >= 1024), MuJoCo-default-solver MJX rate at
    1024, native single-env loop and 1-thread rollout for one env."""
    env = envs.make(name)
    config = env.config
    row: dict[str, Any] = {
        "n_substeps": env.n_substeps,
        "nbody": env.mj_model.nbody,
        "solver": {
            k: getattr(config, k)
            for k in ("solver", "iterations", "ls_iterations", "integrator", "warmstart", "sim_dt")
        },
        "mjx": {},
    }
    for batch in batches:
        steps = max(20, min(1000, (20_000 if quick else 100_000) // batch))
        if batch >= 1024:
            steps = 100 if quick else 250  # long enough trajectories that rollout's per-trajectory setup is small
            entry = compare_at_batch(env, batch, steps, repeats)
            print(
                f"{name:14s} batch {batch:5d}: mjx {entry['steps_per_s']:11,.0f}  "
                f"rollout({entry['rollout_threads']}t) {entry['rollout_steps_per_s']:11,.0f}  "
                f"rollout(1t) {entry['rollout_1_thread_steps_per_s']:11,.0f}  "
                f"ratio {entry['ratio']:.2f}  (compile {entry['compile_s']:.1f} s)",
                flush=True,
            )
        else:
            rate, compile_s = mjx_runner(env, batch, steps)
            entry = {"steps_per_s": max(rate(s) for s in range(1, repeats + 1)), "compile_s": compile_s, "steps": steps}
            print(f"{name:14s} batch {batch:5d}: mjx {entry['steps_per_s']:11,.0f}", flush=True)
        row["mjx"][batch] = entry
    defaults_env = envs.make(name, **MUJOCO_DEFAULTS)
    rate, _ = mjx_runner(defaults_env, 1024, 20 if quick else 100)
    row["mjx_mujoco_defaults"] = {"batch": 1024, "steps_per_s": max(rate(s) for s in range(1, repeats + 1))}
    row["native_loop"] = native_loop_steps_per_second(env, 5_000 if quick else 50_000)
    row["rollout_1_thread"] = max(rollout_runner(env, 128, 100, 1)(s) for s in range(repeats))
    print(
        f"{name:14s} mjx with MuJoCo's default solver (batch 1024): "
        f"{row['mjx_mujoco_defaults']['steps_per_s']:,.0f}; "
        f"native loop {row['native_loop']:,.0f}; rollout 1 thread {row['rollout_1_thread']:,.0f}",
        flush=True,
    )
    return row


def trainer_row(algo: str, name: str, chunks: int) -> dict[str, float]:
    """Env steps/s of `algo`'s default config on env `name` over `chunks` chunks after the first (compile)."""
    if algo == "ppo":
        from saferl.agents.ppo import PPOConfig as Config
        from saferl.agents.ppo import make_train
    else:
        from saferl.agents.sac import SACConfig as Config
        from saferl.agents.sac import make_train
    config, env = Config(), envs.make(name)
    init, train_chunk = make_train(config, env, None)
    start = time.perf_counter()
    state = init(jax.random.PRNGKey(0))
    state, metrics = train_chunk(state)
    jax.block_until_ready(metrics)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(chunks):
        state, metrics = train_chunk(state)
    jax.block_until_ready(metrics)
    steady_s = time.perf_counter() - start
    steps = config.env_steps_per_chunk * chunks
    result = {
        "steps_per_s": steps / steady_s,
        "compile_s": max(0.0, first_s - steady_s / chunks),
        "env_steps": steps,
        "num_envs": config.num_envs,
        "steps_per_chunk": config.env_steps_per_chunk,
    }
    print(
        f"{algo:3s} on {name:14s}: {result['steps_per_s']:10,.0f} env steps/s over {steps} steps "
        f"(compile {result['compile_s']:.1f} s)",
        flush=True,
    )
    return result


def run_benchmark(names: list[str], quick: bool, trainers: bool) -> dict[str, Any]:
    batches = [1, 256, 1024, 4096] if quick else [1, 16, 256, 1024, 4096]
    repeats = 3 if quick else 5
    results: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "jax": jax.__version__,
            "mujoco": mujoco.__version__,
            "device": str(jax.devices()[0]),
            "devices": sharding.device_count(),
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
        },
        "quick": quick,
        "envs": {},
        "trainers": {},
    }
    for name in names:
        results["envs"][name] = env_row(name, batches, quick, repeats)
    if trainers:
        chunks = {"ppo": 3 if quick else 10, "sac": 5 if quick else 20}
        for name in names:
            results["trainers"][name] = {algo: trainer_row(algo, name, chunks[algo]) for algo in ("ppo", "sac")}
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return results


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Per env: MJX / rollout ratio at each batch >= 1024 and whether all are >= 1 (issue #13's target)."""
    summary = {}
    for name, row in results["envs"].items():
        ratios = {int(b): e["ratio"] for b, e in row["mjx"].items() if "ratio" in e}
        speedup = row["mjx"].get(1024, row["mjx"].get("1024", {})).get("steps_per_s", float("nan"))
        summary[name] = {
            "ratio_vs_rollout": ratios,
            "target_met": bool(ratios) and min(ratios.values()) >= 1.0,
            "speedup_vs_mujoco_default_solver_at_1024": speedup / row["mjx_mujoco_defaults"]["steps_per_s"],
        }
    return summary


def plot(results: dict[str, Any], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rate, ax_ratio, ax_train) = plt.subplots(1, 3, figsize=(15, 4.5))
    for i, (name, row) in enumerate(results["envs"].items()):
        color = f"C{i}"
        batches = [int(b) for b in row["mjx"]]
        ax_rate.plot(batches, [e["steps_per_s"] for e in row["mjx"].values()], "o-", color=color, label=f"{name} MJX")
        compared = [(int(b), e) for b, e in row["mjx"].items() if "ratio" in e]
        ax_rate.plot(
            [b for b, _ in compared],
            [e["steps_per_s"] / e["ratio"] for _, e in compared],
            "s--",
            color=color,
            label=f"{name} mujoco.rollout (faster of 1 / all threads)",
        )
        ax_rate.plot(
            [1024],
            [row["mjx_mujoco_defaults"]["steps_per_s"]],
            "x",
            color=color,
            ms=9,
            label=f"{name} MJX, MuJoCo default solver",
        )
        for j, (batch, entry) in enumerate(compared):
            ax_ratio.bar(
                i + 0.35 * (j - (len(compared) - 1) / 2), entry["ratio"], 0.33, color=color, alpha=1.0 - 0.35 * j
            )
            ax_ratio.text(
                i + 0.35 * (j - (len(compared) - 1) / 2),
                entry["ratio"],
                f"{entry['ratio']:.2f}\n@{batch}",
                ha="center",
                va="bottom",
                fontsize=7,
            )
    names = list(results["envs"])
    ax_rate.set(
        xscale="log",
        yscale="log",
        xlabel="parallel envs (batch)",
        ylabel="env steps / s",
        title=f"MJX vs mujoco.rollout ({results['machine']['cpu_count']} threads)",
    )
    ax_rate.legend(fontsize=6)
    ax_rate.grid(True, which="both", alpha=0.3)
    ax_ratio.axhline(1.0, color="k", lw=1)
    ax_ratio.set(
        xticks=range(len(names)),
        xticklabels=names,
        ylabel="MJX / mujoco.rollout",
        title="ratio at batch 1024 / 4096 (same run)",
    )
    for i, row in enumerate(results["trainers"].values()):
        for j, algo in enumerate(("ppo", "sac")):
            entry = row[algo]
            ax_train.bar(
                i + 0.35 * (j - 0.5), entry["steps_per_s"], 0.33, color=f"C{j}", label=algo.upper() if i == 0 else None
            )
            ax_train.text(
                i + 0.35 * (j - 0.5),
                entry["steps_per_s"],
                f"{entry['steps_per_s']:,.0f}\n({entry['compile_s']:.0f} s compile)",
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax_train.set(
        xticks=range(len(results["trainers"])),
        xticklabels=list(results["trainers"]),
        yscale="log",
        ylabel="env steps / s",
        title="trainer throughput (default configs)",
    )
    if results["trainers"]:
        ax_train.legend(fontsize=8)
    for ax in (ax_rate, ax_ratio, ax_train):
        ax.title.set_fontsize(9)
        ax.margins(y=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes, steps and chunks (a few minutes)")
    parser.add_argument("--envs", nargs="+", default=None, help=f"envs to run (default: all of {envs.names()})")
    parser.add_argument("--no-trainers", action="store_true", help="skip the PPO/SAC throughput")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    names = args.envs or envs.names()
    unknown = sorted(set(names) - set(envs.names()))
    if unknown:
        parser.error(f"unknown env(s) {unknown}; available: {envs.names()}")
    args.out.mkdir(parents=True, exist_ok=True)
    results = run_benchmark(names, args.quick, not args.no_trainers)
    results["summary"] = summarise(results)
    for name, entry in results["summary"].items():
        ratios = ", ".join(f"{r:.2f} at {b}" for b, r in entry["ratio_vs_rollout"].items())
        print(
            f"{name:14s} MJX / mujoco.rollout: {ratios} ({'met' if entry['target_met'] else 'NOT met'}); "
            f"{entry['speedup_vs_mujoco_default_solver_at_1024']:.1f}x MuJoCo's default solver settings"
        )
    (args.out / "env_throughput.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "env_throughput.png")
    print(f"wrote {args.out / 'env_throughput.json'} and {args.out / 'env_throughput.png'}")


if __name__ == "__main__":
    main()
