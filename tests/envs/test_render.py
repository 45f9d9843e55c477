"""Headless rendering writes a video (MP4, or GIF without ffmpeg); skipped only if no GL context exists."""

import jax
import jax.numpy as jp
import numpy as np
import pytest

import envs
from envs.render import RenderError, render_rollout, trajectory_qpos


def test_render_rollout_writes_a_non_empty_video(tmp_path):
    env = envs.make("point_goal")
    state = jax.jit(env.reset)(jax.random.PRNGKey(0))

    def step(s, a):
        s = env.step(s, a)
        return s, s

    _, traj = jax.jit(lambda s: jax.lax.scan(step, s, jp.tile(jp.array([1.0, 0.3]), (6, 1))))(state)
    try:
        path = render_rollout(env, traj, tmp_path / "rollout.mp4", fps=10, height=48, width=64)
    except RenderError as err:
        pytest.skip(f"no OpenGL context on this machine: {err}")
    assert path.exists() and path.stat().st_size > 1000
    assert path.suffix in (".mp4", ".gif")


def test_trajectory_qpos_accepts_states_or_arrays_and_rejects_batches():
    assert trajectory_qpos(np.zeros((5, 3))).shape == (5, 3)
    with pytest.raises(ValueError, match=r"\[T, nq\]"):
        trajectory_qpos(np.zeros((5, 4, 3)))
