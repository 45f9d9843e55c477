"""muscle_leg: each muscle pulls its joints the way its moment arms say, activation lags the command, the cost
fires at a hard landing or a joint limit but not in quiet standing, the tasks, shift presets and domain
randomisation of muscles, config validation and the solver settings against MuJoCo's defaults. One compiled,
vmapped MJX rollout of fixed length serves every physics test."""

import jax
import jax.numpy as jp
import mujoco
import numpy as np
import pytest

import envs
from envs.soft import muscle_leg
from envs.soft.muscle_leg import MUSCLE_FORCES
from envs.wrappers import DomainRandomizationConfig
from envs.wrappers.domain_randomization import DomainRandomizationWrapper, randomize, randomized_fields

STEPS = 50  # env steps per rollout (1 s)
MUJOCO_DEFAULTS = {"solver": "newton", "iterations": 100, "ls_iterations": 50, "warmstart": True}
RELAXED = np.array([-1.0] * 5 + [0.0], np.float32)  # no muscle activation, ankle motor off
MUSCLES = list(MUSCLE_FORCES)  # action order: the 5 muscles, then the ankle motor


@pytest.fixture(scope="module")
def env():
    return envs.make("muscle_leg")


@pytest.fixture(scope="module")
def rollout(env):
    """`rollout(qpos [B, 4], actions [B, STEPS, 6])` from rest -> (obs, reward, cost) [B, STEPS, ...]."""

    def one(qpos, actions):
        state = env.reset(jax.random.PRNGKey(0))
        state = state.replace(pipeline_state=env.pipeline_init(qpos, jp.zeros(4)))

        def step(s, a):
            s = env.step(s, a)
            return s, (s.obs, s.reward, s.info["cost"])

        return jax.lax.scan(step, state, actions)[1]

    batched = jax.jit(jax.vmap(one))
    return lambda qpos, actions: jax.tree.map(
        np.asarray, batched(jp.asarray(qpos, jp.float32), jp.asarray(actions, jp.float32))
    )


def _stance(env, lift: float = 0.0) -> np.ndarray:
    """qpos [4] of the config's stance, foot flat, `lift` m above touching the ground."""
    hip, knee = env.config.stance
    height = float(muscle_leg.stance_height(hip, knee, env.config.thigh_length, env.config.shank_length))
    return np.array([height + lift, hip, knee, knee - hip])


def _hold(action: np.ndarray, steps: int = STEPS) -> np.ndarray:
    return np.tile(action, (steps, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def runs(env, rollout):
    """Rollouts: 0 relaxed standing, 1 a 0.35 m drop (relaxed), 2-7 in the air (6 m up, falling freely): relaxed
    and each muscle alone at full activation, 8 ankle motor +1 in the air, 9 vasti on for 5 steps then off."""
    air = _stance(env, lift=6.0)
    qpos = [_stance(env), _stance(env, lift=0.35)] + [air] * 7 + [_stance(env)]
    actions = [_hold(RELAXED), _hold(RELAXED), _hold(RELAXED)]
    for i in range(5):
        alone = RELAXED.copy()
        alone[i] = 1.0
        actions.append(_hold(alone))
    motor = RELAXED.copy()
    motor[5] = 1.0
    pulse = _hold(RELAXED)
    pulse[:5, MUSCLES.index("vasti")] = 1.0
    actions += [_hold(motor), pulse]
    obs, reward, cost = rollout(np.stack(qpos), np.stack(actions))
    return obs, reward, cost


def test_each_muscle_pulls_its_joints_the_way_its_moment_arms_say(runs):
    obs = runs[0]
    angles = obs[:, 9, muscle_leg.ANGLES]  # after 0.2 s in the air: [run, (hip, knee, ankle)]
    relaxed = angles[2]
    flexor, gluteus, vasti, hamstrings, soleus = (angles[3 + MUSCLES.index(m)] - relaxed for m in MUSCLES)
    # hip +: flexion, knee +: flexion, ankle +: dorsiflexion; the intended changes measured 0.38-0.78 rad
    assert flexor[0] > 0.1 and gluteus[0] < -0.1
    assert vasti[1] < -0.1
    assert hamstrings[0] < -0.1 and hamstrings[1] > 0.1  # biarticular: extends the hip and flexes the knee
    assert soleus[2] < -0.1
    assert angles[8, 2] - relaxed[2] > 0.1  # the ankle motor dorsiflexes
    assert obs[3:8, 9, muscle_leg.ACTIVATIONS].max(axis=1).min() > 0.99  # the active muscle is fully on


def test_activation_lags_the_command_and_decays_slower_than_it_rises(runs):
    act = runs[0][9, :, muscle_leg.ACTIVATIONS.start + MUSCLES.index("vasti")]
    # MuJoCo's muscle dynamics: time constant 15 ms·(0.5 + 1.5·act) rising, 50 ms/(0.5 + 1.5·act) falling;
    # measured act after each 20 ms step: rising 0.84, 0.93, 0.97; after the command ends 0.49, 0.30, …, 0.11
    assert 0.5 < act[0] < 0.95 and act[2] > 0.95
    assert act[5] > 0.3 and act[6] > 0.2 and act[9] < 0.2
    assert (1 - act[0]) < act[5]  # one step of rise covers more than one step of decay


def test_cost_fires_at_a_hard_landing_and_at_a_joint_limit_but_not_in_quiet_standing(env, runs):
    obs, _, cost = runs
    weight = env._weight
    grf = obs[..., muscle_leg.GRF] * weight  # N
    assert (cost[0] == 0).all()  # quiet relaxed standing
    assert grf[0, -1] == pytest.approx(weight, rel=0.05)  # the sole carries the body's weight
    landing = grf[1].argmax()  # measured 351 N (6.4× the weight), joints clear of their limits
    assert grf[1, landing] > env.config.overload_force and cost[1, landing] == 1
    # knee fully extended by the vasti in the air: at its limit, with no ground contact at all
    assert obs[3 + MUSCLES.index("vasti"), -1, muscle_leg.KNEE] < env.config.limit_margin
    assert cost[3 + MUSCLES.index("vasti"), -1] == 1 and (grf[2:9] == 0).all()


def test_tasks_reward_the_transitions_that_do_them(env, runs):
    tasks = env.tasks()
    assert set(tasks) == {"hold_posture", "kick", "hop"} and tasks is env.tasks()
    obs = runs[0]
    action = np.zeros((STEPS - 1, 6), np.float32)
    posture = tasks["hold_posture"]
    standing = posture(obs[0, :-1], action, obs[0, 1:])
    vasti = 3 + MUSCLES.index("vasti")
    flailing = posture(obs[vasti, :-1], action, obs[vasti, 1:])  # vasti on in the air
    assert standing.mean() > -0.01 > flailing.mean()
    toe = muscle_leg.TOE_X
    near, far = obs[0, 0].copy(), obs[0, 0].copy()
    near[toe : toe + 2] = (0.28, 0.09)
    assert tasks["kick"](obs[0, 0], action[0], np.stack([near, far])).argmax() == 0
    high = obs[0, 0].copy()
    high[muscle_leg.HEIGHT] += 0.1
    hop = tasks["hop"](obs[0, 0], action[0], np.stack([high, obs[0, 0]]))
    np.testing.assert_allclose(hop, [1.0, 0.0], atol=0.05)
    for task in tasks.values():
        assert task.description and task(obs[:, :-1], np.zeros((10, STEPS - 1, 6)), obs[:, 1:]).shape == (10, 49)


def test_gain_randomisation_and_weak_muscles_scale_muscle_force_not_muscle_lengths(env):
    muscle = slice(0, 5)
    fields = randomized_fields(
        env.sys, jax.random.PRNGKey(0), DomainRandomizationConfig(actuator_gain_scale=(0.5, 0.5))
    )
    gain, bias = np.asarray(fields["actuator_gainprm"]), np.asarray(fields["actuator_biasprm"])
    nominal = env.mj_model
    np.testing.assert_allclose(gain[muscle, 2], 0.5 * nominal.actuator_gainprm[muscle, 2], rtol=1e-6)
    np.testing.assert_allclose(bias[muscle, 2], 0.5 * nominal.actuator_biasprm[muscle, 2], rtol=1e-6)
    np.testing.assert_allclose(gain[muscle, :2], nominal.actuator_gainprm[muscle, :2])  # operating lengths
    np.testing.assert_allclose(gain[5, 0], 0.5 * nominal.actuator_gainprm[5, 0], rtol=1e-6)  # the motor
    presets = envs.shift_presets("muscle_leg")
    assert set(presets) == {"weak_muscles", "heavy_load"}
    weak = envs.make_training_env(
        "muscle_leg", None, envs.TrainingEnvConfig(shift=envs.ShiftConfig(preset="weak_muscles"))
    )
    forces = np.array(list(MUSCLE_FORCES.values()))
    np.testing.assert_allclose(weak.mj_model.actuator_gainprm[muscle, 2], 0.6 * forces)
    np.testing.assert_allclose(weak.mj_model.actuator_gainprm[muscle, :2], nominal.actuator_gainprm[muscle, :2])
    heavy = envs.make_training_env(
        "muscle_leg", None, envs.TrainingEnvConfig(shift=envs.ShiftConfig(preset="heavy_load"))
    )
    assert heavy.mj_model.body("pelvis").mass[0] == pytest.approx(1.5 * env.config.pelvis_mass)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    wrapped = DomainRandomizationWrapper(env, lambda sys: randomize(sys, keys, DomainRandomizationConfig()))
    state = jax.eval_shape(wrapped.step, jax.eval_shape(wrapped.reset, keys), jp.zeros((4, 6)))
    assert state.obs.shape == (4, env.observation_size) == (4, 16)


def test_config_is_validated():
    for bad in ({"overload_force": 0.0}, {"muscle_strength": -1.0}, {"joint_stiffness": -1.0}, {"limit_margin": 0.0}):
        with pytest.raises(envs.EnvError, match=next(iter(bad))):
            envs.make_config("muscle_leg", **bad)
    with pytest.raises(envs.EnvError, match="stance"):
        envs.make_config("muscle_leg", stance=(0.1, 1.2))  # ankle = knee − hip = 1.1 rad: beyond its range


def _native(env, qpos: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Native MuJoCo qpos [T, 4] from rest at `qpos` under `actions` [T, 6]."""
    model = env.mj_model
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    low, high = model.actuator_ctrlrange.T
    out = []
    for action in actions:
        data.ctrl[:] = low + (action + 1) / 2 * (high - low)
        mujoco.mj_step(model, data, nstep=env.n_substeps)
        out.append(data.qpos.copy())
    return np.array(out)


def test_fast_solver_settings_follow_mujoco_defaults_through_a_landing_in_mjx_and_native(env, rollout):
    """4 Newton iterations / 8 line-search steps vs MuJoCo's 100/50 from a 0.25 m drop (impact 285 N, 5× the
    weight), then random muscle commands on the ground."""
    config, opt = env.config, env.mj_model.opt
    assert (opt.iterations, opt.ls_iterations, opt.solver) == (4, 8, mujoco.mjtSolver.mjSOL_NEWTON)
    assert int(env.sys.opt.iterations) == config.iterations
    default = envs.make("muscle_leg", **MUJOCO_DEFAULTS)
    actions = np.concatenate([_hold(RELAXED, 15), np.random.default_rng(0).uniform(-1, 1, (STEPS - 15, 6))])
    start = _stance(env, lift=0.25)
    fast_native, default_native = _native(env, start, actions), _native(default, start, actions)
    obs = rollout(start[None], actions[None])[0][0]
    fast_mjx = obs[:, muscle_leg.HEIGHT : muscle_leg.ANKLE + 1]  # the qpos part of the observation
    # measured over 1 s: fast vs default native identical (Newton stops below tolerance within 4 iterations),
    # MJX float32 vs native float64 ≤ 1e-6 (m, rad); 1e-3
    # leaves room for platform differences, while a solver that does not converge at the impact is off by > 1e-2
    np.testing.assert_allclose(fast_native, default_native, atol=1e-3)
    np.testing.assert_allclose(fast_mjx, default_native, atol=1e-3)
