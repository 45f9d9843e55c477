"""Input/output standardisation statistics of the dynamics model (part of the model state, saved with it).

x_n = (x - mean) / std, with std floored so constant features (e.g. an always-zero cost) map to 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

_MIN_STD = 1e-6  # features with a smaller spread are treated as constant (std -> 1)


@struct.dataclass
class Normalizer:
    """Mean/std of model inputs ([obs, action]) and targets ([Δobs, reward, cost]), raw units."""

    input_mean: jax.Array  # [in_dim]
    input_std: jax.Array  # [in_dim]
    output_mean: jax.Array  # [out_dim]
    output_std: jax.Array  # [out_dim]


def identity(in_size: int, out_size: int) -> Normalizer:
    """Statistics that leave data unchanged (mean 0, std 1)."""
    return Normalizer(
        input_mean=jnp.zeros(in_size),
        input_std=jnp.ones(in_size),
        output_mean=jnp.zeros(out_size),
        output_std=jnp.ones(out_size),
    )


def _masked_moments(x: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and std over axis 0 of x [N, d] with row weights [N] (0/1); std floored at _MIN_STD -> 1."""
    count = jnp.maximum(weights.sum(), 1.0)
    mean = (x * weights[:, None]).sum(0) / count
    var = (jnp.square(x - mean) * weights[:, None]).sum(0) / count
    std = jnp.sqrt(var)
    return mean, jnp.where(std < _MIN_STD, 1.0, std)


def from_data(inputs: jax.Array, targets: jax.Array, weights: jax.Array | None = None) -> Normalizer:
    """Statistics of inputs [N, in_dim] and targets [N, out_dim] over the rows with weight 1."""
    if weights is None:
        weights = jnp.ones(inputs.shape[0])
    weights = weights.astype(inputs.dtype)
    in_mean, in_std = _masked_moments(inputs, weights)
    out_mean, out_std = _masked_moments(targets, weights)
    return Normalizer(input_mean=in_mean, input_std=in_std, output_mean=out_mean, output_std=out_std)


def normalize_inputs(norm: Normalizer, inputs: jax.Array) -> jax.Array:
    return (inputs - norm.input_mean) / norm.input_std


def normalize_targets(norm: Normalizer, targets: jax.Array) -> jax.Array:
    return (targets - norm.output_mean) / norm.output_std


def denormalize_targets(norm: Normalizer, targets_n: jax.Array) -> jax.Array:
    return targets_n * norm.output_std + norm.output_mean


def denormalize_variance(norm: Normalizer, var_n: jax.Array) -> jax.Array:
    """Variance in normalised units -> raw units (scales by std²)."""
    return var_n * jnp.square(norm.output_std)
