"""Throughput vs devices of the three sharded hot paths (issue #11): MJX env stepping (batch split over the
devices), ensemble training (minibatch rows split, gradients all-reduced) and iCEM planning (candidates split),
each with compile time and run time reported separately; same code for every device count.

    python experiments/benchmarks/scaling.py [--quick] [--devices 1 2 4] [--mode forced|local] [--out DIR]

`--mode forced` (default on CPU): one subprocess per device count with
`XLA_FLAGS=--xla_force_host_platform_device_count=N` (a JAX process's device count is fixed at start-up); the
forced devices share the machine's cores, so they show that the sharded programs run and agree, not a speed-up.
`--mode local`: one process, `saferl.sharding.use_devices(N)` over its real devices (GPUs).
Writes scaling.json + scaling.png into `--out`. Seeds under vmap (`saferl train --seeds`) are measured by
experiments/benchmarks/seeds.py (seeds.json, seeds.png): "vs_seeds" names it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import envs
from saferl import sharding
from saferl.agents.pets.policy import model_fns
from saferl.data.buffer import Transition
from saferl.models import ensemble
from saferl.planning import ICEMConfig, ObjectiveConfig, RolloutConfig, icem, make_objective, make_rollout_fn

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
SIZES = {  # quick / full workloads (all batch axes multiples of 4)
    True: dict(
        env_batch=256,
        env_steps=50,
        rows=2048,
        hidden=(64, 64),
        members=4,
        batch=128,
        epochs=3,
        population=128,
        particles=8,
        horizon=10,
        repeats=3,
    ),
    False: dict(
        env_batch=1024,
        env_steps=100,
        rows=8192,
        hidden=(200, 200),
        members=5,
        batch=256,
        epochs=5,
        population=400,
        particles=20,
        horizon=20,
        repeats=5,
    ),
}

VS_SEEDS = "seeds.json (python experiments/benchmarks/seeds.py): seeds under vmap vs one after another"


def _timed(run: Callable[[int], Any], repeats: int) -> tuple[float, float]:
    """(first call's seconds less the best later call: compile time, best later call's seconds: run time)."""
    start = time.perf_counter()
    jax.block_until_ready(run(0))
    first = time.perf_counter() - start
    best = np.inf
    for seed in range(1, repeats + 1):
        start = time.perf_counter()
        jax.block_until_ready(run(seed))
        best = min(best, time.perf_counter() - start)
    return max(first - best, 0.0), best


def env_stepping(env_name: str, size: dict) -> dict[str, float]:
    """`env_steps` random-action steps of `env_batch` envs, the batch split over the devices."""
    env, batch, steps = envs.make(env_name), size["env_batch"], size["env_steps"]

    @jax.jit
    def rollout(key: jax.Array) -> jax.Array:
        reset_key, action_key = jax.random.split(key)
        state = sharding.constrain(jax.vmap(env.reset)(jax.random.split(reset_key, batch)), 0)

        def step(state: Any, key: jax.Array) -> tuple[Any, jax.Array]:
            action = sharding.constrain(jax.random.uniform(key, (batch, env.action_size), minval=-1, maxval=1), 0)
            state = sharding.constrain(jax.vmap(env.step)(state, action), 0)
            return state, state.reward.sum()

        return jax.lax.scan(step, state, jax.random.split(action_key, steps))[1].sum()

    compile_s, run_s = _timed(lambda seed: rollout(jax.random.PRNGKey(seed)), size["repeats"])
    return {"compile_s": compile_s, "run_s": run_s, "steps_per_s": batch * steps / run_s}


def _data(rows: int) -> Transition:
    """A damped 3-d system with one action (the model's work does not depend on what it learns)."""
    k_obs, k_act = jax.random.split(jax.random.PRNGKey(0))
    obs = jax.random.uniform(k_obs, (rows, 3), minval=-1, maxval=1)
    action = jax.random.uniform(k_act, (rows, 1), minval=-1, maxval=1)
    delta = 0.1 * jnp.tanh(obs[:, ::-1] + action) - 0.05 * obs
    return Transition(
        obs=obs,
        action=action,
        next_obs=obs + delta,
        reward=-jnp.sum(obs**2, -1),
        cost=jnp.zeros(rows),
        done=jnp.zeros(rows),
    )


def _model_config(size: dict) -> ensemble.EnsembleConfig:
    return ensemble.EnsembleConfig(
        num_members=size["members"],
        num_elites=size["members"],
        hidden_sizes=size["hidden"],
        batch_size=size["batch"],
        epochs=size["epochs"],
        patience=10**6,
        improvement_threshold=0.0,
        calibrate=False,
    )


def ensemble_training(size: dict) -> dict[str, float]:
    """One `fit` of a fixed number of epochs (no early stop) on `rows` transitions."""
    data, config = _data(size["rows"]), _model_config(size)
    model = ensemble.init(jax.random.PRNGKey(1), config, 3, 1, 5)
    fitted = {}

    def run(seed: int) -> Any:
        fitted["state"], _ = ensemble.fit(jax.random.PRNGKey(seed), model, data)
        return fitted["state"].params

    compile_s, run_s = _timed(run, size["repeats"])
    steps = int(fitted["state"].step)
    return {
        "compile_s": compile_s,
        "run_s": run_s,
        "gradient_steps": steps,
        "gradient_steps_per_s": steps / run_s,
        "rows_per_s": steps * size["batch"] * size["members"] / run_s,
    }


def planning(size: dict) -> dict[str, float]:
    """One iCEM plan (3 iterations, TS1 particles) on an ensemble of the training benchmark's size."""
    config = _model_config(size)
    model = ensemble.init(jax.random.PRNGKey(1), config, 3, 1, 5)
    model, _ = ensemble.fit(jax.random.PRNGKey(2), model, _data(size["rows"]), dataclasses.replace(config, epochs=1))
    planner = ICEMConfig(horizon=size["horizon"], population=size["population"], num_elites=size["population"] // 10)
    rollout = RolloutConfig(propagation="ts1", num_particles=size["particles"])

    @jax.jit
    def plan(model: Any, key: jax.Array) -> jax.Array:
        rollout_fn = make_rollout_fn(model_fns(model), rollout, jnp.zeros(3))
        return icem.plan(planner, key, rollout_fn, make_objective(ObjectiveConfig()), icem.init_state(planner, 1))[0]

    compile_s, run_s = _timed(lambda seed: plan(model, jax.random.PRNGKey(seed)), size["repeats"])
    model_steps = (
        sum(n + planner.num_kept + 1 for n in planner.population_sizes()) * size["particles"] * size["horizon"]
    )
    return {
        "compile_s": compile_s,
        "run_s": run_s,
        "plans_per_s": 1.0 / run_s,
        "model_steps_per_s": model_steps / run_s,
    }


def measure(count: int, env_name: str, quick: bool) -> dict[str, Any]:
    """All three measurements on the first `count` devices of this process."""
    sharding.use_devices(count)
    size, load_before = SIZES[quick], os.getloadavg()[0]
    row = {
        "devices": sharding.device_count(),
        "env": env_stepping(env_name, size),
        "ensemble": ensemble_training(size),
        "planning": planning(size),
    }
    return {**row, "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}  # before, after


def _forced(count: int, env_name: str, quick: bool) -> dict[str, Any]:
    """`measure` in a fresh process with `count` forced CPU devices."""
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", ""))
    environ = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={count}".strip(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "row.json"
        args = [sys.executable, __file__, "--worker", str(count), "--env", env_name, "--row", str(out)]
        subprocess.run(args + (["--quick"] if quick else []), env=environ, check=True)
        return json.loads(out.read_text())


def plot(results: dict[str, Any], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["by_devices"]
    counts = [row["devices"] for row in rows]
    panels = [
        ("env", "steps_per_s", "env steps / s"),
        ("ensemble", "gradient_steps_per_s", "ensemble grad steps / s"),
        ("planning", "plans_per_s", "iCEM plans / s"),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), dpi=100)
    for column, (part, key, label) in enumerate(panels):
        axes[0, column].plot(counts, [row[part][key] for row in rows], marker="o")
        axes[0, column].set_title(label)
        axes[1, column].plot(counts, [row[part]["compile_s"] for row in rows], marker="o", color="tab:red")
        axes[1, column].set_title(f"{part}: compile s")
        for ax in axes[:, column]:
            ax.set_xticks(counts)
            ax.set_xlabel(f"devices ({results['mode']}, {results['machine']['platform']})")
            ax.set_ylim(bottom=0)
    fig.suptitle(
        f"saferl scaling ({results['machine']['cpu_count']} CPU cores; forced CPU devices share them)"
        if results["mode"] == "forced"
        else "saferl scaling"
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--mode", choices=["forced", "local"], default=None, help="default: forced on CPU")
    parser.add_argument("--env", default="pendulum")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--row", type=pathlib.Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        args.row.write_text(json.dumps(measure(args.worker, args.env, args.quick)))
        return
    mode = args.mode or ("forced" if jax.default_backend() == "cpu" else "local")
    rows = [
        (_forced if mode == "forced" else lambda n, e, q: measure(n, e, q))(n, args.env, args.quick)
        for n in args.devices
    ]
    results = {
        "mode": mode,
        "env": args.env,
        "quick": args.quick,
        "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in SIZES[args.quick].items()},
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": jax.default_backend(),
            "processor": platform.processor() or platform.machine(),
            "jax": jax.__version__,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "by_devices": rows,
        "vs_seeds": VS_SEEDS,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "scaling.png")
    for row in rows:
        print(
            f"{row['devices']} devices: env {row['env']['steps_per_s']:.0f} steps/s (compile "
            f"{row['env']['compile_s']:.1f} s), ensemble {row['ensemble']['gradient_steps_per_s']:.1f} grad steps/s "
            f"(compile {row['ensemble']['compile_s']:.1f} s), planning {row['planning']['plans_per_s']:.2f} plans/s "
            f"(compile {row['planning']['compile_s']:.1f} s)"
        )
    print(f"written: {args.out / 'scaling.json'}, {args.out / 'scaling.png'}")


if __name__ == "__main__":
    main()
