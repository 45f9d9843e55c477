"""SoftAE study: is the explored model good everywhere, and does it solve unseen tasks zero-shot?

For each env, world variant and exploration strategy: explore episode by episode with all seeds at once (the
`saferl train softae --seeds` programs: each episode's collect, buffer add and refit vmapped over the seeds) and, at
each exploration budget (episodes), measure for every seed
  * held-out prediction error of the model's mean 1 / 10 / 50 decisions ahead on test trajectories from a broad
    behaviour mix (`saferl.agents.softae.evaluation`), and
  * zero-shot return of each env task (planned on the model; never used while exploring), plus the cost.
The task-specific PETS baseline ("task") explores with one task's reward: it is run once per task and scored on
its own task only. World variants: nominal, observation noise, a 2-step actuation delay and (soft_arm) the
stiffening material.

    python experiments/softae_study.py                   # the figures of docs/results/softae.md (hours on 2 CPU cores)
    python experiments/softae_study.py --quick           # a small smoke version (minutes)
    python experiments/softae_study.py --envs soft_arm --seeds 0 1 2 --budgets 2 4 8 --variants nominal
    python experiments/softae_study.py --strategies info_gain --set cost_constraint=penalty --out /tmp/part_a
    python experiments/softae_study.py --envs soft_fish --set-env episode_length=250    # 5 s episodes, not 20 s
    python experiments/softae_study.py --envs soft_arm --strategies task --tasks reach_far   # one task-specific run
    python experiments/softae_study.py --merge /tmp/part_a.csv /tmp/part_b.csv   # parts run separately -> one

Writes experiments/results/softae_study.csv (one row per env/variant/strategy/settings/seed/budget/task; `settings`
holds the run's `--set` overrides and its `--set-env` ones as env:key=value, so e.g. information gain with and
without a cost penalty stay apart; `seed_batch` the seeds explored together, `seconds` their wall clock so far,
`zero_shot_episodes` the episodes each zero-shot return averages), .json (settings, machine, means over seeds) and
.png (per env: error vs budget, zero-shot return vs budget).
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

import envs
from saferl.agents.softae import (
    SoftAEConfig,
    evaluation,
    make_agent,
)
from saferl.agents.softae.train import SEEDS as SOFTAE_SEEDS
from saferl.config import apply_overrides, parse_overrides
from saferl.errors import NonFiniteError, UserError
from saferl.training import seeds as seeds_lib
from saferl.training.run import build_training_env, resolve_world

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
STRATEGIES = ("info_gain", "disagreement", "random", "colored_noise", "task")
VARIANTS = {  # name -> (env config overrides, training-world overrides)
    "nominal": ({}, {}),
    "obs_noise": ({}, {"obs_noise_std": 0.01}),
    "delay2": ({}, {"action_delay": 2}),
    "stiffening": ({"material": "stiffening"}, {}),  # soft_arm only
}


def _world(env_name: str, variant: str, env_overrides: dict | None = None) -> tuple[object, envs.TrainingEnvConfig]:
    """The training env of `variant`, with `env_overrides` (`--set-env` pairs, as `saferl train --set-env`) on top."""
    variant_env, variant_world = VARIANTS[variant]
    config, world = resolve_world(env_name, {**variant_env, **variant_world, **(env_overrides or {})})
    return build_training_env(env_name, config, world), world


def _settings(overrides: dict, env_overrides: dict | None) -> str:
    """The `settings` column: SoftAE overrides `key=value`, then env overrides as `env:key=value`."""
    return " ".join(
        [f"{k}={v}" for k, v in sorted(overrides.items())]
        + [f"env:{k}={v}" for k, v in sorted((env_overrides or {}).items())]
    )


def run_seeds(
    env_name: str,
    variant: str,
    strategy: str,
    task: str,
    seeds: list[int],
    budgets: list[int],
    overrides: dict,
    test_set: tuple,
    eval_episodes: int,
    env_overrides: dict | None = None,
) -> list[dict]:
    """Explore with one strategy, all `seeds` at once (`saferl train softae --seeds`: the episode's collect,
    buffer add and refit vmapped over the seeds, one compile); evaluate every seed at every budget. CSV rows."""
    env, world = _world(env_name, variant, env_overrides)
    settings = {**overrides, "exploration": strategy, **({"task": task} if strategy == "task" else {})}
    config = apply_overrides(SoftAEConfig(), settings)
    episodes_of_seeds = SOFTAE_SEEDS.make_seed_episodes(config, env, world)
    agent = episodes_of_seeds.agent
    init_seeds, _, _ = seeds_lib.vmapped(SOFTAE_SEEDS.make_seed_parts(config, env, world))
    state = init_seeds(jax.numpy.stack([jax.random.PRNGKey(seed) for seed in seeds]))
    tasks = [task] if strategy == "task" else sorted(env.tasks())
    rows, explore_cost, start = [], np.zeros(len(seeds)), time.perf_counter()
    batch = " ".join(map(str, seeds))  # the seeds explored together (one run's wall clock in `seconds`)
    for episode in range(1, max(budgets) + 1):
        state, metrics = episodes_of_seeds(state)
        if not np.all(np.isfinite(metrics["model_fit"])):  # as `saferl train softae` (EpisodeRunner) reports it
            raise NonFiniteError(
                "model/fit_loss",
                episode * agent.env_steps_per_episode,
                f"{env_name}/{variant} {strategy}, seeds {batch}: the ensemble's training loss went NaN/Inf",
            )
        explore_cost += np.asarray(metrics["episode_cost"], float)
        if episode not in budgets:
            continue
        for i, seed in enumerate(seeds):
            model = seeds_lib.seed_slice(state.model, i)
            errors = evaluation.prediction_errors(model, *test_set)
            returns = evaluation.zero_shot_returns(agent, model, tasks, eval_episodes, seed=1000 + seed)
            for name in tasks:
                rows.append(
                    {
                        "env": env_name,
                        "variant": variant,
                        "strategy": strategy,
                        "settings": _settings(overrides, env_overrides),
                        "seed": seed,
                        "seed_batch": batch,
                        "episodes": episode,
                        "env_steps": episode * agent.env_steps_per_episode,
                        "exploration_cost": float(explore_cost[i]),
                        **{f"error_{k}": errors.get(k, float("nan")) for k in evaluation.HORIZONS},
                        "task": name,
                        "zero_shot_episodes": eval_episodes,
                        "zero_shot_return": returns[name]["mean_return"],
                        "zero_shot_cost": returns[name]["mean_cost"],
                        "seconds": time.perf_counter() - start,
                    }
                )
            print(
                f"{env_name}/{variant} {strategy}{'(' + task + ')' if task else ''} seed {seed} ep {episode}: "
                f"err1 {errors.get(1, float('nan')):.3f} err10 {errors.get(10, float('nan')):.3f} "
                + " ".join(f"{n} {returns[n]['mean_return']:.1f}" for n in tasks),
                flush=True,
            )
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Means and stds over seeds of every (env, variant, strategy, settings, episodes, task, zero-shot episodes)
    group."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (
            row["env"],
            row["variant"],
            row["strategy"],
            row.get("settings", ""),
            row["episodes"],
            row["task"],
            row.get("zero_shot_episodes", 0),
        )
        groups.setdefault(key, []).append(row)
    summary = []
    for (env, variant, strategy, settings, episodes, task, zero_shot_episodes), members in sorted(groups.items()):
        entry = {
            "env": env,
            "variant": variant,
            "strategy": strategy,
            "settings": settings,
            "episodes": episodes,
            "task": task,
            "zero_shot_episodes": zero_shot_episodes,
            "seeds": sorted(m["seed"] for m in members),
        }
        for key in ("error_1", "error_10", "error_50", "zero_shot_return", "zero_shot_cost", "exploration_cost"):
            values = np.array([m[key] for m in members], float)
            finite = values[~np.isnan(values)]  # NaN: a horizon longer than the test trajectories, or diverged
            entry[key], entry[key + "_std"] = (
                (float(finite.mean()), float(finite.std())) if finite.size else (float("nan"), float("nan"))
            )
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
    kinds = sorted(
        {(s["strategy"], s.get("settings", ""), s["zero_shot_episodes"]) for s in nominal},
        key=lambda kind: (STRATEGIES.index(kind[0]), kind[1], kind[2]),
    )
    colours = {kind: plt.get_cmap("tab10" if len(kinds) <= 10 else "tab20")(n) for n, kind in enumerate(kinds)}
    legend_rows = -(-len(kinds) // 2)
    fig, axes = plt.subplots(
        len(env_names), columns, squeeze=False, figsize=(4.2 * columns, 3.4 * len(env_names) + 0.22 * legend_rows)
    )
    for i, env in enumerate(env_names):
        for kind in kinds:
            strategy, settings, zero_shot_episodes = kind
            label = "; ".join([strategy + (f" ({settings})" if settings else ""), f"{zero_shot_episodes} eval eps"])
            style = {"label": label, "color": colours[kind], "capsize": 3, "marker": "o", "markersize": 4}
            first_task = task_names[env][0]
            mine = [
                s
                for s in nominal
                if s["env"] == env and (s["strategy"], s.get("settings", ""), s["zero_shot_episodes"]) == kind
            ]
            curve = {s["episodes"]: s for s in mine if s["task"] == first_task or strategy == "task"}
            if curve and strategy != "task":
                x = sorted(curve)
                axes[i, 0].errorbar(
                    x, [curve[k]["error_10"] for k in x], [curve[k]["error_10_std"] for k in x], **style
                )
            for j, task in enumerate(task_names[env]):
                points = {s["episodes"]: s for s in mine if s["task"] == task}
                if points:
                    x = sorted(points)
                    axes[i, j + 1].errorbar(
                        x,
                        [points[k]["zero_shot_return"] for k in x],
                        [points[k]["zero_shot_return_std"] for k in x],
                        **style,
                    )
        for j, task in enumerate(task_names[env]):
            axes[i, j + 1].set(
                title=f"{env}: zero-shot '{task}'",
                xlabel="exploration episodes",
                ylabel="return (mean ± std over seeds)",
            )
        # log scale: one diverged seed's error (e.g. 10^2-10^3) would flatten every other curve
        axes[i, 0].set(
            title=f"{env}: 10-step prediction error (held out)",
            xlabel="exploration episodes",
            ylabel="normalised RMS error",
            yscale="log",
        )
    handles = {
        label: handle for ax in axes.flat for handle, label in zip(*ax.get_legend_handles_labels(), strict=False)
    }
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.22 * legend_rows / fig.get_figheight() + 0.01, 1, 1))
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
    parser.add_argument(
        "--set-env",
        action="append",
        default=[],
        help="env config / training-world override key=value for every env (as `saferl train "
        "--set-env`), e.g. episode_length=250; recorded in `settings` as env:key=value",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        metavar="TASK",
        help="run the task-specific baseline (--strategies task) only for these tasks (default: all "
        "of each env's; a name one env lacks is skipped for it, one no env has is an error)",
    )
    parser.add_argument("--quick", action="store_true", help="one env, one seed, budgets 1 2, nominal only")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS / "softae_study")
    parser.add_argument(
        "--merge",
        nargs="+",
        type=pathlib.Path,
        default=None,
        metavar="CSV",
        help="run nothing: merge these CSVs of earlier runs (parts) into --out",
    )
    args = parser.parse_args()
    if args.merge:
        rows = [row for path in args.merge for row in _read(path)]
        runs: dict[tuple, float] = {}  # one exploration run's rows (its seeds together) carry its seconds so far
        for row in rows:
            run = tuple(row[k] for k in ("env", "variant", "strategy", "settings", "seed_batch"))
            runs[run] = max(runs.get(run, 0.0), row["seconds"])
        _write(args, rows, time.time() - sum(runs.values()), parts=[str(path) for path in args.merge])
        return
    if args.quick:
        args.envs, args.seeds, args.budgets, args.variants = args.envs[:1], args.seeds[:1], [1, 2], ["nominal"]
        args.eval_episodes, args.test_episodes = 1, 5
    overrides = parse_overrides(args.set)  # as `saferl train --set` (values JSON-decoded)
    env_overrides = parse_overrides(args.set_env)
    if "task" in args.strategies and args.tasks is not None:  # a typo fails now, not after hours of other runs
        known = set()
        for env_name in args.envs:
            known |= set(_task_baseline_tasks(envs.make(env_name), env_name, args.tasks))
        if unknown := [name for name in args.tasks if name not in known]:
            raise UserError(f"--tasks {' '.join(unknown)}: not a task of any of {', '.join(args.envs)}")
    rows, started = [], time.time()
    for env_name in args.envs:
        for variant in args.variants:
            if variant == "stiffening" and "material" not in envs.make_config(env_name).__dataclass_fields__:
                continue
            env, world = _world(env_name, variant, env_overrides)
            probe = make_agent(apply_overrides(SoftAEConfig(), {**overrides, "exploration": "random"}), env, world)
            test_set = evaluation.held_out_trajectories(probe, jax.random.PRNGKey(12345), args.test_episodes)
            for strategy in args.strategies:
                tasks = _task_baseline_tasks(env, env_name, args.tasks) if strategy == "task" else [""]
                for task in tasks:
                    rows += run_seeds(
                        env_name,
                        variant,
                        strategy,
                        task,
                        args.seeds,
                        sorted(args.budgets),
                        overrides,
                        test_set,
                        args.eval_episodes,
                        env_overrides,
                    )
                    _write(args, rows, started)
    _write(args, rows, started)


def _task_baseline_tasks(env, env_name: str, wanted: list[str] | None) -> list[str]:
    """The tasks the task-specific baseline runs for on `env`: all, or those of `wanted` the env has (a UserError if
    it has none of them, listing its tasks)."""
    names = sorted(env.tasks())
    if wanted is None:
        return names
    chosen = [name for name in names if name in wanted]
    if not chosen:
        raise UserError(f"--tasks {' '.join(wanted)}: none is a task of {env_name} (its tasks: {', '.join(names)})")
    return chosen


def _plain(value):
    """Paths (also in lists) as strings, for the JSON."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, pathlib.Path) else value


_TEXT_COLUMNS = ("env", "variant", "strategy", "settings", "task", "seed_batch")
_INT_COLUMNS = ("seed", "episodes", "env_steps", "zero_shot_episodes")


def _read(path: pathlib.Path) -> list[dict]:
    """Rows of a study CSV (numbers parsed; CSVs from before the `settings` / `seed_batch` / `zero_shot_episodes`
    columns get settings "", their own seed and 0 zero-shot episodes: unknown)."""
    if not path.exists():
        raise SystemExit(f"--merge: {path} not found")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    parsed = []
    for row in rows:
        entry = {
            key: value if key in _TEXT_COLUMNS else (int(value) if key in _INT_COLUMNS else float(value))
            for key, value in row.items()
        }
        parsed.append(
            {
                "env": entry["env"],
                "variant": entry["variant"],
                "strategy": entry["strategy"],
                "settings": entry.get("settings", ""),
                "seed_batch": str(entry["seed"]),
                "zero_shot_episodes": 0,
                **entry,
            }
        )
    return parsed


def _write(args: argparse.Namespace, rows: list[dict], started: float, parts: list[str] | None = None) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    summary = summarise(rows)
    meta = {
        "command": " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "load_average": os.getloadavg(),
        "jax": jax.__version__,
        "wall_s": time.time() - started,
        "settings": {k: _plain(v) for k, v in vars(args).items()},
        **({"merged_parts": parts} if parts else {}),
    }
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": summary}, indent=1))
    plot(summary, args.out.with_suffix(".png"))


if __name__ == "__main__":
    try:
        main()
    except UserError as err:  # bad input (env / task names, overrides): one line, exit status 1
        sys.exit(f"softae_study.py: error: {err}")
