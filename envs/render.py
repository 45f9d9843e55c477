"""Headless rendering of rollouts to MP4 (GIF if imageio's ffmpeg plugin is missing) with `mujoco.Renderer`.

`envs` sets `MUJOCO_GL=egl` when no display is present (before mujoco is imported); EGL works on headless
Linux with Mesa. If no GL backend can create a context, `RenderError` says so and how to fix it.

    states = rollout  # brax State stacked over time (leading axis T), or qpos [T, nq]
    render_rollout(env, states, "rollout.mp4", fps=50)
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import imageio.v2 as imageio
import jax
import mujoco
import numpy as np

from envs.base import MjxEnv, RenderMarker
from envs.tasks import Task


class RenderError(RuntimeError):
    """No OpenGL context could be created (e.g. no display and EGL unavailable)."""


def trajectory_qpos(states_or_qpos: Any) -> np.ndarray:
    """qpos over time [T, nq] from a time-stacked brax State / mjx.Data (leading axis T) or an array."""
    pipeline = getattr(states_or_qpos, "pipeline_state", states_or_qpos)
    qpos = getattr(pipeline, "qpos", pipeline)
    qpos = np.asarray(qpos, np.float64)
    if qpos.ndim != 2:
        raise ValueError(f"expected qpos over time [T, nq] (one env, no batch axis), got shape {qpos.shape}")
    return qpos


def _make_renderer(model: mujoco.MjModel, height: int, width: int) -> mujoco.Renderer:
    try:
        return mujoco.Renderer(model, height=height, width=width)
    except Exception as err:  # noqa: BLE001 — mujoco raises several types depending on the backend
        backend = os.environ.get("MUJOCO_GL", "<unset>")
        raise RenderError(
            f"cannot create an OpenGL context for rendering (MUJOCO_GL={backend}, "
            f"DISPLAY={os.environ.get('DISPLAY', '<unset>')}): {err}. On a headless machine set MUJOCO_GL=egl "
            "before mujoco is imported (import envs first) and make sure Mesa/NVIDIA EGL is installed; "
            "osmesa needs libosmesa6."
        ) from None


def _add_markers(scene: mujoco.MjvScene, markers: list[RenderMarker]) -> None:
    """Append `markers` to `scene` as decoration geoms (as many as the scene has room for)."""
    identity = np.eye(3).ravel()
    for marker in markers[: scene.maxgeom - scene.ngeom]:
        geom_type = getattr(mujoco.mjtGeom, f"mjGEOM_{marker.geom_type.upper()}")
        mujoco.mjv_initGeom(
            scene.geoms[scene.ngeom],
            geom_type,
            np.asarray(marker.size, np.float64),
            np.asarray(marker.pos, np.float64),
            identity,
            np.asarray(marker.rgba, np.float32),
        )
        scene.ngeom += 1


def render_frames(
    env: MjxEnv,
    states_or_qpos: Any,
    height: int = 240,
    width: int = 320,
    camera: str | int = -1,
    info: dict[str, Any] | None = None,
    task: Task | None = None,
) -> np.ndarray:
    """RGB frames [T, height, width, 3] uint8 of a trajectory (qpos over time, see `trajectory_qpos`).

    Env markers (e.g. point_goal's goal and hazards, which are not in the physics model) are drawn from
    `info` (default: the states' info at the first step) through the env's `render_markers(info, task)`;
    with `task` (a zero-shot task's video) the task's markers (its target, its path) replace the env's goal.
    """
    qpos = trajectory_qpos(states_or_qpos)
    model = env.mj_model
    data = mujoco.MjData(model)
    if info is None and hasattr(states_or_qpos, "info"):
        info = jax.tree.map(lambda x: np.asarray(x)[0], states_or_qpos.info)
    markers = env.render_markers(info, task) if info is not None and hasattr(env, "render_markers") else []
    if isinstance(camera, str):
        camera = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera) if camera else -1
    elif camera == -1 and model.ncam:
        camera = 0
    renderer = _make_renderer(model, height, width)
    frames = np.empty((len(qpos), height, width, 3), np.uint8)
    try:
        for t, q in enumerate(qpos):
            data.qpos[:] = q
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera=camera)
            _add_markers(renderer.scene, markers)
            frames[t] = renderer.render()
    finally:
        renderer.close()
    return frames


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float) -> pathlib.Path:
    """Write frames [T, H, W, 3] as MP4 (ffmpeg) or, without ffmpeg, as GIF next to it; returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() != ".gif":
        try:
            imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=1)
            return path
        except (ImportError, ValueError, RuntimeError):
            path = path.with_suffix(".gif")
    imageio.mimwrite(path, list(frames), duration=1000.0 / fps, loop=0)
    return path


def render_rollout(
    env: MjxEnv,
    states_or_qpos: Any,
    path: str | os.PathLike,
    fps: float | None = None,
    height: int = 240,
    width: int = 320,
    camera: str | int = -1,
    task: Task | None = None,
) -> pathlib.Path:
    """Render a single-env trajectory to `path` (MP4, or GIF without ffmpeg); returns the file written.
    `task`: draw this task's markers in place of the env's episode goal (see `render_frames`)."""
    frames = render_frames(env, states_or_qpos, height=height, width=width, camera=camera, task=task)
    return write_video(frames, path, fps or 1.0 / env.dt)
