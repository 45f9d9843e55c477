# %% [markdown]
# # 01 — Environments
#
# A tour of the registered MJX environments (`envs.names()`), the soft robots included: their sizes, what
# their safety cost measures, the episode budget, the named dynamics shifts and the tasks a model-based run
# can plan for zero-shot (`saferl tasks ENV`). Then one rendered frame per env and their throughput: the
# committed numbers of `experiments/benchmarks/env_throughput.py` and a tiny live measurement with compile
# time shown apart from run time.
#
# Budget: `SAFERL_NOTEBOOK_BUDGET=small` (default; the tests) renders each model's reference pose and measures
# pendulum only; `full` (`make notebooks`) renders a random initial state of each env (markers included) and
# measures every env.

# %%
import pathlib
import sys

ROOT = next(p for p in (pathlib.Path.cwd(), *pathlib.Path.cwd().parents) if (p / "pyproject.toml").is_file())
sys.path.insert(0, str(ROOT / "experiments" / "notebooks"))
import nbhelpers as nb

BUDGET = nb.setup()

# %% [markdown]
# ## The registry
# `envs.make(name)` builds an env with its default config; the soft robots live in `envs/soft/`.
# Same table as `saferl envs`.

# %%
import envs

ENVS = {name: envs.make(name) for name in envs.names()}
nb.table(
    ["env", "kind", "obs", "action", "episode (steps)", "dt (s)", "safety cost", "budget", "shift presets"],
    [
        [
            name,
            "soft robot" if type(env).__module__.startswith("envs.soft") else "rigid",
            env.observation_size,
            env.action_size,
            env.episode_length,
            round(float(env.dt), 4),
            env.cost_description,
            f"{env.cost_budget:g}",
            ", ".join(sorted(envs.shift_presets(name))) or "-",
        ]
        for name, env in ENVS.items()
    ],
)

# %% [markdown]
# ## Tasks
# Rewards of `(obs, action, next_obs)` that SoftAE or PETS plan for zero-shot on a learned model
# (`saferl eval RUN --task NAME`). Envs without tasks have only their own reward.

# %%
for name, env in ENVS.items():
    tasks = env.tasks()
    print(f"{name}: {len(tasks)} task(s)")
    for task_name, task in sorted(tasks.items()):
        print(f"    {task_name}: {task.description}")

# %% [markdown]
# ## Renders
# One frame per env with `envs.render.render_frames` (the renderer behind `saferl render`). Headless rendering
# needs EGL (or OSMesa); without it the reason is printed and the tour goes on.

# %%
import matplotlib.pyplot as plt
import mujoco
import numpy as np

from envs.render import RenderError, render_frames


def first_frame(env):
    """One RGB frame [H, W, 3]: the model's reference pose (small) or a random initial state (full)."""
    if BUDGET == "full":
        from envs.native import NativeTwin  # jits env.reset: tens of seconds for the soft arm

        twin = NativeTwin(env, seed=0)
        twin.reset()
        return render_frames(env, twin.mj_data.qpos[None], info=twin.info)[0]
    data = mujoco.MjData(env.mj_model)
    mujoco.mj_forward(env.mj_model, data)
    return render_frames(env, data.qpos[None])[0]


frames, reasons = {}, {}
for name, env in ENVS.items():
    try:
        frames[name] = first_frame(env)
    except (RenderError, mujoco.FatalError, RuntimeError, ImportError) as err:
        reasons[name] = f"{type(err).__name__}: {err}"
for name, reason in reasons.items():
    print(f"no render of {name}: {reason}")
if frames:
    columns = min(len(frames), 5)
    rows = -(-len(frames) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 2.6 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (name, frame) in zip(axes.flat, frames.items(), strict=False):
        axis.imshow(frame)
        axis.set_title(name)
    fig.tight_layout()
    nb.show(fig)
print(f"rendered {len(frames)} of {len(ENVS)} envs")

# %% [markdown]
# ## Throughput: committed results
# `experiments/benchmarks/env_throughput.py` (`make bench`): MJX env steps per second at several batch sizes
# with compile time, against native MuJoCo (`mujoco.rollout`). Measured on 2 shared CPU cores; the JSON keeps
# the load average next to the timings.

# %%
throughput = nb.load_json(nb.BENCHMARK_RESULTS / "env_throughput.json", "make bench")
if throughput:
    machine = throughput["machine"]
    print(
        f"env_throughput: jax {machine['jax']}, mujoco {machine['mujoco']}, {machine['cpu_count']} CPUs, "
        f"load before/after {machine['load_average_before'][0]:.1f}/{machine['load_average_after'][0]:.1f}"
    )
    nb.table(
        ["env", "batch", "MJX steps/s", "compile s", "native rollout steps/s"],
        [
            [name, int(batch), run["steps_per_s"], run["compile_s"], run.get("rollout_steps_per_s", "-")]
            for name, result in throughput["envs"].items()
            for batch, run in result["mjx"].items()
        ],
    )
    nb.image(nb.BENCHMARK_RESULTS / "env_throughput.png")

# %% [markdown]
# ## Throughput: a tiny live measurement
# A batch of envs reset and stepped under `vmap`/`lax.scan` with uniform random actions, jitted once. The
# first number is compilation (or loading the program from the persistent cache in `.jax_cache`: a second
# run of this notebook is much faster), the second the best of three runs of the compiled program.

# %%
import jax

BATCH, STEPS = (16, 50) if BUDGET == "small" else (64, 200)
measured = ["pendulum"] if BUDGET == "small" else list(ENVS)


def make_rollout(env):
    def rollout(key):
        reset_key, action_key = jax.random.split(key)
        state = jax.vmap(env.reset)(jax.random.split(reset_key, BATCH))
        actions = jax.random.uniform(action_key, (STEPS, BATCH, env.action_size), minval=-1.0, maxval=1.0)
        state, rewards = jax.lax.scan(lambda s, a: (jax.vmap(env.step)(s, a), s.reward), state, actions)
        return rewards.sum(0)

    return rollout


live = []
for name in measured:
    compile_s, run_s, returns, _ = nb.compile_and_run(make_rollout(ENVS[name]), jax.random.PRNGKey(0))
    assert np.isfinite(np.asarray(returns)).all(), name
    live.append([name, BATCH, STEPS, round(compile_s, 2), round(run_s, 3), round(BATCH * STEPS / run_s)])
nb.table(["env", "batch", "steps", "compile s", "run s", "env steps/s"], live)
