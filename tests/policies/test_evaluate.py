"""Evaluation and rollouts execute a policy as a robot would (on the one episode loop): one decision every
`action_repeat` steps, the action held in between, the cost fed back into each episode's own carry; returns
stop accumulating after `done`. A pure-jnp counter env keeps this fast."""

import jax.numpy as jnp
import numpy as np
import pytest
from counter_env import CounterEnv, SuccessCounterEnv, cost_spent_policy, make_policy, step_index_policy

from saferl.policies import stateless
from saferl.policies.evaluate import evaluate, rollout_states


def test_evaluate_sums_rewards_and_costs_up_to_done_and_reports_the_repeat():
    result = evaluate(step_index_policy(3), CounterEnv(episode_length=9, done_at=5), episodes=2)
    # actions 0, 0, 0, .03, .03 over the 5 steps up to and including done (t = 5); later steps ignored
    np.testing.assert_allclose(result["returns"], [0.06, 0.06], rtol=1e-5)
    np.testing.assert_allclose(result["costs"], [2.5, 2.5])
    assert result["action_repeat"] == 3 and result["fraction_within_budget"] == 1.0
    assert "success_rate" not in result  # the env reports no success metric


@pytest.mark.parametrize("done_at, final, any_", [(6, 1.0, 1.0), (5, 0.0, 0.0)])
def test_success_rates_count_the_last_step_and_any_step_up_to_done(done_at, final, any_):
    # actions t/100: the step reaching t = 6 applies 0.05 >= 0.045, the first success; done cuts the episode
    env = SuccessCounterEnv(episode_length=9, threshold=0.045, done_at=done_at)
    result = evaluate(step_index_policy(1), env, episodes=2)
    assert (result["success_rate"], result["success_any_rate"]) == (final, any_)


def test_a_success_that_is_lost_again_counts_for_any_step_but_not_the_end():
    spike = make_policy(stateless(lambda obs, key: jnp.where(obs[:1] == 3.0, 1.0, 0.0)))  # 1 only at t = 3
    result = evaluate(spike, SuccessCounterEnv(episode_length=8, threshold=0.5), episodes=1)
    assert (result["success_rate"], result["success_any_rate"]) == (0.0, 1.0)


def test_stochastic_evaluation_uses_the_policy_sample_function():
    policy = step_index_policy(1, sample=stateless(lambda obs, key: jnp.ones(1)))
    env = CounterEnv(episode_length=4)
    assert evaluate(policy, env, episodes=1, deterministic=False)["returns"] == [4.0]
    np.testing.assert_allclose(evaluate(policy, env, episodes=1)["returns"], [0.06], rtol=1e-5)


@pytest.mark.parametrize("repeat", [1, 2])
def test_a_carry_dependent_policy_sees_its_own_episodes_fed_back_cost(repeat):
    # each episode draws its own cost rate c per step; the policy acts with the cost it has spent, so with
    # T steps the return is Σ_decisions c·t_decision·repeat: with independent carries return_i ∝ cost_i
    steps, episodes = 6, 5
    result = evaluate(cost_spent_policy(repeat), CounterEnv(steps, random_rate=True), episodes=episodes)
    returns, costs = np.asarray(result["returns"]), np.asarray(result["costs"])
    rates = costs / steps
    assert np.ptp(rates) > 0.1  # the episodes really differ
    decided_at = (np.arange(steps) // repeat) * repeat  # cost spent when the action in force was decided
    np.testing.assert_allclose(returns, rates * decided_at.sum(), rtol=1e-5)  # float32 sums of ≤ 6 terms


def test_rollout_states_start_with_the_reset_state_and_hold_actions():
    states = rollout_states(step_index_policy(2), CounterEnv(episode_length=5), steps=5)
    np.testing.assert_allclose(states.obs[:, 0], np.arange(6))
    np.testing.assert_allclose(states.obs[1:, 1], [0, 0, 0.02, 0.02, 0.04], rtol=1e-6)


def test_rollout_states_feed_the_cost_back_as_evaluation_does():
    states = rollout_states(cost_spent_policy(1), CounterEnv(episode_length=4), steps=4)
    np.testing.assert_allclose(states.obs[1:, 1], [0.0, 0.5, 1.0, 1.5])  # the action applied at each step


def test_action_repeat_below_one_is_rejected():
    with pytest.raises(ValueError, match="action_repeat must be >= 1"):
        step_index_policy(0)
