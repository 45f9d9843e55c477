"""Constraint handlers on a cost estimate (penalty, Lagrangian, augmented Lagrangian, CRPO) shared by learners."""

from saferl.constraints.handlers import (
    KINDS,
    ConstraintConfig,
    ConstraintState,
    actor_objective,
    augmented_lagrangian_term,
    discounted_budget,
    init,
    update,
)

__all__ = [
    "KINDS",
    "ConstraintConfig",
    "ConstraintState",
    "actor_objective",
    "augmented_lagrangian_term",
    "discounted_budget",
    "init",
    "update",
]
