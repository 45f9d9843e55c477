"""Uncertainty of an ensemble prediction: member means/variances [E, ..., out] -> σ's, information gain, distrax.

σ_epi = spread (std) of member means; σ_ale = mean of member stds; total variance = mean(var) + var(mean)
(moment-matched mixture); information gain Σ_out log(1 + σ_epi² / σ_ale²) (OPAX / MaxInfoRL).
"""

from __future__ import annotations

import distrax
import jax
import jax.numpy as jnp

_MIN_STD = 1e-6  # scale floor so that zero-variance (deterministic) members give proper distributions


def epistemic_variance(mean: jax.Array) -> jax.Array:
    """Variance of member means over the member axis: [E, ..., out] -> [..., out]."""
    return jnp.var(mean, axis=0)


def epistemic_std(mean: jax.Array) -> jax.Array:
    """Std of member means over the member axis: [E, ..., out] -> [..., out]; the values of √var, with a finite
    gradient where the members agree (var 0) and NaN kept where a member's mean is NaN."""
    var = epistemic_variance(mean)
    positive = var > 0.0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, var, 1.0)), var)


def aleatoric_std(var: jax.Array) -> jax.Array:
    """Mean of member stds: [E, ..., out] -> [..., out]."""
    return jnp.sqrt(var).mean(axis=0)


def total_variance(mean: jax.Array, var: jax.Array) -> jax.Array:
    """Variance of the equally weighted mixture: mean(var) + var(mean), [E, ..., out] -> [..., out]."""
    return var.mean(axis=0) + epistemic_variance(mean)


def predictive_moments(mean: jax.Array, var: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and variance of the mixture of members: [E, ..., out] -> ([..., out], [..., out])."""
    return mean.mean(axis=0), total_variance(mean, var)


def information_gain(mean: jax.Array, var: jax.Array, min_aleatoric_var: float = 1e-6) -> jax.Array:
    """Σ_out log(1 + σ_epi² / σ_ale²), nats: [E, ..., out] -> [...].

    σ_ale² is floored at `min_aleatoric_var` (raw units²) so a deterministic ensemble (σ_ale = 0) stays finite.
    """
    ale_var = jnp.maximum(jnp.square(aleatoric_std(var)), min_aleatoric_var)
    return jnp.sum(jnp.log1p(epistemic_variance(mean) / ale_var), axis=-1)


def member_distributions(mean: jax.Array, var: jax.Array) -> distrax.MultivariateNormalDiag:
    """One diagonal Gaussian per member: batch shape [E, ...], event shape [out]."""
    return distrax.MultivariateNormalDiag(loc=mean, scale_diag=jnp.maximum(jnp.sqrt(var), _MIN_STD))


def as_distribution(mean: jax.Array, var: jax.Array) -> distrax.MixtureSameFamily:
    """Equally weighted mixture of the members: batch shape [...], event shape [out]."""
    loc = jnp.moveaxis(mean, 0, -2)  # [..., E, out]
    scale = jnp.moveaxis(jnp.maximum(jnp.sqrt(var), _MIN_STD), 0, -2)
    weights = distrax.Categorical(logits=jnp.zeros(loc.shape[:-1]))
    return distrax.MixtureSameFamily(weights, distrax.MultivariateNormalDiag(loc=loc, scale_diag=scale))
