"""Objectives and constrained ranking: feasible candidates first, the planner respects a cost budget."""

import jax
import jax.numpy as jp
import numpy as np
import pytest
from planning_mocks import action_integrator, double_integrator

from saferl.planning import (
    ICEMConfig,
    ObjectiveConfig,
    RolloutConfig,
    Scores,
    init_state,
    make_objective,
    make_rollout_fn,
    plan,
    rank,
    rollout,
)


def test_rank_puts_feasible_by_value_then_infeasible_by_violation():
    scores = Scores(
        value=jp.array([5.0, 1.0, 9.0, 3.0, 7.0, jp.nan]), violation=jp.array([-1.0, 0.0, 2.0, -0.5, 0.5, -1.0])
    )
    # feasible: 0 (5), 3 (3), 1 (1); infeasible: 4 (0.5 over), 2 (2 over); NaN value last among feasible
    order = [int(i) for i in rank(scores)]
    assert order[:3] == [0, 3, 1] and order[-2:] == [4, 2]
    unconstrained = rank(Scores(jp.array([1.0, 3.0, 2.0]), jp.zeros(3)))
    assert [int(i) for i in unconstrained] == [1, 2, 0]


def _constrained_plan(constraint, budget, horizon=8):
    """action_integrator: per step reward a, cost a + 1: the best plan under the budget spends it exactly."""
    model = action_integrator()
    config = ICEMConfig(
        horizon=horizon, population=300, num_elites=30, iterations=5, noise_beta=0.0, population_decay=1.0
    )
    objective = make_objective(ObjectiveConfig(constraint=constraint, penalty=100.0), budget)
    rollout_config = RolloutConfig("mean", 1)
    planner = jax.jit(
        lambda key: plan(
            config, key, make_rollout_fn(model, rollout_config, jp.zeros(1)), objective, init_state(config, 1)
        )
    )
    actions, info = planner(jax.random.PRNGKey(0))
    traj = rollout(jax.random.PRNGKey(0), model, rollout_config, jp.zeros(1), actions[None])
    return float(traj.rewards.sum()), float(traj.costs.sum()), info


@pytest.mark.parametrize("constraint", ["feasibility", "penalty"])
def test_constrained_planner_picks_feasible_plan_close_to_the_budget(constraint):
    budget = 4.0  # Σ(a + 1) ≤ 4 over 8 steps ⇔ Σa ≤ −4; unconstrained optimum Σa = 8 (cost 16)
    ret, cost, info = _constrained_plan(constraint, budget)
    assert cost <= budget + 0.05  # penalty 100 makes any excess > 0.05 cost more return than it buys
    assert ret >= -4.0 - 0.8  # and the budget is used: within 10 % of the best feasible return −4
    if constraint == "feasibility":
        assert float(info.best_violation) <= 0.0 and float(info.feasible_fraction) > 0.0
    free_ret, free_cost, _ = _constrained_plan("none", budget)
    assert free_cost > 14.0 and free_ret > 6.0  # without the constraint it goes all in


def test_infeasible_everywhere_returns_least_violating_plan():
    _ret, cost, info = _constrained_plan("feasibility", budget=-1.0)  # costs are ≥ 0: nothing is feasible
    assert float(info.best_violation) > 0.0
    assert cost < 1.6  # the least cost is 0 (a = −1 throughout), the range 0..16: within 10 % of it


def test_information_gain_objective_prefers_uncertain_region_and_needs_tracking():
    model = double_integrator(member_spread=0.1, noise_var=0.01)
    objective = make_objective(ObjectiveConfig(kind="information_gain"))
    config = RolloutConfig("mean", 1, track_uncertainty=True)
    traj = rollout(jax.random.PRNGKey(0), model, config, jp.zeros(2), jp.zeros((2, 5, 1)))
    scores = objective(traj)
    # σ²_epi,v = 0.02, σ²_ale = 0.01 per step: gain = ½·log(1 + 2) per step, 5 steps
    np.testing.assert_allclose(scores.value, 5 * 0.5 * np.log(3.0), rtol=1e-4)
    with pytest.raises(ValueError, match="track_uncertainty"):
        objective(rollout(jax.random.PRNGKey(0), model, RolloutConfig("mean", 1), jp.zeros(2), jp.zeros((2, 5, 1))))


def test_objective_config_validation():
    with pytest.raises(ValueError, match="discount"):
        ObjectiveConfig(discount=0.0)
    with pytest.raises(ValueError, match="constraint"):
        ObjectiveConfig(constraint="barrier")


def test_trajectory_carries_the_env_actions_for_every_particle():
    model = double_integrator()
    actions = jax.random.uniform(jax.random.PRNGKey(1), (3, 4, 1), minval=-1, maxval=1)
    traj = rollout(jax.random.PRNGKey(0), model, RolloutConfig("tsinf", 5), jp.zeros(2), actions)
    assert traj.actions.shape == (3, 5, 4, 1)
    np.testing.assert_array_equal(traj.actions, jp.broadcast_to(actions[:, None], (3, 5, 4, 1)))
    hallucinated = RolloutConfig("mean", 1, hallucination_scale=1.0)
    wide = jp.concatenate([actions, jp.ones((3, 4, 2))], axis=-1)  # + η dims
    traj = rollout(jax.random.PRNGKey(0), model, hallucinated, jp.zeros(2), wide)
    np.testing.assert_array_equal(traj.actions[:, 0], actions)  # η dims are not env actions


def test_reward_objective_scores_any_task_reward_of_obs_action_next_obs():
    from saferl.planning import reward_objective, task_rewards

    model = double_integrator(dt=1.0)  # x' = x + v, v' = v + a from rest: x after 2 steps = a_0
    actions = jp.array([[[1.0], [0.0]], [[-1.0], [0.0]], [[0.5], [0.5]]])  # [N=3, H=2, 1]
    traj = rollout(jax.random.PRNGKey(0), model, RolloutConfig("mean", 1), jp.zeros(2), actions)
    go_right = lambda obs, action, next_obs: next_obs[..., 0] - obs[..., 0]  # noqa: E731 (displacement)
    np.testing.assert_allclose(task_rewards(traj, go_right)[:, 0], [[0.0, 1.0], [0.0, -1.0], [0.0, 0.5]])
    scores = reward_objective(go_right)(traj)
    np.testing.assert_allclose(scores.value, [1.0, -1.0, 0.5])
    assert [int(i) for i in rank(scores)] == [0, 2, 1]
    # the action enters too (an effort penalty), and a cost budget is enforced like in make_objective
    effort = lambda obs, action, next_obs: -jp.square(action[..., 0])  # noqa: E731
    np.testing.assert_allclose(reward_objective(effort)(traj).value, [-1.0, -1.0, -0.5])
    infeasible = reward_objective(go_right, constraint="feasibility", remaining_budget=-1.0)(traj)
    assert (infeasible.violation > 0).all()


def test_disagreement_objective_is_the_summed_squared_member_spread():
    model = double_integrator(member_spread=0.1, noise_var=0.01)
    traj = rollout(
        jax.random.PRNGKey(0), model, RolloutConfig("mean", 1, track_uncertainty=True), jp.zeros(2), jp.zeros((2, 5, 1))
    )
    value = make_objective(ObjectiveConfig(kind="disagreement"))(traj).value
    np.testing.assert_allclose(value, jp.square(traj.epistemic_std).sum(-1).mean(-1), rtol=1e-6)
    assert (value > 0).all()
    untracked = rollout(jax.random.PRNGKey(0), model, RolloutConfig("mean", 1), jp.zeros(2), jp.zeros((2, 5, 1)))
    with pytest.raises(ValueError, match="track_uncertainty"):
        make_objective(ObjectiveConfig(kind="disagreement"))(untracked)
    with pytest.raises(ValueError, match="kind must be one of"):
        ObjectiveConfig(kind="curiosity")


def test_known_transition_costs_replace_the_model_cost_head_in_the_constraint():
    """`with_transition_costs`: imagined transitions charged the env's cost (× action repeat) instead of the
    model's cost head, which here predicts 0 everywhere, as a head that has never seen a cost paid does."""
    from saferl.planning.objectives import with_transition_costs

    model = double_integrator(dt=1.0)  # x' = x + v, v' = v + a from rest: x = 0 after step 1, a_0 after step 2
    actions = jp.array([[[1.0], [0.0]], [[-1.0], [0.0]], [[0.2], [0.0]]])  # [N=3, H=2, 1]
    traj = rollout(jax.random.PRNGKey(0), model, RolloutConfig("mean", 1), jp.zeros(2), actions)
    assert float(jp.abs(traj.costs).max()) == 0.0  # the model's cost head: nothing to avoid
    beyond = lambda obs, action, next_obs: jp.where(jp.abs(next_obs[..., 0]) > 0.5, 1.0, 0.0)  # noqa: E731
    config = ObjectiveConfig("return", constraint="feasibility")
    blind = make_objective(config, remaining_budget=1.5)(traj)
    assert (blind.violation <= 0).all()
    known = with_transition_costs(make_objective(config, remaining_budget=1.5), beyond, action_repeat=2)(traj)
    # plans 0 and 1 end their second step at |x| = 1 > 0.5: 2 env steps × 1 = 2 > 1.5; plan 2 stays inside
    np.testing.assert_allclose(known.violation, [2.0 - 1.5, 2.0 - 1.5, -1.5])
    assert next(int(i) for i in rank(known)) == 2
    with pytest.raises(ValueError, match="cost_source"):
        ObjectiveConfig(cost_source="oracle")
