"""Our envs run unchanged under brax's own trainers (PPO, SAC), which apply brax's training wrappers: each
trainer's own evaluation of the policy it trained equals our rollout of that policy on the bare env (the return,
the cost and the episode length brax reads from our env are the env's)."""

import functools

import jax
import jax.numpy as jp
import numpy as np
import pytest
from brax.envs.wrappers import training as brax_training
from brax.training import acting
from brax.training.agents.ppo import train as ppo
from brax.training.agents.sac import train as sac

import envs
from envs.wrappers import make_randomization_fn


@pytest.mark.slow
def test_brax_ppo_trains_on_pendulum_without_changes():
    metrics = []
    make_policy, params, final = ppo.train(
        environment=envs.make("pendulum"),
        num_timesteps=2048,
        episode_length=64,
        num_envs=8,
        batch_size=8,
        num_minibatches=2,
        unroll_length=8,
        num_updates_per_batch=1,
        num_evals=2,
        num_eval_envs=4,
        learning_rate=3e-4,
        seed=0,
        progress_fn=lambda step, m: metrics.append((step, m)),
    )
    assert final["eval/episode_reward"] is not None
    assert np.isfinite(float(final["eval/episode_reward"]))
    assert "eval/episode_cost" in final  # our metrics["cost"] is aggregated by brax's eval wrapper
    assert metrics and metrics[-1][0] >= 2048
    _assert_brax_evaluation_is_our_rollout(envs.make("pendulum"), make_policy, params)


@pytest.mark.slow
def test_brax_sac_trains_on_pendulum_without_changes():
    make_policy, params, final = sac.train(
        environment=envs.make("pendulum"),
        num_timesteps=1024,
        episode_length=32,
        num_envs=8,
        batch_size=32,
        min_replay_size=64,
        max_replay_size=4096,
        grad_updates_per_step=1,
        num_evals=2,
        num_eval_envs=4,
        seed=0,
    )
    assert np.isfinite(float(final["eval/episode_reward"]))
    _assert_brax_evaluation_is_our_rollout(envs.make("pendulum"), make_policy, params)


def _assert_brax_evaluation_is_our_rollout(env, make_policy, params, episode_length=64, num_envs=4):
    """brax's `Evaluator` (its eval wrappers around our env, as its trainers evaluate) of the trained policy
    reports the mean return, cost and length of our own deterministic rollout of that policy from the same
    initial states on the bare env."""
    eval_env = brax_training.wrap(env, episode_length=episode_length)  # the Evaluator adds brax's EvalWrapper
    key = jax.random.PRNGKey(7)
    evaluator = acting.Evaluator(
        eval_env, functools.partial(make_policy, deterministic=True), num_envs, episode_length, 1, key
    )
    reported = {k: float(v) for k, v in evaluator.run_evaluation(params, {}).items()}
    policy = make_policy(params, deterministic=True)

    @jax.jit
    def ours(keys):
        def step(state, _):
            state = jax.vmap(env.step)(state, policy(state.obs, jax.random.PRNGKey(0))[0])
            return state, (state.reward, state.info["cost"], state.done)

        return jax.lax.scan(step, jax.vmap(env.reset)(keys), None, length=episode_length)[1]

    _, unroll_key = jax.random.split(key)  # the Evaluator's first unroll key; its initial states use its split
    reward, cost, done = (np.asarray(x) for x in ours(jax.random.split(unroll_key, num_envs)))
    assert not done.any()  # pendulum has no termination: brax's time limit ends every episode
    assert reported["eval/avg_episode_length"] == episode_length
    returns = reward.sum(0)
    assert np.ptp(returns) > 1e-3  # different starts give different returns (the comparison is not 0 == 0)
    np.testing.assert_allclose(reported["eval/episode_reward"], returns.mean(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(reported["eval/episode_cost"], cost.sum(0).mean(), atol=1e-6)


@pytest.mark.parametrize("name", envs.names())
def test_reset_and_step_trace_under_brax_training_wrap(name):
    # tracing (no XLA compile) is what brax's trainers need first; pendulum also runs fully above
    env = brax_training.wrap(envs.make(name), episode_length=8, action_repeat=2)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    state = jax.eval_shape(env.reset, keys)
    state = jax.eval_shape(env.step, state, jp.zeros((4, env.action_size)))
    assert state.obs.shape == (4, env.observation_size)
    assert state.info["cost"].shape == (4,)
    assert set(state.info["episode_metrics"]) >= {"sum_reward", "length", "cost"}
    assert state.info["truncation"].shape == (4,)


@pytest.mark.slow
def test_brax_domain_randomization_wrapper_accepts_our_randomization_fn():
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    fn = functools.partial(make_randomization_fn(), rng=keys)
    env = brax_training.wrap(envs.make("safe_cartpole"), episode_length=8, randomization_fn=fn)
    state = jax.eval_shape(env.step, jax.eval_shape(env.reset, keys), jp.ones((4, 1)))
    assert state.pipeline_state.qvel.shape == (4, 2)
