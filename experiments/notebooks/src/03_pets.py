# %% [markdown]
# # 03 — PETS
#
# Probabilistic ensembles with trajectory sampling (Chua et al. 2018): the ensemble of notebook 02 refitted
# after every episode, and an iCEM planner (MPC) over TS∞ particle rollouts of it. First a tiny live run
# through the CLI (`saferl train pets`, called in this process so its compiled programs come from the
# persistent cache), then the committed benchmark results.
#
# Budget: `small` runs 3 episodes of 20 steps with a toy-sized ensemble and planner (it shows the loop, not
# learning); `full` runs 8 pendulum episodes of 200 steps with PETS's default CPU sizes.

# %%
import pathlib
import sys

ROOT = next(p for p in (pathlib.Path.cwd(), *pathlib.Path.cwd().parents) if (p / "pyproject.toml").is_file())
sys.path.insert(0, str(ROOT / "experiments" / "notebooks"))
import nbhelpers as nb

BUDGET = nb.setup()

# %% [markdown]
# ## A live run: `saferl train pets --env pendulum`
# The first episode is random; then each episode plans every decision on the model fitted so far. The command
# line below is exactly what runs (into a temporary directory).

# %%
import shlex
import tempfile

from saferl.cli.main import main as saferl

OUT = pathlib.Path(tempfile.mkdtemp(prefix="saferl-notebook-pets-"))
if BUDGET == "small":
    TOY = {
        "model.num_members": 2,
        "model.num_elites": 2,
        "model.hidden_sizes": "[32,32]",
        "model.epochs": 3,
        "model.batch_size": 32,
        "rollout.num_particles": 2,
        "planner.horizon": 5,
        "planner.population": 32,
        "planner.num_elites": 4,
        "planner.iterations": 2,
        "action_repeat": 2,
    }
    ARGS = [
        "--steps",
        "60",
        *[a for k, v in TOY.items() for a in ("--set", f"{k}={v}")],
        "--set-env",
        "episode_length=20",
    ]
else:
    ARGS = ["--steps", "1600"]
COMMAND = ["train", "pets", "--env", "pendulum", "--seed", "0", "--quiet", "--out", str(OUT), *ARGS]
print("saferl " + shlex.join(COMMAND))
with nb.Stopwatch("saferl train pets") as wall:
    saferl(COMMAND)

# %% [markdown]
# ## What the run logged
# `metrics.csv` has one row per episode. `compile_s` is the compilation of the collection program (planner +
# env); the first fit's seconds include compiling the fit. Everything else is run time.

# %%
import matplotlib.pyplot as plt

from saferl.training.logger import read_metrics

run_dir = next(OUT.glob("pets-pendulum-*"))
rows = read_metrics(run_dir / "metrics.csv")[0]
nb.table(
    ["episode", "env steps", "return", "random", "fit epochs", "fit s", "plan ms/step", "model 1σ coverage"],
    [
        [
            int(r["episode"]),
            int(r["env_steps"]),
            r["episode_return"],
            bool(r["random_actions"]),
            int(r["fit_epochs"]),
            r["fit_s"],
            r["plan_ms_per_step"],
            r["model_calibrated_coverage_1sigma"],
        ]
        for r in rows
    ],
)
compile_s = rows[0]["compile_s"] + rows[0]["fit_s"]
print(
    f"compile ≈ {compile_s:.1f} s (collect {rows[0]['compile_s']:.1f} s + first fit), "
    f"everything else (tracing, collecting, fitting, planning) ≈ {wall.seconds - compile_s:.1f} s "
    f"of {wall.seconds:.1f} s wall"
)
fig, axis = plt.subplots(figsize=(5, 3))
axis.plot([r["episode"] for r in rows], [r["episode_return"] for r in rows], marker="o")
axis.set_xlabel("episode")
axis.set_ylabel("episode return")
axis.set_title(f"PETS on pendulum ({BUDGET} budget)")
nb.show(fig)

# %% [markdown]
# ## Committed: PETS vs model-free on safe_cartpole
# `experiments/benchmarks/pets_vs_modelfree.py`: PETS (cost ignored) for 10 episodes against PPO and SAC given
# a multiple of PETS's env steps.

# %%
pvm = nb.load_json(
    nb.BENCHMARK_RESULTS / "pets_vs_modelfree.json", "python experiments/benchmarks/pets_vs_modelfree.py"
)
if pvm:
    print("pets_vs_modelfree:", "; ".join(i["command"] for i in pvm["invocations"][:2]), "...")
    nb.table(
        [
            "baseline",
            "seeds",
            "baseline steps / PETS steps",
            "PETS best return",
            "baseline final return",
            "ratio (mean)",
            "ratio (worst seed)",
        ],
        [
            [
                a["baseline"],
                len(a["seeds"]),
                a["steps_multiplier"],
                a["pets_best_return_mean"],
                a["baseline_final_return_mean"],
                a["ratio_mean"],
                a["ratio_min"],
            ]
            for a in pvm["aggregate"]
        ],
    )
    nb.image(nb.BENCHMARK_RESULTS / "pets_vs_modelfree.png")

# %% [markdown]
# ## Committed: time to solve and planning latency
# `experiments/benchmarks/pets_time_to_solve.py` starts every seed from a cold compilation cache, so compile
# time is part of its wall time; `experiments/benchmarks/models_planning.py` times one planned action.

# %%
tts = nb.load_json(
    nb.BENCHMARK_RESULTS / "pets_time_to_solve.json", "python experiments/benchmarks/pets_time_to_solve.py"
)
if tts:
    print(f"pets_time_to_solve: {tts['env']}, solved at return ≥ {tts['solved_threshold']:g}")
    nb.table(
        [
            "variant",
            "seeds",
            "wall s (median)",
            "compile s (median)",
            "seconds to solved (median)",
            "episode solved",
            "plan ms/step (median)",
            "fit s (median)",
        ],
        [
            [
                name,
                len(s["seeds"]),
                s["wall_s_median"],
                s["compile_s_median"],
                s["seconds_to_solved_median"],
                ", ".join(str(e) for e in s["episode_solved"]),
                s["plan_ms_per_step_median"],
                s["fit_s_median"],
            ]
            for name, s in tts["summary"].items()
        ],
    )
    nb.image(nb.BENCHMARK_RESULTS / "pets_time_to_solve.png")
planning = nb.load_json(
    nb.BENCHMARK_RESULTS / "models_planning.json", "python experiments/benchmarks/models_planning.py"
)
if planning:
    print("models_planning:", planning["command"])
    nb.table(
        ["population", "horizon", "plan ms/action", "bare forward ms", "overhead ×", "compile s"],
        [
            [r["population"], r["horizon"], r["plan_ms"], r["forward_ms"], r["overhead"], r["compile_s"]]
            for r in planning["latency"]
        ],
    )
    nb.image(nb.BENCHMARK_RESULTS / "models_planning.png")
