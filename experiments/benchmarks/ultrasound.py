"""B-mode images/s of `envs.ultrasound.bmode.render` (jit + vmap over probe poses) vs batch size, env steps/s of
`us_navigate` (state and pixel observations), and a gallery of images next to the label slice of the same plane.
Writes ultrasound.json + ultrasound.png into `--out` and docs/media/ultrasound_gallery.png.

    python experiments/benchmarks/ultrasound.py [--quick] [--no-env] [--gallery-only] [--out DIR]

Images are 64 × 64 (linear probe, 4 cm × 8 cm) of the default abdomen phantom (64 × 64 × 40 voxels) from random
poses over the body, plus one 200 × 150 point. `compile_s` is the first call (trace + XLA compile + one run); the
rate is the best of `repeats` timed calls, each `calls` back-to-back batches; `images_per_cpu_s` divides by the
CPU time of this process instead (all its threads), which a busy shared machine barely changes. Env steps include MJX
physics (10 substeps), observation, reward and cost (random actions, lax.scan).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jp
import numpy as np

import envs
from envs.ultrasound.bmode import BModeConfig, image_plane_points, render
from envs.ultrasound.phantom import TISSUES, PhantomConfig, labels_at, make_phantom

ROOT = pathlib.Path(__file__).resolve().parents[2]
TISSUE_COLORS = ("#000000", "#f2c6a0", "#f5e663", "#c0392b", "#f7f7f7", "#8e44ad", "#2e86de")


def rotation(tilt_x: float, tilt_y: float, yaw: float) -> np.ndarray:
    """[3, 3] probe orientation: yaw about world z, then tilts about x and y (columns: local axes in world)."""

    def about(axis, angle):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [k for k in range(3) if k != axis]
        m = np.eye(3)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        return m

    return about(2, yaw) @ about(0, tilt_x) @ about(1, tilt_y)


def random_poses(batch: int, seed: int = 0) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(positions [B, 3] m within ±5 cm of the centre, 1 mm into the skin; rotations [B, 3, 3] with tilts ≤ 0.3
    rad and any yaw; forces [B] N in [1, 15])."""
    rng = np.random.default_rng(seed)
    positions = np.concatenate([rng.uniform(-0.05, 0.05, (batch, 2)), np.full((batch, 1), -0.001)], axis=1)
    rotations = np.stack([rotation(*rng.uniform(-0.3, 0.3, 2), rng.uniform(-np.pi, np.pi)) for _ in range(batch)])
    forces = rng.uniform(1.0, 15.0, batch)
    return tuple(jp.asarray(a, jp.float32) for a in (positions, rotations, forces))


def timed(fn: Callable, args: tuple, calls: int, repeats: int) -> tuple[float, float, float]:
    """(compile + first call s, best wall seconds per call, best CPU seconds per call (all threads of this
    process: what the work costs, whatever else the machine runs) over `repeats` × `calls` calls)."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - start
    best, best_cpu = np.inf, np.inf
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            out = fn(*args)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - start) / calls)
        best_cpu = min(best_cpu, (time.process_time() - start_cpu) / calls)
    return compile_s, best, best_cpu


def render_row(phantom, config: BModeConfig, batch: int, repeats: int) -> dict[str, float]:
    fn = jax.jit(jax.vmap(lambda p, r, f: render(phantom, p, r, f, config)))
    calls = max(2, min(50, 4096 // batch))
    compile_s, seconds, cpu_seconds = timed(fn, random_poses(batch), calls, repeats)
    return {
        "batch": batch,
        "height": config.height,
        "width": config.width,
        "geometry": config.geometry,
        "compile_s": round(compile_s, 3),
        "images_per_s": round(batch / seconds, 1),
        "ms_per_batch": round(1e3 * seconds, 3),
        "images_per_cpu_s": round(batch / cpu_seconds, 1),
    }


def env_row(name: str, observation: str, batch: int, steps: int, repeats: int) -> dict[str, float]:
    env = envs.make(name, observation=observation)

    @jax.jit
    def run(key):
        reset_key, action_key = jax.random.split(key)
        state = jax.vmap(env.reset)(jax.random.split(reset_key, batch))

        def step(state, key):
            action = jax.random.uniform(key, (batch, env.action_size), minval=-1, maxval=1)
            state = jax.vmap(env.step)(state, action)
            return state, state.reward.sum()

        return jax.lax.scan(step, state, jax.random.split(action_key, steps))[1].sum()

    compile_s, seconds, cpu_seconds = timed(run, (jax.random.PRNGKey(0),), 1, repeats)
    return {
        "env": name,
        "observation": observation,
        "batch": batch,
        "steps": steps,
        "compile_s": round(compile_s, 3),
        "env_steps_per_s": round(batch * steps / seconds, 1),
        "env_steps_per_cpu_s": round(batch * steps / cpu_seconds, 1),
    }


def run_benchmark(quick: bool, with_env: bool) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "jax": jax.__version__,
            "device": str(jax.devices()[0]),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
        },
        "quick": quick,
    }
    phantom = make_phantom(PhantomConfig())
    repeats = 3 if quick else 5
    batches = [1, 16, 64, 256] if quick else [1, 4, 16, 64, 256, 1024]
    results["render"] = []
    for batch in batches:
        results["render"].append(render_row(phantom, BModeConfig(), batch, repeats))
        print(results["render"][-1], flush=True)
    results["render"].append(render_row(phantom, BModeConfig(height=200, width=150), 64, repeats))
    results["render"].append(render_row(phantom, BModeConfig(geometry="fan"), 64, repeats))
    print(results["render"][-2:], flush=True)
    results["env"] = []
    if with_env:
        for observation in ("state", "pixels"):
            for batch in [1, 64] if quick else [1, 16, 64, 256]:
                results["env"].append(env_row("us_navigate", observation, batch, 10 if quick else 20, 2))
                print(results["env"][-1], flush=True)
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    at_scale = [
        r
        for r in results["render"]
        if (r["height"], r["width"], r["geometry"]) == (64, 64, "linear") and r["batch"] >= 64
    ]
    slowest = min(r["images_per_s"] for r in at_scale)
    results["summary"] = {
        "images_per_s_64x64_batch_ge_64_min": slowest,
        "images_per_cpu_s_64x64_batch_ge_64_min": min(r["images_per_cpu_s"] for r in at_scale),
        "target_images_per_s": 1000,
        "meets_target": slowest >= 1000,
    }
    return results


def plot(results: dict[str, Any], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if results["env"] else 1, figsize=(11 if results["env"] else 6, 4.2), squeeze=False)
    ax = axes[0, 0]
    rows = [r for r in results["render"] if (r["height"], r["width"], r["geometry"]) == (64, 64, "linear")]
    ax.loglog([r["batch"] for r in rows], [r["images_per_s"] for r in rows], "o-", label="64 × 64 linear")
    ax.loglog(
        [r["batch"] for r in rows],
        [r["images_per_cpu_s"] for r in rows],
        "o:",
        color="C0",
        alpha=0.6,
        label="64 × 64 per CPU-second",
    )
    for r, marker, label in ((results["render"][-2], "s", "200 × 150"), (results["render"][-1], "^", "64 × 64 fan")):
        ax.loglog([r["batch"]], [r["images_per_s"]], marker, label=label)
    ax.axhline(1000, color="gray", ls="--", lw=1, label="target 1000 /s")
    ax.set(
        xlabel="batch (probe poses per call)",
        ylabel="images / s",
        title=f"B-mode render, {results['machine']['cpu_count']} CPU threads "
        f"(load {results['machine']['load_average_before'][0]:g})",
    )
    ax.legend(fontsize=8)
    if results["env"]:
        ax = axes[0, 1]
        for observation in ("state", "pixels"):
            rows = [r for r in results["env"] if r["observation"] == observation]
            ax.loglog([r["batch"] for r in rows], [r["env_steps_per_s"] for r in rows], "o-", label=observation)
        ax.set(xlabel="batch (envs)", ylabel="env steps / s", title="us_navigate (MJX + render)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def gallery(path: pathlib.Path) -> None:
    """Label slice (left) and B-mode image (right) of the same plane for several probe poses and presets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    abdomen, spine = make_phantom(PhantomConfig(preset="abdomen")), make_phantom(PhantomConfig(preset="spine"))
    center = np.asarray(abdomen.organ_center)
    vertebra_y = float(spine.target[1])
    linear, fan = BModeConfig(height=128, width=96), BModeConfig(height=128, width=96, geometry="fan")
    views = [  # (title, phantom, position, rotation, force N, config)
        ("abdomen, over the organ", abdomen, (center[0], center[1], -0.001), rotation(0, 0, 0), 8.0, linear),
        (
            "abdomen, across the ribs",
            abdomen,
            (center[0], center[1] + 0.015, -0.001),
            rotation(0, 0, np.pi / 2),
            8.0,
            linear,
        ),
        ("abdomen, tilted 0.3 rad", abdomen, (center[0] - 0.01, center[1], -0.001), rotation(0, 0.3, 0), 8.0, linear),
        ("abdomen, light contact (1 N)", abdomen, (center[0], center[1], -0.001), rotation(0, 0, 0), 1.0, linear),
        ("spine, transverse (fan)", spine, (0.0, vertebra_y, -0.001), rotation(0, 0, 0), 8.0, fan),
        ("spine, paramedian sagittal", spine, (0.014, vertebra_y, -0.001), rotation(0, 0, np.pi / 2), 8.0, linear),
    ]
    cmap = ListedColormap(TISSUE_COLORS)
    fig, axes = plt.subplots(2, 6, figsize=(16, 6.4))
    for n, (title, phantom, position, rot, force, config) in enumerate(views):
        position, rot = jp.asarray(position, jp.float32), jp.asarray(rot, jp.float32)
        labels = labels_at(phantom, image_plane_points(position, rot, config))
        image = render(phantom, position, rot, force, config)
        width_cm = 100 * (config.aperture if config.geometry == "linear" else config.fan_angle * config.depth)
        extent = (-width_cm / 2, width_cm / 2, -100 * config.depth, 0)
        ax_labels, ax_image = axes[n // 3, 2 * (n % 3)], axes[n // 3, 2 * (n % 3) + 1]
        ax_labels.imshow(
            np.asarray(labels), cmap=cmap, vmin=-0.5, vmax=len(TISSUES) - 0.5, extent=extent, interpolation="nearest"
        )
        ax_image.imshow(np.asarray(image), cmap="gray", vmin=0, vmax=1, extent=extent)
        ax_labels.set_title(f"{title}\nlabels", fontsize=8)
        ax_image.set_title(
            f"B-mode, {force:g} N" + (" (beam angle × depth)" if config.geometry == "fan" else ""), fontsize=8
        )
        for ax in (ax_labels, ax_image):
            ax.tick_params(labelsize=6)
        ax_labels.set_ylabel("depth (cm)", fontsize=7)
    fig.legend(
        handles=[Patch(color=c, label=t) for c, t in zip(TISSUE_COLORS, TISSUES, strict=False)],
        loc="lower center",
        ncol=len(TISSUES),
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes and repeats (about a minute)")
    parser.add_argument("--no-env", action="store_true", help="skip the us_navigate env steps/s")
    parser.add_argument("--gallery-only", action="store_true", help="only write the gallery PNG")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent / "results")
    parser.add_argument("--gallery", type=pathlib.Path, default=ROOT / "docs" / "media" / "ultrasound_gallery.png")
    args = parser.parse_args()
    gallery(args.gallery)
    print(f"wrote {args.gallery}")
    if args.gallery_only:
        return
    results = run_benchmark(args.quick, not args.no_env)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ultrasound.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "ultrasound.png")
    print(json.dumps(results["summary"]))
    print(f"wrote {args.out / 'ultrasound.json'} and {args.out / 'ultrasound.png'}")


if __name__ == "__main__":
    main()
