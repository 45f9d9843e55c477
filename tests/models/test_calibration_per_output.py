"""Per-output calibration of the ensemble (aleatoric scale a, epistemic growth c; saferl.models.fitting) on a
system with state-dependent noise on some outputs and none on others, like the angle features of an arm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saferl.data.buffer import Transition
from saferl.models import calibration, ensemble, uncertainty

GAP = (0.2, 0.6)  # x0 never seen in training: a region inside the data the members must bridge
NOISY = np.array([True, False, True, False])  # outputs [Δx0, Δx1, reward, cost]: Δx1 and cost carry no noise


def system(key: jax.Array, n: int, x0_range: tuple[float, float] = (-1.0, 1.0), gap: bool = True) -> Transition:
    """obs (x0, x1), action a ~ U[-1, 1]; x0 ~ U[x0_range] without GAP (if gap).

    Δx0 = 0.5 sin 2x0 + 0.3a + (0.05 + 0.1 x1²)·ε and reward = x0 x1 + 0.1 (1 + |x1|)·ε are noisy with a σ
    that depends on the state; Δx1 = 0.3 cos(x0 + x1) − 0.2 x1 a and cost = 0.5 x0² are noise-free. The noise
    depends on x1, not on x0 (the direction the tests leave the data in): how noise grows past the data is
    not knowable from it, what the members do not know is what the tests measure there.
    """
    k = jax.random.split(key, 4)
    lo, hi = x0_range
    width = GAP[1] - GAP[0] if gap else 0.0
    x0 = jax.random.uniform(k[0], (n,), minval=lo, maxval=hi - width)
    x0 = jnp.where(x0 >= GAP[0], x0 + width, x0) if gap else x0
    x1, a = jax.random.uniform(k[1], (2, n), minval=-1.0, maxval=1.0)
    noise = jax.random.normal(k[2], (2, n))
    d0 = 0.5 * jnp.sin(2 * x0) + 0.3 * a + (0.05 + 0.1 * x1**2) * noise[0]
    d1 = 0.3 * jnp.cos(x0 + x1) - 0.2 * x1 * a
    obs = jnp.stack([x0, x1], -1)
    return Transition(
        obs=obs,
        action=a[:, None],
        next_obs=obs + jnp.stack([d0, d1], -1),
        reward=x0 * x1 + 0.1 * (1 + jnp.abs(x1)) * noise[1],
        cost=0.5 * x0**2,
        done=jnp.zeros(n),
    )


@pytest.fixture(scope="module")
def fitted():
    """5 members of 2×64 fitted on 2000 samples, calibrated (the default); ≈ 10–20 s on 2 busy cores."""
    config = ensemble.EnsembleConfig(hidden_sizes=(64, 64), batch_size=64, epochs=100, patience=10)
    assert config.calibrate  # on by default
    state = ensemble.init(jax.random.key(0), config, obs_size=2, action_size=1, out_size=4)
    state, metrics = ensemble.fit(jax.random.key(1), state, system(jax.random.key(2), 2000))
    uncalibrated = state.replace(aleatoric_scale=jnp.ones(4), epistemic_growth=jnp.zeros(4))
    return state, uncalibrated, metrics


def moments(state, data):
    mean, var = ensemble.predict(state, data.obs, data.action)
    return (*uncertainty.predictive_moments(mean, var), uncertainty.epistemic_std(mean))


def coverage(state, data, num_std):
    """Per-output fraction of fresh targets within ±num_std predictive σ: [4]."""
    mean, var, _ = moments(state, data)
    return np.asarray(calibration.coverage(mean, var, ensemble.targets_of(data), num_std))


@pytest.mark.slow
def test_per_output_coverage_on_fresh_in_distribution_data_is_nominal(fitted):
    state, uncalibrated, _ = fitted
    test = system(jax.random.key(7), 5000)
    # uncalibrated, the noise-free outputs are several times under-confident: measured 1σ coverage ≈ 0.95
    assert np.all(coverage(uncalibrated, test, 1.0)[~NOISY] > 0.9)
    # the tolerance, ±0.08 per output (5000 rows: binomial std ≈ 0.007); measured 0.65–0.72 at 1σ,
    # 0.90–0.95 at 2σ (errors of a noise-free output are heavier-tailed than a Gaussian)
    np.testing.assert_allclose(coverage(state, test, 1.0), 0.683, atol=0.08)
    np.testing.assert_allclose(coverage(state, test, 2.0), 0.954, atol=0.08)


@pytest.mark.slow
def test_noise_free_outputs_get_a_small_aleatoric_scale_and_no_output_a_narrower_member_spread(fitted):
    state, uncalibrated, metrics = fitted
    scale = np.asarray(state.aleatoric_scale)
    assert np.all(scale[~NOISY] < 0.3) and np.all(np.abs(np.log(scale[NOISY])) < np.log(1.5)), scale
    np.testing.assert_array_equal(metrics.aleatoric_scale, state.aleatoric_scale)
    np.testing.assert_array_equal(metrics.epistemic_growth, state.epistemic_growth)
    assert bool(jnp.all(state.epistemic_growth >= 0))
    data = system(jax.random.key(8), 500, (-1.0, 3.0), gap=False)
    calibrated_epi, raw_epi = moments(state, data)[2], moments(uncalibrated, data)[2]
    assert bool(jnp.all(calibrated_epi >= raw_epi * (1 - 1e-5)))  # calibration never shrinks the member spread
    # the mean is the same function of the members; only float rounding of the two compiled programs differs
    # (1.3e-5 relative seen on an AMD EPYC host)
    np.testing.assert_allclose(moments(state, data)[0], moments(uncalibrated, data)[0], rtol=1e-4, atol=1e-5)
    assert int(metrics.num_region) == 200 and float(metrics.calibrated_ece) < float(metrics.ece)


def test_epistemic_std_grows_with_distance_from_the_data(fitted):
    state, _, _ = fitted
    bands = [(-1.0, 0.2), (1.0, 1.25), (1.25, 1.5), (1.5, 2.0), (2.0, 3.0)]  # the first is in the data
    out_std = state.normalizer.output_std
    epi = np.stack(
        [
            np.asarray((moments(state, system(jax.random.key(9), 2000, band, gap=False))[2] / out_std).mean(0))
            for band in bands
        ]
    )  # [bands, out], normalised units
    assert np.all(np.diff(epi.mean(1)) > 0), epi  # mean over outputs rises band after band
    assert np.all(epi[-1] > 5 * epi[0]), epi  # and every output's σ_epi far off is many times that on the data


def test_errors_in_a_region_never_seen_are_covered_at_one_sigma(fitted):
    state, uncalibrated, _ = fitted
    gap = system(jax.random.key(10), 3000, GAP, gap=False)
    # pooled over outputs (the issue asks ≥ 0.6): measured 0.70 (0.67–0.72 per output) on one x86-64 host,
    # 0.64 (0.71 / 0.60 / 0.71 / 0.54, the noise-free cost output lowest) on an AMD EPYC host: the fit's float
    # rounding moves single outputs by ~0.15; uncalibrated 0.78, over-confident on the data but
    # under-confident here, with the noise-free outputs at 0.86–0.90
    covered = coverage(state, gap, 1.0)
    assert covered.mean() >= 0.6
    assert np.all((covered > 0.5) & (covered < 0.85)), covered
    # past the edge of the data the calibrated σ covers far more errors than the raw one: measured 0.60 vs
    # 0.35 on x0 ∈ [1, 1.5] (0.61 vs 0.42 on [1, 1.25], 0.78 vs 0.16 on [2, 3])
    beyond = system(jax.random.key(11), 3000, (1.0, 1.5), gap=False)
    assert coverage(state, beyond, 1.0).mean() > coverage(uncalibrated, beyond, 1.0).mean() + 0.15


def test_predict_per_member_gives_each_members_own_uncalibrated_gaussian(fitted):
    state, uncalibrated, _ = fitted
    data = system(jax.random.key(12), 8, (1.0, 2.0), gap=False)
    obs, action = (jnp.broadcast_to(x, (5, *x.shape)) for x in (data.obs, data.action))
    for calibrated, raw in zip(
        ensemble.predict_per_member(state, obs, action),
        ensemble.predict_per_member(uncalibrated, obs, action),
        strict=False,
    ):
        np.testing.assert_array_equal(calibrated, raw)  # TS∞ particles: members as trained
    np.testing.assert_allclose(
        ensemble.predict_per_member(state, obs, action)[1],
        ensemble.predict(uncalibrated, data.obs, data.action)[1],
        rtol=1e-5,
    )
