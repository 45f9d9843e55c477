"""The fit's faster building blocks give exactly what the plain formulations they replaced give (issue #33):
the epoch order (integer sort of the uniform noise's bits), the split's ranks (one sort and a scatter) and
the calibration search (coverage counts with the rows on the minor axis)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saferl.models import calibration, fitting


def _reference_order(key: jax.Array, shape: tuple[int, int], n_train: int) -> jax.Array:
    """What each epoch used before: a stable argsort of uniform noise, positions >= n_train set to 2."""
    noise = jax.random.uniform(key, shape)
    return jnp.argsort(jnp.where(jnp.arange(shape[1]) < n_train, noise, 2.0), axis=1)


@pytest.mark.parametrize("n_rows, n_train", [(50, 37), (3000, 2999), (7, 1)])
def test_epoch_order_is_the_stable_argsort_of_the_uniform_noise(n_rows, n_train):
    for seed in range(3):
        key = jax.random.key(seed)
        reference = np.asarray(_reference_order(key, (4, n_rows), n_train))
        static = np.asarray(fitting._epoch_order(key, (4, n_rows), n_train))  # no mask: [E, n_train]
        traced = np.asarray(jax.jit(fitting._epoch_order, static_argnums=1)(key, (4, n_rows), jnp.int32(n_train)))
        np.testing.assert_array_equal(static, reference[:, :n_train])
        np.testing.assert_array_equal(traced, reference)


def test_stable_ranks_equal_the_double_argsort_with_ties_and_signed_zeros():
    values = jnp.array([[0.5, -0.0, 0.0, 0.5, -jnp.inf, jnp.nan, 2.0, 0.5], [3, 1, 2, 1, 1, 0, 5, 4]], jnp.float32)
    expected = jnp.argsort(jnp.argsort(values, axis=-1), axis=-1)
    np.testing.assert_array_equal(fitting._stable_ranks(values), expected)
    ints = jnp.array([3, 1, 1, 0, 3, 2], jnp.int32)
    np.testing.assert_array_equal(fitting._stable_ranks(ints), jnp.argsort(jnp.argsort(ints)))


@jax.jit
def _reference_variance_scale(abs_error, fixed_var, scaled_var, candidates, weights, neutral=1.0):
    """The candidate search over the row-major ECE (`_per_output_ece` on [N, out]), as before."""

    def per_output_ece(s):
        return calibration._per_output_ece(abs_error, fixed_var + jnp.square(s) * scaled_var, weights)

    per_scale = jax.lax.map(per_output_ece, candidates)
    tie_break = 1e-6 * jnp.abs(jnp.log1p(candidates) - jnp.log1p(neutral))
    best = candidates[jnp.argmin(per_scale + tie_break[:, None], axis=0)]
    has_rows = abs_error.shape[0] > 0 if weights is None else weights.sum() > 0
    return jnp.where(has_rows, best, neutral)


@pytest.mark.parametrize("case", ["weights", "no_weights", "non_finite"])
def test_variance_scale_search_matches_the_row_major_ece(case):
    keys = jax.random.split(jax.random.key(0), 4)
    n = 300
    abs_error = jnp.abs(jax.random.normal(keys[0], (n, 5))) * jnp.array([1e-3, 0.1, 1.0, 3.0, 10.0])
    fixed_var = jnp.exp(jax.random.normal(keys[1], (n, 5)))
    scaled_var = 0.1 * jnp.exp(jax.random.normal(keys[2], (n, 5)))
    weights = (jax.random.uniform(keys[3], (n,)) < 0.8).astype(jnp.float32)
    if case == "no_weights":
        weights = None
    if case == "non_finite":  # a NaN/inf error is never inside an interval; a zero variance floors at _MIN_VAR
        abs_error = abs_error.at[0, 0].set(jnp.nan).at[1, 1].set(jnp.inf)
        fixed_var, scaled_var = fixed_var.at[:, 2].set(0.0), scaled_var.at[:, 2].set(0.0)
    candidates = calibration.SCALE_CANDIDATES  # 81 σ multipliers: the search is the same for any grid
    search = jax.jit(calibration.fit_variance_scale, static_argnames="neutral")
    fast = search(abs_error, fixed_var, scaled_var, candidates, weights, neutral=1.0)
    reference = _reference_variance_scale(abs_error, fixed_var, scaled_var, candidates, weights)
    np.testing.assert_array_equal(fast, reference)
