"""The one imagined step (saferl.models.imagination): member choice, the members' next-state spread σ, optimism,
pessimism, aleatoric noise and hallucinated control, on hand-written member predictions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saferl.models.imagination import imagine_step, next_state_spread

OBS = np.array([[1.0, 2.0], [-1.0, 0.5]], np.float32)  # [B=2, obs 2]
# member e's prediction [Δs (2), r, c], the same at both batch elements: [E=3, B=2, 4]
MEMBERS = np.array([[0.1, 0.0, 1.0, -1.0], [0.2, 0.3, 2.0, -0.5], [0.3, -0.3, 3.0, 0.0]], np.float32)
MEAN = np.broadcast_to(MEMBERS[:, None], (3, 2, 4)).copy()
VAR = np.full_like(MEAN, 0.04)
# σ by hand: std of [0.1, 0.2, 0.3] = 0.1·√(2/3), std of [0, 0.3, −0.3] = √0.06 (ddof 0); mean over the 2 state dims
SPREAD = np.array([0.1 * np.sqrt(2.0 / 3.0), np.sqrt(0.06)])
SIGMA = SPREAD.mean()


def test_each_element_follows_its_member_and_sigma_is_the_members_next_state_spread():
    member = jnp.array([2, 0])
    out = imagine_step(jnp.asarray(OBS), MEAN, VAR, member, optimism=0.5, pessimism=8.0)
    # float32 sums of O(1) numbers: 1e-6
    np.testing.assert_allclose(out.next_obs, OBS + MEMBERS[[2, 0], :2], atol=1e-6)
    np.testing.assert_allclose(out.epistemic_std, [SIGMA, SIGMA], atol=1e-6)
    np.testing.assert_allclose(out.reward, MEMBERS[[2, 0], 2] + 0.5 * SIGMA, atol=1e-6)
    np.testing.assert_allclose(out.cost, np.maximum(MEMBERS[[2, 0], 3] + 8.0 * SIGMA, 0.0), atol=1e-6)
    assert float(out.cost[0]) > 0.0 and float(out.cost[1]) > 0.0  # −1 + 8σ > 0: the penalty is visible
    np.testing.assert_allclose(next_state_spread(MEAN, 2), np.broadcast_to(SPREAD, (2, 2)), atol=1e-6)


def test_the_mean_follows_the_members_average_and_costs_are_clipped_at_zero():
    out = imagine_step(jnp.asarray(OBS), MEAN, VAR, None, optimism=1.0, pessimism=1.0)
    np.testing.assert_allclose(out.next_obs, OBS + np.array([0.2, 0.0]), atol=1e-6)
    np.testing.assert_allclose(out.reward, 2.0 + SIGMA, atol=1e-6)
    np.testing.assert_allclose(out.cost, 0.0, atol=0.0)  # c̄ + σ = −0.5 + 0.23 < 0 -> exactly 0
    with pytest.raises(ValueError, match="without aleatoric noise"):
        imagine_step(jnp.asarray(OBS), MEAN, VAR, None, jax.random.PRNGKey(0))


def test_zero_lambdas_add_nothing_and_a_one_member_stack_has_no_spread():
    plain = imagine_step(jnp.asarray(OBS), MEAN, VAR, jnp.array([1, 1]))
    np.testing.assert_array_equal(plain.reward, MEMBERS[[1, 1], 2])  # exactly the member's head: no 0·σ term
    np.testing.assert_array_equal(plain.cost, [0.0, 0.0])  # max(0, −0.5)
    alone = imagine_step(jnp.asarray(OBS), MEAN[1:2], VAR[1:2], jnp.array([0, 0]))
    np.testing.assert_array_equal(alone.next_obs, plain.next_obs)
    np.testing.assert_array_equal(alone.epistemic_std, [0.0, 0.0])


def test_aleatoric_noise_is_the_followed_members_std_times_a_standard_normal_draw():
    key = jax.random.PRNGKey(3)
    var = VAR * np.array([1.0, 4.0, 9.0], np.float32)[:, None, None]  # member e: σ_ale = 0.2·(e + 1)
    out = imagine_step(jnp.asarray(OBS), MEAN, var, jnp.array([2, 0]), key)
    noise = np.asarray(jax.random.normal(key, (2, 4)))
    std = np.array([[0.6], [0.2]])
    np.testing.assert_allclose(out.next_obs, OBS + MEMBERS[[2, 0], :2] + std * noise[:, :2], atol=1e-6)
    np.testing.assert_allclose(out.reward, MEMBERS[[2, 0], 2] + std[:, 0] * noise[:, 2], atol=1e-6)


def test_hallucinated_control_moves_each_state_dim_by_beta_sigma_eta():
    eta = jnp.array([[1.0, -1.0], [0.5, 0.0]])
    out = imagine_step(jnp.asarray(OBS), MEAN, VAR, None, hallucination_scale=2.0, eta=eta)
    np.testing.assert_allclose(out.next_obs, OBS + np.array([0.2, 0.0]) + 2.0 * SPREAD * np.asarray(eta), atol=1e-6)
    np.testing.assert_allclose(out.reward, 2.0, atol=1e-6)  # the heads are not moved
    with pytest.raises(ValueError, match="eta"):
        imagine_step(jnp.asarray(OBS), MEAN, VAR, None, hallucination_scale=2.0)
