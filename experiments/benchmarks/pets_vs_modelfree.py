"""Benchmark (issue #3): PETS on safe_cartpole (cost ignored) vs model-free baselines given many more env steps.

PETS runs for `--pets-episodes` episodes; each baseline runs for `multiplier` × the env steps PETS used. All runs
go through `saferl.training.run.train` (as `saferl train`) except `brax-ppo`, brax's own PPO trainer. Writes JSON
(every logged row, wall times, machine load) and a PNG of episode return vs env steps (log x) into `--out`.

    python experiments/benchmarks/pets_vs_modelfree.py --seeds 0 1 2 --pets-episodes 10 \
        --baseline ppo ppo 100 --baseline sac_4envs sac 10 num_envs=4 --baseline brax_ppo brax-ppo 100
    python experiments/benchmarks/pets_vs_modelfree.py --append --seeds 0 --baseline ...  # more baselines, same PETS
    python experiments/benchmarks/pets_vs_modelfree.py --plot-only   # re-plot the committed JSON

The committed JSON lists every invocation that produced it (`invocations`); ≈ 25 min for 3 seeds on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import pathlib
import platform
import sys
import time
from typing import Any

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def load_average() -> list[float]:
    """1/5/15-minute load averages of the machine (other processes share the CPUs)."""
    return [round(x, 2) for x in os.getloadavg()]


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """["key=value", ...] -> {key: value}, decoded as `saferl train --set` decodes them."""
    from saferl.config import parse_overrides as library_parse

    return library_parse(items)


def read_rows(run_dir: pathlib.Path) -> list[dict[str, float]]:
    """metrics.csv rows with a finished-episode return, as floats."""
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("episode_return") not in (None, "", "nan")]
    return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in rows]


def run(
    label: str, algo: str, env: str, steps: int, seed: int, overrides: dict[str, str], runs_dir: pathlib.Path
) -> dict[str, Any]:
    """One training run through the library; returns its curve, wall time and the load around it."""
    from saferl.training.run import train

    load_before, start = load_average(), time.perf_counter()
    result = train(
        algo, env, steps=steps, seed=seed, overrides=overrides, out=runs_dir, progress=False, tensorboard=False
    )
    wall_s = time.perf_counter() - start
    rows = read_rows(result.run_dir)
    keep = ("env_steps", "episode_return", "episode_cost", "episodes", "plan_ms_per_step", "fit_s")
    curve = {k: [r.get(k, math.nan) for r in rows] for k in keep}
    return {
        "label": label,
        "algo": algo,
        "seed": seed,
        "steps": steps,
        "overrides": overrides,
        "run_dir": str(result.run_dir),
        "wall_s": round(wall_s, 1),
        "load_before": load_before,
        "load_after": load_average(),
        "env_steps_per_s": round(steps / wall_s, 1),
        "curve": curve,
    }


# brax's own PPO trainer (`brax.training.agents.ppo.train`), mujoco_playground's CartpoleSwingup settings
# (γ 0.995, reward ×10, entropy 1e-2, unroll 30) with batches shrunk so that 1M steps give ~100 iterations
BRAX_PPO_DEFAULTS = {
    "num_envs": 64,
    "batch_size": 64,
    "num_minibatches": 8,
    "unroll_length": 20,
    "num_updates_per_batch": 8,
    "discounting": 0.995,
    "learning_rate": 1e-3,
    "entropy_cost": 1e-2,
    "reward_scaling": 10.0,
    "normalize_observations": True,
    "num_evals": 21,
    "num_eval_envs": 16,
}


def run_brax_ppo(label: str, env_name: str, steps: int, seed: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """brax's PPO trainer, unchanged, on our env; the curve is its evaluator's (stochastic policy, eval envs)."""
    from brax.training.agents.ppo import train as brax_ppo

    import envs

    env = envs.make(env_name)
    kwargs = {**BRAX_PPO_DEFAULTS, **overrides}
    rows: list[tuple[int, dict]] = []
    load_before, start = load_average(), time.perf_counter()
    brax_ppo.train(
        environment=env,
        num_timesteps=steps,
        episode_length=env.episode_length,
        seed=seed,
        progress_fn=lambda step, metrics: rows.append((int(step), dict(metrics))),
        **kwargs,
    )
    wall_s = time.perf_counter() - start
    curve = {
        "env_steps": [step for step, _ in rows],
        "episode_return": [float(m["eval/episode_reward"]) for _, m in rows],
        "episode_cost": [float(m.get("eval/episode_cost", math.nan)) for _, m in rows],
        "episodes": [float(kwargs["num_eval_envs"])] * len(rows),
    }
    return {
        "label": label,
        "algo": "brax-ppo",
        "seed": seed,
        "steps": steps,
        "overrides": kwargs,
        "run_dir": None,
        "curve_source": "brax evaluator: num_eval_envs episodes per row, stochastic policy",
        "wall_s": round(wall_s, 1),
        "load_before": load_before,
        "load_after": load_average(),
        "env_steps_per_s": round(steps / wall_s, 1),
        "curve": curve,
    }


def summarise_pets(entry: dict[str, Any], fraction: float) -> dict[str, Any]:
    """Best/final return, the episode of the best, and the first episode within `fraction` of the best."""
    returns = entry["curve"]["episode_return"]
    best = max(returns)
    first_near = next(i for i, r in enumerate(returns) if r >= fraction * best) + 1
    return {
        "episodes": len(returns),
        "env_steps": int(entry["curve"]["env_steps"][-1]),
        "best_return": best,
        "best_episode": returns.index(best) + 1,
        f"first_episode_within_{fraction:g}_of_best": first_near,
        "final_return": returns[-1],
        "final_cost": entry["curve"]["episode_cost"][-1],
        "wall_s": entry["wall_s"],
    }


def summarise_baseline(entry: dict[str, Any], last: int) -> dict[str, Any]:
    """Final return (mean of the last `last` logged rows), last row and best row."""
    curve = entry["curve"]
    returns, steps = curve["episode_return"], curve["env_steps"]
    tail = returns[-last:]
    return {
        "env_steps": int(steps[-1]),
        "final_return_mean_last_rows": sum(tail) / len(tail),
        "rows_averaged": len(tail),
        "rows_averaged_from_step": int(steps[-len(tail)]),
        "last_row_return": returns[-1],
        "best_row_return": max(returns),
        "final_cost": curve["episode_cost"][-1],
        "wall_s": entry["wall_s"],
    }


def summarise(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per seed and baseline: PETS best return ÷ baseline final return (the issue's 0.8 criterion)."""
    table = []
    for seed in results["seeds"]:
        pets = next((e for e in results["runs"] if e["algo"] == "pets" and e["seed"] == seed), None)
        if pets is None:
            continue
        pets_summary = summarise_pets(pets, 0.9)
        for entry in (e for e in results["runs"] if e["algo"] != "pets" and e["seed"] == seed):
            base = summarise_baseline(entry, results["final_rows"])
            table.append(
                {
                    "seed": seed,
                    "baseline": entry["label"],
                    "steps_multiplier": round(entry["steps"] / pets_summary["env_steps"], 1),
                    "pets": pets_summary,
                    "baseline_summary": base,
                    "ratio_pets_best_to_baseline_final": pets_summary["best_return"]
                    / base["final_return_mean_last_rows"],
                    "ratio_pets_final_to_baseline_final": pets_summary["final_return"]
                    / base["final_return_mean_last_rows"],
                    "ratio_pets_best_to_baseline_best": pets_summary["best_return"] / base["best_row_return"],
                }
            )
    return table


def aggregate(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per baseline over seeds: mean PETS best return, mean baseline final return, mean and worst ratio."""
    rows = []
    for label in dict.fromkeys(row["baseline"] for row in table):
        mine = [row for row in table if row["baseline"] == label]
        ratios = [row["ratio_pets_best_to_baseline_final"] for row in mine]
        rows.append(
            {
                "baseline": label,
                "seeds": [row["seed"] for row in mine],
                "steps_multiplier": mine[0]["steps_multiplier"],
                "pets_best_return_mean": sum(r["pets"]["best_return"] for r in mine) / len(mine),
                "baseline_final_return_mean": sum(r["baseline_summary"]["final_return_mean_last_rows"] for r in mine)
                / len(mine),
                "ratio_mean": sum(ratios) / len(ratios),
                "ratio_min": min(ratios),
            }
        )
    return rows


def plot(results: dict[str, Any], path: pathlib.Path) -> None:
    """Return and cost vs env steps (log x), one colour per run label, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ret_ax, cost_ax) = plt.subplots(1, 2, figsize=(11, 4.6))
    colours: dict[str, str] = {}
    for entry in results["runs"]:
        first = entry["label"] not in colours
        colour = colours.setdefault(entry["label"], f"C{len(colours)}")
        curve = entry["curve"]
        seeds = sorted(e["seed"] for e in results["runs"] if e["label"] == entry["label"])
        name = f"{entry['label']} (seeds {', '.join(map(str, seeds))})" if first else None
        points = [i for i, step in enumerate(curve["env_steps"]) if step > 0]  # log x: drop the step-0 eval
        steps = [curve["env_steps"][i] for i in points]
        ret_ax.plot(steps, [curve["episode_return"][i] for i in points], ".-", color=colour, alpha=0.8, label=name)
        cost_ax.plot(steps, [curve["episode_cost"][i] for i in points], ".-", color=colour, alpha=0.8)
    ret_ax.set(
        xscale="log",
        xlabel="env steps",
        ylabel="episode return",
        ylim=(0, 1000),
        title=f"{results['env']}: PETS vs model-free (return)",
    )
    cost_ax.axhline(results.get("cost_budget", math.nan), color="k", ls=":", label="cost budget")
    cost_ax.set(xscale="log", xlabel="env steps", ylabel="episode cost", title="episode cost (ignored by all)")
    cost_ax.legend(fontsize=7, loc="lower left")
    fig.legend(*ret_ax.get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="safe_cartpole")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--pets-episodes", type=int, default=10)
    parser.add_argument("--pets-set", nargs="*", default=["action_repeat=4"], help="PETS overrides key=value")
    parser.add_argument(
        "--baseline",
        nargs="+",
        action="append",
        metavar="LABEL ALGO MULTIPLIER [key=value]",
        help="a baseline trained for MULTIPLIER × the PETS env steps (repeatable); ALGO is a "
        "saferl algorithm or 'brax-ppo' (brax's own PPO trainer)",
    )
    parser.add_argument("--final-rows", type=int, default=3, help="logged rows averaged for a final return")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--runs-dir", type=pathlib.Path, default=pathlib.Path("runs/benchmarks/pets_vs_modelfree"))
    parser.add_argument(
        "--append",
        action="store_true",
        help="add to the existing JSON; a seed whose PETS run is there reuses it (not rerun)",
    )
    parser.add_argument("--plot-only", action="store_true", help="re-plot and re-summarise the existing JSON")
    args = parser.parse_args()
    json_path, png_path = args.out / "pets_vs_modelfree.json", args.out / "pets_vs_modelfree.png"
    if args.plot_only:
        results = json.loads(json_path.read_text())
    else:
        results = run_all(args, json.loads(json_path.read_text()) if args.append and json_path.exists() else None)
    results["summary"] = summarise(results)
    results["aggregate"] = aggregate(results["summary"])
    save(results, args.out)
    plot(results, png_path)
    print(json.dumps(results["aggregate"], indent=1))
    print(f"wrote {json_path} and {png_path}")


def save(results: dict[str, Any], out: pathlib.Path) -> None:
    """Write what has been measured so far (a crash or Ctrl-C keeps the finished runs)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "pets_vs_modelfree.json").write_text(json.dumps(results, indent=1))


def new_results(args: argparse.Namespace) -> dict[str, Any]:
    import jax

    import envs

    env = envs.make(args.env)
    return {
        "env": args.env,
        "episode_length": int(env.episode_length),
        "cost_budget": float(env.cost_budget),
        "seeds": [],
        "final_rows": args.final_rows,
        "device": str(jax.devices()[0]),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "invocations": [],
        "runs": [],
    }


def run_all(args: argparse.Namespace, prior: dict[str, Any] | None) -> dict[str, Any]:
    """Per seed: PETS (or its earlier run when appending), then every baseline at its multiple of PETS's steps."""
    results = prior or new_results(args)
    baselines = args.baseline or [["ppo", "ppo", "100"]]
    results["invocations"].append(
        {
            "command": "python experiments/benchmarks/pets_vs_modelfree.py " + " ".join(sys.argv[1:]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_before": load_average(),
        }
    )
    for seed in args.seeds:
        pets = next((e for e in results["runs"] if e["algo"] == "pets" and e["seed"] == seed), None)
        if pets is None:
            pets = run(
                "pets",
                "pets",
                args.env,
                args.pets_episodes * results["episode_length"],
                seed,
                parse_overrides(args.pets_set),
                args.runs_dir,
            )
            report(pets, results, args.out)
        results["seeds"] = sorted(set(results["seeds"]) | {seed})
        pets_steps = int(pets["curve"]["env_steps"][-1])
        for label, algo, multiplier, *overrides in baselines:
            steps = int(float(multiplier) * pets_steps)
            if algo == "brax-ppo":
                entry = run_brax_ppo(label, args.env, steps, seed, parse_overrides(overrides))
            else:
                entry = run(label, algo, args.env, steps, seed, parse_overrides(overrides), args.runs_dir)
            report(entry, results, args.out)
    results["invocations"][-1]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return results


def report(entry: dict[str, Any], results: dict[str, Any], out: pathlib.Path) -> None:
    """Append a finished run, save the JSON and print a one-line summary."""
    results["runs"].append(entry)
    save(results, out)
    print(
        json.dumps(
            {k: entry[k] for k in ("label", "seed", "wall_s", "load_after")}
            | {"last_returns": [round(r) for r in entry["curve"]["episode_return"][-10:]]}
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
