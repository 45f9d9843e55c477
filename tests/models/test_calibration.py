"""Coverage, ECE and post-hoc σ scaling of saferl.models.calibration on exactly known Gaussians."""

import jax
import jax.numpy as jnp
import numpy as np

from saferl.models import calibration

N = 20000  # binomial std of a coverage estimate ≈ sqrt(0.25 / N) ≈ 0.0035


def gaussian_data(std: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean [N, 2] and targets drawn around it with per-row heteroscedastic std [N, 2]."""
    k_mean, k_noise = jax.random.split(jax.random.key(0))
    mean = jax.random.normal(k_mean, (N, 2))
    return mean, mean + std * jax.random.normal(k_noise, (N, 2))


def test_coverage_and_ece_of_a_calibrated_heteroscedastic_prediction():
    std = jnp.broadcast_to(jnp.linspace(0.1, 3.0, N)[:, None], (N, 2))
    mean, targets = gaussian_data(std)
    var = jnp.square(std)
    # 5 binomial std errors of tolerance
    np.testing.assert_allclose(calibration.coverage(mean, var, targets, 1.0), 0.6827, atol=0.02)
    np.testing.assert_allclose(calibration.coverage(mean, var, targets, 2.0), 0.9545, atol=0.01)
    assert float(calibration.expected_calibration_error(mean, var, targets)) < 0.01


def test_ece_grows_for_overconfident_predictions_and_the_scale_fixes_it():
    std = jnp.full((N, 2), 0.5)
    mean, targets = gaussian_data(std)
    over = jnp.square(std) * jnp.array([0.25, 1.0])  # output 0 claims half the true σ, output 1 is right
    assert float(calibration.expected_calibration_error(mean, over, targets)) > 0.1
    scale = calibration.fit_calibration_scale(mean, over, targets)
    # the candidate grid has ≈6 % steps, so the scale lands within one or two steps of the truth
    np.testing.assert_allclose(scale, [2.0, 1.0], rtol=0.1)
    assert float(calibration.expected_calibration_error(mean, over * scale**2, targets)) < 0.01


def test_row_and_output_weights_exclude_masked_entries():
    std = jnp.ones((N, 2))
    mean, targets = gaussian_data(std)
    targets = targets.at[: N // 2].set(1e3)  # garbage rows, masked out
    weights = (jnp.arange(N) >= N // 2).astype(jnp.float32)
    np.testing.assert_allclose(calibration.coverage(mean, std, targets, 1.0, weights), 0.6827, atol=0.03)
    bad_var = jnp.concatenate([std[:, :1], jnp.full((N, 1), 1e-6)], -1)  # output 1 badly overconfident
    ece = calibration.expected_calibration_error(mean, bad_var, targets, weights, jnp.array([1.0, 0.0]))
    assert float(ece) < 0.015


def test_uncertainty_scales_recover_a_known_aleatoric_scale_and_epistemic_growth():
    # on the data: noise σ 0.5 claimed as σ_ale = 1 (a = 0.5), tiny member spread; off it the error has
    # variance σ_epi² (1 + c² σ_epi²) with c = 3 and a spread σ_epi² ∈ [0.1, 1], noise as on the data
    k_in, k_region, k_epi = jax.random.split(jax.random.key(1), 3)
    ale = jnp.ones((N, 2))
    epi_in = jnp.full((N, 2), 1e-4)
    err_in = jnp.abs(jnp.sqrt(0.25 + epi_in) * jax.random.normal(k_in, (N, 2)))
    epi_region = jax.random.uniform(k_epi, (N, 2), minval=0.1, maxval=1.0)
    true_var = 0.25 + epi_region * (1 + 9.0 * epi_region)
    err_region = jnp.abs(jnp.sqrt(true_var) * jax.random.normal(k_region, (N, 2)))
    scale, growth = calibration.fit_uncertainty_scales((err_in, ale, epi_in), (err_region, ale, epi_region))
    # grids of ≈6 % (a) and ≈12 % (c) steps; c is seen through a mixture of noise and spread: 20 %
    np.testing.assert_allclose(scale, 0.5, rtol=0.1)
    np.testing.assert_allclose(growth, 3.0, rtol=0.2)
    assert float(calibration.calibrated_epistemic_variance(jnp.array(0.5), jnp.array(2.0))) == 0.5 * (1 + 4 * 0.5)


def test_without_region_rows_the_growth_stays_zero_and_a_noise_free_output_gets_a_small_scale():
    k_in = jax.random.key(2)
    epi_in = jnp.full((N, 1), 0.01)
    err_in = jnp.abs(0.1 * jax.random.normal(k_in, (N, 1)))  # exactly the members' spread, no noise
    no_rows = jnp.zeros(N)
    scale, growth = calibration.fit_uncertainty_scales(
        (err_in, jnp.ones((N, 1)), epi_in), (err_in, jnp.ones((N, 1)), epi_in), None, no_rows
    )
    assert float(growth[0]) == 0.0 and float(scale[0]) < 0.01  # σ_ale = 1 claimed for a noise-free output


def test_scales_fitted_on_little_data_never_describe_those_rows_worse_than_the_raw_ensemble():
    """Issue #31: after an episode or two the held-out sets are a few rows; whatever the alternating search
    picks (forced to fit 6 rows here, min_rows=1), the summed NLL and the summed ECE on the rows it was fitted on
    are at most the raw ensemble's (else it keeps a = 1, c = 0)."""
    rows = 6

    def one(key):
        k_err, k_epi, k_region, k_mix = jax.random.split(key, 4)
        ale = jnp.ones((rows, 3))
        epi_in = jax.random.uniform(k_epi, (rows, 3), minval=1e-3, maxval=0.1)
        heavy = jnp.where(jax.random.uniform(k_mix, (rows, 3)) < 0.3, 10.0, 1.0)  # a few outliers
        err_in = jnp.abs(heavy * jax.random.normal(k_err, (rows, 3)))
        epi_region = jax.random.uniform(k_region, (rows, 3), minval=0.1, maxval=2.0)
        err_region = jnp.abs(jax.random.normal(k_mix, (rows, 3)) * 3.0)
        a, c = calibration.fit_uncertainty_scales((err_in, ale, epi_in), (err_region, ale, epi_region), min_rows=1)

        def summed(a, c):
            def both(err, epi):
                var = jnp.square(a) * ale + calibration.calibrated_epistemic_variance(epi, c)
                nll = 0.5 * (jnp.log(2 * jnp.pi * var) + jnp.square(err) / var)
                return nll.mean(axis=0), calibration._level_errors(err / jnp.sqrt(var), None).mean(axis=0)

            (nll_in, ece_in), (nll_region, ece_region) = both(err_in, epi_in), both(err_region, epi_region)
            return nll_in + nll_region, ece_in + ece_region

        return summed(a, c), summed(jnp.ones(3), jnp.zeros(3)), a, c

    (nll, ece), (raw_nll, raw_ece), a, c = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(3), 64))
    assert (np.asarray(ece) <= np.asarray(raw_ece) + 1e-6).all()
    assert (np.asarray(nll) <= np.asarray(raw_nll) + 1e-5).all()
    assert (np.asarray(a) != 1.0).any() and (np.asarray(c) > 0).any()  # it still calibrates where that helps


def test_growth_fitted_on_a_few_rows_keeps_a_runaway_spread_finite_and_never_fits_its_rows_worse():
    """Issue #31's mechanism: a growth c fitted on the ~10 region rows of a first-episode model multiplies the
    member spread by √(1 + c²σ²_epi); on a model rolled out past its data (soft_arm seed 1 at step 400: member
    spreads of 1e26 and more within 10 imagined steps, still finite raw; experiments/benchmarks/results/
    softae_nan_replay_before_b639fe9.txt) a calibrated variance σ²_epi·(1 + c²σ²_epi) ≈ c²·σ⁴ overflows float32,
    and the information gain log(1 + σ²_epi/σ²_ale) and the plan value with it. Now the variance is at most
    MAX_SPREAD_FACTOR² times the raw one, a set of fewer than MIN_CALIBRATION_ROWS rows leaves the scales at
    identity, and scales fitted anyway (min_rows=1) never describe their own rows worse than the raw ensemble."""
    rows = 10  # held-out rows of one 100-decision episode at holdout_fraction = region_fraction = 0.1
    runaway = 1e26  # σ²_epi of an imagined state far past the data

    @jax.jit
    def case(key):
        k_in, k_epi, k_region = jax.random.split(key, 3)
        ale = jnp.ones((rows, 2))
        epi_in = jnp.full((rows, 2), 1e-3)
        err_in = jnp.abs(0.05 * jax.random.normal(k_in, (rows, 2)))  # noise-free outputs: a far below 1
        epi_region = jax.random.uniform(k_epi, (rows, 2), minval=0.01, maxval=0.1)
        err_region = jnp.abs(3.0 * jax.random.normal(k_region, (rows, 2)))  # off the data errors outgrow the spread
        in_dist, region = (err_in, ale, epi_in), (err_region, ale, epi_region)
        # the unbounded search (the code before the fix) picks a large c on these rows, and c²σ⁴ overflows
        old_c = calibration.fit_variance_scale(
            err_region, ale + epi_region, jnp.square(epi_region), calibration.EPISTEMIC_CANDIDATES, neutral=0.0
        )
        spread = jnp.float32(runaway)
        default = calibration.fit_uncertainty_scales(in_dist, region)  # too few rows to fit either scale
        a, c = calibration.fit_uncertainty_scales(in_dist, region, min_rows=1)  # fitted on the 10 rows regardless

        def nll(a, c):  # summed over the two held-out sets, per output
            total = 0.0
            for err, ale_var, epi in (in_dist, region):
                var = jnp.square(a) * ale_var + calibration.calibrated_epistemic_variance(epi, c)
                total = total + (0.5 * (jnp.log(2 * jnp.pi * var) + jnp.square(err) / var)).mean(axis=0)
            return total

        return dict(
            old_c=old_c,
            old_var=spread * (1.0 + jnp.square(old_c) * spread),
            default_a=default[0],
            default_c=default[1],
            a=a,
            c=c,
            var=calibration.calibrated_epistemic_variance(spread, c),
            factor=calibration.spread_factor(jnp.full(2, jnp.inf), c),
            nll=nll(a, c),
            raw_nll=nll(jnp.ones(2), jnp.zeros(2)),
        )

    out = jax.device_get(case(jax.random.key(31)))
    assert (out["old_c"] > 1.0).all() and not np.isfinite(out["old_var"]).any()  # the mechanism, as it was
    np.testing.assert_array_equal(out["default_a"], 1.0)
    np.testing.assert_array_equal(out["default_c"], 0.0)
    a, c = out["a"], out["c"]
    assert (a >= 1e-3).all() and (a <= 1e2).all() and (c <= 1e4).all() and (c > 0).any()  # fitted, in range
    assert np.isfinite(out["var"]).all() and (out["var"] <= calibration.MAX_SPREAD_FACTOR**2 * runaway * 1.0001).all()
    assert np.isfinite(out["factor"]).all() and (out["factor"] <= calibration.MAX_SPREAD_FACTOR).all()
    assert (out["nll"] <= out["raw_nll"] + 1e-5).all()
