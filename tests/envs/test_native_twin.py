"""Native twin: native `mujoco.mj_step` agrees with MJX, numpy API, speed for 1 kHz control."""

import time

import jax
import jax.numpy as jp
import numpy as np
import pytest

import envs
from envs.native import NativeTwin

STEPS = 100


@pytest.mark.parametrize("name", envs.names())
def test_native_twin_agrees_with_mjx_on_an_open_loop_rollout(name):
    env = envs.make(name)
    actions = np.random.default_rng(0).uniform(-1, 1, (STEPS, env.action_size)).astype(np.float32)
    twin = NativeTwin(env, seed=7)
    first_obs = twin.reset()
    # the twin's first reset uses split(PRNGKey(seed))[1]
    state = jax.jit(env.reset)(jax.random.split(jax.random.PRNGKey(7))[1])
    np.testing.assert_array_equal(first_obs, np.asarray(state.obs))

    def step(s, a):
        s = env.step(s, a)
        return s, (s.obs, s.reward, s.info["cost"], s.pipeline_state.qpos)

    _, (obs, reward, cost, qpos) = jax.jit(lambda s, a: jax.lax.scan(step, s, a))(state, jp.asarray(actions))
    native = [twin.step(a) for a in actions]
    # float32 MJX vs float64 native over 100 Euler steps: measured ≤ 1e-5; 1e-3 leaves room for
    # platform differences while a wrong ctrl map, substep count or formula gives errors ≥ 1e-2.
    np.testing.assert_allclose(np.stack([n[0] for n in native]), obs, atol=1e-3)
    np.testing.assert_allclose([n[1] for n in native], reward, atol=1e-3)
    np.testing.assert_array_equal([n[2] for n in native], cost)
    assert not any(n[3] for n in native)
    np.testing.assert_allclose(twin.mj_data.qpos, qpos[-1], atol=1e-3)
    assert twin.state_vector().shape == (env.mj_model.nq + env.mj_model.nv,)


def test_native_twin_is_fast_enough_for_1khz_control():
    twin = NativeTwin(envs.make("safe_cartpole"), seed=0)
    twin.reset()
    action = np.zeros(1, np.float32)
    for _ in range(20):
        twin.step(action)
    n = 300
    # this process's CPU time, not the wall clock: other processes on a loaded machine do not count against
    # the twin (the suite's timed checks hold under load; speed itself is measured by the benchmarks)
    start = time.process_time()
    for _ in range(n):
        twin.step(action)
    per_step_us = (time.process_time() - start) / n * 1e6
    # measured 40–150 µs/step (wall) on the shared 2-core CPU; 1 kHz control leaves 1000 µs per step
    assert per_step_us < 1000, per_step_us


@pytest.mark.slow
def test_native_twin_signals_done_at_the_episode_end_and_keeps_info():
    twin = NativeTwin(envs.make("point_goal", episode_length=5), seed=1)
    twin.reset()
    dones = [twin.step(np.array([1.0, 0.0]))[3] for _ in range(5)]
    assert dones == [False] * 4 + [True]
    assert twin.info["hazards"].shape == (8, 2)
    with pytest.raises(RuntimeError, match="before reset"):
        NativeTwin(envs.make("pendulum")).step(np.zeros(1))


def test_native_twin_follows_a_dynamics_shift():
    nominal = NativeTwin(envs.make("safe_cartpole"), seed=0)
    shifted = NativeTwin(envs.dynamics_shift("safe_cartpole", body_mass_scale={"pole": 3.0}), seed=0)
    nominal.reset(), shifted.reset()
    for _ in range(30):
        a, b = nominal.step(np.array([1.0])), shifted.step(np.array([1.0]))
    assert np.abs(a[0] - b[0]).max() > 1e-2
