"""The one episode loop: a decision every `action_repeat` steps, the action held in between, every step's
cost fed back into the policy carry before the next decision, memory carried across decisions, decision
keys that a Python driver (the robot-side `Actor`) reproduces. Pure-jnp counter env: fast."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from counter_env import CounterEnv, cost_spent_policy, make_policy, step_index_policy

from saferl.policies import PolicyCarry, episode, stateless


def _run(policy, env, decisions, emit=lambda step: step.next_state.obs, key=jax.random.PRNGKey(0)):
    (final_state, final_carry), record = jax.jit(
        lambda k: episode.run(policy, env, env.reset(k), k, decisions, emit_step=emit)
    )(key)
    return final_state, final_carry, record


@pytest.mark.parametrize("repeat, steps", [(1, 5), (3, 7), (4, 8)])
def test_actions_are_decided_every_repeat_steps_and_held(repeat, steps):
    env = CounterEnv(steps)
    _, _, record = _run(step_index_policy(repeat), env, episode.decisions_for(steps, repeat))
    obs = episode.per_step(record.steps, steps)
    assert obs.shape == (steps, 2)  # a last decision running past `steps` is cut
    decided_at = (np.arange(steps) // repeat) * repeat  # step index of the decision in force
    np.testing.assert_allclose(obs[:, 1], decided_at / 100.0, rtol=1e-6)
    np.testing.assert_allclose(obs[:, 0], np.arange(1, steps + 1))


def test_the_cost_of_every_held_step_is_fed_back_before_the_next_decision():
    # 0.5 per step, held 3 steps: decision i sees 1.5·i spent; the carry after each step counts that step
    _, final_carry, record = _run(cost_spent_policy(3), CounterEnv(9), 3, emit=lambda step: step)
    np.testing.assert_allclose(record.transition.action[:, 0], [0.0, 1.5, 3.0])
    np.testing.assert_allclose(episode.per_step(record.steps.carry.cost_spent, 9), 0.5 * np.arange(1, 10))
    np.testing.assert_allclose(record.carry.cost_spent, [1.5, 3.0, 4.5])
    assert float(final_carry.cost_spent) == 4.5


def test_decision_transitions_sum_reward_and_cost_over_the_hold():
    env = CounterEnv(8, done_at=5)
    _, _, record = _run(step_index_policy(4), env, 2)
    transition = record.transition
    np.testing.assert_allclose(transition.obs[:, 0], [0, 4])  # observation at each decision
    np.testing.assert_allclose(transition.next_obs[:, 0], [4, 8])  # after its hold
    np.testing.assert_allclose(transition.reward, [0.0, 4 * 0.04], rtol=1e-6)  # Σ of the held action
    np.testing.assert_allclose(transition.cost, [2.0, 2.0])  # 4 steps × 0.5
    np.testing.assert_array_equal(transition.done, [0.0, 1.0])  # t = 5 is inside the second hold


def test_policy_memory_is_carried_from_decision_to_decision():
    def counting(carry, obs, key):  # acts with how many decisions came before
        return carry.memory.astype(jnp.float32)[None], carry.replace(memory=carry.memory + 1)

    init = lambda: PolicyCarry(cost_spent=jnp.zeros(()), memory=jnp.zeros((), jnp.int32))  # noqa: E731
    _, final_carry, record = _run(make_policy(counting, repeat=2, init_carry=init), CounterEnv(10), 5)
    np.testing.assert_array_equal(record.transition.action[:, 0], np.arange(5))
    assert int(final_carry.memory) == 5


def test_decision_keys_are_the_ones_a_python_driver_reproduces():
    draw = stateless(lambda obs, key: jax.random.uniform(key, (1,)))
    policy, key = make_policy(draw), jax.random.PRNGKey(7)
    _, _, record = _run(policy, CounterEnv(4), 4, key=key)
    carry = policy.init_carry()
    for index in range(4):  # what hardware.runner.Actor does, one decision at a time
        action, carry = episode.decide(policy.act, carry, np.zeros(2, np.float32), key, index)
        np.testing.assert_array_equal(action, record.transition.action[index])


def test_stochastic_execution_uses_the_policy_sample_function():
    policy = step_index_policy(1, sample=stateless(lambda obs, key: jnp.ones(1)))
    assert episode.acting(policy, deterministic=False) is policy.sample
    assert episode.acting(policy) is policy.act
    without_sample = step_index_policy(1)
    assert episode.acting(without_sample, deterministic=False) is without_sample.act
