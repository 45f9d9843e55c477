"""safe_cartpole: cost meaning, reward range, and a default cost bound that separates an unconstrained
swing-up (violates the budget of 100) from a safe one (within budget, still swings up)."""

import jax
import jax.numpy as jp
import mujoco
import numpy as np
import pytest
import scipy.linalg

import envs


def _lqr_gain(env) -> np.ndarray:
    """Discrete LQR gain [1, 4] for the upright equilibrium, state (x, θ, ẋ, θ̇), one env step."""
    model, data = env.mj_model, mujoco.MjData(env.mj_model)
    mujoco.mj_forward(model, data)
    a, b = np.zeros((4, 4)), np.zeros((4, 1))
    mujoco.mjd_transitionFD(model, data, 1e-6, True, a, b, None, None)
    n = env.n_substeps
    a_env = np.linalg.matrix_power(a, n)
    b_env = sum(np.linalg.matrix_power(a, k) @ b for k in range(n))
    q, r = np.diag([1.0, 10.0, 0.1, 0.1]), np.array([[1.0]])
    p = scipy.linalg.solve_discrete_are(a_env, b_env, q, r)
    return np.linalg.solve(r + b_env.T @ p @ b_env, b_env.T @ p @ a_env)


@pytest.fixture(scope="module")
def swing_up_episode():
    """Energy-pumping swing-up + LQR catch; `pump` gain and cart feedback (kx, kv) are arguments."""
    env = envs.make("safe_cartpole")
    gain = jp.asarray(_lqr_gain(env), jp.float32)
    model = env.mj_model
    pole = model.body("pole").id
    pole_mass, com = float(model.body_mass[pole]), float(model.body_ipos[pole][2])
    inertia = float(model.body_inertia[pole][1]) + pole_mass * com**2  # about the hinge, kg·m²

    def policy(obs, pump, kx, kv):
        x, cos, sin, x_dot, angle_dot = obs
        energy = 0.5 * inertia * angle_dot**2 + pole_mass * 9.81 * com * (cos - 1.0)  # 0 upright at rest
        swing = pump * energy * jp.sign(angle_dot * cos + 1e-6) - kx * x - kv * x_dot
        catch = -(gain @ jp.stack([x, jp.arctan2(sin, cos), x_dot, angle_dot]))[0]
        return jp.clip(jp.where(cos > 0.85, catch, swing), -1.0, 1.0)[None]

    @jax.jit
    @jax.vmap
    def episode(key, pump, kx, kv):
        def step(state, _):
            state = env.step(state, policy(state.obs, pump, kx, kv))
            return state, (state.reward, state.info["cost"], state.obs[0])

        _, (reward, cost, x) = jax.lax.scan(step, env.reset(key), None, env.episode_length)
        return reward.sum(), cost.sum(), x

    return env, episode


@pytest.mark.slow
def test_default_bound_separates_unconstrained_and_safe_swing_up(swing_up_episode):
    env, episode = swing_up_episode
    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    ones = jp.ones(8)
    # unconstrained: pump energy, ignore the cart position
    ret_free, cost_free, _ = episode(keys, 20 * ones, 0 * ones, 0 * ones)
    # safe: gentler pump with cart-centring feedback
    ret_safe, cost_safe, _ = episode(keys, 10 * ones, 4 * ones, 2 * ones)
    budget = env.cost_budget
    assert (np.asarray(cost_free) > budget).all(), cost_free  # measured ≈ 160–230
    assert (np.asarray(cost_safe) < budget).all(), cost_safe  # measured ≈ 60–85
    assert (np.asarray(ret_safe) > 800).all(), ret_safe  # it does swing up and balance (max 1000)
    assert (np.asarray(ret_free) > 600).all(), ret_free  # the unconstrained one swings up too


def test_cost_is_one_exactly_outside_the_band_and_reward_in_unit_interval(swing_up_episode):
    env, _episode = swing_up_episode
    state = jax.jit(env.reset)(jax.random.PRNGKey(1))
    actions = jax.random.uniform(jax.random.PRNGKey(2), (300, 1), minval=-1, maxval=1)

    def step(s, a):
        s = env.step(s, a)
        return s, (s.obs[0], s.reward, s.info["cost"])

    _, (x, reward, cost) = jax.jit(lambda s, a: jax.lax.scan(step, s, a))(state, actions + 0.3)
    x, reward, cost = map(np.asarray, (x, reward, cost))
    np.testing.assert_array_equal(cost, (np.abs(x) > env.config.cost_bound).astype(np.float32))
    assert cost.sum() > 0 and (cost == 0).any()  # both regimes were visited
    assert ((reward >= 0) & (reward <= 1)).all()


def test_pole_starts_hanging_down_with_the_cart_centred():
    env = envs.make("safe_cartpole")
    obs = np.asarray(jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), 16)).obs)
    assert (obs[:, 1] < -0.99).all() and (np.abs(obs[:, 0]) < 0.05).all()
