# %% [markdown]
# # 05 — SoftAE: active exploration, then zero-shot tasks
#
# SoftAE explores without a task: iCEM on the ensemble maximises the information gain
# Σ ½·log(1 + σ²_epi / σ²_ale) of the visited transitions, the ensemble is refitted after every episode, and the
# learned model is then used to plan for tasks it never saw (`saferl eval RUN --task NAME`). Here a tiny live
# comparison on pendulum through the library path of `experiments/softae_study.py` (the agent, its episode
# loop and `saferl.agents.softae.evaluation`): information gain against uniform random exploration, scored by
#
# * the held-out prediction error of the model's mean 1 and 10 decisions ahead on test trajectories from a broad
#   behaviour mix (RMS over observation dims, each in units of its std on the test data), and
# * the zero-shot return of the task `swing_up` ((cos θ + 1)/2 per step) planned on each explored model,
#
# then the committed study results, if they exist.
#
# Budget: `small` uses toy sizes and 3 episodes of 40 steps (it shows the pipeline; the numbers are noise);
# `full` uses SoftAE's default CPU sizes and 4 episodes of 200 steps (the slow learning test's setting).

# %%
import pathlib
import sys

ROOT = next(p for p in (pathlib.Path.cwd(), *pathlib.Path.cwd().parents) if (p / "pyproject.toml").is_file())
sys.path.insert(0, str(ROOT / "experiments" / "notebooks"))
import nbhelpers as nb

BUDGET = nb.setup()

# %% [markdown]
# ## Explore
# Each strategy: 1 uniform-random episode, then its own episodes, refitting after each one (`EpisodeRunner`,
# the loop of `saferl train softae`). The first episodes include compiling the collection and fit programs.

# %%
import time

import jax
import numpy as np

import envs
from saferl.agents.pets.train import EpisodeRunner
from saferl.agents.softae import SoftAEConfig, evaluation, make_agent
from saferl.config import apply_overrides

if BUDGET == "small":
    EPISODE_LENGTH, EPISODES, TEST_EPISODES, EVAL_EPISODES = 40, 3, 5, 1
    SIZES = {
        "model.num_members": 2,
        "model.num_elites": 2,
        "model.hidden_sizes": [32, 32],
        "model.epochs": 3,
        "model.batch_size": 32,
        "task_rollout.num_particles": 2,
        "planner.horizon": 5,
        "planner.population": 32,
        "planner.num_elites": 4,
        "planner.iterations": 2,
    }
else:
    EPISODE_LENGTH, EPISODES, TEST_EPISODES, EVAL_EPISODES = 200, 4, 10, 3
    SIZES = {}
TASK = "swing_up"
world = envs.TrainingEnvConfig()
env = envs.make_training_env("pendulum", envs.make_config("pendulum", episode_length=EPISODE_LENGTH), world)

explored, timings = {}, []
for strategy in ("info_gain", "random"):
    agent = make_agent(apply_overrides(SoftAEConfig(), {**SIZES, "exploration": strategy}), env, world)
    runner, state = EpisodeRunner(agent), agent.init(jax.random.PRNGKey(0))
    for episode in range(1, EPISODES + 1):
        start = time.perf_counter()
        state, row = runner(state)
        timings.append(
            [
                strategy,
                episode,
                round(time.perf_counter() - start, 2),
                row.get("compile_s", float("nan")),
                round(row["episode_return"], 2),
            ]
        )
    explored[strategy] = (agent, state)
nb.table(["strategy", "episode", "wall s", "collect compile s (once per strategy)", "env return"], timings)

# %% [markdown]
# ## Held-out prediction error and a zero-shot task
# The same test trajectories score both models; the zero-shot planner of `swing_up` runs on the true env.

# %%
first_agent = explored["info_gain"][0]
with nb.Stopwatch("test trajectories (compile + run)"):
    test_set = evaluation.held_out_trajectories(first_agent, jax.random.PRNGKey(123), TEST_EPISODES)
scores = []
for strategy, (agent, state) in explored.items():
    start = time.perf_counter()
    errors = evaluation.prediction_errors(state.model, *test_set, horizons=(1, 10))
    zero_shot = evaluation.zero_shot_returns(agent, state.model, [TASK], EVAL_EPISODES, seed=1000)[TASK]
    speeds = np.abs(np.asarray(jax.device_get(state.buffer.data.next_obs[:, 2])))[: int(state.buffer.size)]
    scores.append(
        [
            strategy,
            errors[1],
            errors[10],
            zero_shot["mean_return"],
            float(np.quantile(speeds, 0.95)),
            round(time.perf_counter() - start, 1),
        ]
    )
nb.table(
    [
        "strategy",
        "error 1 decision",
        "error 10 decisions",
        f"zero-shot {TASK} return (max {EPISODE_LENGTH})",
        "95 % quantile of explored |θ̇|",
        "eval s (compile + run)",
    ],
    scores,
)

import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(8, 3))
names = [row[0] for row in scores]
for offset, (column, label) in enumerate(((1, "1 decision"), (2, "10 decisions"))):
    axes[0].bar(np.arange(len(names)) + 0.4 * offset, [row[column] for row in scores], width=0.4, label=label)
axes[0].set_xticks(np.arange(len(names)) + 0.2, names)
axes[0].set_ylabel("held-out error (test-data stds)")
axes[0].legend(fontsize=8)
axes[1].bar(names, [row[3] for row in scores], color="tab:green")
axes[1].set_ylabel(f"zero-shot {TASK} return")
fig.suptitle(f"pendulum, {EPISODES} exploration episodes of {EPISODE_LENGTH} steps ({BUDGET} budget)")
fig.tight_layout()
nb.show(fig)

# %% [markdown]
# ## Committed: the SoftAE study
# `experiments/softae_study.py`: every env, world variant, strategy and seed at several exploration budgets.

# %%
study = nb.load_json(nb.EXPERIMENT_RESULTS / "softae_study.json", "python experiments/softae_study.py")
if study:
    print(
        "softae_study:",
        study["meta"]["command"],
        "|",
        study["meta"]["machine"],
        f"| {study['meta']['wall_s'] / 3600:.1f} h",
    )
    nb.table(
        [
            "env",
            "variant",
            "strategy",
            "episodes",
            "task",
            "seeds",
            "error 1 decision",
            "error 10 decisions",
            "zero-shot return (eval episodes)",
            "exploration cost",
        ],
        [
            [
                s["env"],
                s["variant"],
                s["strategy"] + (f" ({s['settings']})" if s.get("settings") else ""),
                s["episodes"],
                s["task"],
                s["seeds"],
                s["error_1"],
                s["error_10"],
                f"{s['zero_shot_return']:.1f} ({s.get('zero_shot_episodes') or '?'})",
                s["exploration_cost"],
            ]
            for s in study["summary"]
        ],
    )
    nb.image(nb.EXPERIMENT_RESULTS / "softae_study.png")
