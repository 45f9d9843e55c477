"""Learning curves on us_navigate (issue #10): PPO-Lagrangian on the state vector, PPO-Lagrangian on the B-mode
image + state (CNN encoder), and uniform random actions; success rate and safety cost vs env steps.

Each learning variant trains with the CLI's own trainer (`saferl train ppo --constraint lagrangian`, in this
process) in chunks of `--chunk-steps`, continuing the same run with `--resume`; after every chunk the run's
policy is evaluated as `saferl eval` does (deterministic, `--eval-episodes` fresh episodes, seed 1000):
success rate (episodes that end within 5 mm / 5° of the standard plane), success at any step, return, cost
(budget 10 unsafe steps per 200) and the fraction of episodes within the budget. Rows are merged into
`--results` (a variant/seed rerun replaces its rows), so variants can run one at a time:

    .venv/bin/python experiments/ultrasound_learning.py --variants random state --seeds 0 1 2
    .venv/bin/python experiments/ultrasound_learning.py --variants pixels --seeds 0 1 --image-size 32

Writes experiments/results/ultrasound_learning.{json,csv,png}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results" / "ultrasound_learning"
ENV = "us_navigate"
EVAL_SEED = 1000
VARIANTS = ("state", "pixels", "random")


def train_args(variant: str, image_size: int, num_envs: int) -> list[str]:
    """The `saferl train ppo` options of a learning variant (without --steps/--seed/--out/--resume)."""
    common = ["--constraint", "lagrangian", "--quiet", "--set", f"num_envs={num_envs}"]
    if variant == "state":
        return ["--env", ENV, *common]
    if variant == "pixels":
        return [
            "--env",
            ENV,
            *common,
            "--set-env",
            "observation=pixels",
            "--set-env",
            f"image_height={image_size}",
            "--set-env",
            f"image_width={image_size}",
            "--set",
            "encoder.channels=[8,16]",
            "--set",
            "encoder.features=32",
        ]
    raise ValueError(f"unknown learning variant {variant!r}; learning variants: state, pixels")


def run_cli(args: list[str]) -> None:
    from saferl.cli.main import main

    try:
        main(args)
    except SystemExit as done:
        if done.code:
            raise RuntimeError(f"saferl {' '.join(args)} exited with {done.code}") from None


def evaluate_run(run_dir: pathlib.Path, episodes: int) -> dict:
    from saferl.policies import load_policy
    from saferl.policies.evaluate import evaluate
    from saferl.policies.worlds import evaluation_env, evaluation_world

    policy = load_policy(run_dir)
    return evaluate(policy, evaluation_env(policy, evaluation_world(policy)), episodes, seed=EVAL_SEED)


def evaluate_random(episodes: int, seed: int) -> dict:
    """Uniform random target poses in [-1, 1]^6 every step, on the env the state variant trains on (episode
    starts and actions drawn from `EVAL_SEED + seed`)."""
    import envs
    from saferl.policies import uniform_random_policy
    from saferl.policies.evaluate import evaluate

    env = envs.wrap_evaluation_env(
        envs.make_training_env(ENV, None, envs.TrainingEnvConfig()), envs.TrainingEnvConfig()
    )
    policy = uniform_random_policy(env.action_size, env.observation_size, env.cost_budget, env_name=ENV)
    return evaluate(policy, env, episodes, seed=EVAL_SEED + seed, deterministic=True)


def row(variant: str, seed: int, env_steps: int, result: dict, wall_s: float) -> dict:
    return {
        "variant": variant,
        "seed": seed,
        "env_steps": env_steps,
        "success_rate": result["success_rate"],
        "success_any_rate": result["success_any_rate"],
        "mean_return": result["mean_return"],
        "mean_cost": result["mean_cost"],
        "cost_budget": result["cost_budget"],
        "fraction_within_budget": result["fraction_within_budget"],
        "episodes": result["episodes"],
        "wall_s": round(wall_s, 1),
    }


def run_variant(variant: str, seed: int, args: argparse.Namespace, runs: pathlib.Path, report) -> list[dict]:
    if variant == "random":
        result = evaluate_random(args.eval_episodes, seed)
        return [
            row("random", seed, steps, result, 0.0)
            for steps in range(0, args.chunks * args.chunk_steps + 1, args.chunk_steps)
        ]
    options = train_args(variant, args.image_size, args.num_envs)
    out = runs / f"{variant}-seed{seed}"
    rows, run_dir, start = [], None, time.perf_counter()
    for chunk in range(1, args.chunks + 1):
        steps = chunk * args.chunk_steps
        if run_dir is None:
            run_cli(["train", "ppo", *options, "--steps", str(steps), "--seed", str(seed), "--out", str(out)])
            run_dir = next(out.glob(f"ppo-{ENV}-*"))
        else:
            run_cli(["train", "--resume", str(run_dir), "--steps", str(steps), "--quiet"])
        rows.append(row(variant, seed, steps, evaluate_run(run_dir, args.eval_episodes), time.perf_counter() - start))
        report(rows[-1])
    return rows


def merge(path: pathlib.Path, new_rows: list[dict], new_runs: list[dict]) -> list[dict]:
    """Rows of `path` (JSON) with those of the same (variant, seed) replaced by `new_rows`, and its run records
    (how each (variant, seed) was produced) by `new_runs`; written back, rows sorted."""
    old = json.loads(path.read_text()) if path.exists() else {"rows": [], "runs": []}
    key = lambda r: (r["variant"], r["seed"])  # noqa: E731
    replaced = {key(r) for r in new_rows + new_runs}
    rows = [r for r in old["rows"] if key(r) not in replaced] + new_rows
    rows.sort(key=lambda r: (VARIANTS.index(r["variant"]), r["seed"], r["env_steps"]))
    runs = list({key(r): r for r in old["runs"] + new_runs}.values())  # the latest record per (variant, seed)
    runs.sort(key=lambda r: (VARIANTS.index(r["variant"]), r["seed"]))
    path.write_text(json.dumps({"rows": rows, "runs": runs}, indent=1))
    return rows


def write_tables(rows: list[dict], results: pathlib.Path) -> None:
    with results.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, results.with_suffix(".png"))


def plot(rows: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for variant in VARIANTS:
        mine = [r for r in rows if r["variant"] == variant]
        if not mine:
            continue
        steps = sorted({r["env_steps"] for r in mine})
        for ax, key in zip(axes, ("success_rate", "mean_cost", "mean_return"), strict=False):
            values = np.array([[r[key] for r in mine if r["env_steps"] == s] for s in steps], dtype=object)
            mean = np.array([np.mean(v) for v in values], float)
            style = "--" if variant == "random" else "-o"
            ax.plot(np.asarray(steps) / 1e3, mean, style, label=f"{variant} ({len(values[0])} seed(s))", ms=3)
    budget = rows[0]["cost_budget"]
    axes[1].axhline(budget, color="k", lw=0.8, ls=":", label=f"budget {budget:g}")
    for ax, title in zip(
        axes, ("success rate (ends in the plane)", "episode cost (unsafe steps)", "return"), strict=False
    ):
        ax.set_xlabel("env steps (k)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-0.05, 1.05)
    axes[1].set_yscale("symlog", linthresh=10)
    axes[1].legend(fontsize=8)
    fig.suptitle("us_navigate: PPO-Lagrangian on state vs B-mode pixels vs random actions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--chunks", type=int, default=10, help="evaluations (training chunks) per learning run")
    parser.add_argument(
        "--chunk-steps",
        type=int,
        default=10240,
        help="env steps per chunk (a multiple of PPO's chunk, 10240 env steps with its defaults)",
    )
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=32, help="B-mode image height = width (pixels variant)")
    parser.add_argument("--eval-episodes", type=int, default=16)
    parser.add_argument("--runs", type=pathlib.Path, default=ROOT / "runs" / "ultrasound_learning")
    parser.add_argument("--results", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--plot-only", action="store_true", help="only rewrite the CSV and PNG from the JSON")
    args = parser.parse_args(argv)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    json_path = args.results.with_suffix(".json")
    meta = {
        "argv": sys.argv[1:] if argv is None else argv,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average": list(os.getloadavg()),
    }

    def report(r: dict) -> None:
        print(json.dumps(r), flush=True)

    if args.plot_only:
        write_tables(merge(json_path, [], []), args.results)
    for variant in [] if args.plot_only else args.variants:
        for seed in args.seeds:
            new = run_variant(variant, seed, args, args.runs, report)
            write_tables(merge(json_path, new, [meta | {"variant": variant, "seed": seed}]), args.results)
    print(f"written: {json_path} (+ .csv, .png)")


if __name__ == "__main__":
    main()
