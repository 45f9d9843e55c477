"""PPO's GAE and SAC's critic targets against values worked out by hand on a 4-step trajectory with an episode
end in the middle (no networks, no training: the arithmetic the learning tests rely on)."""

import jax
import jax.numpy as jnp
import numpy as np

from saferl.agents.ppo.losses import gae
from saferl.agents.sac.losses import critic_loss, critic_target
from saferl.data.buffer import Transition

# one trajectory of 4 steps, two copies side by side [T=4, B=2]: in column 0 the episode *terminates* at step 1
# (no bootstrap from V(s'_1)), in column 1 a time limit ends it there (done, not terminated: V(s'_1) counts)
REWARD = [1.0, 2.0, 3.0, 4.0]
VALUES = [0.5, 1.0, 1.5, 2.0]  # V(s_t)
NEXT_VALUES = [1.0, 7.0, 2.0, 2.5]  # V(s'_t), the true next observation of each step
GAMMA, LAMBDA = 0.9, 0.5


def _columns(values):
    return jnp.asarray(np.stack([values, values], axis=1), jnp.float32)


def test_gae_matches_hand_computed_advantages_with_a_termination_and_a_time_limit():
    terminated = jnp.asarray([[0, 0], [1, 0], [0, 0], [0, 0]], jnp.float32)
    done = jnp.asarray([[0, 0], [1, 1], [0, 0], [0, 0]], jnp.float32)
    advantages, targets = gae(
        _columns(REWARD), _columns(VALUES), _columns(NEXT_VALUES), terminated, done, GAMMA, LAMBDA
    )
    # δ_t = r_t + γ(1 − term_t)V(s'_t) − V(s_t);  A_t = δ_t + γλ(1 − done_t)A_{t+1}, A_4 = 0
    # δ = [1 + .9·1 − .5, 2 − 1, 3 + .9·2 − 1.5, 4 + .9·2.5 − 2] = [1.4, 1.0, 3.3, 4.25] (column 0)
    # column 1 at t=1: δ_1 = 2 + .9·7 − 1 = 7.3 (the time limit bootstraps)
    # A_3 = 4.25, A_2 = 3.3 + .45·4.25 = 5.2125 (both columns); the episode end cuts A_1 off from A_2:
    # column 0: A_1 = 1.0, A_0 = 1.4 + .45·1.0 = 1.85;  column 1: A_1 = 7.3, A_0 = 1.4 + .45·7.3 = 4.685
    expected = np.array([[1.85, 4.685], [1.0, 7.3], [5.2125, 5.2125], [4.25, 4.25]])
    np.testing.assert_allclose(advantages, expected, rtol=1e-6)
    np.testing.assert_allclose(targets, expected + np.asarray(_columns(VALUES)), rtol=1e-6)  # A_t + V(s_t)


def test_gae_with_lambda_one_and_no_episode_end_is_the_discounted_return_minus_the_value():
    signal = jnp.asarray([[1.0], [0.0], [2.0]])
    values = jnp.asarray([[0.3], [0.2], [0.1]])
    next_values = jnp.asarray([[0.2], [0.1], [5.0]])
    zero = jnp.zeros((3, 1))
    advantages, targets = gae(signal, values, next_values, zero, zero, 0.5, 1.0)
    # Monte-Carlo targets bootstrapped at the end: G_2 = 2 + .5·5 = 4.5, G_1 = 0 + .5·4.5 = 2.25, G_0 = 2.125
    np.testing.assert_allclose(targets[:, 0], [2.125, 2.25, 4.5], rtol=1e-6)
    np.testing.assert_allclose(advantages[:, 0], [2.125 - 0.3, 2.25 - 0.2, 4.5 - 0.1], rtol=1e-6)


# SAC: twin target critics Q̄(s'_t, a'_t) [T, 2], the same 4 steps, terminated at step 1
NEXT_Q = [[1.0, 3.0], [-2.0, -4.0], [5.0, 2.0], [-0.5, -1.5]]
DONE = [0.0, 1.0, 0.0, 0.0]
ALPHA, NEXT_LOG_PROB = 0.5, [-1.0, 0.4, 2.0, 0.0]
COST, COST_GAMMA = [0.0, 1.0, 0.5, 0.0], 0.8


def test_sac_reward_target_is_the_soft_min_twin_value_bootstrapped_except_at_the_termination():
    signal = 2.0 * jnp.asarray(REWARD)  # reward_scaling 2
    bonus = -ALPHA * jnp.asarray(NEXT_LOG_PROB)  # [0.5, -0.2, -1.0, 0.0]
    target = critic_target(signal, jnp.asarray(NEXT_Q), jnp.asarray(DONE), bonus, GAMMA, is_cost=False)
    # min twin = [1, -4, 2, -1.5]; + bonus = [1.5, -4.2, 1.0, -1.5]
    # target = [2 + .9·1.5, 4 (terminated), 6 + .9·1.0, 8 − .9·1.5]
    np.testing.assert_allclose(target, [3.35, 4.0, 6.9, 6.65], rtol=1e-6)


def test_sac_cost_target_is_the_mean_twin_value_clipped_at_zero_bootstrapped_except_at_the_termination():
    target = critic_target(
        jnp.asarray(COST), jnp.asarray(NEXT_Q), jnp.asarray(DONE), jnp.zeros(4), COST_GAMMA, is_cost=True
    )
    # mean twin = [2, -3, 3.5, -1] -> clipped [2, 0, 3.5, 0]; target = [0 + .8·2, 1 (terminated), .5 + .8·3.5, 0]
    np.testing.assert_allclose(target, [1.6, 1.0, 3.3, 0.0], rtol=1e-6)


class _TableQ:
    """A 'network' whose params are its output: apply(normalizer, params, obs, action) -> params [B, 2]."""

    @staticmethod
    def apply(normalizer, params, obs, action):
        return params


def test_sac_critic_loss_regresses_both_twins_on_the_target_and_passes_no_gradient_to_the_target_critic():
    batch = Transition(
        obs=jnp.zeros((4, 1)),
        action=jnp.zeros((4, 1)),
        next_obs=jnp.zeros((4, 1)),
        reward=jnp.asarray(REWARD),
        cost=jnp.asarray(COST),
        done=jnp.asarray(DONE),
    )
    q = jnp.asarray([[1.6, 0.0], [1.0, 2.0], [3.3, 3.3], [-1.0, 1.0]])
    target_q = jnp.asarray(NEXT_Q)

    def loss(q, target_q):
        return critic_loss(q, _TableQ, None, target_q, batch, batch.cost, None, jnp.zeros(4), COST_GAMMA, True)

    # cost targets [1.6, 1.0, 3.3, 0.0] (above): squared errors 0, 2.56, 0, 1, 0, 0, 1, 1 -> ½·mean = ½·5.56/8
    np.testing.assert_allclose(loss(q, target_q), 0.5 * 5.56 / 8, rtol=1e-6)
    grad_q, grad_target = jax.grad(loss, argnums=(0, 1))(q, target_q)
    np.testing.assert_allclose(grad_q, (q - jnp.asarray([1.6, 1.0, 3.3, 0.0])[:, None]) / 8, rtol=1e-6, atol=1e-7)
    assert not np.asarray(grad_target).any()  # the target is a fixed regression target
