"""Epistemic/aleatoric σ, total variance, information gain and distrax views of saferl.models.uncertainty."""

import jax
import jax.numpy as jnp
import numpy as np

from saferl.models import uncertainty

# 3 members, batch of 2, 2 outputs
MEAN = jnp.array([[[0.0, 1.0], [2.0, 0.0]], [[1.0, 1.0], [2.0, 0.0]], [[2.0, 1.0], [2.0, 0.0]]])
VAR = jnp.array([[[1.0, 4.0], [0.25, 1.0]], [[1.0, 4.0], [0.25, 1.0]], [[4.0, 4.0], [0.25, 1.0]]])


def test_epistemic_and_aleatoric_std_by_hand():
    # member means 0, 1, 2 -> population std sqrt(2/3); identical means -> 0
    np.testing.assert_allclose(uncertainty.epistemic_std(MEAN), [[np.sqrt(2 / 3), 0], [0, 0]], rtol=1e-6)
    # member stds 1, 1, 2 -> mean 4/3
    np.testing.assert_allclose(uncertainty.aleatoric_std(VAR), [[4 / 3, 2], [0.5, 1]], rtol=1e-6)


def test_epistemic_std_has_a_finite_gradient_where_members_agree_and_keeps_nan():
    grad = jax.grad(lambda m: uncertainty.epistemic_std(m).sum())(MEAN)  # outputs 1 and the 2nd row: agreement
    assert np.all(np.isfinite(np.asarray(grad)))
    slope = 1 / (3 * np.sqrt(2 / 3))  # d std / d m_i = (m_i − m̄) / (E·std) for means 0, 1, 2
    np.testing.assert_allclose(grad[:, 0, 0], [-slope, 0, slope], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(grad[:, :, 1], 0.0)
    nan_member = MEAN.at[0, 1, 0].set(jnp.nan)  # a member's NaN is not hidden as agreement
    assert np.isnan(np.asarray(uncertainty.epistemic_std(nan_member))[1, 0])


def test_total_variance_equals_the_mixture_variance():
    total = uncertainty.total_variance(MEAN, VAR)
    np.testing.assert_allclose(total, [[2.0 + 2 / 3, 4.0], [0.25, 1.0]], rtol=1e-6)
    dist = uncertainty.as_distribution(MEAN, VAR)
    assert dist.batch_shape == (2,) and dist.event_shape == (2,)
    np.testing.assert_allclose(dist.variance(), total, rtol=1e-5)
    np.testing.assert_allclose(dist.mean(), MEAN.mean(0), rtol=1e-6)
    # Monte-Carlo check of the mixture (20k samples: std error of the variance ≈ 1 %)
    samples = dist.sample(seed=jax.random.key(0), sample_shape=(20000,))
    np.testing.assert_allclose(samples.var(0), total, rtol=0.05)


def test_information_gain_is_zero_when_members_agree_and_matches_the_formula():
    info = uncertainty.information_gain(MEAN, VAR)
    # row 0: only output 0 disagrees: log(1 + (2/3) / (4/3)^2); row 1: members agree
    np.testing.assert_allclose(info, [np.log1p((2 / 3) / (16 / 9)), 0.0], rtol=1e-5, atol=1e-7)
    # deterministic members (σ_ale = 0) stay finite thanks to the floor
    assert bool(jnp.all(jnp.isfinite(uncertainty.information_gain(MEAN, jnp.zeros_like(VAR)))))


def test_member_distributions_score_each_member_separately():
    dist = uncertainty.member_distributions(MEAN, VAR)
    assert dist.batch_shape == (3, 2) and dist.event_shape == (2,)
    logp = dist.log_prob(MEAN)
    ref = jax.scipy.stats.norm.logpdf(MEAN, MEAN, jnp.sqrt(VAR)).sum(-1)
    np.testing.assert_allclose(logp, ref, rtol=1e-5)
