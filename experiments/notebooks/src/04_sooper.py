# %% [markdown]
# # 04 — SOOPER and its baselines on shifted systems
#
# SOOPER (safe online optimism for pessimistic exploration with a prior): a constrained prior policy trained
# in simulation, then MPC around it on the "real" (shifted) system behind a shield that falls back to the prior
# whenever the pessimistic model says the episode's cost budget would be exceeded. The table comes from
# `experiments/sooper_table.py`: one prior per env, every method × seed for a few real episodes on the env's
# shift preset, the paper's metrics:
#
# * safety margin d − max_n J_c(π_n) over every real episode n (≥ 0 ⇔ the budget d was never exceeded),
# * normalised return J(π_N) / J(π̂) (last episode over the prior's).
#
# Nothing here is recomputed: a live SOOPER run needs a trained prior (≈ 3 min of SAC on 2 cores) and then
# minutes of MPC, beyond both budgets of this notebook; `make demo` runs it end to end.

# %%
import pathlib
import sys

ROOT = next(p for p in (pathlib.Path.cwd(), *pathlib.Path.cwd().parents) if (p / "pyproject.toml").is_file())
sys.path.insert(0, str(ROOT / "experiments" / "notebooks"))
import nbhelpers as nb

BUDGET = nb.setup()
print("live SOOPER run: skipped in every budget (needs a trained prior; run `make demo` for one)")

# %% [markdown]
# ## The table
# Mean ± std over seeds per env × method; "paper (SOOPER)" is the paper's normalised return / safety margin.

# %%
from IPython.display import Markdown, display

TABLES = {
    "sooper_table": "the main table",
    "sooper_table_point_goal_al_prior": "point_goal from an augmented-Lagrangian prior (over budget itself)",
}
results = {}
for name, what in TABLES.items():
    data = nb.load_json(nb.EXPERIMENT_RESULTS / f"{name}.json", "python experiments/sooper_table.py")
    if data is None:
        continue
    results[name] = data
    print(f"{name}: {len(data['runs'])} runs ({what})")
    for env_name in sorted({r["env"] for r in data["runs"]}):
        settings = data["settings"][env_name]
        print(
            f"    {env_name}: shift '{settings['shift']}', {settings['episodes']} real episodes, prior "
            f"{settings['prior']['steps']} SAC steps with {settings['prior']['overrides']}"
        )
    if data.get("prior_note"):
        print("    note:", data["prior_note"])
    display(Markdown((nb.EXPERIMENT_RESULTS / f"{name}.md").read_text()))

# %% [markdown]
# ## Safety margin against normalised return
# Every run of the main table is one point (seeds of a method share a colour): up and right is better; left of
# the dashed line the method exceeded the budget in some episode.

# %%
import matplotlib.pyplot as plt
import numpy as np

if "sooper_table" in results:
    runs = results["sooper_table"]["runs"]
    env_names = sorted({r["env"] for r in runs})
    methods = sorted({r["method"] for r in runs})
    colours = dict(zip(methods, plt.cm.tab10.colors, strict=False))
    fig, axes = plt.subplots(1, len(env_names), figsize=(5.5 * len(env_names), 4), squeeze=False)
    for axis, env_name in zip(axes[0], env_names, strict=False):
        for method in methods:
            mine = [r for r in runs if r["env"] == env_name and r["method"] == method]
            axis.scatter(
                [r["safety_margin"] for r in mine],
                [r["normalized_return"] for r in mine],
                color=colours[method],
                label=method,
                s=30,
            )
        paper = results["sooper_table"]["paper"].get(env_name)
        if paper:
            axis.scatter(
                [paper["safety_margin"]],
                [paper["normalized_return"]],
                marker="*",
                s=160,
                color="k",
                label="paper (SOOPER)",
            )
        axis.axvline(0.0, color="k", ls="--", lw=1)
        axis.set_xlabel("safety margin (≥ 0: never over budget)")
        axis.set_ylabel("normalised return")
        axis.set_title(f"{env_name} (shift: {results['sooper_table']['settings'][env_name]['shift']})")
        axis.legend(fontsize=7)
    fig.tight_layout()
    nb.show(fig)
    nb.table(
        ["env", "method", "runs", "runs never over budget", "median normalised return"],
        [
            [
                env_name,
                method,
                len(mine),
                sum(r["safety_margin"] >= 0 for r in mine),
                float(np.median([r["normalized_return"] for r in mine])),
            ]
            for env_name in env_names
            for method in methods
            for mine in [[r for r in runs if r["env"] == env_name and r["method"] == method]]
        ],
    )

# %% [markdown]
# ## Return and cost per episode
# The figures `experiments/sooper_table.py` wrote (mean over seeds, budget line dashed).

# %%
for name in TABLES:
    nb.image(nb.EXPERIMENT_RESULTS / f"{name}.png")
