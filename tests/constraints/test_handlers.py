"""Tests for saferl/constraints/handlers.py: update rules, objectives, validation and a tiny constrained problem.

Exact comparisons use dyadic numbers (0.25, 0.125, ...), which float32 represents and adds without rounding.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saferl import constraints
from saferl.constraints import ConstraintConfig, ConstraintState


def _state(multiplier: float, penalty: float = 1.0) -> ConstraintState:
    return constraints.init(ConstraintConfig()).replace(
        multiplier=jnp.float32(multiplier), penalty=jnp.float32(penalty)
    )


def _loss(config, state, reward_loss, cost_estimate, budget):
    return constraints.actor_objective(config, state, jnp.float32(reward_loss), jnp.float32(cost_estimate), budget)[0]


def _grad_wrt_cost(config, state, reward_loss, cost_estimate, budget):
    def loss_of_cost(cost):
        return constraints.actor_objective(config, state, jnp.float32(reward_loss), cost, budget)[0]

    return float(jax.grad(loss_of_cost)(jnp.float32(cost_estimate)))


# --- Lagrangian dual ascent ---------------------------------------------------------------------------------------


def test_lagrange_multiplier_grows_by_exactly_lr_times_violation_when_violated():
    config = ConstraintConfig(kind="lagrangian", multiplier_lr=0.125)
    state, metrics = constraints.update(config, _state(0.25), jnp.float32(12.0), 10.0)
    assert float(state.multiplier) == 0.25 + 0.125 * 2.0
    assert float(metrics["lagrange_multiplier"]) == 0.5
    assert float(metrics["constraint_violation"]) == 2.0


def test_lagrange_multiplier_shrinks_when_satisfied_and_stops_at_zero():
    config = ConstraintConfig(kind="lagrangian", multiplier_lr=0.125)
    state, _ = constraints.update(config, _state(0.5), jnp.float32(9.0), 10.0)  # g = -1
    assert float(state.multiplier) == 0.375
    multipliers = []
    for _ in range(6):  # 0.375 -> 0.25 -> 0.125 -> 0 -> 0 (clipped, not -0.125) ...
        state, _ = constraints.update(config, state, jnp.float32(9.0), 10.0)
        multipliers.append(float(state.multiplier))
    assert multipliers == [0.25, 0.125, 0.0, 0.0, 0.0, 0.0]


def test_lagrange_multiplier_is_clipped_at_max_multiplier():
    config = ConstraintConfig(kind="lagrangian", multiplier_lr=1.0, initial_multiplier=3.0, max_multiplier=4.0)
    state, _ = constraints.update(config, constraints.init(config), jnp.float32(110.0), 10.0)  # 3 + 100 -> 4
    assert float(state.multiplier) == 4.0


def test_budget_scale_tightens_the_budget_in_the_violation():
    config = ConstraintConfig(kind="lagrangian", multiplier_lr=0.5, budget_scale=0.75)
    state, metrics = constraints.update(config, _state(0.0), jnp.float32(8.0), 8.0)  # g = 8 - 0.75*8 = 2
    assert float(metrics["constraint_violation"]) == 2.0
    assert float(state.multiplier) == 1.0


def test_lagrangian_objective_adds_multiplier_times_cost_and_treats_multiplier_as_constant():
    config = ConstraintConfig(kind="lagrangian")
    state = _state(0.5)
    assert float(_loss(config, state, 1.0, 4.0, 10.0)) == 1.0 + 0.5 * 4.0
    assert _grad_wrt_cost(config, state, 1.0, 4.0, 10.0) == 0.5
    grad_state = jax.grad(lambda s: _loss(config, s, 1.0, 4.0, 10.0))(state)
    assert float(grad_state.multiplier) == 0.0 and float(grad_state.penalty) == 0.0


# --- augmented Lagrangian -----------------------------------------------------------------------------------------


def test_augmented_lagrangian_term_matches_formula_on_both_branches():
    config = ConstraintConfig(kind="augmented_lagrangian", penalty=0.5)
    state = _state(1.0, 0.5)  # λ = 1, c = 0.5: switch at g = -λ/c = -2
    # λ + c·g > 0 (g = 2): ψ = λ·g + c/2·g² = 2 + 1 = 3
    assert float(_loss(config, state, 0.25, 12.0, 10.0)) == 0.25 + 3.0
    # λ + c·g ≤ 0 (g = -4): ψ = -λ²/(2c) = -1
    assert float(_loss(config, state, 0.25, 6.0, 10.0)) == 0.25 - 1.0


def test_augmented_lagrangian_term_is_continuous_at_the_branch_switch():
    multiplier, penalty = jnp.float32(1.5), jnp.float32(0.75)
    switch = -multiplier / penalty  # g = -2
    eps = 1e-3
    left = constraints.augmented_lagrangian_term(switch - eps, multiplier, penalty)
    right = constraints.augmented_lagrangian_term(switch + eps, multiplier, penalty)
    at = constraints.augmented_lagrangian_term(switch, multiplier, penalty)
    # ψ is C¹ with zero slope at the switch: the jump over ±1e-3 is c/2·eps² ≈ 4e-7, plus float32 rounding of
    # λ·g + c/2·g² near -λ²/(2c) = -1.5 (~1e-7); 1e-5 separates that from any real discontinuity.
    np.testing.assert_allclose([left, right], [at, at], atol=1e-5)
    np.testing.assert_allclose(at, -(1.5**2) / (2 * 0.75), atol=1e-6)


@pytest.mark.parametrize("cost_estimate", [4.0, 7.0, 8.0, 10.0, 12.0, 16.0])
def test_augmented_lagrangian_gradient_wrt_cost_is_the_clipped_multiplier_estimate(cost_estimate):
    config = ConstraintConfig(kind="augmented_lagrangian", penalty=0.5)
    state = _state(1.0, 0.5)
    violation = cost_estimate - 10.0
    expected = max(0.0, 1.0 + 0.5 * violation)  # max(0, λ + c·g), dyadic -> exact
    assert _grad_wrt_cost(config, state, 0.0, cost_estimate, 10.0) == expected


def test_augmented_lagrangian_update_moves_multiplier_by_penalty_times_violation_then_grows_penalty():
    config = ConstraintConfig(
        kind="augmented_lagrangian", penalty=0.5, penalty_growth=0.5, max_penalty=1.0, max_multiplier=5.0
    )
    state, metrics = constraints.update(config, _state(1.0, 0.5), jnp.float32(12.0), 10.0)  # g = 2
    assert float(state.multiplier) == 1.0 + 0.5 * 2.0  # the old c is the step size
    assert float(state.penalty) == 0.75
    assert float(metrics["penalty"]) == 0.75 and float(metrics["lagrange_multiplier"]) == 2.0
    state, _ = constraints.update(config, _state(1.0, 0.5), jnp.float32(4.0), 10.0)  # 1 + 0.5·(-6) < 0
    assert float(state.multiplier) == 0.0


def test_augmented_lagrangian_penalty_growth_is_capped_at_max_penalty():
    config = ConstraintConfig(kind="augmented_lagrangian", penalty=0.5, penalty_growth=0.5, max_penalty=1.0)
    state = constraints.init(config)
    penalties = []
    for _ in range(4):  # 0.5 -> 0.75 -> 1.0 (capped, not 1.125) -> 1.0 ...
        state, _ = constraints.update(config, state, jnp.float32(10.0), 10.0)
        penalties.append(float(state.penalty))
    assert penalties == [0.75, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("kind", ["lagrangian", "augmented_lagrangian"])
def test_update_every_steps_once_per_period_on_the_mean_violation(kind):
    config = ConstraintConfig(
        kind=kind, multiplier_lr=0.25, penalty=0.25, penalty_growth=1.0, max_multiplier=8.0, update_every=4
    )
    state = constraints.init(config)
    multipliers, penalties = [], []
    for cost in (12.0, 10.0, 14.0, 8.0):  # g = 2, 0, 4, -2: mean 1
        state, metrics = constraints.update(config, state, jnp.float32(cost), 10.0)
        multipliers.append(float(state.multiplier))
        penalties.append(float(state.penalty))
    assert float(metrics["constraint_violation"]) == -2.0  # the call's own violation, not the mean
    assert multipliers == [0.0, 0.0, 0.0, 0.25]  # one step of 0.25·mean(g) = 0.25 (lr or c, both 0.25)
    assert penalties == ([0.25, 0.25, 0.25, 0.5] if kind == "augmented_lagrangian" else [0.25] * 4)
    assert float(state.pending) == 0.0 and float(state.violation_sum) == 0.0  # the period restarts
    state, metrics = constraints.update(config, state, jnp.float32(30.0), 10.0)  # g = 20, clipped to the target 10
    assert float(metrics["constraint_violation"]) == 20.0
    assert float(state.multiplier) == 0.25 and float(state.violation_sum) == 10.0 and float(state.pending) == 1.0


@pytest.mark.parametrize("kind", ["lagrangian", "augmented_lagrangian"])
def test_dual_step_is_symmetric_a_cost_of_zero_lowers_as_fast_as_twice_the_budget_raises(kind):
    config = ConstraintConfig(
        kind=kind, multiplier_lr=0.125, penalty=0.125, penalty_growth=0.0, budget_scale=0.5, max_multiplier=8.0
    )
    up, _ = constraints.update(config, _state(4.0, 0.125), jnp.float32(1000.0), 16.0)  # g = 992 -> clipped to 8
    down, _ = constraints.update(config, _state(4.0, 0.125), jnp.float32(0.0), 16.0)  # g = -8
    assert float(up.multiplier) == 5.0 and float(down.multiplier) == 3.0


# --- CRPO, penalty, none --------------------------------------------------------------------------------------------


def test_crpo_switches_to_minimising_cost_exactly_above_budget_plus_tolerance():
    config = ConstraintConfig(kind="crpo", crpo_tolerance=0.5)
    state = constraints.init(config)
    at_threshold = np.float32(10.5)
    just_above = np.nextafter(at_threshold, np.float32(np.inf))
    loss, aux = constraints.actor_objective(config, state, jnp.float32(-3.0), jnp.float32(at_threshold), 10.0)
    assert float(loss) == -3.0 and float(aux["constraint_active"]) == 0.0
    loss, aux = constraints.actor_objective(config, state, jnp.float32(-3.0), jnp.float32(just_above), 10.0)
    assert float(loss) == float(just_above) and float(aux["constraint_active"]) == 1.0
    assert _grad_wrt_cost(config, state, -3.0, float(just_above), 10.0) == 1.0
    assert _grad_wrt_cost(config, state, -3.0, float(at_threshold), 10.0) == 0.0


def test_penalty_adds_fixed_weight_times_cost_and_update_leaves_it_fixed():
    config = ConstraintConfig(kind="penalty", penalty=2.0)
    state = constraints.init(config)
    assert float(_loss(config, state, 1.0, 3.0, 10.0)) == 1.0 + 2.0 * 3.0
    new_state, _ = constraints.update(config, state, jnp.float32(30.0), 10.0)
    assert float(new_state.penalty) == 2.0 and float(new_state.multiplier) == 0.0


def test_none_returns_reward_loss_unchanged_and_never_updates():
    config = ConstraintConfig()
    assert not config.enabled and ConstraintConfig(kind="crpo").enabled
    state = constraints.init(config)
    loss, aux = constraints.actor_objective(config, state, jnp.float32(1.25), jnp.float32(50.0), 10.0)
    assert float(loss) == 1.25
    assert float(aux["constraint_violation"]) == 40.0 and float(aux["constraint_active"]) == 0.0
    assert _grad_wrt_cost(config, state, 1.25, 50.0, 10.0) == 0.0
    new_state, metrics = constraints.update(config, state, jnp.float32(50.0), 10.0)
    assert float(new_state.multiplier) == 0.0 and float(new_state.penalty) == 1.0
    assert set(metrics) == {"lagrange_multiplier", "penalty", "constraint_violation"}


# --- jit, validation, budget ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["none", "lagrangian", "augmented_lagrangian", "crpo", "penalty"])
def test_objective_and_update_jit_with_config_static_and_match_eager(kind):
    config = ConstraintConfig(kind=kind, initial_multiplier=0.5, penalty=0.5)
    state = constraints.init(config)
    args = (jnp.float32(1.0), jnp.float32(12.0), jnp.float32(10.0))
    jitted_objective = jax.jit(functools.partial(constraints.actor_objective, config))
    static_objective = jax.jit(constraints.actor_objective, static_argnums=0)
    for loss, aux in (jitted_objective(state, *args), static_objective(config, state, *args)):
        eager_loss, eager_aux = constraints.actor_objective(config, state, *args)
        assert float(loss) == float(eager_loss)
        assert jax.tree.map(float, aux) == jax.tree.map(float, eager_aux)
    new_state, metrics = jax.jit(functools.partial(constraints.update, config))(state, *args[1:])
    eager_state, eager_metrics = constraints.update(config, state, *args[1:])
    assert jax.tree.map(float, (new_state, metrics)) == jax.tree.map(float, (eager_state, eager_metrics))
    assert new_state.multiplier.dtype == jnp.float32 and new_state.penalty.dtype == jnp.float32


@pytest.mark.parametrize(
    "field, value",
    [
        ("kind", "trpo"),
        ("multiplier_lr", -0.1),
        ("initial_multiplier", -1.0),
        ("initial_multiplier", 2000.0),  # above max_multiplier
        ("max_multiplier", 0.0),
        ("penalty", 0.0),
        ("penalty_growth", -1e-3),
        ("max_penalty", -1.0),
        ("crpo_tolerance", -0.5),
        ("budget_scale", 0.0),
        ("budget_scale", float("nan")),
        ("multiplier_lr", float("inf")),
        ("update_every", 0),
        ("update_every", 2.5),
    ],
)
def test_invalid_config_field_raises_value_error_naming_field_and_value(field, value):
    with pytest.raises(ValueError, match=rf"ConstraintConfig\.{field} must be .*got {value!r}"):
        ConstraintConfig(**{field: value})


def test_augmented_lagrangian_initial_penalty_above_cap_is_rejected():
    with pytest.raises(ValueError, match=r"ConstraintConfig\.penalty must be in \(0, max_penalty=1.0\]"):
        ConstraintConfig(kind="augmented_lagrangian", penalty=2.0, max_penalty=1.0)
    ConstraintConfig(kind="penalty", penalty=2.0, max_penalty=1.0)  # the cap is only for the augmented kind


def test_discounted_budget_spreads_episode_budget_over_the_critic_scale():
    # 100 / (1000·(1 − 0.99)); 1 − 0.99 is not exact in binary, hence approx at float64 precision.
    assert constraints.discounted_budget(100, 1000, 0.99) == pytest.approx(10.0, rel=1e-12)
    assert constraints.discounted_budget(25.0, 5, 0.0) == 5.0  # γ = 0: the per-step budget d/T
    for args, name in [
        ((100, 0, 0.99), "episode_length"),
        ((100, 10, 1.0), "discount"),
        ((100, 10, -0.1), "discount"),
        ((-1.0, 10, 0.9), "episode_budget"),
        ((100, 2.5, 0.9), "episode_length"),
    ]:
        with pytest.raises(ValueError, match=name):
            constraints.discounted_budget(*args)


# --- end to end: max x s.t. x² ≤ 1 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        ConstraintConfig(kind="lagrangian", multiplier_lr=0.05),
        ConstraintConfig(kind="augmented_lagrangian", penalty=0.5, penalty_growth=1e-3, max_penalty=1.0),
    ],
    ids=["lagrangian", "augmented_lagrangian"],
)
def test_gradient_descent_reaches_the_constrained_optimum_of_a_toy_problem(config):
    """min −x s.t. x² ≤ 1: optimum x* = 1 with KKT multiplier λ* = 1/(2x*) = 0.5.

    Primal: x ← x − η·∂loss/∂x (η = 0.05); dual: `update` once per step on the cost at the new x.
    Linearised at (x*, λ*), the coupled iteration's Jacobian has complex eigenvalues of modulus √det:
    √(1 − 2ηλ* + 4η·lr·x*²) ≈ 0.975 (Lagrangian, lr = 0.05) and √(1 − η(2λ* + 4c) + 4ηc) ≈ 0.87 (augmented,
    c = 1), so after 3000 steps the transient is below 1e-20 and what is left is float32 rounding (measured
    ≤ 5e-7). Tolerance 1e-3 on x and λ leaves a wide margin for that and for other step sizes' slower decay.
    """
    step_size, budget = 0.05, 1.0

    def step(carry, _):
        x, state = carry
        objective = lambda x: constraints.actor_objective(config, state, -x, x**2, budget)[0]  # noqa: E731
        x = x - step_size * jax.grad(objective)(x)
        state, metrics = constraints.update(config, state, x**2, budget)
        return (x, state), metrics["constraint_violation"]

    @jax.jit
    def solve(x0):
        return jax.lax.scan(step, (x0, constraints.init(config)), None, length=3000)

    (x, state), violations = solve(jnp.float32(0.0))
    assert abs(float(x) - 1.0) < 1e-3
    assert abs(float(state.multiplier) - 0.5) < 1e-3
    assert float(jnp.max(violations)) > 0.0  # it did overshoot into the infeasible region and came back
    assert np.all(np.isfinite(np.asarray(violations)))
