"""The planner's information gain stays finite wherever the member variances are (issue #31)."""

import jax.numpy as jnp
import numpy as np

from saferl.planning.rollout import ModelFns, RolloutConfig, _information_gain


def test_information_gain_is_finite_where_the_variance_ratio_overflows_and_exact_where_it_does_not():
    """σ²_epi/σ²_ale of a calibrated model rolled out past its data overflowed float32 (soft_arm seed 1: σ²_epi up to
    3e33, σ²_ale scaled to 6e-11), so log1p(ratio) was inf and the plan value with it; a zero spread gives 0."""
    obs_size = 3
    spread = jnp.array([1e-3, 1e17, 0.0, 1.0, 1.0])  # member means ±spread: σ²_epi = spread², 1e34 in dim 1
    mean = jnp.stack([spread, -spread])[:, None, None, :]  # [E=2, N=1, P=1, out = obs + 2]
    var = jnp.full_like(mean, 6e-11)  # a calibrated σ²_ale ≪ 1 (floored at 1e-8 by the rollout)
    model = ModelFns(predict=None, predict_members=None, num_members=2)
    gain = np.asarray(_information_gain(model, RolloutConfig("mean", 1, track_uncertainty=True), mean, var, obs_size))
    ratio = np.square(np.array([1e-3, 1e17, 0.0], np.float64)) / 1e-8
    np.testing.assert_allclose(gain.reshape(-1), [0.5 * np.log1p(ratio).sum()], rtol=1e-5)  # float64 reference
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.float32(1e34) / np.float32(1e-8))  # the ratio the old log1p form took: inf
