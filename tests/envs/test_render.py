"""Headless rendering writes a video (MP4, or GIF without ffmpeg); skipped only if no GL context exists."""

import os
import subprocess
import sys

import jax
import jax.numpy as jp
import numpy as np
import pytest

import envs
from envs.render import RenderError, render_rollout, trajectory_qpos


@pytest.mark.slow
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


def test_rendering_without_any_gl_backend_raises_a_clear_render_error(tmp_path):
    # MUJOCO_GL=disable is what `envs` chooses on a headless machine without libEGL
    script = (
        "import envs\n"
        "from envs.render import RenderError, render_rollout\n"
        "env = envs.make('pendulum')\n"
        "try:\n"  # the model's reference pose: no JAX program to run before the renderer fails
        f"    render_rollout(env, [env.mj_model.qpos0] * 2, {str(tmp_path / 'x.gif')!r})\n"
        "except RenderError as err:\n"
        "    print('RENDER-ERROR', err)\n"
    )
    env = {**os.environ, "MUJOCO_GL": "disable", "JAX_PLATFORMS": "cpu"}
    env.pop("DISPLAY", None)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "RENDER-ERROR cannot create an OpenGL context" in out.stdout and "MUJOCO_GL=disable" in out.stdout
    assert not (tmp_path / "x.gif").exists()
