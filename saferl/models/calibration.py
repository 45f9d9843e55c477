"""Calibration of Gaussian predictions on held-out data: interval coverage, expected calibration error
(ECE over central intervals at levels p = 0.05 … 0.95) and post-hoc per-output σ calibration.

An ensemble's predictive variance is calibrated per output as a²·σ_ale² + σ_epi²·min(1 + c²·σ_epi², G²), σ's
in normalised units (`fit_uncertainty_scales`): the growth c ≥ 0 on a held-out region the members never trained
on (off the data, errors of a mean the members agree on outgrow their spread), the aleatoric scale a on random
held-out rows. All functions take a predictive mean/var [N, out] (e.g. `uncertainty.predictive_moments`) or
its parts, targets [N, out] and optional row weights [N] (0/1, for masked fixed-size batches).

Bounded by construction (issue #31: refitted after every episode, on a model fitted to one or two episodes):
a ∈ [1e-3, 1e2] and c ∈ [0, 1e4] (the candidate grids); the calibrated member spread is at most
G = MAX_SPREAD_FACTOR times the raw one, whatever c and however far off the data (so a calibrated σ_epi is
finite wherever the raw one is: uncapped, c·σ_epi,n of a model rolled out past its data overflowed float32);
each scale is fitted only on a held-out set of ≥ MIN_CALIBRATION_ROWS rows (else a = 1, c = 0); and an output
keeps its fitted (a, c) only where they describe the held-out rows they were fitted on at least as well as the
raw ensemble, by Gaussian NLL and by ECE, else (1, 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import erfinv

_MIN_VAR = 1e-12
LEVELS = jnp.linspace(0.05, 0.95, 19)  # nominal central-interval probabilities used by the ECE
SCALE_CANDIDATES = jnp.logspace(-1.0, 1.0, 81)  # σ multipliers searched by fit_calibration_scale (≈6 % steps)
# aleatoric σ multipliers (≈6 % steps): noise-free outputs (e.g. angle features) need scales ≪ 0.1
ALEATORIC_CANDIDATES = jnp.logspace(-3.0, 2.0, 201)
# epistemic growth c (1 / normalised σ, ≈12 % steps), 0: the raw member spread; it only ever widens it
EPISTEMIC_CANDIDATES = jnp.concatenate([jnp.zeros(1), jnp.logspace(-1.0, 4.0, 101)])
# the calibrated member spread is at most this multiple of the raw one: σ_epi·√min(1 + c²σ²_epi,n, G²)
MAX_SPREAD_FACTOR = 10.0
# a scale is fitted only on a held-out set with at least this many rows (weights summed), else it stays 1 (a) / 0 (c):
# an ECE over 19 levels resolves coverage in 5 % steps, which needs ≥ 20 rows (soft_arm's first episode holds 10 out)
MIN_CALIBRATION_ROWS = 20


def _abs_z(mean: jax.Array | float, var: jax.Array, targets: jax.Array) -> jax.Array:
    return jnp.abs(targets - mean) / jnp.sqrt(jnp.maximum(var, _MIN_VAR))


def _weighted_fraction(inside: jax.Array, weights: jax.Array | None) -> jax.Array:
    """Fraction over the row axis (-2) of a boolean [..., N, out] -> [..., out]."""
    if weights is None:
        return inside.mean(axis=-2)
    w = weights[:, None].astype(jnp.float32)
    return (inside * w).sum(axis=-2) / jnp.maximum(w.sum(), 1.0)


def coverage(
    mean: jax.Array | float, var: jax.Array, targets: jax.Array, num_std: float = 1.0, weights: jax.Array | None = None
) -> jax.Array:
    """Fraction of targets within mean ± num_std·σ, per output: [out] (nominal 0.683 at 1σ, 0.954 at 2σ)."""
    return _weighted_fraction(_abs_z(mean, var, targets) <= num_std, weights)


def _thresholds() -> jax.Array:
    """[levels] |z| <= t has probability p under N(0, 1), p in LEVELS."""
    return jnp.sqrt(2.0) * erfinv(LEVELS)


def _level_errors(abs_z: jax.Array, weights: jax.Array | None) -> jax.Array:
    """|empirical − nominal| coverage of the central intervals at LEVELS: [levels, out]."""
    empirical = _weighted_fraction(abs_z[None] <= _thresholds()[:, None, None], weights)
    return jnp.abs(empirical - LEVELS[:, None])


def _per_output_ece(abs_error: jax.Array, var: jax.Array, weights: jax.Array | None) -> jax.Array:
    """[out] mean over LEVELS of |empirical − nominal| coverage of |error| [N, out] under variance var [N, out]."""
    return _level_errors(abs_error / jnp.sqrt(jnp.maximum(var, _MIN_VAR)), weights).mean(axis=0)


def expected_calibration_error(
    mean: jax.Array,
    var: jax.Array,
    targets: jax.Array,
    weights: jax.Array | None = None,
    output_weights: jax.Array | None = None,
) -> jax.Array:
    """Mean |empirical − nominal| coverage over LEVELS and outputs (0: perfectly calibrated), scalar.

    `output_weights` [out] (0/1) leaves outputs out of the average, e.g. constant targets.
    """
    per_output = _level_errors(_abs_z(mean, var, targets), weights).mean(axis=0)
    if output_weights is None:
        return per_output.mean()
    return (per_output * output_weights).sum() / jnp.maximum(output_weights.sum(), 1.0)


def fit_calibration_scale(
    mean: jax.Array, var: jax.Array, targets: jax.Array, weights: jax.Array | None = None
) -> jax.Array:
    """Per-output σ multiplier [out] from SCALE_CANDIDATES minimising that output's ECE."""
    abs_error = jnp.abs(targets - mean)
    return fit_variance_scale(abs_error, jnp.zeros_like(var), var, SCALE_CANDIDATES, weights)


def fit_variance_scale(
    abs_error: jax.Array,
    fixed_var: jax.Array,
    scaled_var: jax.Array,
    candidates: jax.Array,
    weights: jax.Array | None = None,
    neutral: float = 1.0,
    scaled_cap: jax.Array | None = None,
) -> jax.Array:
    """Per-output s [out] from `candidates` minimising the ECE of |error| [N, out] under
    fixed_var + min(s²·scaled_var, scaled_cap) (scaled_cap [N, out], None: no cap).

    Ties (e.g. scaled_var = 0) go to the candidate closest to `neutral`, which is also the answer when no
    row has weight.
    """

    # rows on the minor axis [out, N]: XLA vectorises the coverage counts over them (≈ 2-4× faster than [N, out]);
    # the counts are sums of 0/1 (exact in any order), so the ECEs are those of `_per_output_ece`, bit for bit
    abs_error_t, fixed_var_t, scaled_var_t = abs_error.T, fixed_var.T, scaled_var.T
    cap_t = None if scaled_cap is None else scaled_cap.T

    def per_output_ece(s: jax.Array) -> jax.Array:
        scaled = jnp.square(s) * scaled_var_t
        if cap_t is not None:
            scaled = jnp.minimum(scaled, cap_t)
        abs_z = abs_error_t / jnp.sqrt(jnp.maximum(fixed_var_t + scaled, _MIN_VAR))
        inside = abs_z[None] <= _thresholds()[:, None, None]  # [levels, out, N]
        if weights is None:
            empirical = inside.mean(axis=-1)
        else:
            w = weights.astype(jnp.float32)
            empirical = (inside * w).sum(axis=-1) / jnp.maximum(w.sum(), 1.0)
        return jnp.abs(empirical - LEVELS[:, None]).mean(axis=0)

    per_scale = jax.lax.map(per_output_ece, candidates)  # [candidates, out], one at a time for memory
    tie_break = 1e-6 * jnp.abs(jnp.log1p(candidates) - jnp.log1p(neutral))
    best = candidates[jnp.argmin(per_scale + tie_break[:, None], axis=0)]
    has_rows = abs_error.shape[0] > 0 if weights is None else weights.sum() > 0
    return jnp.where(has_rows, best, neutral)


def _row_count(abs_error: jax.Array, weights: jax.Array | None) -> jax.Array:
    """Rows of a held-out set [N, out] (weights summed where given)."""
    return jnp.asarray(abs_error.shape[0], jnp.float32) if weights is None else weights.sum()


def _per_output_nll(abs_error: jax.Array, var: jax.Array, weights: jax.Array | None) -> jax.Array:
    """[out] mean Gaussian NLL (nats) of |error| [N, out] under variance var [N, out]; 0 where no row has weight."""
    var = jnp.maximum(var, _MIN_VAR)
    nll = 0.5 * (jnp.log(2.0 * jnp.pi * var) + jnp.square(abs_error) / var)
    if weights is None:
        return nll.mean(axis=0) if abs_error.shape[0] else jnp.zeros(abs_error.shape[-1])
    w = weights[:, None].astype(jnp.float32)
    return (jnp.where(w > 0, nll, 0.0) * w).sum(axis=0) / jnp.maximum(w.sum(), 1.0)


def fit_uncertainty_scales(
    in_dist: tuple[jax.Array, ...],
    region: tuple[jax.Array, ...],
    in_weights: jax.Array | None = None,
    region_weights: jax.Array | None = None,
    rounds: int = 2,
    min_rows: int = MIN_CALIBRATION_ROWS,
) -> tuple[jax.Array, jax.Array]:
    """Aleatoric scale a and epistemic growth c [out] of the variance a²·ale_var + calibrated_epistemic_variance.

    `in_dist` and `region` are each (abs_error, ale_var, epi_var) [N, out] in normalised units: random
    held-out rows from the training distribution, and rows of a region the members never trained on.
    Alternating `rounds` times, c ∈ EPISTEMIC_CANDIDATES minimises the region's ECE given a, then
    a ∈ ALEATORIC_CANDIDATES the in-distribution ECE given c (off the data the member spread dominates,
    on it the noise does; where the members' spread alone over-covers, a goes to its floor). c is fitted only
    when the region has ≥ `min_rows` rows, a only when the random held-out set has (else 0 and 1). An output
    whose fitted (a, c) describe the held-out rows (both sets) worse than the raw (1, 0) by summed Gaussian NLL
    or by summed ECE keeps (1, 0): the returned scales never fit the rows they were fitted on worse than the
    raw ensemble.
    """
    err_in, ale_in, epi_in = in_dist
    err_region, ale_region, epi_region = region
    raw_aleatoric, raw_growth = jnp.ones(err_in.shape[-1]), jnp.zeros(err_in.shape[-1])
    fit_a = _row_count(err_in, in_weights) >= min_rows
    fit_c = _row_count(err_region, region_weights) >= min_rows
    # the capped spread σ²(1 + min(c²σ², G² − 1)): calibrated_epistemic_variance as the search sees it
    region_cap = (jnp.square(MAX_SPREAD_FACTOR) - 1.0) * epi_region
    aleatoric, growth = raw_aleatoric, raw_growth
    for _ in range(rounds):
        growth = fit_variance_scale(
            err_region,
            jnp.square(aleatoric) * ale_region + epi_region,
            jnp.square(epi_region),
            EPISTEMIC_CANDIDATES,
            region_weights,
            neutral=0.0,
            scaled_cap=region_cap,
        )
        growth = jnp.where(fit_c, growth, raw_growth)
        aleatoric = fit_variance_scale(
            err_in, calibrated_epistemic_variance(epi_in, growth), ale_in, ALEATORIC_CANDIDATES, in_weights
        )
        aleatoric = jnp.where(fit_a, aleatoric, raw_aleatoric)

    def held_out(a: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
        """[out] summed NLL and summed ECE on the random held-out rows and the region, under scales (a, c)."""

        def var(ale, epi):
            return jnp.square(a) * ale + calibrated_epistemic_variance(epi, c)

        v_in, v_region = var(ale_in, epi_in), var(ale_region, epi_region)
        nll = _per_output_nll(err_in, v_in, in_weights) + _per_output_nll(err_region, v_region, region_weights)
        ece = _per_output_ece(err_in, v_in, in_weights) + _per_output_ece(err_region, v_region, region_weights)
        return nll, ece

    # the alternating search fits each part given the other, on ECE alone; an output whose scales end up
    # describing the held-out rows they were fitted on worse than the raw ensemble does (an over-confident a on
    # a few rows costs NLL that the coverage counts never see) keeps the raw σ's (a = 1, c = 0)
    (nll, ece), (raw_nll, raw_ece) = held_out(aleatoric, growth), held_out(raw_aleatoric, raw_growth)
    better = (nll <= raw_nll) & (ece <= raw_ece)
    return jnp.where(better, aleatoric, raw_aleatoric), jnp.where(better, growth, raw_growth)


def spread_factor(epi_var: jax.Array, growth: jax.Array) -> jax.Array:
    """√min(1 + c²·σ²_epi, G²) ∈ [1, MAX_SPREAD_FACTOR]: how much the calibration widens the member spread
    σ²_epi [..., out] (normalised units) with growth c [out]; 1 where c = 0."""
    return jnp.sqrt(jnp.minimum(1.0 + jnp.square(growth) * epi_var, jnp.square(MAX_SPREAD_FACTOR)))


def calibrated_epistemic_variance(epi_var: jax.Array, growth: jax.Array) -> jax.Array:
    """σ²_epi·min(1 + c²·σ²_epi, G²) of the members' spread σ²_epi [..., out] (normalised units) and growth c
    [out]: at most G² = MAX_SPREAD_FACTOR² times the raw spread."""
    return epi_var * jnp.square(spread_factor(epi_var, growth))
