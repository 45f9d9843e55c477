"""iCEM: finds the optimum of a known linear-quadratic problem, coloured-noise spectrum, warm start, vmap."""

import jax
import jax.numpy as jp
import numpy as np
import pytest
from planning_mocks import double_integrator

from saferl.planning import (
    ICEMConfig,
    ObjectiveConfig,
    RolloutConfig,
    colored_noise,
    init_state,
    make_objective,
    make_rollout_fn,
    plan,
    rollout,
)

HORIZON = 10
OBS0 = jp.array([0.3, 0.0])  # x = 0.3 m from the target, at rest
MEAN_ROLLOUT = RolloutConfig(propagation="mean", num_particles=1)


def _planner(config, model=None):
    model = model or double_integrator()
    objective = make_objective(ObjectiveConfig())
    return jax.jit(
        lambda key, obs0, init: plan(config, key, make_rollout_fn(model, MEAN_ROLLOUT, obs0), objective, init)
    )


@pytest.fixture(scope="module")
def lq_optimum():
    """Exact optimum of the (quadratic in actions) return: a* = −∇²J⁻¹ ∇J at a = 0, and J(a*)."""
    model, objective = double_integrator(), make_objective(ObjectiveConfig())

    def ret(a):
        return objective(rollout(jax.random.PRNGKey(0), model, MEAN_ROLLOUT, OBS0, a[None, :, None])).value[0]

    a_star = -jp.linalg.solve(jax.hessian(ret)(jp.zeros(HORIZON)), jax.grad(ret)(jp.zeros(HORIZON)))
    assert float(jp.abs(a_star).max()) < 1.0  # interior optimum: the box [-1, 1] is not active
    return a_star, float(ret(a_star)), ret


@pytest.mark.slow
def test_icem_finds_optimum_of_linear_quadratic_system(lq_optimum):
    a_star, best, ret = lq_optimum
    config = ICEMConfig(horizon=HORIZON, population=200, num_elites=20, iterations=5)
    actions, info = _planner(config)(jax.random.PRNGKey(1), OBS0, init_state(config, 1))
    achieved = float(ret(actions[:, 0]))
    # J* ≈ −0.653; sampling-based search with 1000 evaluations gets within 2 % (measured 0.4 %)
    assert achieved >= best - 0.02 * abs(best)
    assert achieved <= best + 1e-5  # nothing beats the exact optimum
    assert abs(float(actions[0, 0]) - float(a_star[0])) < 0.15  # the executed action is near-optimal
    np.testing.assert_allclose(float(info.best_value), achieved, rtol=1e-5)


@pytest.mark.slow
def test_cem_beats_random_shooting_with_the_same_evaluations(lq_optimum):
    _, best, ret = lq_optimum
    cem = ICEMConfig.cem(horizon=HORIZON, population=200, num_elites=20, iterations=5)
    shooting = ICEMConfig.random_shooting(horizon=HORIZON, population=1000, num_elites=1)
    key = jax.random.PRNGKey(2)
    cem_return = float(ret(_planner(cem)(key, OBS0, init_state(cem, 1))[0][:, 0]))
    shooting_return = float(ret(_planner(shooting)(key, OBS0, init_state(shooting, 1))[0][:, 0]))
    assert shooting_return < cem_return <= best + 1e-5
    assert cem_return >= best - 0.02 * abs(best)


def test_warm_start_is_the_shifted_solution_and_vmap_over_envs_matches_single_calls():
    config = ICEMConfig(horizon=HORIZON, population=64, num_elites=8, iterations=2, population_decay=1.0)
    planner = _planner(config)
    starts = jp.array([[0.3, 0.0], [-0.2, 0.1], [0.0, -0.3]])
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    inits = jax.vmap(lambda _: init_state(config, 1))(keys)
    batched_actions, batched_info = jax.jit(jax.vmap(planner))(keys, starts, inits)
    for i in range(3):
        actions, info = planner(keys[i], starts[i], init_state(config, 1))
        np.testing.assert_allclose(batched_actions[i], actions, atol=1e-5)
        assert float(jp.sign(actions[0, 0])) == -float(jp.sign(starts[i, 0] + 0.5 * starts[i, 1]))  # pushes to 0
        np.testing.assert_allclose(info.next_init.mean[:-1], batched_info.next_init.mean[i][:-1], atol=1e-5)
    assert batched_info.next_init.mean.shape == (3, HORIZON, 1)
    assert float(jp.abs(batched_info.next_init.mean[:, -1]).max()) == 0.0  # appended step starts at the prior mean


def test_planner_actions_stay_in_bounds_even_when_optimum_is_outside():
    config = ICEMConfig(horizon=HORIZON, population=64, num_elites=8, iterations=2)
    actions, _ = _planner(config)(jax.random.PRNGKey(4), jp.array([50.0, 0.0]), init_state(config, 1))
    assert float(jp.abs(actions).max()) <= 1.0
    assert float(actions[0, 0]) < -0.9  # far from the target: full push back


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_colored_noise_has_power_law_spectrum_and_unit_variance(beta):
    noise = np.asarray(colored_noise(jax.random.PRNGKey(0), beta, (4000, 32)))
    power = (np.abs(np.fft.rfft(noise, axis=-1)) ** 2).mean(0)
    freqs = np.fft.rfftfreq(32)
    slope = np.polyfit(np.log(freqs[1:]), np.log(power[1:]), 1)[0]
    assert abs(slope + beta) < 0.15  # 4000 samples: the fitted slope is within ~0.05 of −β (measured)
    assert abs(noise.std() - 1.0) < 0.03  # exact normalisation; 128k samples -> std error < 0.01
    white = np.asarray(colored_noise(jax.random.PRNGKey(0), 0.0, (4000, 32)))
    assert abs(np.corrcoef(white[:, 0], white[:, 1])[0, 1]) < 0.05
    assert np.corrcoef(noise[:, 0], noise[:, 1])[0, 1] > 0.5  # coloured noise is smooth in time


def test_config_rejects_bad_values_with_field_name():
    with pytest.raises(ValueError, match="num_elites"):
        ICEMConfig(population=10, num_elites=20)
    with pytest.raises(ValueError, match="noise_beta"):
        ICEMConfig(noise_beta=-1.0)
    assert ICEMConfig(population=100, num_elites=10, population_decay=2.0, iterations=4).population_sizes() == (
        100,
        50,
        25,
        20,
    )
