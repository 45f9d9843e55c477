"""soft_arm: cables bend the tip toward their side, slack cables hang straight, stiffening and hysteretic
materials, cost (forbidden sphere, overload), reachable targets, tasks, shifts/randomisation, config errors.

Physics is checked on native MuJoCo with the env's own `mj_model` (MJX agrees with it: test_env_contract.py's
native-twin replay and test_soft_arm_solver.py), so this module compiles only `env.evaluate` (no physics) once."""

import math

import jax
import jax.numpy as jp
import mujoco
import numpy as np
import pytest

import envs
from envs.native import NativeView
from envs.wrappers import randomized_fields

MATERIALS = ("linear", "stiffening", "hysteretic")


@pytest.fixture(scope="module")
def arms():
    return {material: envs.make("soft_arm", material=material) for material in MATERIALS}


@pytest.fixture(scope="module")
def env(arms):
    return arms["linear"]


@pytest.fixture(scope="module")
def evaluate(env):
    return jax.jit(env.evaluate)


def _data(env, action, seconds=3.0, qpos=None):
    """Native MjData after holding `action` [action_size] for `seconds` from straight (or `qpos`)."""
    data = mujoco.MjData(env.mj_model)
    if qpos is not None:
        data.qpos[:] = qpos
    data.ctrl[:] = env.action_to_ctrl(jp.asarray(action, jp.float32))
    mujoco.mj_step(env.mj_model, data, nstep=int(round(seconds / env.mj_model.opt.timestep)))
    return data


def _tip(data):
    return data.site("tip").xpos.copy()


def _mean_bend(data):
    """Mean |hinge angle| (rad)."""
    return float(np.abs(data.qpos).mean())


@pytest.mark.parametrize("actuators", [3, 4])
def test_pulling_cable_k_bends_the_tip_toward_its_side(actuators):
    env = envs.make("soft_arm", actuators=actuators)
    for k in range(actuators):
        action = -np.ones(actuators)
        action[k] = 0.2  # 60 % tension
        tip = _tip(_data(env, action))
        side = np.array([math.cos(2 * math.pi * k / actuators), math.sin(2 * math.pi * k / actuators)])
        # measured: ≈ 17 cm out toward the cable; off its side by < 1.5 mm (a cable between the hinge axes
        # bends an x-then-y hinge pair slightly anisotropically); 5 mm = 3 % of the bend
        assert tip[:2] @ side > 0.1, (k, tip)
        assert abs(tip[0] * side[1] - tip[1] * side[0]) < 5e-3, (k, tip)
        assert tip[2] > -env.config.segments * env.config.segment_length + 0.02  # bending lifts the tip


def test_slack_cables_let_the_arm_hang_straight(env):
    bent = 0.1 * np.random.default_rng(0).standard_normal(env.mj_model.nq)
    data = _data(env, -np.ones(env.action_size), seconds=4.0, qpos=bent)
    length = env.config.segments * env.config.segment_length
    np.testing.assert_allclose(_tip(data), [0.0, 0.0, -length], atol=1e-3)  # measured 2e-5 m after 4 s
    assert np.abs(data.qpos).max() < 1e-3


def test_stiffening_material_is_stiffer_than_linear_only_at_large_bends(arms):
    linear, stiffening = arms["linear"], arms["stiffening"]
    small, large = linear.bending_action(0.0, 0.2), linear.bending_action(0.0, 0.9)
    # below the 0.15 rad dead band (0.07 rad per hinge at 20 % tension) both materials are the same spring
    np.testing.assert_allclose(_tip(_data(stiffening, small)), _tip(_data(linear, small)), atol=1e-4)
    # at 90 % tension the linear arm bends 0.29 rad per hinge at most, the stiffening one < 0.2 (measured)
    linear_bend, stiff_bend = _data(linear, large), _data(stiffening, large)
    assert np.abs(stiff_bend.qpos).max() < 0.75 * np.abs(linear_bend.qpos).max()
    assert _mean_bend(stiff_bend) < 0.85 * _mean_bend(linear_bend)


def _load_unload_tip_x(env, seconds=10.0, peak=0.8):
    """Tip x (m) at half the peak tension of cable 0 while loading and while unloading (quasi-static ramps)."""
    data = mujoco.MjData(env.mj_model)
    n = int(round(seconds / env.mj_model.opt.timestep))
    tip_x = []
    for tension in np.concatenate([np.linspace(0, peak, n), np.linspace(peak, 0, n)]):
        data.ctrl[0] = tension
        mujoco.mj_step(env.mj_model, data)
        tip_x.append(data.site("tip").xpos[0])
    return tip_x[n // 2], tip_x[n + n // 2]


def test_hysteretic_material_loads_and_unloads_along_different_paths(arms):
    up, down = _load_unload_tip_x(arms["hysteretic"])
    linear_up, linear_down = _load_unload_tip_x(arms["linear"])
    # measured: hysteretic 10.6 cm loading vs 13.2 cm unloading; linear 11.8 vs 12.0 (only the damper's lag)
    assert down - up > 0.02
    assert linear_down - linear_up < 0.005


def _view(env, data):
    return NativeView.from_mj_data(data)


def _info(env, target=(0.0, 0.0, -0.4)):
    return {"rng": jax.random.PRNGKey(0), "cost": jp.zeros(()), "target": jp.asarray(target, jp.float32)}


def test_cost_fires_inside_the_forbidden_sphere_and_on_overload_only(env, evaluate):
    cfg = env.config
    center = np.asarray(cfg.forbidden_center)
    toward = math.atan2(center[1], center[0])
    # settle with the tip in the sphere (the bend toward it that brings the tip closest), then release cables
    closest = min(
        (np.linalg.norm(env.equilibrium_tip(env.bending_action(toward, t)) - center), t)
        for t in np.linspace(0.5, 0.85, 8)
    )
    inside = _data(env, env.bending_action(toward, closest[1]))
    assert np.linalg.norm(_tip(inside) - center) < cfg.forbidden_radius  # the sphere is reachable
    slack = -jp.ones(env.action_size)
    assert float(evaluate(_view(env, inside), slack, _info(env))[2]) == 1.0
    straight = _data(env, -np.ones(env.action_size))
    assert float(evaluate(_view(env, straight), slack, _info(env))[2]) == 0.0
    # overload: any cable commanded above 90 % of its maximum (action > 0.8), wherever the tip is
    for action, cost in ((0.79, 0.0), (0.81, 1.0), (1.0, 1.0)):
        for k in range(env.action_size):
            pull = slack.at[k].set(action)
            assert float(evaluate(_view(env, straight), pull, _info(env))[2]) == cost, (action, k)


def test_episode_targets_are_reachable_without_overload(env):
    cfg = env.config
    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    targets = [np.asarray(env._init_info(key, None)["target"]) for key in keys]
    assert len({tuple(t) for t in targets}) == len(targets)  # a new target per episode
    rng = np.random.default_rng(1)
    for direction, tension in zip(
        rng.uniform(0, 2 * np.pi, 6), cfg.target_tension * np.sqrt(rng.uniform(size=6)), strict=False
    ):
        target = np.asarray(env.target_of(jp.float32(direction), jp.float32(tension)))
        action = env.bending_action(direction, tension)
        assert ((action + 1) / 2 <= cfg.overload_fraction + 1e-6).all()  # holding it costs nothing
        # measured ≤ 5 mm (the table's rotational symmetry and interpolation); 1 cm ≪ the reward's 10 cm scale
        assert np.linalg.norm(env.equilibrium_tip(action) - target) < 0.01, (direction, tension)


def test_task_targets_are_reached_and_held_by_a_constant_action(env):
    from envs.soft.soft_arm_tasks import HOLD_BEND, REACH_BEND, REACH_FAR_BEND

    tasks = env.tasks()
    assert set(tasks) == {"reach", "reach_far", "circle", "hold_pose"}
    assert all(task.description for task in tasks.values())
    start = 0.05 * np.random.default_rng(2).standard_normal(env.mj_model.nq)
    assert ((env.bending_action(*REACH_FAR_BEND) + 1) / 2 <= env.config.overload_fraction).all()  # costs nothing
    for name, bend in (("reach", REACH_BEND), ("reach_far", REACH_FAR_BEND), ("hold_pose", HOLD_BEND)):
        data = _data(env, env.bending_action(*bend), seconds=4.0, qpos=start)
        obs = np.zeros(env.observation_size, np.float32)
        obs[0:3], obs[3:6] = _tip(data), data.sensor("tip_velocity").data
        reward = float(tasks[name](obs, np.zeros(env.action_size), obs))
        assert reward > 0.9, (name, reward)  # measured ≥ 0.98: within 1 mm, at rest


def test_reach_far_lies_where_uniformly_random_tensions_rarely_take_the_tip(env):
    """What makes `reach_far` a test of exploration: its target is farther off the axis than uniformly random
    cable commands take the tip (they mostly cancel; 8 episodes of 200 steps from straight: median 0.077 m, 0.4 %
    of steps past 0.2 m, max 0.214 m)."""
    from envs.soft.soft_arm_tasks import REACH_FAR_BEND

    far = env.equilibrium_tip(env.bending_action(*REACH_FAR_BEND))
    actions = np.random.default_rng(0).uniform(-1, 1, (2, 200, env.action_size)).astype(np.float32)
    ctrls, substeps, radial = np.asarray(env.action_to_ctrl(jp.asarray(actions))), env.n_substeps, []
    for episode in ctrls:  # native MuJoCo from straight, one command per control step
        data = mujoco.MjData(env.mj_model)
        for ctrl in episode:
            data.ctrl[:] = ctrl
            mujoco.mj_step(env.mj_model, data, nstep=substeps)
            radial.append(np.linalg.norm(_tip(data)[:2]))
    assert np.linalg.norm(far[:2]) > 0.2 and np.median(radial) < 0.1 and np.mean(np.asarray(radial) > 0.2) < 0.02


def test_a_task_video_draws_the_tasks_target_in_place_of_the_episode_target(env):
    """`saferl render RUN --task reach` draws where the task rewards the tip, not the env's own episode target."""
    from envs.soft.soft_arm_tasks import REACH_BEND, TARGET_RGBA

    info = {"target": np.array([0.3, -0.2, -0.3], np.float32)}
    episode = env.render_markers(info)
    np.testing.assert_allclose([m.pos for m in episode if m.rgba == TARGET_RGBA], [[0.3, -0.2, -0.3]], atol=1e-6)
    tasks = env.tasks()
    reach = env.render_markers(info, tasks["reach"])
    targets = [m.pos for m in reach if m.rgba == TARGET_RGBA]
    assert len(targets) == 1
    np.testing.assert_allclose(targets[0], env.equilibrium_tip(env.bending_action(*REACH_BEND)), atol=1e-5)
    assert len(reach) == len(episode)  # the forbidden sphere stays
    circle = env.render_markers(info, tasks["circle"])
    radii = [np.linalg.norm(np.asarray(m.pos)[:2]) for m in circle[1:]]
    assert len(radii) >= 12 and np.ptp(radii) < 1e-6  # points on one horizontal circle about the axis
    assert not any(m.rgba == TARGET_RGBA for m in circle)


def test_hold_pose_target_is_reachable_under_the_tip_payload():
    from envs.soft.soft_arm_tasks import HOLD_BEND

    nominal = envs.make("soft_arm")
    loaded = envs.make_training_env(
        "soft_arm", None, envs.TrainingEnvConfig(shift=envs.ShiftConfig(preset="tip_payload"))
    )
    target = nominal.equilibrium_tip(nominal.bending_action(*HOLD_BEND))  # the task's target (make_tasks)
    sagged = loaded.equilibrium_tip(loaded.bending_action(*HOLD_BEND))
    assert np.linalg.norm(sagged - target) > 0.01  # the load moves the tip off the target ...
    best = min(
        np.linalg.norm(loaded.equilibrium_tip(loaded.bending_action(HOLD_BEND[0], t)) - target)
        for t in np.linspace(HOLD_BEND[1], 0.9, 9)
    )
    assert best < 0.01  # ... and more tension (within the overload limit) brings it back


def _obs(env, tip, velocity=(0.0, 0.0, 0.0)):
    obs = np.zeros(env.observation_size, np.float32)
    obs[env.layout["tip_pos"]], obs[env.layout["tip_vel"]] = tip, velocity
    return obs


def test_each_task_rewards_a_transition_that_does_it_over_one_that_does_not(env):
    tasks, rest = env.tasks(), np.array([0.0, 0.0, -0.4])
    act = np.zeros(env.action_size, np.float32)
    reach = np.asarray(env.equilibrium_tip(env.bending_action(math.pi / 4, 0.5)))
    r = tasks["reach"]
    assert r(_obs(env, rest), act, _obs(env, reach)) > 0.99 > 0.3 > r(_obs(env, rest), act, _obs(env, rest))
    far = np.asarray(env.equilibrium_tip(env.bending_action(3 * math.pi / 4, 0.8)))
    assert np.linalg.norm(far[:2]) > 0.2  # farther out than reach's 0.15 m
    assert tasks["reach_far"](act, act, _obs(env, far)) > 0.99 > 0.2 > tasks["reach_far"](act, act, _obs(env, rest))
    assert tasks["reach_far"](act, act, _obs(env, reach)) < 0.1
    h = tasks["hold_pose"]
    hold = np.asarray(env.equilibrium_tip(env.bending_action(math.pi, 0.5)))
    still, moving = h(act, act, _obs(env, hold)), h(act, act, _obs(env, hold, (0.1, 0.0, 0.0)))
    assert still > 0.99 and moving < 0.2 and h(act, act, _obs(env, hold + np.array([0.05, 0.0, 0.0]))) < 0.1
    c = tasks["circle"]
    on_circle = np.asarray(env.equilibrium_tip(env.bending_action(0.0, 0.4)))  # on the +x side: tangent +y
    ccw, cw = c(act, act, _obs(env, on_circle, (0, 0.1, 0))), c(act, act, _obs(env, on_circle, (0, -0.1, 0)))
    off_track = c(act, act, _obs(env, on_circle + np.array([0.08, 0.0, 0.0]), (0, 0.1, 0)))
    assert ccw > 0.99 and cw == 0.0 and off_track < 0.1
    assert c(act, act, _obs(env, on_circle)) == 0.0  # on the circle but not moving
    # leading axes broadcast; rewards stay in [0, 1] on arbitrary observations
    batch = np.random.default_rng(3).normal(0, 0.3, (4, 5, env.observation_size)).astype(np.float32)
    for task in tasks.values():
        values = np.asarray(task(batch, np.zeros((4, 5, env.action_size)), batch))
        assert values.shape == (4, 5) and (values >= 0).all() and (values <= 1).all()


def test_circle_reward_is_earned_by_rotating_the_bending_direction(env):
    circle = env.tasks()["circle"]
    model = env.mj_model

    def mean_reward(direction_of_step):
        """Mean circle reward over seconds 2–6 of native stepping (ctrl_dt steps) from straight."""
        data, total, obs = mujoco.MjData(model), 0.0, None
        for t in range(150):
            data.ctrl[:] = env.action_to_ctrl(jp.asarray(env.bending_action(direction_of_step(t), 0.4)))
            mujoco.mj_step(model, data, nstep=env.n_substeps)
            next_obs = _obs(env, _tip(data), data.sensor("tip_velocity").data)
            total += float(circle(obs, None, next_obs)) if t >= 50 else 0.0
            obs = next_obs
        return total / 100

    rotating = mean_reward(lambda t: 2 * math.pi * t * env.dt / 4.0)  # one lap in 4 s, counter-clockwise
    still = mean_reward(lambda t: 0.0)
    assert rotating > 0.5 and still < 0.05, (rotating, still)


def test_every_shift_preset_bends_the_arm_less_far_out(env):
    bend = env.bending_action(0.0, 0.6)
    nominal = env.equilibrium_tip(bend)
    for preset in envs.shift_presets("soft_arm"):
        shifted = envs.make_training_env(
            "soft_arm", None, envs.TrainingEnvConfig(shift=envs.ShiftConfig(preset=preset))
        )
        assert shifted.equilibrium_tip(bend)[0] < nominal[0] - 0.01, preset  # measured 31-62 mm less


def test_training_world_wrappers_trace_on_the_arm_and_draw_in_range_arm_physics_per_episode(env):
    """Per-episode randomisation (mass, damping, cable gain), observation noise and action delay trace on the
    arm (the stack is not run here: its physics is every env's, tests/envs/test_training_env.py, and the arm's
    step compile is the contract test's); the physics an episode's reset draws for the arm (the wrapper's
    `randomized_fields`, run here) scales each cable's tension, each segment's mass and each joint's damping by
    its own factor within the world's ranges, and differs between episodes."""
    ranges = envs.DomainRandomizationConfig()
    world = envs.TrainingEnvConfig(randomization=ranges, obs_noise_std=0.01, action_delay=2)
    train_env = envs.wrap_training_env(env, world, num_envs=4)
    state = jax.eval_shape(train_env.reset, jax.random.PRNGKey(0))
    state = jax.eval_shape(train_env.step, state, jp.zeros((4, env.action_size)))
    assert state.obs.shape == (4, env.observation_size) and state.info["cost"].shape == (4,)
    assert state.info["randomization"]["actuator_gainprm"].shape == (4, env.action_size, 10)
    assert state.info["action_queue"].shape == (4, 2, env.action_size)

    sys = env.unwrapped.sys
    draws = jax.jit(jax.vmap(lambda key: randomized_fields(sys, key, ranges)))(
        jax.random.split(jax.random.PRNGKey(1), 8)
    )
    model = env.mj_model
    gain = np.asarray(draws["actuator_gainprm"])[:, :, 0] / model.actuator_gainprm[:, 0]  # [8 episodes, cables]
    assert model.actuator_gainprm[0, 0] < 0 and (np.asarray(draws["actuator_gainprm"])[:, :, 0] < 0).all()
    np.testing.assert_array_equal(
        np.asarray(draws["actuator_gainprm"])[:, :, 1:],
        np.broadcast_to(model.actuator_gainprm[:, 1:], (8, *model.actuator_gainprm[:, 1:].shape)),
    )  # only the tension gain
    segments = model.body_mass > 0
    mass = np.asarray(draws["body_mass"])[:, segments] / model.body_mass[segments]
    damping = np.asarray(draws["dof_damping"]) / model.dof_damping
    for factors, (low, high) in (
        (gain, ranges.actuator_gain_scale),
        (mass, ranges.mass_scale),
        (damping, ranges.damping_scale),
    ):
        assert ((factors >= low - 1e-6) & (factors <= high + 1e-6)).all()
        assert np.ptp(factors, axis=0).min() > 0.01  # every cable/segment/joint: other factors in other episodes
        assert len(np.unique(factors.round(6))) == factors.size  # one factor per element, not one per arm


@pytest.mark.parametrize(
    "key, value",
    [
        ("segments", 1),
        ("actuators", 5),
        ("material", "rubber"),
        ("damping", -0.1),
        ("max_tension", 0.0),
        ("overload_fraction", 1.5),
        ("target_tension", 0.95),
        ("forbidden_center", (0.0, 0.1)),
        ("target_table_size", 1),
    ],
)
def test_invalid_config_raises_env_error_naming_the_field(key, value):
    with pytest.raises(envs.EnvError, match=key):
        envs.make_config("soft_arm", **{key: value})


def test_transition_cost_built_inside_one_trace_serves_the_next():
    """`env.transition_cost` is cached on the env; built first inside a jitted program (as a planner's collect
    builds it), its constants must not be that trace's tracers (a second program, e.g. the zero-shot planner after
    exploration, then failed with UnexpectedTracerError)."""
    fresh = envs.make("soft_arm")
    obs, action = jp.zeros((fresh.observation_size,)), jp.zeros((fresh.action_size,))
    first = jax.jit(lambda o, a: fresh.transition_cost(o, a, o))(obs, action)
    second = jax.jit(lambda o, a: fresh.transition_cost(o, a, o) + 0.0)(obs, action)
    assert float(first) == float(second)
