"""Each env's MuJoCo solver settings (its config's solver/iterations/ls_iterations/integrator/warmstart) are
what MJX and the native twin step, and the fast settings keep the physics of MuJoCo's defaults: the cart stays
on its rail, and trajectories and energy agree with the default solver (MJX and native) over a short horizon."""

import jax
import jax.numpy as jp
import mujoco
import numpy as np
import pytest

import envs
from envs.native import NativeTwin

# MuJoCo's own defaults (what every env stepped before issue #13)
MUJOCO_DEFAULTS = {"solver": "newton", "iterations": 100, "ls_iterations": 50, "warmstart": True}
STEPS = 100  # env steps (2 s of safe_cartpole)
# the envs whose settings issue #13 chose and measured (an env added later checks its own choice)
TUNED = ["pendulum", "point_goal", "safe_cartpole"]


def _actions(name: str, action_size: int) -> np.ndarray:
    """[STEPS, action_size]: safe_cartpole full force right for 0.9 s then left (it hits the rail ends at
    ≈ 5.7 and 8 m/s), the others uniform random."""
    if name == "safe_cartpole":
        return np.concatenate([np.ones((45, 1)), -np.ones((STEPS - 45, 1))]).astype(np.float32)
    return np.random.default_rng(0).uniform(-1, 1, (STEPS, action_size)).astype(np.float32)


def _mjx_trajectory(env, actions: np.ndarray, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """qpos [STEPS, nq] and qvel [STEPS, nv] of an open-loop MJX rollout from the twin's first reset."""
    state = jax.jit(env.reset)(jax.random.split(jax.random.PRNGKey(seed))[1])

    def step(s, a):
        s = env.step(s, a)
        return s, (s.pipeline_state.qpos, s.pipeline_state.qvel)

    _, (qpos, qvel) = jax.jit(lambda s, a: jax.lax.scan(step, s, a))(state, jp.asarray(actions))
    return np.asarray(qpos, np.float64), np.asarray(qvel, np.float64)


def _native_trajectory(env, actions: np.ndarray, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    twin = NativeTwin(env, seed=seed)
    twin.reset()
    qpos, qvel = [], []
    for action in actions:
        twin.step(action)
        qpos.append(twin.mj_data.qpos.copy())
        qvel.append(twin.mj_data.qvel.copy())
    return np.array(qpos), np.array(qvel)


def _energy(model: mujoco.MjModel, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """Potential + kinetic energy [T] (J) of states [T, nq], [T, nv] (MuJoCo's mj_energyPos/Vel)."""
    data = mujoco.MjData(model)
    energy = []
    for q, v in zip(qpos, qvel, strict=False):
        data.qpos[:], data.qvel[:] = q, v
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        mujoco.mj_energyPos(model, data)
        mujoco.mj_energyVel(model, data)
        energy.append(data.energy.sum())
    return np.array(energy)


@pytest.mark.parametrize("name", TUNED)
def test_config_solver_settings_are_the_models_options_for_mjx_and_the_native_twin(name):
    env = envs.make(name)
    config, opt = env.config, env.mj_model.opt
    assert opt.iterations == config.iterations and opt.ls_iterations == config.ls_iterations
    assert opt.solver == {"newton": mujoco.mjtSolver.mjSOL_NEWTON, "cg": mujoco.mjtSolver.mjSOL_CG}[config.solver]
    assert opt.integrator == mujoco.mjtIntegrator.mjINT_EULER and config.integrator == "euler"
    assert bool(opt.disableflags & mujoco.mjtDisableBit.mjDSBL_WARMSTART) == (not config.warmstart)
    assert opt.timestep == pytest.approx(config.sim_dt)
    assert int(env.sys.opt.iterations) == config.iterations  # the MJX model carries them too
    assert NativeTwin(env).mj_model is env.mj_model  # the twin steps the very same MjModel
    # the fast settings are every env's default (MJX's batched solver pays for every iteration of every env)
    assert (config.iterations, config.ls_iterations) == (1, 4)


def test_solver_settings_are_overridable_and_validated():
    env = envs.make("safe_cartpole", **MUJOCO_DEFAULTS)
    assert env.mj_model.opt.iterations == 100 and env.mj_model.opt.ls_iterations == 50
    assert not env.mj_model.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_WARMSTART
    for bad in ({"iterations": 0}, {"ls_iterations": 1.5}, {"solver": "pgs"}, {"integrator": "rk45"}):
        with pytest.raises(envs.EnvError, match=next(iter(bad))):
            envs.make_config("safe_cartpole", **bad)


@pytest.mark.slow
def test_cart_stays_on_the_rail_under_maximal_force():
    """8 random starts, full force right for 0.9 s then left: the cart hits the right rail end at ≈ 5.7 m/s and
    the left one at ≈ 8 m/s; the overshoot past the rail with the fast settings is that of MuJoCo's defaults."""
    rail = envs.default_config("safe_cartpole").rail_limit
    actions = jp.asarray(_actions("safe_cartpole", 1))
    keys = jax.random.split(jax.random.PRNGKey(0), 8)

    def overshoot(env) -> np.ndarray:
        """max |x| − rail_limit [8] (m) over the rollout from each start."""

        def rollout(key):
            def step(s, a):
                s = env.step(s, a)
                return s, s.pipeline_state.qpos[0]

            return jp.abs(jax.lax.scan(step, env.reset(key), actions)[1]).max() - rail

        return np.asarray(jax.jit(jax.vmap(rollout))(keys))

    fast, default = overshoot(envs.make("safe_cartpole")), overshoot(envs.make("safe_cartpole", **MUJOCO_DEFAULTS))
    assert (fast > 0.005).all(), fast  # it did reach a rail end every time (the test exercises the limit)
    # MuJoCo's limit is soft (solref 0.02 s) and the cart moves 6-8 cm per 10 ms step at impact: measured
    # 8-55 mm, depending on where in a step the rail is crossed, and equal to the default solver's to 2e-5 m.
    # Stated tolerances: overshoot < 6 cm (3 % of the rail) and within 1 mm of MuJoCo's default settings.
    assert (fast < 0.06).all(), fast
    np.testing.assert_allclose(fast, default, atol=1e-3)


def _has_constraints(env) -> bool:
    """True if the model can produce constraint rows (contacts, joint limits, equality, friction loss)."""
    model = env.mj_model
    contacts = not model.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_CONTACT and model.ngeom > 1
    return bool(
        contacts or model.jnt_limited.any() or model.neq or model.dof_frictionloss.any() or model.tendon_limited.any()
    )


CONSTRAINED = [name for name in TUNED if _has_constraints(envs.make(name))]


def test_envs_without_constraints_never_run_the_solver():
    """pendulum and point_goal have no constraint rows, so MJX skips the solver and the solver settings cannot
    change their physics (their MJX-vs-native agreement is tests/envs/test_env_contract.py's native-twin replay)."""
    assert CONSTRAINED == ["safe_cartpole"]
    for name in sorted(set(TUNED) - set(CONSTRAINED)):
        env = envs.make(name)
        data = jax.jit(env.reset)(jax.random.PRNGKey(0)).pipeline_state
        assert data._impl.efc_J.size == 0, name


@pytest.mark.parametrize("name", CONSTRAINED)
@pytest.mark.slow
def test_fast_settings_follow_mujoco_defaults_in_mjx_and_native(name):
    fast = envs.make(name)
    default = envs.make(name, **MUJOCO_DEFAULTS)
    actions = _actions(name, fast.action_size)
    qpos_fast, qvel_fast = _mjx_trajectory(fast, actions)
    qpos_default, _qvel_default = _mjx_trajectory(default, actions)
    qpos_native, qvel_native = _native_trajectory(default, actions)
    # measured over these 2 s (through two rail impacts): qpos ≤ 3e-6, qvel ≤ 5e-6 (float32
    # MJX vs float64 native); 1e-3 (rad or m) leaves room for platform differences, while a solver that does
    # not hold the rail (or 1 iteration not converging) is off by > 1e-2 after the first impact
    np.testing.assert_allclose(qpos_fast, qpos_default, atol=1e-3)
    np.testing.assert_allclose(qpos_fast, qpos_native, atol=1e-3)
    np.testing.assert_allclose(qvel_fast, qvel_native, atol=1e-2)
    energy_fast = _energy(fast.mj_model, qpos_fast, qvel_fast)
    energy_native = _energy(fast.mj_model, qpos_native, qvel_native)
    scale = max(1.0, np.abs(energy_native).max())  # J; safe_cartpole reaches ≈ 35 J at 5.7 m/s
    # measured ≤ 2e-5 J; 1e-3 of the energy scale
    np.testing.assert_allclose(energy_fast, energy_native, atol=1e-3 * scale)
