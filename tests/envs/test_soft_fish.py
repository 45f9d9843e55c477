"""soft_fish: a tail beat swims forward (a head-ward wave does not), water drag slows a coasting fish in MJX as
in native MuJoCo, the channel cost, the tasks, the shift presets and domain randomisation, config validation
and the solver settings. One compiled MJX rollout (vmapped, fixed length) serves every physics test."""

import jax
import jax.numpy as jp
import mujoco
import numpy as np
import pytest

import envs
from envs.soft import soft_fish
from envs.wrappers import DomainRandomizationConfig
from envs.wrappers.domain_randomization import DomainRandomizationWrapper, randomize

STEPS = 150  # env steps per rollout (3 s)
MUJOCO_DEFAULTS = {"solver": "newton", "iterations": 100, "ls_iterations": 50, "warmstart": True}


def _wave(steps: int, frequency: float = 3.0, lag: float = 0.8) -> np.ndarray:
    """Actions [steps, 3]: a bending wave; lag > 0 travels head → tail (a tail beat), lag < 0 tail → head."""
    t = np.arange(steps)[:, None] * 0.02
    return np.sin(2 * np.pi * frequency * t - lag * np.arange(3)).astype(np.float32)


@pytest.fixture(scope="module")
def env():
    return envs.make("soft_fish")


@pytest.fixture(scope="module")
def rollout(env):
    """`rollout(qpos [B, 6], qvel [B, 6], actions [B, STEPS, 3])` -> (obs, reward, cost) [B, STEPS, ...] and the
    final qpos [B, 6]; one compile for the module."""

    def one(qpos, qvel, actions):
        state = env.reset(jax.random.PRNGKey(0))
        state = state.replace(pipeline_state=env.pipeline_init(qpos, qvel))

        def step(s, a):
            s = env.step(s, a)
            return s, (s.obs, s.reward, s.info["cost"])

        final, out = jax.lax.scan(step, state, actions)
        return out, final.pipeline_state.qpos

    batched = jax.jit(jax.vmap(one))
    return lambda qpos, qvel, actions: jax.tree.map(
        np.asarray, batched(jp.asarray(qpos, jp.float32), jp.asarray(qvel, jp.float32), jp.asarray(actions, jp.float32))
    )


def _native_rollout(env, qpos, qvel, actions) -> np.ndarray:
    """Native MuJoCo qpos [T, 6] from (qpos, qvel) under `actions` [T, 3]."""
    model = env.mj_model
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:] = qpos, qvel
    out = []
    for action in actions:
        low, high = model.actuator_ctrlrange.T
        data.ctrl[:] = low + (np.asarray(action) + 1) / 2 * (high - low)
        mujoco.mj_step(model, data, nstep=env.n_substeps)
        out.append(data.qpos.copy())
    return np.array(out)


@pytest.fixture(scope="module")
def swims(rollout):
    """Rollouts from rest at the origin: tail beat, head-ward wave, no action, and from y = ±0.6 / 0.3 m."""
    qpos = np.zeros((6, 6))
    qpos[3, 1], qpos[4, 1], qpos[5, 1] = 0.6, -0.6, 0.3
    actions = np.stack([_wave(STEPS), _wave(STEPS, lag=-0.8)] + [np.zeros((STEPS, 3))] * 4)
    (obs, reward, cost), final = rollout(qpos, np.zeros((6, 6)), actions)
    return obs, reward, cost, final


def test_a_tail_beat_swims_forward_and_a_head_ward_wave_does_not(swims):
    obs, reward, _, final = swims
    forward, backward, still = final[0, 0], final[1, 0], final[2, 0]
    # measured: 1.04 m in 3 s with the tail beat, 0.02 m with the same wave travelling head-ward (its thrust
    # and drag cancel), 0 without action
    assert forward > 0.7, forward
    assert backward < 0.1 * forward and abs(still) < 1e-3
    assert abs(final[0, 1]) < 0.2  # it swims roughly straight down the channel
    assert reward[0].mean() > 0.15 > reward[2].mean()
    assert np.isfinite(obs).all()


def test_water_drag_slows_a_coasting_fish_in_mjx_as_in_native_mujoco(env, rollout):
    qvel = np.zeros(6)
    qvel[0] = 0.5  # m/s along the body axis
    (obs, _, _), _ = rollout(np.zeros((1, 6)), qvel[None], np.zeros((1, STEPS, 3)))
    speed = obs[0, :, soft_fish.VX]
    # measured: 0.5 m/s → ≈ 0.2 m/s after 1 s; it coasts 0.50 m in 3 s
    assert speed[49] < 0.25 and speed[-1] < 0.1 and (np.diff(speed) <= 1e-6).all()  # slows, never speeds up
    native = _native_rollout(env, np.zeros(6), qvel, np.zeros((STEPS, 3)))
    # the drag is MJX's own inertia-box fluid model: float32 MJX vs float64 native measured ≤ 1e-6 m;
    # without fluid forces MJX would coast 0.5 m/s · 3 s = 1.5 m instead of 0.50 m
    np.testing.assert_allclose(obs[0, :, soft_fish.X], native[:, 0], atol=1e-4)


def test_cost_fires_only_outside_the_channel(swims):
    _, _, cost, _ = swims
    assert (cost[3] == 1).all() and (cost[4] == 1).all()  # |y| = 0.6 > 0.5
    assert (cost[5] == 0).all() and (cost[0] == 0).all()  # 0.3 m off-centre, and the straight swim


def test_tasks_reward_the_transitions_that_do_them(env, swims):
    tasks = env.tasks()
    assert set(tasks) == {"swim_forward", "turn", "hold_station"} and tasks is env.tasks()
    obs = swims[0]
    swim, still = (obs[0, :-1], obs[0, 1:]), (obs[2, :-1], obs[2, 1:])
    no_action = np.zeros((STEPS - 1, 3), np.float32)
    forward = tasks["swim_forward"]
    assert forward(swim[0], no_action, swim[1]).mean() > 0.15 > forward(still[0], no_action, still[1]).mean()
    # synthetic transitions (leading axes broadcast): a left turn of 0.1 rad, a drift away from the start
    base = np.zeros(13, np.float32)
    base[soft_fish.COS_YAW] = 1.0
    turned = base.copy()
    turned[soft_fish.COS_YAW], turned[soft_fish.SIN_YAW] = np.cos(0.1), np.sin(0.1)
    turn = tasks["turn"](np.stack([base, base]), np.zeros((2, 3)), np.stack([turned, base]))
    np.testing.assert_allclose(turn, [0.1 / 0.02, 0.0], rtol=1e-5, atol=1e-6)
    away = base.copy()
    away[soft_fish.X], away[soft_fish.VX] = 0.3, 0.2
    hold = tasks["hold_station"](base, np.zeros(3), np.stack([base, away]))
    assert hold.shape == (2,) and hold[0] == 0.0 > hold[1]
    for task in tasks.values():
        assert task.description and task(obs[:, :-1], np.zeros((6, STEPS - 1, 3)), obs[:, 1:]).shape == (6, STEPS - 1)


def test_viscous_water_and_a_weak_tail_swim_slower_natively():
    presets = envs.shift_presets("soft_fish")
    assert set(presets) == {"viscous_water", "weak_tail"}
    actions = _wave(STEPS)
    distance = {}
    for preset in ("", *presets):
        world = envs.TrainingEnvConfig(shift=envs.ShiftConfig(preset=preset))
        env = envs.make_training_env("soft_fish", None, world)
        distance[preset] = _native_rollout(env, np.zeros(6), np.zeros(6), actions)[-1, 0]
    viscous = envs.make_training_env(
        "soft_fish", None, envs.TrainingEnvConfig(shift=envs.ShiftConfig(preset="viscous_water"))
    )
    assert viscous.mj_model.opt.density == pytest.approx(3000.0) and float(viscous.sys.opt.density) == 3000.0
    # measured in 3 s: 1.04 m nominal, 0.70 m in viscous water, 0.64 m with the weak tail
    assert distance["viscous_water"] < 0.8 * distance[""] and distance["weak_tail"] < 0.8 * distance[""]


def test_domain_randomization_wrapper_traces_on_the_fish(env):
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    wrapped = DomainRandomizationWrapper(env, lambda sys: randomize(sys, keys, DomainRandomizationConfig()))
    state = jax.eval_shape(wrapped.step, jax.eval_shape(wrapped.reset, keys), jp.zeros((4, 3)))
    assert state.obs.shape == (4, env.observation_size) == (4, 13)


def test_config_is_validated():
    for bad in (
        {"channel_half_width": 0.0},
        {"fluid_density": -1.0},
        {"max_torque": 0.0},
        {"integrator": "implicitfast"},
        {"body_damping": -0.1},
    ):
        with pytest.raises(envs.EnvError, match=next(iter(bad))):
            envs.make_config("soft_fish", **bad)


def test_solver_settings_cannot_change_the_physics_there_are_no_constraints(env):
    """No contacts, limits or equalities: no constraint rows, so the fast 1/4 settings step exactly like
    MuJoCo's default 100/50 (native, bit for bit) and MJX skips the solver."""
    config, opt = env.config, env.mj_model.opt
    assert (opt.iterations, opt.ls_iterations) == (config.iterations, config.ls_iterations) == (1, 4)
    assert opt.integrator == mujoco.mjtIntegrator.mjINT_EULER
    data = jax.jit(env.reset)(jax.random.PRNGKey(0)).pipeline_state
    assert data._impl.efc_J.size == 0
    default = envs.make("soft_fish", **MUJOCO_DEFAULTS)
    actions = np.random.default_rng(0).uniform(-1, 1, (100, 3))
    start = np.array([0.0, 0.0, 0.1, 0.05, -0.05, 0.0])
    np.testing.assert_array_equal(
        _native_rollout(env, start, np.zeros(6), actions), _native_rollout(default, start, np.zeros(6), actions)
    )
