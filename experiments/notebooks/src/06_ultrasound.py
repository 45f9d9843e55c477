# %% [markdown]
# # 06 — Robotic ultrasound: phantom, B-mode images, the probe envs
#
# A probe on a 6-DoF servo mount presses on a procedural body phantom (`envs/ultrasound/`): the phantom is a
# label volume drawn from a seed (skin, fat, muscle, bone, an organ, vessels) with per-tissue acoustic
# properties; `envs.ultrasound.bmode.render` turns a probe pose and contact force into a B-mode image in pure
# JAX (reflection at impedance jumps, attenuation and shadowing along each beam, speckle fixed to the tissue,
# time-gain compensation, no image without contact). The tasks `us_navigate`, `us_coverage` and `us_surgery`
# cost 1 per step when the contact force (MJX's contact constraint force) exceeds 20 N or the probe tilts past
# 0.5 rad.
#
# Budget: `small` (the tests) renders and times the renderer only; `full` (`make notebooks`) also compiles and
# steps `us_navigate` with pixel observations. Throughput over batch sizes comes from
# `experiments/benchmarks/ultrasound.py` and the learning curves (PPO-Lagrangian on the state vs on the B-mode
# image + state, vs random actions) from `experiments/ultrasound_learning.py` (committed results).

# %%
import pathlib
import sys

ROOT = next(p for p in (pathlib.Path.cwd(), *pathlib.Path.cwd().parents) if (p / "pyproject.toml").is_file())
sys.path.insert(0, str(ROOT / "experiments" / "notebooks"))
import nbhelpers as nb

BUDGET = nb.setup()

# %% [markdown]
# ## Phantoms
# `make_phantom(PhantomConfig(seed, preset))` is deterministic per seed. Tissue fractions per preset, and the
# label slice through the organ's centre (x-z plane).

# %%
import matplotlib.pyplot as plt
import numpy as np

from envs.ultrasound import phantom as ph

phantoms = {preset: ph.make_phantom(ph.PhantomConfig(seed=0, preset=preset)) for preset in ph.PRESETS}
rows = []
for preset, body in phantoms.items():
    labels = np.asarray(body.labels)
    rows.append([preset, *[f"{100 * np.mean(labels == i):.1f} %" for i in range(len(ph.TISSUES))]])
nb.table(["preset", *ph.TISSUES], rows)

fig, axes = plt.subplots(1, len(phantoms), figsize=(4 * len(phantoms), 3))
for ax, (preset, body) in zip(axes, phantoms.items(), strict=False):
    j = int(ph.world_to_voxel(body, np.asarray(body.organ_center)[None])[0, 1])
    ax.imshow(np.asarray(body.labels)[:, j, :].T[::-1], cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
    ax.set_title(f"{preset}: labels at y = organ centre")
    ax.set_xlabel("x voxel")
    ax.set_ylabel("depth (voxels, skin on top)")
nb.show(fig)

# %% [markdown]
# ## B-mode images
# The probe stands above the organ's centre, pointing down, pressing with 0, 2 and 10 N (no image at ≤ 0.5 N,
# full quality from 5 N), and tilted by 0.3 rad at 10 N.

# %%
import jax
import jax.numpy as jp

from envs.ultrasound import bmode

body = phantoms["abdomen"]
config = bmode.BModeConfig()
center = np.asarray(body.organ_center)
position = jp.asarray([center[0], center[1], 0.0])


def rotation(tilt) -> jp.ndarray:
    """Probe axis tilted by `tilt` rad about world y (local z up, beams along local −z); traceable (vmap)."""
    c, s = jp.cos(tilt), jp.sin(tilt)
    return jp.asarray([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], jp.float32)


views = {"0 N (no contact)": (0.0, 0.0), "2 N": (0.0, 2.0), "10 N": (0.0, 10.0), "10 N, tilt 0.3 rad": (0.3, 10.0)}
render = jax.jit(lambda pos, rot, force: bmode.render(body, pos, rot, force, config))
images = {
    name: np.asarray(render(position, rotation(tilt), jp.float32(force))) for name, (tilt, force) in views.items()
}
for name, image in images.items():
    print(f"{name}: mean intensity {image.mean():.3f}, max {image.max():.3f}")
fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.2))
for ax, (name, image) in zip(axes, images.items(), strict=False):
    ax.imshow(
        image,
        cmap="gray",
        vmin=0,
        vmax=1,
        extent=[-config.aperture / 2 * 100, config.aperture / 2 * 100, config.depth * 100, 0],
    )
    ax.set_title(name)
    ax.set_xlabel("lateral (cm)")
    ax.set_ylabel("depth (cm)")
nb.show(fig)

# %% [markdown]
# ## Renderer throughput, compile vs run
# A batch of 64 poses rendered under one `jit(vmap(render))`; the first call compiles (or loads the program from
# the persistent cache), the others only run.

# %%
batch = 64
key_xy, key_tilt = jax.random.split(jax.random.PRNGKey(0))
positions = jp.concatenate(
    [position[None, :2] + jax.random.uniform(key_xy, (batch, 2), minval=-0.03, maxval=0.03), jp.zeros((batch, 1))],
    axis=1,
)
rotations = jax.vmap(rotation)(jax.random.uniform(key_tilt, (batch,), minval=-0.3, maxval=0.3))
forces = jp.full((batch,), 8.0)
batched = jax.vmap(lambda pos, rot, force: bmode.render(body, pos, rot, force, config))
compile_s, run_s, out, _ = nb.compile_and_run(batched, positions, rotations, forces)
print(
    f"render batch {batch} at {config.height}x{config.width}: compile ≈ {compile_s:.1f} s, run {run_s * 1e3:.1f} ms "
    f"-> {batch / run_s:,.0f} images/s"
)

# %% [markdown]
# ## The probe envs
# Sizes of the three tasks (state observations by default; `observation="pixels"` gives `{image, state}`).
# With the full budget, 16 `us_navigate` envs with pixel observations take 20 random target poses each.

# %%
import envs

nb.table(
    ["env", "observation", "action", "budget / episode", "safety cost"],
    [
        [
            name,
            envs.make(name).observation_size,
            envs.make(name).action_size,
            envs.make(name).cost_budget,
            envs.make(name).cost_description,
        ]
        for name in ("us_navigate", "us_coverage", "us_surgery")
    ],
)
print("pixels:", envs.make("us_navigate", observation="pixels").observation_size)

# %%
if BUDGET == "full":
    env = envs.make("us_navigate", observation="pixels")
    n_envs, n_steps = 16, 20

    def rollout(key):
        state = jax.vmap(env.reset)(jax.random.split(key, n_envs))

        def step(state, key):
            action = jax.random.uniform(key, (n_envs, env.action_size), minval=-1.0, maxval=1.0)
            state = jax.vmap(env.step)(state, action)
            return state, (state.obs["image"][:, :, :, 0], state.info["cost"])

        return jax.lax.scan(step, state, jax.random.split(key, n_steps))[1]

    compile_s, run_s, (frames, costs), _ = nb.compile_and_run(rollout, jax.random.PRNGKey(1), repeats=1)
    print(
        f"us_navigate pixels, {n_envs} envs x {n_steps} steps: compile ≈ {compile_s:.1f} s, run {run_s:.2f} s "
        f"-> {n_envs * n_steps / run_s:,.0f} env steps/s; mean cost per step {float(costs.mean()):.3f}"
    )
    fig, axes = plt.subplots(1, 4, figsize=(12, 3))
    for ax, t in zip(axes, (0, 5, 10, 19), strict=False):
        ax.imshow(np.asarray(frames[t, 0]), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"env 0, step {t + 1}")
        ax.axis("off")
    nb.show(fig)
else:
    print("us_navigate rollout: full budget only (compiling the MJX env takes about a minute on 2 cores)")

# %% [markdown]
# ## Committed benchmark: images/s and env steps/s vs batch
# From `python experiments/benchmarks/ultrasound.py` (machine and load in the JSON).

# %%
results = nb.load_json(nb.BENCHMARK_RESULTS / "ultrasound.json", "python experiments/benchmarks/ultrasound.py")
if results is not None:
    print(
        f"ultrasound: {results['machine']['processor']}, {results['machine']['cpu_count']} CPUs, "
        f"load {results['machine']['load_average_before'][0]:.1f}"
    )
    nb.table(
        ["batch", "H x W", "geometry", "compile (s)", "images/s", "images per CPU-s"],
        [
            [
                r["batch"],
                f"{r['height']}x{r['width']}",
                r["geometry"],
                r["compile_s"],
                r["images_per_s"],
                r["images_per_cpu_s"],
            ]
            for r in results["render"]
        ],
    )
    nb.table(
        ["env", "observation", "batch", "compile (s)", "env steps/s"],
        [[r["env"], r["observation"], r["batch"], r["compile_s"], r["env_steps_per_s"]] for r in results["env"]],
    )
    nb.image(nb.BENCHMARK_RESULTS / "ultrasound.png")
nb.image(ROOT / "docs" / "media" / "ultrasound_gallery.png")

# %% [markdown]
# ## Learning on `us_navigate`: PPO-Lagrangian, state vs pixels vs random
# `experiments/ultrasound_learning.py` trains `saferl train ppo --constraint lagrangian` in chunks (`--resume`)
# and evaluates each checkpoint as `saferl eval` does: success rate (episodes that end within 5 mm / 5° of the
# standard plane) and episode cost against the budget of 10 unsafe steps per 200.

# %%
learning = nb.load_json(nb.EXPERIMENT_RESULTS / "ultrasound_learning.json", "python experiments/ultrasound_learning.py")
if learning is not None:
    for run in learning["runs"]:
        print(
            f"{run['variant']} seed {run['seed']}: ultrasound_learning.py {' '.join(run['argv'])} "
            f"(started {run['started']}, load {run['load_average'][0]:.1f})"
        )
    last = {}
    for r in learning["rows"]:
        last[(r["variant"], r["seed"])] = r  # rows are sorted by env steps: keep each run's final evaluation
    nb.table(
        ["variant", "seed", "env steps", "success rate", "success at any step", "return", "cost", "budget"],
        [
            [
                r["variant"],
                r["seed"],
                r["env_steps"],
                r["success_rate"],
                r["success_any_rate"],
                r["mean_return"],
                r["mean_cost"],
                r["cost_budget"],
            ]
            for r in last.values()
        ],
    )
    nb.image(nb.EXPERIMENT_RESULTS / "ultrasound_learning.png")
