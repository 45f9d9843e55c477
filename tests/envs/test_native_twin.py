"""Native twin: numpy API, episode end and info, dynamics shifts, speed for 1 kHz control. Its agreement with MJX
on every env is checked on the env contract's rollout (test_env_contract.py), which compiles each env's MJX
program once for both."""

import time

import numpy as np
import pytest

import envs
from envs.native import NativeTwin


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
