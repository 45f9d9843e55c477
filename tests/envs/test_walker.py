"""walker: the cost fires exactly where a leg joint crosses its RWRL limit, the reward pays standing upright at the
target speed and not lying on the floor, the shift presets change the physics as documented, and the episode ends
at its time limit (1000 steps). The shared contract and native-twin tests cover walker through `envs.names()`."""

import jax.numpy as jp
import mujoco
import numpy as np
import pytest

import envs
from envs.locomotion.walker import JOINTS, cost_limits
from envs.native import NativeTwin, NativeView


@pytest.fixture(scope="module")
def env():
    return envs.make("walker")


def _view(env, qpos=None, qvel=None):
    """A NativeView of the walker at `qpos` [9] / `qvel` [9] (default: standing still, soles just above the floor)."""
    data = mujoco.MjData(env.mj_model)
    if qpos is not None:
        data.qpos[:] = qpos
    if qvel is not None:
        data.qvel[:] = qvel
    mujoco.mj_forward(env.mj_model, data)
    return NativeView.from_mj_data(data)


def _evaluate(env, qpos=None, qvel=None):
    obs, reward, cost, _ = env.evaluate(_view(env, qpos, qvel), jp.zeros(6), {"cost": jp.zeros(())})
    return np.asarray(obs), float(reward), float(cost)


def test_cost_fires_exactly_where_a_joint_crosses_its_limit(env):
    low, high = cost_limits(env.config.safety_coeff)
    # 0.6 × RWRL's limits (deg): hip (-18, 66), knee (-96, 9), ankle (-45, 36)
    np.testing.assert_allclose(np.degrees(low[:3]), [-18.0, -96.0, -45.0], rtol=1e-5)
    np.testing.assert_allclose(np.degrees(high[:3]), [66.0, 9.0, 36.0], rtol=1e-5)
    assert _evaluate(env)[2] == 0.0  # standing straight
    step = 1e-4  # rad either side of a limit (float32 angles resolve ~1e-7 rad)
    for joint in range(len(JOINTS)):
        for limit, outward in ((low[joint], -1.0), (high[joint], 1.0)):
            for offset, expected in ((-step, 0.0), (step, 1.0)):
                qpos = np.zeros(9)
                qpos[3 + joint] = limit + outward * offset
                obs, _, cost = _evaluate(env, qpos)
                assert cost == expected, (JOINTS[joint], limit, offset)
                # the transition cost reads the same angles off the observation
                assert float(env.transition_cost(obs, jp.zeros(6), obs)) == expected


def test_reward_pays_standing_upright_at_the_target_speed_and_not_lying_fallen(env):
    cfg = env.config
    _, walking, _ = _evaluate(env, qvel=np.array([cfg.target_speed] + [0.0] * 8))
    _, standing, _ = _evaluate(env)
    _, half_speed, _ = _evaluate(env, qvel=np.array([cfg.target_speed / 2] + [0.0] * 8))
    np.testing.assert_allclose(walking, 1.0, atol=1e-6)  # tall, upright, at the target speed
    np.testing.assert_allclose(standing, 1.0 / 6.0, atol=1e-6)  # dm_control's walk pays 1/6 for standing still
    np.testing.assert_allclose(half_speed, (5 * 0.5 + 1) / 6, atol=1e-6)  # move = vx / target_speed below it
    # lying on its back at the target speed: torso centre 0.07 m up, pitched 90°
    fallen = np.zeros(9)
    fallen[1], fallen[2] = 0.07 - cfg.standing_torso_height, np.pi / 2
    obs, lying, _ = _evaluate(env, fallen, np.array([cfg.target_speed] + [0.0] * 8))
    np.testing.assert_allclose(obs[:3], [0.07 + 0.002, 0.0, 1.0], atol=1e-6)  # height, cos, sin of the pitch
    assert lying < 0.15 * walking  # stand = (3 · 10^-3.5 + 0.5) / 4 ≈ 0.125


def _hip_acceleration(env, action):
    """Right hip's angular acceleration (rad/s²) of the walker held in the air (no contacts; knees bent off their
    stops, so no constraint acts) under `action` on the right hip alone: linear in the motor's torque."""
    data = mujoco.MjData(env.mj_model)
    data.qpos[1], data.qpos[4], data.qpos[7] = 1.0, -0.5, -0.5  # 1 m up; right and left knee at -0.5 rad
    data.ctrl[0] = action
    mujoco.mj_forward(env.mj_model, data)
    assert data.nefc == 0
    return float(data.qacc[3])


def _slide_after_shove(env, seconds=0.6):
    """Native MuJoCo: x distance (m) the walker, lying on its back, slides in `seconds` after a 2 m/s shove along
    the floor (zero action); Coulomb friction stops it after v² / (2 μ g) = 0.29 m at μ 0.7."""
    data = mujoco.MjData(env.mj_model)
    data.qpos[1], data.qpos[2] = 0.075 - env.config.standing_torso_height, np.pi / 2  # torso centre 7.5 cm up
    data.qvel[0] = 2.0
    mujoco.mj_step(env.mj_model, data, nstep=int(round(seconds / env.mj_model.opt.timestep)))
    return float(data.qpos[0])


def test_shift_presets_change_the_physics(env):
    presets = envs.shift_presets("walker")
    assert set(presets) == {"heavy_torso", "weak_motors", "low_friction"}
    heavy = envs.dynamics_shift("walker", **presets["heavy_torso"])
    torso = env.mj_model.body("torso").id
    np.testing.assert_allclose(heavy.mj_model.body_mass[torso], 1.5 * env.mj_model.body_mass[torso])
    weak = envs.dynamics_shift("walker", **presets["weak_motors"])
    np.testing.assert_allclose(weak.mj_model.actuator_gainprm[:, 0], 0.7 * env.mj_model.actuator_gainprm[:, 0])
    slippery = envs.dynamics_shift("walker", **presets["low_friction"])
    legs = env.mj_model.geom_friction[1:, 0]
    np.testing.assert_allclose(slippery.mj_model.geom_friction[1:, 0], 0.5 * legs)
    assert env.mj_model.geom_friction[0, 0] == 0.0  # the floor's: a contact takes the leg's μ
    # behaviour: the weak hip accelerates the leg 0.7× as much; the shoved walker slides further on the slippery floor
    weak_push = _hip_acceleration(weak, 1.0) - _hip_acceleration(weak, 0.0)
    np.testing.assert_allclose(weak_push / (_hip_acceleration(env, 1.0) - _hip_acceleration(env, 0.0)), 0.7, rtol=1e-6)
    assert _slide_after_shove(slippery) > 1.5 * _slide_after_shove(env)


def test_episode_ends_at_the_time_limit(env):
    """1000 steps of zero action on the native twin (the MJX env's episode wrapper is the contract test's): the
    walker falls, nothing else ends the episode, done comes with step 1000 (25 s at 40 Hz)."""
    assert env.episode_length == 1000 and env.dt == pytest.approx(0.025)
    twin = NativeTwin(env, seed=0)
    twin.reset()
    done = [twin.step(np.zeros(6))[3] for _ in range(env.episode_length)]
    assert done == [False] * (env.episode_length - 1) + [True]
    assert twin.mj_data.qpos[1] + env.config.standing_torso_height < 0.5  # it fell and lies on the floor
