"""SoftAE study: is the explored model good everywhere, and does it solve unseen tasks zero-shot?

For each env, world variant, exploration strategy and seed: explore episode by episode (the `saferl train softae`
agent and loop) and, at each exploration budget (episodes), measure
  * held-out prediction error of the model's mean 1 / 10 / 50 decisions ahead on test trajectories from a broad
    behaviour mix (`saferl.agents.softae.evaluation`), and
  * zero-shot return of each env task (planned on the model; never used while exploring), plus the cost.
The task-specific PETS baseline ("task") explores with one task's reward: it is run once per task and scored on
its own task only. World variants: nominal, observation noise, a 2-step actuation delay and (soft_arm) the
stiffening material.

    python experiments/softae_study.py                   # the README's figures (hours on 2 CPU cores)
    python experiments/softae_study.py --quick           # a small smoke version (minutes)
    python experiments/softae_study.py --envs soft_arm --seeds 0 1 2 --budgets 2 4 8 --variants nominal

Writes experiments/results/softae_study.csv (one row per env/variant/strategy/seed/budget/task), .json
(settings, machine, means over seeds) and .png (per env: error vs budget, zero-shot return vs budget).
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

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import envs  # noqa: E402
from saferl.agents.pets.train import EpisodeRunner  # noqa: E402
from saferl.agents.softae import SoftAEConfig, make_agent  # noqa: E402
from saferl.agents.softae import evaluation  # noqa: E402
from saferl.config import apply_overrides  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
STRATEGIES = ("info_gain", "disagreement", "random", "colored_noise", "task")
VARIANTS = {  # name -> (env config overrides, training-world overrides)
    "nominal": ({}, {}),
    "obs_noise": ({}, {"obs_noise_std": 0.01}),
    "delay2": ({}, {"action_delay": 2}),
    "stiffening": ({"material": "stiffening"}, {}),  # soft_arm only
}


def _world(env_name: str, variant: str) -> tuple[object, envs.TrainingEnvConfig]:
    env_overrides, world_overrides = VARIANTS[variant]
    config = envs.make_config(env_name, **env_overrides)
    world = envs.TrainingEnvConfig(**world_overrides)
    return envs.make_training_env(env_name, config, world), world


def run_one(env_name: str, variant: str, strategy: str, task: str, seed: int, budgets: list[int],
            overrides: dict, test_set: tuple, eval_episodes: int) -> list[dict]:
    """Explore with one strategy and seed; evaluate at every budget. Returns CSV rows."""
    env, world = _world(env_name, variant)
    settings = {**overrides, "exploration": strategy, **({"task": task} if strategy == "task" else {})}
    agent = make_agent(apply_overrides(SoftAEConfig(), settings), env, world)
    runner, state = EpisodeRunner(agent), agent.init(jax.random.PRNGKey(seed))
    tasks = [task] if strategy == "task" else sorted(env.tasks())
    rows, explore_cost, start = [], 0.0, time.perf_counter()
    for episode in range(1, max(budgets) + 1):
        state, row = runner(state)
        explore_cost += row["episode_cost"]
        if episode not in budgets:
            continue
        errors = evaluation.prediction_errors(state.model, *test_set)
        returns = evaluation.zero_shot_returns(agent, state.model, tasks, eval_episodes, seed=1000 + seed)
        for name in tasks:
            rows.append({"env": env_name, "variant": variant, "strategy": strategy, "seed": seed, "episodes": episode,
                         "env_steps": episode * agent.env_steps_per_episode, "exploration_cost": explore_cost,
                         **{f"error_{k}": errors.get(k, float("nan")) for k in evaluation.HORIZONS},
                         "task": name, "zero_shot_return": returns[name]["mean_return"],
                         "zero_shot_cost": returns[name]["mean_cost"],
                         "seconds": time.perf_counter() - start})
        print(f"{env_name}/{variant} {strategy}{'(' + task + ')' if task else ''} seed {seed} ep {episode}: "
              f"err1 {errors.get(1, float('nan')):.3f} err10 {errors.get(10, float('nan')):.3f} "
              + " ".join(f"{n} {returns[n]['mean_return']:.1f}" for n in tasks), flush=True)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Means and stds over seeds of every (env, variant, strategy, episodes, task) group."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["env"], row["variant"], row["strategy"], row["episodes"], row["task"]), []).append(row)
    summary = []
    for (env, variant, strategy, episodes, task), members in sorted(groups.items()):
        entry = {"env": env, "variant": variant, "strategy": strategy, "episodes": episodes, "task": task,
                 "seeds": len(members)}
        for key in ("error_1", "error_10", "error_50", "zero_shot_return", "zero_shot_cost", "exploration_cost"):
            values = np.array([m[key] for m in members], float)
            entry[key], entry[key + "_std"] = float(np.nanmean(values)), float(np.nanstd(values))
        summary.append(entry)
    return summary


def plot(summary: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nominal = [s for s in summary if s["variant"] == "nominal"]
    env_names = sorted({s["env"] for s in nominal})
    if not env_names:
        return
    task_names = {e: sorted({s["task"] for s in nominal if s["env"] == e}) for e in env_names}
    columns = 1 + max(len(t) for t in task_names.values())
    fig, axes = plt.subplots(len(env_names), columns, figsize=(4 * columns, 3.2 * len(env_names)), squeeze=False)
    for i, env in enumerate(env_names):
        for strategy in STRATEGIES:
            first_task = task_names[env][0]
            curve = [s for s in nominal if s["env"] == env and s["strategy"] == strategy and
                     (s["task"] == first_task or strategy == "task")]
            curve = {s["episodes"]: s for s in curve}
            if curve and strategy != "task":
                x = sorted(curve)
                axes[i, 0].errorbar(x, [curve[k]["error_10"] for k in x], [curve[k]["error_10_std"] for k in x],
                                    label=strategy, capsize=3, marker="o")
            for j, task in enumerate(task_names[env]):
                points = {s["episodes"]: s for s in nominal if s["env"] == env and s["strategy"] == strategy
                          and s["task"] == task}
                if points:
                    x = sorted(points)
                    axes[i, j + 1].errorbar(x, [points[k]["zero_shot_return"] for k in x],
                                            [points[k]["zero_shot_return_std"] for k in x], label=strategy,
                                            capsize=3, marker="o")
                    axes[i, j + 1].set_title(f"{env}: zero-shot '{task}'")
                    axes[i, j + 1].set_xlabel("exploration episodes")
        axes[i, 0].set_title(f"{env}: 10-step prediction error (held out)")
        axes[i, 0].set_xlabel("exploration episodes")
        axes[i, 0].legend(fontsize=7)
        axes[i, 1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["soft_arm", "soft_fish", "muscle_leg"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--budgets", nargs="+", type=int, default=[2, 4, 8], help="exploration episodes")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--eval-episodes", type=int, default=3, help="zero-shot episodes per task")
    parser.add_argument("--test-episodes", type=int, default=20, help="held-out test trajectories per env/variant")
    parser.add_argument("--set", action="append", default=[], help="SoftAE config override key=value")
    parser.add_argument("--quick", action="store_true", help="one env, one seed, budgets 1 2, nominal only")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS / "softae_study")
    args = parser.parse_args()
    if args.quick:
        args.envs, args.seeds, args.budgets, args.variants = args.envs[:1], args.seeds[:1], [1, 2], ["nominal"]
        args.eval_episodes, args.test_episodes = 1, 5
    overrides = dict(item.split("=", 1) for item in args.set)
    rows, started = [], time.time()
    for env_name in args.envs:
        for variant in args.variants:
            if variant == "stiffening" and "material" not in envs.make_config(env_name).__dataclass_fields__:
                continue
            env, world = _world(env_name, variant)
            probe = make_agent(apply_overrides(SoftAEConfig(), {**overrides, "exploration": "random"}), env, world)
            test_set = evaluation.held_out_trajectories(probe, jax.random.PRNGKey(12345), args.test_episodes)
            for strategy in args.strategies:
                tasks = sorted(env.tasks()) if strategy == "task" else [""]
                for task in tasks:
                    for seed in args.seeds:
                        rows += run_one(env_name, variant, strategy, task, seed, sorted(args.budgets), overrides,
                                        test_set, args.eval_episodes)
                        _write(args, rows, started)
    _write(args, rows, started)


def _write(args: argparse.Namespace, rows: list[dict], started: float) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = summarise(rows)
    meta = {"command": " ".join(sys.argv), "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "load_average": os.getloadavg(), "jax": jax.__version__, "wall_s": time.time() - started,
            "settings": {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()}}
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": summary}, indent=1))
    plot(summary, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
