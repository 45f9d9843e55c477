"""Wrappers: each does exactly its one thing, composes, and jits."""

import functools

import jax
import jax.numpy as jp
import numpy as np
import pytest

import envs
from envs.wrappers import (
    ActionDelayWrapper,
    ActionRepeatWrapper,
    AutoResetWrapper,
    DomainRandomizationConfig,
    DomainRandomizationWrapper,
    EpisodeWrapper,
    ObservationNoiseWrapper,
    VmapWrapper,
    randomize,
)

_COMPILED = {}
# one env object shared by several tests so its compiled rollout (30 steps, unbatched) is reused;
# the tight cost bound makes the cost 1 on most steps (for the action-repeat cost sum)
CARTPOLE = envs.make("safe_cartpole", cost_bound=0.01)
T = 30


def _scan(env, state, actions):
    """Roll `env` over `actions` [T, ...]; returns (final state, (qpos, reward, cost, obs, done) over time).
    One compiled function per env object (reused across calls with equal shapes)."""
    if id(env) not in _COMPILED:

        def step(s, a):
            s = env.step(s, a)
            return s, (s.pipeline_state.qpos, s.reward, s.info["cost"], s.obs, s.done)

        _COMPILED[id(env)] = (env, jax.jit(lambda s, a: jax.lax.scan(step, s, a)))
    return _COMPILED[id(env)][1](state, actions)


@pytest.mark.slow
def test_action_delay_applies_each_action_exactly_k_steps_later():
    env, k = CARTPOLE, 3
    actions = jax.random.uniform(jax.random.PRNGKey(0), (T, 1), minval=-1, maxval=1)
    delayed = ActionDelayWrapper(env, k)
    _, (qpos_delayed, *_) = _scan(delayed, jax.jit(delayed.reset)(jax.random.PRNGKey(1)), actions)
    shifted = jp.concatenate([jp.zeros((k, 1)), actions[:-k]])
    _, (qpos_shifted, *_) = _scan(env, jax.jit(env.reset)(jax.random.PRNGKey(1)), shifted)
    np.testing.assert_allclose(qpos_delayed, qpos_shifted, atol=1e-6)  # same ops: equal up to fusion order
    _, (qpos_undelayed, *_) = _scan(env, jax.jit(env.reset)(jax.random.PRNGKey(1)), actions)
    assert np.abs(np.asarray(qpos_undelayed) - np.asarray(qpos_delayed)).max() > 1e-3
    with pytest.raises(ValueError, match="delay"):
        ActionDelayWrapper(env, -1)


def test_action_repeat_equals_repeated_steps_with_summed_reward_and_cost():
    env = CARTPOLE
    repeated = ActionRepeatWrapper(env, 3)
    action = jp.array([0.7])
    state = jax.jit(env.reset)(jax.random.PRNGKey(2))
    _, (qpos, reward, cost, *_) = _scan(env, state, jp.tile(action, (T, 1)))
    _, (qpos_r, reward_r, cost_r, *_) = _scan(repeated, state, jp.tile(action, (T // 3, 1)))
    np.testing.assert_allclose(qpos_r, qpos[2::3], atol=1e-5)
    np.testing.assert_allclose(reward_r, np.asarray(reward).reshape(-1, 3).sum(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cost_r, np.asarray(cost).reshape(-1, 3).sum(1))
    assert float(cost_r[-1]) == 3.0
    assert repeated.dt == pytest.approx(3 * env.dt)


def test_observation_noise_has_the_requested_std_zero_mean_and_is_fresh_each_step():
    env, std, batch = envs.make("safe_cartpole"), 0.1, 256
    noisy = VmapWrapper(ObservationNoiseWrapper(env, std), batch)

    def step(s, a):
        s = noisy.step(s, a)
        clean_obs = jax.vmap(env._observe)(s.pipeline_state, s.info)  # the noise-free obs of the same state
        return s, s.obs - clean_obs

    _, noise = jax.jit(lambda s, a: jax.lax.scan(step, s, a))(
        jax.jit(noisy.reset)(jax.random.PRNGKey(0)), jp.zeros((3, batch, 1))
    )
    noise = np.asarray(noise)  # [3, batch, 5]
    n = noise.size
    assert abs(noise.mean()) < 4 * std / np.sqrt(n)
    assert abs(noise.std() / std - 1) < 0.05  # sampling error of the std ≈ 1/sqrt(2n) ≈ 0.8 %
    correlation = np.corrcoef(noise[0].ravel(), noise[1].ravel())[0, 1]
    assert abs(correlation) < 0.1  # ≈ N(0, 1/sqrt(1280)) ≈ ±0.03 if independent


@pytest.mark.slow
def test_domain_randomization_gives_in_range_distinct_parameters_and_different_dynamics():
    env, batch = envs.make("safe_cartpole"), 8
    config = DomainRandomizationConfig(mass_scale=(0.5, 1.5), damping_scale=(0.5, 2.0), actuator_gain_scale=(0.8, 1.2))
    keys = jax.random.split(jax.random.PRNGKey(0), batch)
    wrapped = DomainRandomizationWrapper(env, functools.partial(randomize, rng=keys, config=config))
    model = wrapped.batched_model
    mass_ratio = np.asarray(model.body_mass[:, 1:]) / np.asarray(env.mj_model.body_mass[1:])
    gain_ratio = np.asarray(model.actuator_gainprm[:, :, 0]) / env.mj_model.actuator_gainprm[:, 0]
    damping_ratio = np.asarray(model.dof_damping) / env.mj_model.dof_damping
    assert ((mass_ratio >= 0.5) & (mass_ratio <= 1.5)).all() and ((gain_ratio >= 0.8) & (gain_ratio <= 1.2)).all()
    assert ((damping_ratio >= 0.5 - 1e-6) & (damping_ratio <= 2.0 + 1e-6)).all()
    assert len(np.unique(mass_ratio[:, 0])) == batch
    same_start = jp.tile(jax.random.PRNGKey(3)[None], (batch, 1))  # identical initial states
    initial = jax.jit(wrapped.reset)(same_start)
    assert np.asarray(initial.obs).std(axis=0).max() == 0
    # 0.3 N·(10 N) for 0.6 s moves the cart ≈ 0.5 m: far from the 1.8 m rail stops
    _, (qpos, *_) = _scan(wrapped, initial, jp.full((30, batch, 1), 0.3))
    spread = np.asarray(qpos[-1, :, 0]).std()
    assert spread > 1e-2, spread  # per-env masses/gains give different cart trajectories
    with pytest.raises(ValueError, match="mass_scale"):
        DomainRandomizationConfig(mass_scale=(1.2, 0.8))


def test_dynamics_shift_changes_the_model_and_the_behaviour():
    nominal = CARTPOLE
    heavy = envs.dynamics_shift(CARTPOLE, body_mass_scale={"pole": 1.5})
    pole = nominal.mj_model.body("pole").id
    assert heavy.mj_model.body_mass[pole] == pytest.approx(1.5 * nominal.mj_model.body_mass[pole])
    assert nominal.mj_model.body_mass[pole] == pytest.approx(0.1)  # the nominal env is untouched
    assert heavy.config.cost_bound == 0.01  # a shifted copy of an env instance keeps its config
    state = jax.jit(nominal.reset)(jax.random.PRNGKey(0))
    _, (qpos_nominal, *_) = _scan(nominal, state, jp.full((T, 1), 0.5))
    _, (qpos_heavy, *_) = _scan(heavy, state, jp.full((T, 1), 0.5))
    assert np.abs(np.asarray(qpos_nominal - qpos_heavy)).max() > 1e-2
    via_config = envs.dynamics_shift("safe_cartpole", pole_mass=0.15, damping_scale=2.0)
    assert via_config.mj_model.body_mass[pole] == pytest.approx(0.15)
    assert via_config.mj_model.dof_damping[0] == pytest.approx(2 * nominal.mj_model.dof_damping[0])
    with pytest.raises(envs.EnvError, match="bodies of this env: cart, pole"):
        envs.dynamics_shift("safe_cartpole", body_mass_scale={"pendulum": 2.0})
    with pytest.raises(envs.EnvError, match="friction_scale"):
        envs.dynamics_shift("safe_cartpole", friction_scale=0.0)


@pytest.mark.slow
def test_episode_wrapper_accumulates_return_cost_and_length_then_restarts():
    env = envs.make("safe_cartpole", cost_bound=0.02)
    wrapped = AutoResetWrapper(EpisodeWrapper(VmapWrapper(env, 4), episode_length=10))
    actions = jax.random.uniform(jax.random.PRNGKey(0), (15, 4, 1), minval=-1, maxval=1)

    def step(s, a):
        s = wrapped.step(s, a)
        return s, (s.reward, s.info["cost"], s.done, s.info["episode_metrics"])

    _, (reward, cost, done, sums) = jax.jit(lambda s, a: jax.lax.scan(step, s, a))(
        jax.jit(wrapped.reset)(jax.random.PRNGKey(1)), actions
    )
    assert np.asarray(done)[9].all() and not np.asarray(done)[:9].any()
    np.testing.assert_allclose(sums["sum_reward"][9], np.asarray(reward)[:10].sum(0), rtol=1e-5)
    np.testing.assert_allclose(sums["cost"][9], np.asarray(cost)[:10].sum(0))
    np.testing.assert_array_equal(sums["length"][9], 10)
    np.testing.assert_allclose(sums["sum_reward"][12], np.asarray(reward)[10:13].sum(0), rtol=1e-5)


@pytest.mark.slow
def test_every_wrapper_composes_and_the_episode_counts_env_steps_under_action_repeat():
    env = envs.make("point_goal")
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    # delay -> noise -> repeat -> domain randomisation -> episode (in env steps) -> auto-reset
    inner = ActionRepeatWrapper(ObservationNoiseWrapper(ActionDelayWrapper(env, 1), 0.01), 2)
    randomized = DomainRandomizationWrapper(inner, functools.partial(randomize, rng=keys))
    wrapped = AutoResetWrapper(EpisodeWrapper(randomized, episode_length=10, steps_per_call=2))
    _, (_qpos, _reward, _cost, obs, done) = _scan(wrapped, jax.jit(wrapped.reset)(keys), jp.ones((10, 4, 2)))
    assert obs.shape == (10, 4, env.observation_size) and np.isfinite(np.asarray(obs)).all()
    assert np.asarray(done)[:, 0].tolist() == [0, 0, 0, 0, 1] * 2  # 10 env steps = 5 calls of 2
