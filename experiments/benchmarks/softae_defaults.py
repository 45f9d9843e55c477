"""The default exploration of `saferl train softae` over many seeds on every soft platform, and PETS with the
per-output calibration on (issue #31, "defaults that are safe and finite"). Writes softae_defaults.json + .png.

    python experiments/benchmarks/softae_defaults.py [--seeds 0 1 ... 9] [--only soft_arm pets] [--out DIR]

Each platform runs what `saferl train softae --env ENV --steps STEPS --seeds 0 … 9` runs (the default
`SoftAEConfig`, the default training world; PETS: `saferl train pets --env safe_cartpole --set
model.calibrate=true`): the seeds' episodes vmapped (collect, buffer add, refit), one compile per platform.
Where the CLI's NaN check (`saferl.training.loop.run_chunks`: every metric but the episode stats, and the model's
parameters) would stop a run, this script records the step and quantity of that seed and keeps running the
others (the seeds of a vmapped batch compute independently; `--seeds` in the CLI would stop them all).
For every seed and episode: return, cost against the env's budget, whether it acted at random, the plan value,
the share of feasible plans, and how many outputs the calibration scaled (a ≠ 1 or c > 0).
Measure one platform first (`--only soft_arm --seeds 0`) and size the runs to the time there is.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import envs  # noqa: F401  (before any JAX computation: it sets the XLA flags MJX's soft robots need)
from saferl.agents.pets.config import PETSConfig
from saferl.agents.pets.train import _PETS_SEEDS
from saferl.agents.softae import SoftAEConfig
from saferl.agents.softae.train import SEEDS as SOFTAE_SEEDS
from saferl.config import apply_overrides
from saferl.training import seeds as seeds_lib
from saferl.training.loop import EPISODE_KEYS
from saferl.training.run import build_training_env, resolve_world

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
# platform -> (algo, env, env steps, algo config overrides); fixed before the runs. The steps: soft_arm as issue
# #31's command (8 episodes of 200 steps), the 1000-step platforms 3 episodes (1 random, 2 explored: what fits a
# 2-core machine shared with other jobs), PETS 3 episodes of 1000 steps (1 random, 2 planned)
PLATFORMS: dict[str, tuple[str, str, int, dict[str, Any]]] = {
    "soft_arm": ("softae", "soft_arm", 1600, {}),
    "soft_fish": ("softae", "soft_fish", 3000, {}),
    "muscle_leg": ("softae", "muscle_leg", 3000, {}),
    "pets": ("pets", "safe_cartpole", 3000, {"model.calibrate": True}),
}


def _finite_tree(tree: Any) -> np.ndarray:
    """[S] whether every float leaf of a seed-batched tree is finite, per seed."""
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]
    ok = [np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1) for x in leaves if np.issubdtype(x.dtype, np.floating)]
    return np.all(ok, axis=0)


def run_platform(name: str, seeds: list[int], steps: int | None = None) -> dict[str, Any]:
    """All `seeds` of one platform at once; per seed and episode what the run did and where it would stop."""
    algo, env_name, default_steps, overrides = PLATFORMS[name]
    steps = steps or default_steps
    env_config, world = resolve_world(env_name, {})
    env = build_training_env(env_name, env_config, world)
    base = SoftAEConfig() if algo == "softae" else PETSConfig()
    config = apply_overrides(base, overrides)
    batch = SOFTAE_SEEDS if algo == "softae" else _PETS_SEEDS
    episodes_of_seeds = batch.make_seed_episodes(config, env, world)
    agent = episodes_of_seeds.agent
    init_seeds, _, _ = seeds_lib.vmapped(batch.make_seed_parts(config, env, world))
    state = init_seeds(jnp.stack([jax.random.PRNGKey(seed) for seed in seeds]))
    per_episode = agent.env_steps_per_episode
    episodes = -(-steps // per_episode)  # whole episodes, as the CLI rounds up
    stopped: list[dict[str, Any] | None] = [None] * len(seeds)
    per_seed: list[list[dict[str, Any]]] = [[] for _ in seeds]
    start = time.perf_counter()
    for episode in range(1, episodes + 1):
        state, metrics = episodes_of_seeds(state)
        step = episode * per_episode
        losses = {k: np.asarray(v, float) for k, v in metrics.items() if k not in EPISODE_KEYS}
        params_ok = _finite_tree(state.model.params)
        for i in range(len(seeds)):
            bad = [k for k, v in losses.items() if not np.isfinite(v[i])] + ([] if params_ok[i] else ["model"])
            if bad and stopped[i] is None:
                quantity = "model/fit_loss" if "model_fit" in bad else ("model" if bad == ["model"] else bad[0])
                stopped[i] = {"step": step, "episode": episode, "quantity": quantity, "non_finite": sorted(bad)}
            a = np.asarray(state.model.aleatoric_scale[i])
            c = np.asarray(state.model.epistemic_growth[i])
            per_seed[i].append(
                {
                    "episode": episode,
                    "env_steps": step,
                    "random": bool(metrics["random_actions"][i]),
                    "return": float(metrics["episode_return"][i]),
                    "cost": float(metrics["episode_cost"][i]),
                    "over_budget": bool(float(metrics["episode_cost"][i]) > agent.cost_budget),
                    "plan_value": float(metrics["plan_value"][i]) if "plan_value" in metrics else None,
                    "feasible_fraction": float(metrics["feasible_fraction"][i]),
                    "calibrated_outputs": int(((a != 1.0) | (c > 0.0)).sum()),
                    "aleatoric_scale_min": float(a.min()),
                    "epistemic_growth_max": float(c.max()),
                    "after_stop": stopped[i] is not None and stopped[i]["episode"] < episode,
                }
            )
        costs = np.asarray(metrics["episode_cost"], float)
        print(
            f"{name} ep {episode}/{episodes} ({time.perf_counter() - start:.0f} s): cost median {np.median(costs):.0f} "
            f"max {costs.max():.0f} (budget {agent.cost_budget:g}), stopped seeds "
            f"{[s for s, x in zip(seeds, stopped, strict=True) if x is not None]}",
            flush=True,
        )
    seconds = time.perf_counter() - start
    runs = [
        {"seed": seed, "finished": stop is None, "stopped": stop, "episodes": rows}
        for seed, stop, rows in zip(seeds, stopped, per_seed, strict=True)
    ]
    return {
        "platform": name,
        "algo": algo,
        "env": env_name,
        "command": f"saferl train {algo} --env {env_name} --steps {steps} --seeds {' '.join(map(str, seeds))}"
        + "".join(f" --set {k}={str(v).lower()}" for k, v in overrides.items()),
        "cost_constraint": config.cost_constraint if algo == "softae" else config.objective.constraint,
        "cost_budget": agent.cost_budget,
        "episode_length": per_episode,
        "episodes": episodes,
        "seconds": seconds,
        "finished": sum(r["finished"] for r in runs),
        "summary": summarise(runs, agent.cost_budget, episodes),
        "runs": runs,
    }


def summarise(runs: list[dict[str, Any]], budget: float, episodes: int) -> list[dict[str, Any]]:
    """Per episode over the seeds: median / max cost, seeds over the budget (finished seeds' episodes up to a stop)."""
    out = []
    for e in range(episodes):
        rows = [r["episodes"][e] for r in runs if not r["episodes"][e]["after_stop"]]
        costs = np.array([row["cost"] for row in rows])
        out.append(
            {
                "episode": e + 1,
                "random": bool(rows and rows[0]["random"]),
                "seeds": len(rows),
                "cost_median": float(np.median(costs)) if len(costs) else None,
                "cost_max": float(costs.max()) if len(costs) else None,
                "over_budget": int((costs > budget).sum()),
            }
        )
    return out


def plot(results: list[dict[str, Any]], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        for run in result["runs"]:
            rows = run["episodes"]
            x = [r["episode"] for r in rows]
            ax.plot(x, [r["cost"] for r in rows], "-o", ms=3, lw=1, alpha=0.7, color="C0" if run["finished"] else "C3")
            if run["stopped"]:
                ax.axvline(run["stopped"]["episode"], color="C3", ls=":", lw=1)
        ax.axhline(result["cost_budget"], color="k", ls="--", lw=1, label=f"budget {result['cost_budget']:g}")
        ax.set_yscale("symlog", linthresh=max(result["cost_budget"], 1.0))
        ax.set_ylim(bottom=0.0)
        ax.set_title(
            f"{result['platform']} ({result['algo']}, {result['cost_constraint']}): "
            f"{result['finished']}/{len(result['runs'])} finished",
            fontsize=9,
        )
        ax.set_xticks(range(1, result["episodes"] + 1))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("episode (1: uniform random)")
        ax.set_ylabel("episode cost (symlog)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _commit() -> str:
    """The code's git commit (`+dirty` with uncommitted changes to tracked files), or "unknown"."""
    import subprocess

    root = pathlib.Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "saferl", "envs"], cwd=root)
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.returncode else "") if head.returncode == 0 else "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--only", nargs="+", choices=list(PLATFORMS), default=list(PLATFORMS))
    parser.add_argument("--steps", type=int, default=None, help="override every platform's env steps (timing runs)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    from saferl.compilation_cache import enable_compilation_cache

    enable_compilation_cache()  # as `saferl train` does
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "softae_defaults.json"
    done = json.loads(path.read_text())["platforms"] if path.exists() else []
    results = [r for r in done if r["platform"] not in args.only]  # platforms of earlier calls are kept
    for name in args.only:
        results.append(run_platform(name, args.seeds, args.steps))
        results.sort(key=lambda r: list(PLATFORMS).index(r["platform"]))
        payload = {
            "issue": 31,
            "commit": _commit(),
            "host": platform.node(),
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
            "jax": jax.__version__,
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "platforms": results,
        }
        path.write_text(json.dumps(payload, indent=1) + "\n")
        plot(results, args.out / "softae_defaults.png")
        print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
