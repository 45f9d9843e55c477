"""Gaussian NLL, soft log-variance bounds and the member loss of saferl.models.network."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from saferl.models.network import GaussianMLP, gaussian_nll, member_fit_score, member_objective, soft_bound_logvar


def test_nll_gradient_matches_the_analytic_gradient():
    mean = jnp.array([0.3, -1.0, 2.0])
    logvar = jnp.array([-1.0, 0.0, 0.7])
    target = jnp.array([0.0, 0.5, 2.5])
    d_mean, d_logvar = jax.grad(lambda m, lv: gaussian_nll(m, lv, target).sum(), argnums=(0, 1))(mean, logvar)
    var = jnp.exp(logvar)
    # d/dμ ½[(y−μ)²/σ² + log σ²] = −(y−μ)/σ² ;  d/dlogσ² = ½[1 − (y−μ)²/σ²]
    np.testing.assert_allclose(d_mean, -(target - mean) / var, rtol=1e-5)
    np.testing.assert_allclose(d_logvar, 0.5 * (1 - jnp.square(target - mean) / var), rtol=1e-5, atol=1e-6)
    # the value itself is the Gaussian log-density with the sign flipped
    ref = -jax.scipy.stats.norm.logpdf(target, mean, jnp.sqrt(var))
    np.testing.assert_allclose(gaussian_nll(mean, logvar, target), ref, rtol=1e-5)


def test_member_loss_gradient_matches_finite_differences():
    module = GaussianMLP(hidden_sizes=(8,), out_size=2)
    x = jax.random.normal(jax.random.key(0), (16, 3))
    y = jax.random.normal(jax.random.key(1), (16, 2))
    params = module.init(jax.random.key(2), x)
    # check_grads compares reverse-mode gradients with central differences (float32 tolerances)
    check_grads(
        lambda p: member_objective(module, p, x, y, 0.01),
        (params,),
        order=1,
        modes=("rev",),
        eps=1e-2,
        atol=2e-2,
        rtol=2e-2,
    )


def test_soft_bounds_keep_logvar_inside_and_pass_through_the_middle():
    raw = jnp.linspace(-50.0, 50.0, 1001)
    logvar = soft_bound_logvar(raw, jnp.float32(-10.0), jnp.float32(0.5))
    # soft bounds: the outer softplus can add up to softplus(min − max) = 3e-5 above max; float32 rounds
    # the far tail onto min exactly
    assert float(logvar.min()) >= -10.0 and float(logvar.max()) < 0.5 + 1e-4
    assert bool(jnp.all(jnp.diff(logvar) >= 0))  # monotone
    # far from both bounds the map is ≈ identity (softplus(8) ≈ 3e-4 away)
    np.testing.assert_allclose(soft_bound_logvar(jnp.float32(-4.75), -10.0, 0.5), -4.75, atol=1e-2)


def test_bound_penalty_pushes_the_bounds_together():
    module = GaussianMLP(hidden_sizes=(4,), out_size=2, init_min_logvar=-10.0, init_max_logvar=10.0)
    x, y = jnp.zeros((4, 3)), jnp.zeros((4, 2))  # raw log-variance = bias = 0, 10 away from both bounds
    params = module.init(jax.random.key(0), x)
    grads = jax.grad(lambda p: member_objective(module, p, x, y, 0.01))(params)["params"]
    # the NLL reaches the bounds through sigmoid(−10) ≈ 5e-5, so the penalty dominates: +0.01 / −0.01
    np.testing.assert_allclose(grads["max_logvar"], 0.01, atol=2e-3)
    np.testing.assert_allclose(grads["min_logvar"], -0.01, atol=2e-3)


def test_deterministic_member_has_no_variance_head_and_uses_mse():
    module = GaussianMLP(hidden_sizes=(4,), out_size=2, deterministic=True)
    x, y = jnp.ones((5, 3)), jnp.full((5, 2), 2.0)
    params = module.init(jax.random.key(0), x)
    assert set(params["params"]) == {"Dense_0", "mean"}
    mean, logvar = module.apply(params, x)
    assert logvar is None
    np.testing.assert_allclose(member_objective(module, params, x, y, 0.01), jnp.mean(jnp.square(mean - y)), rtol=1e-6)


def test_fit_score_averages_only_the_weighted_outputs():
    module = GaussianMLP(hidden_sizes=(8,), out_size=3)
    x = jax.random.normal(jax.random.key(0), (16, 2))
    y = jax.random.normal(jax.random.key(1), (16, 3))
    params = module.init(jax.random.key(2), x)
    mean, logvar = module.apply(params, x)
    per_output = gaussian_nll(mean, logvar, y)
    weights = jnp.array([1.0, 1.0, 0.0])  # third output constant in the data (e.g. cost ≡ 0)
    score = member_fit_score(module, params, x, y, weights)
    np.testing.assert_allclose(score, per_output[:, :2].mean(-1), rtol=1e-6)
    # the excluded output cannot move the early-stopping score, whatever its fit
    moved = member_fit_score(module, params, x, y.at[:, 2].add(100.0), weights)
    np.testing.assert_allclose(moved, score, rtol=1e-6)
    np.testing.assert_allclose(member_fit_score(module, params, x, y), per_output.mean(-1), rtol=1e-6)
