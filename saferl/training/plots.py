"""Plots of a run: episode return and episode cost vs env steps (cost with the budget line), as PNGs."""

from __future__ import annotations

import math
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from saferl.training.logger import read_metrics


def write_plots(run_dir: pathlib.Path, cost_budget: float, title: str = "") -> list[pathlib.Path]:
    """Write `plots/return.png` and `plots/cost.png` from `metrics.csv`; return the paths written."""
    metrics_path = run_dir / "metrics.csv"
    if not metrics_path.is_file():
        return []
    rows, _ = read_metrics(metrics_path)
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    written = []
    for column, label, budget in (
        ("episode_return", "episode return", None),
        ("episode_cost", "episode cost", cost_budget),
    ):
        points = [(r["env_steps"], r[column]) for r in rows if not math.isnan(r.get(column, math.nan))]
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        if points:
            ax.plot(*zip(*points, strict=False), marker=".", label=label)
        if budget is not None and budget > 0:
            ax.axhline(budget, color="red", linestyle="--", label=f"budget {budget:g}")
        ax.set_xlabel("env steps")
        ax.set_ylabel(label)
        ax.set_title(title or run_dir.name, fontsize=9)
        ax.grid(alpha=0.3)
        if points or (budget is not None and budget > 0):
            ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        path = plots / f"{column.removeprefix('episode_')}.png"
        tmp = path.with_name(path.stem + ".tmp.png")
        fig.savefig(tmp)
        plt.close(fig)
        tmp.replace(path)
        written.append(path)
    return written
