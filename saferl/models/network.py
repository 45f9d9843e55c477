"""One ensemble member: an MLP from normalised (obs, action) to a Gaussian over normalised targets.

Log-variance is squashed between learned soft bounds (PETS, Chua et al. 2018):
    logvar = max - softplus(max - raw);  logvar = min + softplus(logvar - min).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "silu": nn.silu,
    "swish": nn.silu,
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "elu": nn.elu,
    "gelu": nn.gelu,
}
_LOG_2PI = math.log(2.0 * math.pi)


def soft_bound_logvar(raw: jax.Array, min_logvar: jax.Array, max_logvar: jax.Array) -> jax.Array:
    """Smoothly clamp a raw log-variance into (min_logvar, max_logvar); shapes broadcast."""
    logvar = max_logvar - nn.softplus(max_logvar - raw)
    return min_logvar + nn.softplus(logvar - min_logvar)


def gaussian_nll(mean: jax.Array, logvar: jax.Array, target: jax.Array) -> jax.Array:
    """Elementwise negative log-likelihood of `target` under N(mean, exp(logvar)), nats."""
    return 0.5 * (jnp.square(target - mean) * jnp.exp(-logvar) + logvar + _LOG_2PI)


#: what a `GaussianMLP` returns: mean [..., out] and logvar [..., out] (None if deterministic). flax types
#: `Module.apply` as returning `Any | (Any, variables)` (the pair with `mutable=`), so its callers cast to this
MeanLogvar = tuple[jax.Array, jax.Array | None]


class GaussianMLP(nn.Module):
    """MLP member. `__call__(x [..., in]) -> (mean [..., out], logvar [..., out] or None if deterministic)`."""

    hidden_sizes: tuple[int, ...]
    out_size: int
    activation: str = "silu"
    deterministic: bool = False
    init_min_logvar: float = -10.0
    init_max_logvar: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array) -> MeanLogvar:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden_sizes:
            x = act(nn.Dense(width)(x))
        if self.deterministic:
            return nn.Dense(self.out_size, name="mean")(x), None
        mean = nn.Dense(self.out_size, name="mean")(x)
        raw_logvar = nn.Dense(self.out_size, name="logvar")(x)
        max_logvar = self.param("max_logvar", nn.initializers.constant(self.init_max_logvar), (self.out_size,))
        min_logvar = self.param("min_logvar", nn.initializers.constant(self.init_min_logvar), (self.out_size,))
        return mean, soft_bound_logvar(raw_logvar, min_logvar, max_logvar)


def member_objective(module: GaussianMLP, params: dict, x: jax.Array, y: jax.Array, bound_penalty: float) -> jax.Array:
    """Training loss of one member on normalised x [B, in], y [B, out] (scalar).

    Probabilistic: mean NLL + bound_penalty · Σ(max_logvar − min_logvar). Deterministic: mean squared error.
    """
    mean, logvar = cast(MeanLogvar, module.apply(params, x))
    if logvar is None:
        return jnp.mean(jnp.square(mean - y))
    bounds = params["params"]
    penalty = bound_penalty * (bounds["max_logvar"].sum() - bounds["min_logvar"].sum())
    return gaussian_nll(mean, logvar, y).mean() + penalty


def member_fit_score(
    module: GaussianMLP, params: dict, x: jax.Array, y: jax.Array, output_weights: jax.Array | None = None
) -> jax.Array:
    """Per-row held-out score [N] of one member: NLL (squared error if deterministic) averaged over outputs.

    `output_weights` [out] (0/1) restricts the average, e.g. to outputs that vary in the data: a constant
    output (a cost that is always 0) would otherwise keep "improving" as its variance shrinks.
    """
    mean, logvar = cast(MeanLogvar, module.apply(params, x))
    per_output = jnp.square(mean - y) if logvar is None else gaussian_nll(mean, logvar, y)
    if output_weights is None:
        return per_output.mean(-1)
    return (per_output * output_weights).sum(-1) / jnp.maximum(output_weights.sum(), 1.0)
