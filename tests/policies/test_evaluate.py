"""Evaluation and rollouts execute a policy as a robot would: one decision every `action_repeat` steps, the
action held in between; returns stop accumulating after `done`. A pure-jnp counter env keeps this fast."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saferl.policies import Policy
from saferl.policies.evaluate import evaluate, held_action_rollout, rollout_states


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class CounterState:
    obs: jax.Array  # [2]: (step t, last action)
    reward: jax.Array
    done: jax.Array
    info: dict


class CounterEnv:
    """obs = (t, last action); reward = the action applied; cost 0.5 per step; done once t reaches `done_at`."""

    observation_size, action_size, cost_budget = 2, 1, 4.0

    def __init__(self, episode_length: int, done_at: int = 10**6):
        self.episode_length, self.done_at = episode_length, done_at

    def reset(self, key):
        zero = jnp.zeros(())
        return CounterState(obs=jnp.zeros(2), reward=zero, done=zero, info={"cost": zero})

    def step(self, state, action):
        t = state.obs[0] + 1.0
        return CounterState(obs=jnp.stack([t, action[0]]), reward=action[0], done=(t >= self.done_at) * 1.0,
                            info={"cost": jnp.asarray(0.5)})


def _policy(repeat: int, sample=None) -> Policy:
    """Acts with the decision's step index t / 100, so a held action shows up as a repeated value."""
    return Policy(act=lambda obs, key: obs[:1] / 100.0, params=None, apply=None, observation_size=2, action_size=1,
                  env_name="counter", env_config=None, cost_budget=4.0, algo="test", sample=sample,
                  action_repeat=repeat)


@pytest.mark.parametrize("repeat, steps", [(1, 5), (3, 7), (4, 8)])
def test_actions_are_decided_every_repeat_steps_and_held(repeat, steps):
    env = CounterEnv(steps)
    obs = held_action_rollout(env, _policy(repeat).act, repeat, env.reset(None), jax.random.PRNGKey(0), steps,
                              lambda s: s.obs)
    assert obs.shape == (steps, 2)  # a last decision running past `steps` is cut
    decided_at = (np.arange(steps) // repeat) * repeat  # step index of the decision in force
    np.testing.assert_allclose(obs[:, 1], decided_at / 100.0, rtol=1e-6)
    np.testing.assert_allclose(obs[:, 0], np.arange(1, steps + 1))


def test_evaluate_sums_rewards_and_costs_up_to_done_and_reports_the_repeat():
    result = evaluate(_policy(3), CounterEnv(episode_length=9, done_at=5), episodes=2)
    # actions 0, 0, 0, .03, .03 over the 5 steps up to and including done (t = 5); later steps ignored
    np.testing.assert_allclose(result["returns"], [0.06, 0.06], rtol=1e-5)
    np.testing.assert_allclose(result["costs"], [2.5, 2.5])
    assert result["action_repeat"] == 3 and result["fraction_within_budget"] == 1.0


def test_stochastic_evaluation_uses_the_policy_sample_function():
    sample = lambda obs, key: jnp.ones(1)  # noqa: E731
    env = CounterEnv(episode_length=4)
    assert evaluate(_policy(1, sample), env, episodes=1, deterministic=False)["returns"] == [4.0]
    np.testing.assert_allclose(evaluate(_policy(1, sample), env, episodes=1)["returns"], [0.06], rtol=1e-5)


def test_rollout_states_start_with_the_reset_state_and_hold_actions():
    states = rollout_states(_policy(2), CounterEnv(episode_length=5), steps=5)
    np.testing.assert_allclose(states.obs[:, 0], np.arange(6))
    np.testing.assert_allclose(states.obs[1:, 1], [0, 0, 0.02, 0.02, 0.04], rtol=1e-6)


def test_action_repeat_below_one_is_rejected():
    with pytest.raises(ValueError, match="action_repeat must be >= 1"):
        _policy(0)
