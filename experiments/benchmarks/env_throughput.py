"""Env steps/s of the MJX envs (jit + vmap + lax.scan, batch 1…4096) against native MuJoCo on the same model
(single-thread `mj_step` loop, and `mujoco.rollout` with 1 and all threads). Writes JSON + PNG.

    python experiments/benchmarks/env_throughput.py [--quick] [--out experiments/benchmarks/results]

An env step is `ctrl_dt` of simulated time (n_substeps physics steps). MJX numbers include observation,
reward and cost; native numbers are physics only (what `mj_step`/`rollout` compute).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

import jax
import jax.numpy as jp
import mujoco
import numpy as np
from mujoco import rollout as mj_rollout

import envs


def mjx_steps_per_second(env, batch: int, steps: int) -> tuple[float, float]:
    """(env steps/s, compile+first-run seconds) of `steps` random-action steps for `batch` envs."""

    @jax.jit
    def run(key):
        reset_key, action_key = jax.random.split(key)
        state = jax.vmap(env.reset)(jax.random.split(reset_key, batch))

        def step(state, key):
            action = jax.random.uniform(key, (batch, env.action_size), minval=-1, maxval=1)
            state = jax.vmap(env.step)(state, action)
            return state, state.reward.sum()

        return jax.lax.scan(step, state, jax.random.split(action_key, steps))[1].sum()

    start = time.perf_counter()
    jax.block_until_ready(run(jax.random.PRNGKey(0)))
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(run(jax.random.PRNGKey(1)))
    return batch * steps / (time.perf_counter() - start), compile_s


def native_loop_steps_per_second(env, steps: int) -> float:
    """One env, Python loop over `mj_step` (n_substeps per env step) with random controls."""
    model, data = env.mj_model, mujoco.MjData(env.mj_model)
    ctrl = np.random.default_rng(0).uniform(-1, 1, (steps, model.nu))
    start = time.perf_counter()
    for t in range(steps):
        data.ctrl[:] = ctrl[t]
        mujoco.mj_step(model, data, nstep=env.n_substeps)
    return steps / (time.perf_counter() - start)


def native_rollout_steps_per_second(env, batch: int, steps: int, nthread: int) -> float:
    """`mujoco.rollout` of `batch` envs × `steps` env steps (controls held for n_substeps) in `nthread` threads."""
    model = env.mj_model
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    initial = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, initial, spec)
    ctrl = np.random.default_rng(0).uniform(-1, 1, (batch, steps, model.nu))
    ctrl = np.repeat(ctrl, env.n_substeps, axis=1)
    initial = np.tile(initial, (batch, 1))
    with mj_rollout.Rollout(nthread=nthread) as runner:
        datas = [mujoco.MjData(model) for _ in range(nthread)]
        runner.rollout(model, datas, initial[:1], ctrl[:1, :10])  # warm-up
        start = time.perf_counter()
        runner.rollout(model, datas, initial, ctrl)
        return batch * steps / (time.perf_counter() - start)


def run_benchmark(quick: bool) -> dict:
    batches = [1, 16, 256, 4096] if quick else [1, 4, 16, 64, 256, 1024, 4096]
    results = {"machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                           "jax": jax.__version__, "mujoco": mujoco.__version__,
                           "device": str(jax.devices()[0])},
               "quick": quick, "envs": {}}
    for name in envs.names():
        env = envs.make(name)
        row = {"n_substeps": env.n_substeps, "mjx": {}}
        for batch in batches:
            steps = max(20, min(1000, (20_000 if quick else 100_000) // batch))
            rate, compile_s = mjx_steps_per_second(env, batch, steps)
            row["mjx"][batch] = {"steps_per_s": rate, "compile_s": compile_s, "steps": steps}
            print(f"{name:14s} mjx batch {batch:5d}: {rate:12,.0f} steps/s (compile {compile_s:.1f} s)", flush=True)
        row["native_loop"] = native_loop_steps_per_second(env, 5_000 if quick else 50_000)
        rollout_batch, rollout_steps = 128, (100 if quick else 1000)
        row["native_rollout"] = {
            f"{n}_threads": native_rollout_steps_per_second(env, rollout_batch, rollout_steps, n)
            for n in sorted({1, os.cpu_count() or 1})}
        row["native_rollout"]["batch"] = rollout_batch
        print(f"{name:14s} native mj_step loop: {row['native_loop']:,.0f} steps/s; rollout: "
              f"{ {k: round(v) for k, v in row['native_rollout'].items()} }", flush=True)
        results["envs"][name] = row
    return results


def plot(results: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, row) in enumerate(results["envs"].items()):
        color = f"C{i}"
        batches = [int(b) for b in row["mjx"]]
        ax.plot(batches, [row["mjx"][b]["steps_per_s"] for b in row["mjx"]], "o-", color=color,
                label=f"{name} (MJX)")
        ax.axhline(row["native_loop"], color=color, ls=":", lw=1)
        best = max(v for k, v in row["native_rollout"].items() if k.endswith("threads"))
        ax.axhline(best, color=color, ls="--", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="parallel envs (batch)", ylabel="env steps / s",
           title=f"Env throughput, {results['machine']['cpu_count']}-core CPU "
                 "(dotted: native mj_step loop, dashed: mujoco.rollout 128 envs)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes and steps (~1–3 min)")
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = run_benchmark(args.quick)
    (args.out / "env_throughput.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "env_throughput.png")
    print(f"wrote {args.out / 'env_throughput.json'} and {args.out / 'env_throughput.png'}")


if __name__ == "__main__":
    main()
