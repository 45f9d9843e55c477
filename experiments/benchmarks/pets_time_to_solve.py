"""Benchmark (issue #13): how long a user waits for `saferl train pets --env safe_cartpole` to swing up the pole.

Each run is the real CLI (`saferl.cli.main.main`, as the console script) in a fresh Python process with a cold
persistent compilation cache (a new, empty `jax_compilation_cache_dir`), so compile time is part of the wall time.
Per run it records the wall seconds from process start to exit, the CPU seconds (user + system) of the process —
on a shared machine a load-independent bound: a compute-bound run on idle cores takes at most its CPU seconds of
wall time whenever it keeps ≥ 1 core busy — the seconds XLA spent tracing/lowering/compiling,
the wall time at the end of each episode, the per-episode returns and timings (planning, fitting) from
metrics.csv, and the first episode with return ≥ 900 and with return ≥ 0.9 × that run's best. "before" runs the
previous default config (as `--set` overrides), "after" the current default (no overrides).

    python experiments/benchmarks/pets_time_to_solve.py --seeds 0 1 2 --variants before after
    python experiments/benchmarks/pets_time_to_solve.py --append --seeds 3 --variants after  # more runs, same JSON
    python experiments/benchmarks/pets_time_to_solve.py --plot-only                         # re-plot the JSON

Writes results/pets_time_to_solve.json and .png. The CPUs may be shared: the load average is recorded next to
every run. ≈ 4 min per "before" run and < 2 min per "after" run on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
ENV, EPISODE_LENGTH, SOLVED = "safe_cartpole", 1000, 900.0

# The PETS defaults before issue #13 (saferl/agents/pets/config.py at c8ea32c), as `saferl train --set` overrides.
BEFORE = {
    "action_repeat": "2",
    "model.hidden_sizes": "[200,200,200]",
    "model.epochs": "50",
    "model.max_steps": "0",
    "model.batch_size": "64",
    "model.patience": "5",
    "planner.horizon": "15",
    "planner.population": "200",
    "planner.num_elites": "20",
    "planner.iterations": "3",
    "planner.keep_elites_fraction": "0.3",
    "planner.population_decay": "1.0",
    "rollout.num_particles": "5",
    "buffer_capacity": "20000",
}
VARIANTS: dict[str, dict[str, str]] = {"before": BEFORE, "after": {}}
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


def load_average() -> list[float]:
    """1/5/15-minute load averages of the machine (other processes share the CPUs)."""
    return [round(x, 2) for x in os.getloadavg()]


def cli_args(seed: int, episodes: int, overrides: dict[str, str], runs_dir: pathlib.Path) -> list[str]:
    """`saferl train pets --env safe_cartpole ...` arguments (without the program name)."""
    args = [
        "train",
        "pets",
        "--env",
        ENV,
        "--steps",
        str(episodes * EPISODE_LENGTH),
        "--seed",
        str(seed),
        "--out",
        str(runs_dir),
        "--quiet",
    ]
    for key, value in overrides.items():
        args += ["--set", f"{key}={value}"]
    return args


def child(spec_path: str) -> None:
    """Inside the fresh process: cold cache, compile-time listeners, episode timestamps, then the CLI."""
    spec = json.loads(pathlib.Path(spec_path).read_text())
    import jax
    import jax.monitoring

    jax.config.update("jax_compilation_cache_dir", spec["cache_dir"])  # empty: a cold persistent cache
    compile_s = dict.fromkeys(COMPILE_EVENTS, 0.0)

    def on_duration(event: str, seconds: float, **_: Any) -> None:
        if event in compile_s:
            compile_s[event] += seconds

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    from saferl.training import logger

    episode_end_s: list[float] = []
    log = logger.MetricsLogger.log

    def timed_log(self: Any, env_steps: int, metrics: Any) -> None:  # wall time since the process was spawned
        episode_end_s.append(time.time() - spec["spawned_at"])
        log(self, env_steps, metrics)

    logger.MetricsLogger.log = timed_log
    from saferl.cli.main import main

    try:
        main(spec["argv"])
    finally:
        out = {"compile_s": compile_s, "episode_end_s": episode_end_s}
        pathlib.Path(spec["result_path"]).write_text(json.dumps(out))


def read_rows(runs_dir: pathlib.Path) -> list[dict[str, float]]:
    """metrics.csv rows of the one run in `runs_dir`, as floats."""
    (run_dir,) = [p for p in runs_dir.iterdir() if (p / "metrics.csv").exists()]
    with open(run_dir / "metrics.csv") as f:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


def first_episode(returns: list[float], threshold: float) -> int | None:
    """1-based index of the first episode with return ≥ threshold (None if never)."""
    return next((i + 1 for i, r in enumerate(returns) if r >= threshold), None)


def run_one(variant: str, seed: int, episodes: int, work: pathlib.Path) -> dict[str, Any]:
    """One CLI run in a fresh process; its wall time, compile time, curve and time to solve."""
    runs_dir, cache_dir = work / f"{variant}-{seed}" / "runs", work / f"{variant}-{seed}" / "jax_cache"
    runs_dir.mkdir(parents=True), cache_dir.mkdir(parents=True)
    argv = cli_args(seed, episodes, VARIANTS[variant], runs_dir)
    load_before, start = load_average(), time.perf_counter()
    spec = {
        "argv": argv,
        "cache_dir": str(cache_dir),
        "result_path": str(work / f"{variant}-{seed}" / "child.json"),
        "spawned_at": time.time(),
    }
    spec_path = work / f"{variant}-{seed}" / "spec.json"
    spec_path.write_text(json.dumps(spec))
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, __file__, "--child", str(spec_path)], check=True)
    wall_s = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    measured = json.loads(pathlib.Path(spec["result_path"]).read_text())
    rows = read_rows(runs_dir)
    returns = [r["episode_return"] for r in rows]
    best = max(returns)
    solved, near_best = first_episode(returns, SOLVED), first_episode(returns, 0.9 * best)
    end_s = measured["episode_end_s"]
    result = {
        "variant": variant,
        "seed": seed,
        "command": "saferl " + " ".join(argv),
        "wall_s": round(wall_s, 2),
        "cpu_s": round(cpu_s, 2),
        "compile_s": round(sum(measured["compile_s"].values()), 2),
        "compile_s_by_stage": {k.rsplit("/", 1)[-1]: round(v, 2) for k, v in measured["compile_s"].items()},
        "mpc_compile_s": rows[-1].get("compile_s"),
        "episode_returns": [round(r, 2) for r in returns],
        "episode_costs": [r["episode_cost"] for r in rows],
        "episode_end_s": [round(t, 2) for t in end_s],
        "plan_ms_per_step": [round(r["plan_ms_per_step"], 1) if "plan_ms_per_step" in r else None for r in rows],
        "fit_s": [round(r["fit_s"], 2) for r in rows],
        "fit_epochs": [r["fit_epochs"] for r in rows],
        "best_return": round(best, 2),
        "episode_solved": solved,
        "episode_near_best": near_best,
        "seconds_to_solved": None if solved is None else end_s[solved - 1],
        "seconds_to_near_best": None if near_best is None else end_s[near_best - 1],
        "load_before": load_before,
        "load_after": load_average(),
    }
    print(
        f"{variant} seed {seed}: {wall_s:.0f} s (compile {result['compile_s']:.0f} s), solved at episode {solved}"
        f" ({result['seconds_to_solved']} s), ≥0.9·best at {near_best}, returns {result['episode_returns']},"
        f" load {load_before} -> {result['load_after']}",
        flush=True,
    )
    return result


def median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant: seeds, median/max wall, median compile, episodes to solve, how many seeds met the goal."""
    summary = {}
    for variant in sorted({r["variant"] for r in runs}):
        mine = [r for r in runs if r["variant"] == variant]
        summary[variant] = {
            "seeds": [r["seed"] for r in mine],
            "wall_s_median": median([r["wall_s"] for r in mine]),
            "wall_s_max": max(r["wall_s"] for r in mine),
            "cpu_s_median": median([r.get("cpu_s") for r in mine]),
            "compile_s_median": median([r["compile_s"] for r in mine]),
            "episode_solved": [r["episode_solved"] for r in mine],
            "episode_near_best": [r["episode_near_best"] for r in mine],
            "seconds_to_solved_median": median([r["seconds_to_solved"] for r in mine]),
            "plan_ms_per_step_median": median([p for r in mine for p in r["plan_ms_per_step"] if p is not None]),
            "fit_s_median": median([f for r in mine for f in r["fit_s"][1:]]),
            "seeds_solved_within_120s_and_10_episodes": sum(
                r["episode_solved"] is not None and r["wall_s"] <= 120.0 for r in mine
            ),
        }
    return summary


def machine() -> dict[str, Any]:
    import jax

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
    }


def plot(data: dict[str, Any], path: pathlib.Path) -> None:
    """Return vs wall seconds (left) and vs episode (right), one line per run, colour by variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"before": "tab:grey", "after": "tab:blue"}
    fig, (by_time, by_episode) = plt.subplots(1, 2, figsize=(11, 4))
    for run in data["runs"]:
        colour = colours.get(run["variant"], "tab:orange")
        label = f"{run['variant']} (seed {run['seed']})"
        by_time.plot(run["episode_end_s"], run["episode_returns"], "o-", ms=3, color=colour, alpha=0.8, label=label)
        episodes = range(1, len(run["episode_returns"]) + 1)
        by_episode.plot(episodes, run["episode_returns"], "o-", ms=3, color=colour, alpha=0.8)
    for ax in (by_time, by_episode):
        ax.axhline(SOLVED, color="k", ls=":", lw=1)
        ax.set_ylabel("episode return")
    by_time.axvline(120.0, color="tab:red", ls="--", lw=1, label="2 min goal")
    by_time.set_xlabel("wall seconds since `saferl train` started (cold compile cache)")
    by_episode.set_xlabel("episode (1000 env steps)")
    by_time.legend(fontsize=7, loc="lower right")
    load = sorted({tuple(r["load_before"][:1]) for r in data["runs"]})
    fig.suptitle(
        f"PETS on {ENV}: time to swing up ({data['machine']['cpus']} CPUs, 1-min load before runs "
        f"{load[0][0]}–{load[-1][0]})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["before", "after"], choices=sorted(VARIANTS))
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--append", action="store_true", help="add runs to the existing JSON")
    parser.add_argument("--plot-only", action="store_true", help="re-plot the existing JSON")
    args = parser.parse_args()
    json_path, png_path = args.out / "pets_time_to_solve.json", args.out / "pets_time_to_solve.png"
    if args.plot_only:
        plot(json.loads(json_path.read_text()), png_path)
        return
    data = json.loads(json_path.read_text()) if args.append else {"runs": [], "invocations": []}
    data["invocations"].append(
        {
            "command": "python experiments/benchmarks/pets_time_to_solve.py " + " ".join(sys.argv[1:]),
            "load_before": load_average(),
        }
    )
    with tempfile.TemporaryDirectory(prefix="pets_tts_") as work:
        for seed in args.seeds:
            for variant in args.variants:
                data["runs"] = [r for r in data["runs"] if (r["variant"], r["seed"]) != (variant, seed)]
                data["runs"].append(run_one(variant, seed, args.episodes, pathlib.Path(work)))
                data.update(
                    env=ENV,
                    episode_length=EPISODE_LENGTH,
                    solved_threshold=SOLVED,
                    machine=machine(),
                    variants=VARIANTS,
                    summary=summarise(data["runs"]),
                )
                args.out.mkdir(parents=True, exist_ok=True)
                json_path.write_text(json.dumps(data, indent=1))
    plot(data, png_path)
    print(json.dumps(data["summary"], indent=1))


if __name__ == "__main__":
    main()
