"""Benchmark (issue #7): unconstrained SAC vs SAC with each constraint handler, trained under domain
randomisation, evaluated on the nominal env and on a shifted one (the stand-in for the real robot).

Every run goes through `saferl.training.run.train` (what `saferl train sac --constraint KIND --set-env ...`
does); evaluation uses the CLI's own path (`saferl.policies.worlds` + `evaluate`, deterministic actions).
A do-nothing policy (zero action) is evaluated on each env as the floor. Writes JSON (config, every run's
training curve, evaluations, wall times, machine load) and a PNG (final return and cost vs budget per
handler; cost during training) into `--out`.

    python experiments/benchmarks/constrained_priors.py --envs safe_cartpole point_goal --seeds 0 1 2
    python experiments/benchmarks/constrained_priors.py --append --envs point_goal --seeds 3  # merge more runs
    python experiments/benchmarks/constrained_priors.py --plot-only
    python experiments/benchmarks/constrained_priors.py --merge a/constrained_priors.json b/constrained_priors.json
        # (later files' runs replace earlier runs of the same env, kind and seed)
    python experiments/benchmarks/constrained_priors.py --evaluate-only --out DIR   # deterministic + stochastic
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import platform
import sys
import time
from typing import Any

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
KINDS = ("none", "lagrangian", "augmented_lagrangian", "crpo", "penalty")
# masses ±20 %, friction ±30 %, damping ±20 %, actuator gain ±10 % (per episode)
RANDOMIZATION = {
    "randomization.mass_scale": [0.8, 1.2],
    "randomization.friction_scale": [0.7, 1.3],
    "randomization.damping_scale": [0.8, 1.2],
    "randomization.actuator_gain_scale": [0.9, 1.1],
}
SETTINGS = {  # per env: training steps, SAC overrides, the shift preset used as the "real" system
    "safe_cartpole": {"steps": 100_000, "overrides": {"num_envs": 4}, "shift": "heavy_pole"},
    "point_goal": {
        "steps": 200_000,
        "overrides": {"num_envs": 4},
        "shift": "heavy_robot",
    },  # 100k: too few (docs/results/safe-training.md)
}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def training_curve(run_dir: pathlib.Path) -> list[dict[str, float]]:
    keep = ("env_steps", "episode_return", "episode_cost", "lagrange_multiplier", "penalty", "cost_estimate")
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("episode_return") not in (None, "", "nan")]
    return [{k: float(r[k]) for k in keep if r.get(k) not in (None, "")} for r in rows]


def evaluate_run(run_dir: pathlib.Path, shift: str, episodes: int, deterministic: bool = True) -> dict[str, Any]:
    """Evaluation (deterministic: the mean action, as `saferl eval`; else sampled actions, the policy the
    critics describe) on the nominal world and on the `shift` preset (randomisation off)."""
    from saferl.policies import load_policy
    from saferl.policies.evaluate import evaluate
    from saferl.policies.worlds import evaluation_env, evaluation_world

    policy = load_policy(run_dir)
    out = {}
    for name, words in (("nominal", ["nominal"]), (shift, [shift])):
        result = evaluate(
            policy,
            evaluation_env(policy, evaluation_world(policy, words)),
            episodes,
            seed=1000,
            deterministic=deterministic,
        )
        out[name] = {
            k: result[k]
            for k in (
                "mean_return",
                "std_return",
                "mean_cost",
                "std_cost",
                "cost_budget",
                "fraction_within_budget",
                "returns",
                "costs",
            )
        }
    return out


def do_nothing(env_name: str, shift: str, episodes: int) -> dict[str, Any]:
    """Return and cost of the zero action on the nominal and shifted env (the floor a prior must beat)."""
    import jax.numpy as jnp

    import envs
    from saferl.policies.evaluate import evaluate
    from saferl.policies.policy import Policy, stateless, stateless_carry
    from saferl.policies.worlds import evaluation_env, evaluation_world

    env = envs.make(env_name)
    zero = Policy(
        act=stateless(lambda obs, key: jnp.zeros((*obs.shape[:-1], env.action_size))),
        init_carry=stateless_carry,
        params=(),
        apply=None,
        observation_size=env.observation_size,
        action_size=env.action_size,
        env_name=env_name,
        env_config=env.config,
        cost_budget=float(env.cost_budget),
        algo="zero",
    )
    out = {}
    for name, words in (("nominal", ["nominal"]), (shift, [shift])):
        result = evaluate(zero, evaluation_env(zero, evaluation_world(zero, words)), episodes, seed=1000)
        out[name] = {k: result[k] for k in ("mean_return", "mean_cost", "cost_budget")}
    return out


def run_one(env_name: str, kind: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from saferl.training.run import train

    setting = SETTINGS[env_name]
    overrides = {**setting["overrides"], "constraint.kind": kind}
    load_before, start = load_average(), time.perf_counter()
    result = train(
        "sac",
        env_name,
        steps=args.steps or setting["steps"],
        seed=seed,
        overrides=overrides,
        env_overrides=RANDOMIZATION,
        out=args.runs_dir,
        progress=False,
        tensorboard=False,
    )
    wall_s = time.perf_counter() - start
    evaluation = evaluate_run(result.run_dir, setting["shift"], args.episodes)
    stochastic = evaluate_run(result.run_dir, setting["shift"], args.episodes, deterministic=False)
    print(
        f"{env_name} {kind} seed {seed}: {wall_s:.0f} s; nominal return {evaluation['nominal']['mean_return']:.1f} "
        f"cost {evaluation['nominal']['mean_cost']:.1f}; {setting['shift']} return "
        f"{evaluation[setting['shift']]['mean_return']:.1f} cost {evaluation[setting['shift']]['mean_cost']:.1f}",
        flush=True,
    )
    return {
        "env": env_name,
        "kind": kind,
        "seed": seed,
        "steps": args.steps or setting["steps"],
        "overrides": overrides,
        "run_dir": str(result.run_dir),
        "wall_s": wall_s,
        "load_before": load_before,
        "load_after": load_average(),
        "curve": training_curve(result.run_dir),
        "evaluation": evaluation,
        "evaluation_stochastic": stochastic,
    }


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Per env and handler: mean over seeds of nominal/shifted return and cost; acceptance checks."""
    table: dict[str, Any] = {}
    for run in results["runs"]:
        shift = SETTINGS[run["env"]]["shift"]
        row = table.setdefault(run["env"], {}).setdefault(
            run["kind"],
            {
                "seeds": [],
                "nominal_return": [],
                "nominal_cost": [],
                "shift_return": [],
                "shift_cost": [],
                "stochastic_nominal_cost": [],
                "stochastic_nominal_return": [],
                "stochastic_shift_cost": [],
            },
        )
        row["seeds"].append(run["seed"])
        row["nominal_return"].append(run["evaluation"]["nominal"]["mean_return"])
        row["nominal_cost"].append(run["evaluation"]["nominal"]["mean_cost"])
        row["shift_return"].append(run["evaluation"][shift]["mean_return"])
        row["shift_cost"].append(run["evaluation"][shift]["mean_cost"])
        if "evaluation_stochastic" in run:
            row["stochastic_nominal_cost"].append(run["evaluation_stochastic"]["nominal"]["mean_cost"])
            row["stochastic_nominal_return"].append(run["evaluation_stochastic"]["nominal"]["mean_return"])
            row["stochastic_shift_cost"].append(run["evaluation_stochastic"][shift]["mean_cost"])
    for env_name, kinds in table.items():
        budget = next(r for r in results["runs"] if r["env"] == env_name)["evaluation"]["nominal"]["cost_budget"]
        for row in kinds.values():
            for key in (
                "nominal_return",
                "nominal_cost",
                "shift_return",
                "shift_cost",
                "stochastic_nominal_cost",
                "stochastic_nominal_return",
                "stochastic_shift_cost",
            ):
                if row[key]:
                    row[f"mean_{key}"] = sum(row[key]) / len(row[key])
            row["every_seed_within_budget_nominal"] = all(c <= budget for c in row["nominal_cost"])
            row["every_seed_within_1.5x_budget_shift"] = all(c <= 1.5 * budget for c in row["shift_cost"])
    return table


def plot(results: dict[str, Any], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env_names = sorted({r["env"] for r in results["runs"]})
    fig, axes = plt.subplots(len(env_names), 3, figsize=(16, 4.2 * len(env_names)), squeeze=False)
    colours = dict(zip(KINDS, ("tab:gray", "tab:blue", "tab:green", "tab:orange", "tab:purple"), strict=False))
    for row_axes, env_name in zip(axes, env_names, strict=False):
        runs = [r for r in results["runs"] if r["env"] == env_name]
        shift = SETTINGS[env_name]["shift"]
        budget = runs[0]["evaluation"]["nominal"]["cost_budget"]
        for axis, world, title in ((row_axes[0], "nominal", "nominal"), (row_axes[1], shift, f"shift: {shift}")):
            for run in runs:
                e = run["evaluation"][world]
                axis.scatter(e["mean_cost"], e["mean_return"], color=colours[run["kind"]], s=30)
            floor = results.get("do_nothing", {}).get(env_name, {}).get(world)
            if floor:
                axis.axhline(floor["mean_return"], color="k", lw=0.8, ls=":", label="do nothing")
            axis.axvline(budget, color="r", lw=1, ls="--", label=f"budget {budget:g}")
            if world != "nominal":
                axis.axvline(1.5 * budget, color="r", lw=0.8, ls=":", label="1.5 × budget")
            axis.set(
                title=f"{env_name} ({title}): final eval, 10 episodes", xlabel="episode cost", ylabel="episode return"
            )
        for kind in KINDS:
            axis.scatter([], [], color=colours[kind], label=kind)
        row_axes[1].legend(fontsize=7, loc="best")
        axis = row_axes[2]
        for run in runs:
            curve = run["curve"]
            axis.plot(
                [p["env_steps"] for p in curve],
                [p["episode_cost"] for p in curve],
                color=colours[run["kind"]],
                lw=0.8,
                alpha=0.8,
            )
        axis.axhline(budget, color="r", lw=1, ls="--")
        axis.set(
            title=f"{env_name}: episode cost during training (DR)",
            xlabel="env steps",
            ylabel="episode cost",
            yscale="symlog",
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--steps", type=int, default=None, help="training env steps (default: per env)")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes per world")
    parser.add_argument("--runs-dir", type=pathlib.Path, default=pathlib.Path("runs/benchmarks/constrained_priors"))
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--append", action="store_true", help="merge into the existing JSON")
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument(
        "--merge",
        nargs="+",
        type=pathlib.Path,
        default=[],
        help="merge these results JSONs (e.g. runs of other envs made in parallel) and re-plot",
    )
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="re-evaluate the runs in the JSON (deterministic and stochastic), no training",
    )
    args = parser.parse_args()
    json_path, png_path = args.out / "constrained_priors.json", args.out / "constrained_priors.png"
    if args.plot_only:
        plot(json.loads(json_path.read_text()), png_path)
        return
    if args.merge:
        merged = {"runs": [], "do_nothing": {}, "invocations": [], "randomization": RANDOMIZATION, "settings": SETTINGS}
        for path in args.merge:  # a later file's run of the same (env, kind, seed) replaces an earlier one
            part = json.loads(path.read_text())
            replaced = {(r["env"], r["kind"], r["seed"]) for r in part["runs"]}
            merged["runs"] = [r for r in merged["runs"] if (r["env"], r["kind"], r["seed"]) not in replaced]
            merged["runs"] += part["runs"]
            merged["do_nothing"].update(part["do_nothing"])
            merged["invocations"] += part["invocations"]
            merged["machine"] = part.get("machine")
        merged["summary"] = summarise(merged)
        args.out.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(merged, indent=1))
        plot(merged, png_path)
        print(f"written: {json_path}, {png_path}")
        return
    if args.evaluate_only:
        results = json.loads(json_path.read_text())
        for run in results["runs"]:
            shift = SETTINGS[run["env"]]["shift"]
            run["evaluation"] = evaluate_run(pathlib.Path(run["run_dir"]), shift, args.episodes)
            run["evaluation_stochastic"] = evaluate_run(pathlib.Path(run["run_dir"]), shift, args.episodes, False)
            print(
                run["env"],
                run["kind"],
                run["seed"],
                {k: round(v["mean_cost"], 1) for k, v in run["evaluation_stochastic"].items()},
                flush=True,
            )
        results["invocations"].append("python experiments/benchmarks/constrained_priors.py " + " ".join(sys.argv[1:]))
        results["summary"] = summarise(results)
        json_path.write_text(json.dumps(results, indent=1))
        plot(results, png_path)
        return
    from saferl.compilation_cache import enable_compilation_cache

    enable_compilation_cache()
    results: dict[str, Any] = (
        json.loads(json_path.read_text())
        if args.append and json_path.exists()
        else {"runs": [], "do_nothing": {}, "invocations": [], "randomization": RANDOMIZATION, "settings": SETTINGS}
    )
    results["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    results["invocations"].append("python experiments/benchmarks/constrained_priors.py " + " ".join(sys.argv[1:]))
    args.out.mkdir(parents=True, exist_ok=True)
    for env_name in args.envs:
        results["do_nothing"][env_name] = do_nothing(env_name, SETTINGS[env_name]["shift"], args.episodes)
        for seed in args.seeds:
            for kind in args.kinds:
                results["runs"] = [
                    r for r in results["runs"] if (r["env"], r["kind"], r["seed"]) != (env_name, kind, seed)
                ]
                results["runs"].append(run_one(env_name, kind, seed, args))
                results["summary"] = summarise(results)
                json_path.write_text(json.dumps(results, indent=1))
                plot(results, png_path)
    print(f"written: {json_path}, {png_path}")


if __name__ == "__main__":
    main()
