"""Benchmark: iCEM planning latency per action vs a bare batched forward pass of the same ensemble, and
learning curves (return vs env steps) of PETS against model-free PPO/SAC. Writes JSON + PNG.

    python experiments/benchmarks/models_planning.py --populations 100 300 1000 --horizons 10 25 50 \
        --env pendulum --pets-steps 1600 --baseline-steps 50000

Results go to experiments/benchmarks/results/models_planning.{json,png} (run dirs under --runs-dir); every
timing row records the machine's 1/5/15-min load average, since the CPUs may be shared.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jp

from saferl.agents.pets import planned_action
from saferl.agents.pets.config import PETSConfig
from saferl.models import EnsembleConfig, ensemble, predict_per_member
from saferl.planning import ICEMConfig, RolloutConfig, icem

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def load_average() -> list[float]:
    """1/5/15-minute load averages (other processes may share the CPUs)."""
    return [round(x, 2) for x in os.getloadavg()]


def _median_seconds(fn, *args, repeats: int) -> tuple[float, float]:
    """(compile + first call s, median s of `repeats` further calls) of a jitted fn."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def planning_latency(population: int, horizon: int, obs_size: int, action_size: int, repeats: int) -> dict:
    """ms per planned action (iCEM, TS∞ 5 particles, 3 iterations, 5 × 3×200 SiLU) and the bare forward pass."""
    model_config = EnsembleConfig(num_members=5, hidden_sizes=(200, 200, 200), num_elites=5)
    config = PETSConfig(
        model=model_config,
        rollout=RolloutConfig("tsinf", 5),
        planner=ICEMConfig(
            horizon=horizon,
            population=population,
            num_elites=max(population // 10, 1),
            iterations=3,
            population_decay=1.0,
        ),
    )
    model = ensemble.init(jax.random.PRNGKey(0), model_config, obs_size, action_size, obs_size + 2)
    warm = icem.init_state(config.planner, action_size)
    obs = jp.zeros(obs_size)
    plan_fn = jax.jit(lambda m, key: planned_action(config, m, key, obs, warm, jp.inf)[0])
    compile_plan, plan_s = _median_seconds(plan_fn, model, jax.random.PRNGKey(1), repeats=repeats)
    # the same member-evaluations with nothing around them: H × iterations batched forward passes
    candidates = population + config.planner.num_kept + 1
    rows = candidates * config.rollout.num_particles // model_config.num_members
    x = jp.zeros((model_config.num_members, rows, obs_size))
    u = jp.zeros((model_config.num_members, rows, action_size))

    def bare(m, x, u):
        def one(carry, _):
            mean, _ = predict_per_member(m, carry, u)
            return carry + mean[..., :obs_size], None

        return jax.lax.scan(one, x, None, length=horizon * config.planner.iterations)[0]

    _, bare_s = _median_seconds(jax.jit(bare), model, x, u, repeats=repeats)
    evaluations = candidates * config.rollout.num_particles * horizon * config.planner.iterations
    return {
        "population": population,
        "horizon": horizon,
        "plan_ms": 1e3 * plan_s,
        "forward_ms": 1e3 * bare_s,
        "overhead": plan_s / bare_s,
        "member_evaluations": evaluations,
        "member_evaluations_per_s": evaluations / plan_s,
        "compile_s": compile_plan,
        "load": load_average(),
    }


def learning_curve(algo: str, env: str, steps: int, overrides: dict, out: pathlib.Path, seed: int) -> dict:
    """Train `algo` through the normal run machinery; return its (env_steps, episode_return) rows."""
    from saferl.training.run import train

    load_before, start = load_average(), time.perf_counter()
    result = train(algo, env, steps=steps, seed=seed, overrides=overrides, out=out, progress=False, tensorboard=False)
    with open(result.run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["episode_return"] not in ("", "nan")]
    return {
        "algo": algo,
        "steps": steps,
        "run_dir": str(result.run_dir),
        "wall_s": time.perf_counter() - start,
        "load_before": load_before,
        "load_after": load_average(),
        "env_steps": [int(float(r["env_steps"])) for r in rows],
        "episode_return": [float(r["episode_return"]) for r in rows],
    }


def plot(results: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for index, horizon in enumerate(sorted({r["horizon"] for r in results["latency"]})):
        rows = [r for r in results["latency"] if r["horizon"] == horizon]
        left.plot(
            [r["population"] for r in rows],
            [r["plan_ms"] for r in rows],
            "o-",
            color=f"C{index}",
            label=f"iCEM H={horizon}",
        )
        left.plot(
            [r["population"] for r in rows],
            [r["forward_ms"] for r in rows],
            "x--",
            color=f"C{index}",
            alpha=0.6,
            label=f"bare forward H={horizon}",
        )
    left.set(
        xscale="log",
        yscale="log",
        xlabel="population",
        ylabel="ms per action",
        title="planning latency (5×3×200, TS∞ ×5, 3 iters)",
    )
    left.legend(fontsize=7)
    for curve in results["curves"]:
        right.plot(curve["env_steps"], curve["episode_return"], ".-", label=curve["algo"])
    right.set(xscale="log", xlabel="env steps", ylabel="episode return", title=f"learning on {results['env']}")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--horizons", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--env", default="pendulum")
    parser.add_argument("--pets-steps", type=int, default=1600)
    parser.add_argument("--baselines", nargs="*", default=["ppo", "sac"])
    parser.add_argument("--baseline-steps", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS, help="where the JSON and PNG go")
    parser.add_argument("--runs-dir", type=pathlib.Path, default=pathlib.Path("runs/benchmarks/models_planning"))
    parser.add_argument("--plot-only", action="store_true", help="re-plot the existing JSON in --out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.plot_only:
        plot(json.loads((args.out / "models_planning.json").read_text()), args.out / "models_planning.png")
        return
    import envs

    env = envs.make(args.env)
    results = {
        "env": args.env,
        "device": str(jax.devices()[0]),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "jax": jax.__version__,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python experiments/benchmarks/models_planning.py " + " ".join(sys.argv[1:]),
        "latency": [],
        "curves": [],
    }
    for population in args.populations:
        for horizon in args.horizons:
            row = planning_latency(population, horizon, env.observation_size, env.action_size, args.repeats)
            print(json.dumps(row), flush=True)
            results["latency"].append(row)
    from saferl import registry

    for algo in ["pets"] + [a for a in args.baselines if a in registry.names()]:
        steps = args.pets_steps if algo == "pets" else args.baseline_steps
        curve = learning_curve(algo, args.env, steps, {}, args.runs_dir, args.seed)
        print(
            json.dumps({k: curve[k] for k in ("algo", "wall_s")} | {"final": curve["episode_return"][-3:]}), flush=True
        )
        results["curves"].append(curve)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    (args.out / "models_planning.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "models_planning.png")
    print(f"wrote {args.out / 'models_planning.json'} and .png")


if __name__ == "__main__":
    main()
