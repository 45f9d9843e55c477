"""Calibration of Gaussian predictions on held-out data: interval coverage, expected calibration error
(ECE over central intervals at levels p = 0.05 … 0.95) and a post-hoc per-output σ scale (OPAX-style).

All functions take a predictive mean/var [N, out] (e.g. `uncertainty.predictive_moments`), targets
[N, out] and optional row weights [N] (0/1, for masked fixed-size batches).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import erfinv

_MIN_VAR = 1e-12
LEVELS = jnp.linspace(0.05, 0.95, 19)  # nominal central-interval probabilities used by the ECE
SCALE_CANDIDATES = jnp.logspace(-1.0, 1.0, 81)  # σ multipliers searched by fit_calibration_scale (≈6 % steps)


def _abs_z(mean: jax.Array, var: jax.Array, targets: jax.Array) -> jax.Array:
    return jnp.abs(targets - mean) / jnp.sqrt(jnp.maximum(var, _MIN_VAR))


def _weighted_fraction(inside: jax.Array, weights: jax.Array | None) -> jax.Array:
    """Fraction over the row axis (-2) of a boolean [..., N, out] -> [..., out]."""
    if weights is None:
        return inside.mean(axis=-2)
    w = weights[:, None].astype(jnp.float32)
    return (inside * w).sum(axis=-2) / jnp.maximum(w.sum(), 1.0)


def coverage(mean: jax.Array, var: jax.Array, targets: jax.Array, num_std: float = 1.0,
             weights: jax.Array | None = None) -> jax.Array:
    """Fraction of targets within mean ± num_std·σ, per output: [out] (nominal 0.683 at 1σ, 0.954 at 2σ)."""
    return _weighted_fraction(_abs_z(mean, var, targets) <= num_std, weights)


def _level_errors(abs_z: jax.Array, weights: jax.Array | None) -> jax.Array:
    """|empirical − nominal| coverage of the central intervals at LEVELS: [levels, out]."""
    thresholds = jnp.sqrt(2.0) * erfinv(LEVELS)  # |z| <= t has probability p under N(0, 1)
    empirical = _weighted_fraction(abs_z[None] <= thresholds[:, None, None], weights)
    return jnp.abs(empirical - LEVELS[:, None])


def expected_calibration_error(mean: jax.Array, var: jax.Array, targets: jax.Array,
                               weights: jax.Array | None = None,
                               output_weights: jax.Array | None = None) -> jax.Array:
    """Mean |empirical − nominal| coverage over LEVELS and outputs (0: perfectly calibrated), scalar.

    `output_weights` [out] (0/1) leaves outputs out of the average, e.g. constant targets.
    """
    per_output = _level_errors(_abs_z(mean, var, targets), weights).mean(axis=0)
    if output_weights is None:
        return per_output.mean()
    return (per_output * output_weights).sum() / jnp.maximum(output_weights.sum(), 1.0)


def fit_calibration_scale(mean: jax.Array, var: jax.Array, targets: jax.Array,
                          weights: jax.Array | None = None) -> jax.Array:
    """Per-output σ multiplier [out] from SCALE_CANDIDATES minimising that output's ECE."""
    abs_z = _abs_z(mean, var, targets)
    # lax.map (not vmap): one candidate at a time keeps memory at O(levels · N · out)
    per_scale = jax.lax.map(lambda s: _level_errors(abs_z / s, weights).mean(axis=0), SCALE_CANDIDATES)
    return SCALE_CANDIDATES[jnp.argmin(per_scale, axis=0)]
