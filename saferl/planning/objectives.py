"""Planning objectives: trajectory -> `Scores(value [N], violation [N])`, maximised by the planner.

PETS: expected return. SoftAE: expected information gain (or plain member disagreement, a baseline), and
zero-shot tasks: any reward r(obs, action, next_obs) (`reward_objective`). SOOPER-style: (optimistic) return subject to
E[Σ cost] ≤ remaining budget, either as a penalty folded into the value or as a violation that the planner
ranks feasibility-first (feasible candidates by value, infeasible ones by how little they violate).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jp

from saferl.planning.rollout import Trajectory


class Scores(NamedTuple):
    """What the planner ranks: larger `value` is better; a candidate is feasible iff `violation` ≤ 0."""

    value: jax.Array  # [N]
    violation: jax.Array  # [N] (0 for unconstrained objectives)


ObjectiveFn = Callable[[Trajectory], Scores]
#: what the planner maximises (`ObjectiveConfig.kind`)
ObjectiveKind = Literal["return", "information_gain", "disagreement"]
#: how E[Σ cost] ≤ budget is handled (`ObjectiveConfig.constraint`)
CostConstraint = Literal["none", "penalty", "feasibility"]


def _discounted_sum(per_step: jax.Array, discount: float) -> jax.Array:
    """[N, P, H] -> [N]: Σ_t γ^t x_t, averaged over particles."""
    weights = discount ** jp.arange(per_step.shape[-1], dtype=per_step.dtype)
    return (per_step * weights).sum(-1).mean(-1)


def expected_return(trajectory: Trajectory, discount: float = 1.0) -> jax.Array:
    """[N] mean over particles of the (discounted) sum of rewards."""
    return _discounted_sum(trajectory.rewards, discount)


def expected_cost(trajectory: Trajectory) -> jax.Array:
    """[N] mean over particles of the undiscounted sum of costs (same units as the episode budget)."""
    return _discounted_sum(trajectory.costs, 1.0)


def expected_information_gain(trajectory: Trajectory, discount: float = 1.0) -> jax.Array:
    """[N] mean over particles of Σ_t information gain; needs `RolloutConfig(track_uncertainty=True)`."""
    if trajectory.info_gain is None:
        raise ValueError("information gain needs a rollout with track_uncertainty=True")
    return _discounted_sum(trajectory.info_gain, discount)


def expected_disagreement(trajectory: Trajectory, discount: float = 1.0) -> jax.Array:
    """[N] mean over particles of Σ_t ‖σ_epi‖² (member disagreement on Δobs without the aleatoric
    normalisation of the information gain); needs `RolloutConfig(track_uncertainty=True)`."""
    if trajectory.epistemic_std is None:
        raise ValueError("disagreement needs a rollout with track_uncertainty=True")
    return _discounted_sum(jp.square(trajectory.epistemic_std), discount)


RewardFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def task_rewards(trajectory: Trajectory, reward_fn: RewardFn) -> jax.Array:
    """[N, P, H] per-step rewards of a task `reward_fn(obs, action, next_obs)` along imagined trajectories."""
    rewards = reward_fn(trajectory.obs[:, :, :-1], trajectory.actions, trajectory.obs[:, :, 1:])
    return jp.broadcast_to(rewards, trajectory.costs.shape).astype(trajectory.costs.dtype)


def with_transition_costs(objective_fn: ObjectiveFn, cost_fn: RewardFn, action_repeat: int = 1) -> ObjectiveFn:
    """`objective_fn` scoring imagined trajectories with a known per-env-step cost `cost_fn(obs, action, next_obs)`
    (an env's `transition_cost`) instead of the model's cost head: each decision costs `action_repeat` × the cost
    of the transition it imagines (the states between a decision's env steps are not imagined)."""

    def objective(trajectory: Trajectory) -> Scores:
        costs = action_repeat * task_rewards(trajectory, cost_fn)
        return objective_fn(trajectory._replace(costs=costs))

    return objective


def reward_objective(
    reward_fn: RewardFn,
    discount: float = 1.0,
    constraint: CostConstraint = "none",
    penalty: float = 10.0,
    remaining_budget: jax.Array | float = jp.inf,
) -> ObjectiveFn:
    """`objective_fn(trajectory) -> Scores` maximising Σ_t γ^t r(obs_t, a_t, obs_t+1) of any task reward
    (e.g. an `envs.Task`), ignoring the model's own reward head; the model's cost enters as in
    `make_objective` (`constraint` none / penalty / feasibility against `remaining_budget`)."""
    config = ObjectiveConfig(discount=discount, constraint=constraint, penalty=penalty)
    return _constrained(config, lambda t: _discounted_sum(task_rewards(t, reward_fn), discount), remaining_budget)


def _constrained(
    config: ObjectiveConfig, value_fn: Callable[[Trajectory], jax.Array], remaining_budget: jax.Array | float
) -> ObjectiveFn:
    """Scores of `value_fn` with E[Σ cost] ≤ `remaining_budget` handled as `config.constraint` says."""

    def objective(trajectory: Trajectory) -> Scores:
        value = value_fn(trajectory)
        if config.constraint == "none":
            return Scores(value, jp.zeros_like(value))
        excess = expected_cost(trajectory) - remaining_budget
        if config.constraint == "penalty":
            return Scores(value - config.penalty * jp.maximum(excess, 0.0), jp.zeros_like(value))
        return Scores(value, excess)

    return objective


KINDS = ("return", "information_gain", "disagreement")


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """Which quantity the planner maximises and how a cost budget is enforced."""

    kind: ObjectiveKind = "return"  # what is maximised
    discount: float = 1.0  # γ over the planning horizon, in (0, 1]
    constraint: CostConstraint = "none"  # how E[Σ cost] ≤ budget is handled
    penalty: float = 10.0  # value − penalty·max(0, E[Σ cost] − budget), for constraint='penalty' (≥ 0)
    # where imagined costs come from: "model" (the ensemble's cost head) or "env" (the env's `transition_cost` of
    # the imagined transition, where the env has one; else the model's): a cost head cannot predict a cost it
    # has never seen paid, the cost the user defined on observations can
    cost_source: Literal["model", "env"] = "model"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")
        if self.constraint not in ("none", "penalty", "feasibility"):
            raise ValueError(f"constraint must be one of none/penalty/feasibility, got {self.constraint!r}")
        if self.penalty < 0:
            raise ValueError(f"penalty must be >= 0, got {self.penalty}")
        if self.cost_source not in ("model", "env"):
            raise ValueError(f"cost_source must be one of model/env, got {self.cost_source!r}")


def make_objective(config: ObjectiveConfig, remaining_budget: jax.Array | float = jp.inf) -> ObjectiveFn:
    """`objective_fn(trajectory) -> Scores` for the planner.

    `remaining_budget` (scalar, cost units) is the episode budget minus the cost spent so far; it may be a
    traced value so one compiled planner serves every step.
    """
    values = {
        "return": expected_return,
        "information_gain": expected_information_gain,
        "disagreement": expected_disagreement,
    }
    value_fn = values[config.kind]
    return _constrained(config, lambda t: value_fn(t, config.discount), remaining_budget)


def rank(scores: Scores) -> jax.Array:
    """Indices [N] from best to worst: feasible (violation ≤ 0) by value, then infeasible by violation."""
    feasible = scores.violation <= 0.0
    secondary = jp.where(feasible, -scores.value, scores.violation)
    secondary = jp.where(jp.isfinite(secondary), secondary, jp.inf)  # NaN/Inf candidates go last
    return jp.lexsort((secondary, ~feasible))
