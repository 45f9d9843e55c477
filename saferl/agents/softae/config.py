"""SoftAE configuration: how the robot is explored (the strategy and its planner) and how tasks are then planned.

Strategies (`exploration`):
  * "info_gain"     — SoftAE: iCEM on the model maximises Σ_t Σ_j ½·log(1 + σ²_epi,j / σ²_ale,j) over the Δobs
                      outputs (OPAX / MaxInfoRL's intrinsic reward), optionally with hallucinated control
                      (`hallucination_scale` > 0: the planner also picks η ∈ [−1, 1]^obs, s' = μ + β·σ_epi⊙η)
                      and a σ_ale floor (`rollout.noise_floor` κ: σ_ale,j ≥ κ · output j's std in the data).
  * "disagreement"  — baseline: Σ_t ‖σ_epi‖² (member disagreement without the aleatoric normalisation).
  * "random"        — baseline: uniform random actions in [−1, 1].
  * "colored_noise" — baseline: temporally correlated Gaussian noise (power ∝ f^−β over the episode), clipped.
  * "task"          — baseline: task-specific PETS: plan for the reward of `task` (a name from `env.tasks()`)
                      with the same number of env steps.
Every strategy starts with `random_episodes` uniform-random episodes, then refits the ensemble after each episode.
With `cost_constraint` ≠ "none" (default "feasibility") the planned strategies keep the predicted episode cost
within the env's budget (safe exploration; the cost spent is logged either way), the cost of each imagined
transition being the env's own (`cost_source="env"`, `env.transition_cost`) where the env defines its cost on
observations, else the model's cost head. Zero-shot task planning after exploration uses
`task_rollout` (TS∞ particles), the same planner and the same constraint unless `task_cost_constraint` names its
own.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, get_args

from saferl.agents.pets.config import check_episode_loop_fields, check_particles
from saferl.models import EnsembleConfig
from saferl.planning import ICEMConfig, ObjectiveConfig, RolloutConfig
from saferl.planning.objectives import CostConstraint, ObjectiveKind

Strategy = Literal["info_gain", "disagreement", "random", "colored_noise", "task"]
STRATEGIES = get_args(Strategy)
TaskCostConstraint = Literal["same", "none", "penalty", "feasibility"]
TASK_COST_CONSTRAINTS = get_args(TaskCostConstraint)
_OBJECTIVE_KIND: dict[str, ObjectiveKind] = {
    "info_gain": "information_gain",
    "disagreement": "disagreement",
    "task": "return",
}
PLANNED = tuple(_OBJECTIVE_KIND)  # the strategies that plan on the model


def _cpu_model() -> EnsembleConfig:
    # PETS's CPU sizes, calibrated: per-output σ's make the information gain weigh every output alike
    from saferl.agents.pets.config import PETSConfig

    return dataclasses.replace(PETSConfig().model, calibrate=True)


def _cpu_planner() -> ICEMConfig:
    return ICEMConfig(
        horizon=10,
        population=100,
        num_elites=10,
        iterations=2,
        noise_beta=2.0,
        keep_elites_fraction=0.5,
        population_decay=1.0,
        init_std=0.5,
    )


@dataclasses.dataclass(frozen=True)
class PlanningConfig:
    """What the MPC machinery (`saferl.agents.pets.policy`) needs: planner, rollout, objective, action repeat."""

    planner: ICEMConfig
    rollout: RolloutConfig
    objective: ObjectiveConfig
    action_repeat: int


@dataclasses.dataclass(frozen=True)
class SoftAEConfig:
    """`saferl train softae --env soft_arm --set exploration=disagreement --set planner.horizon=15 ...`"""

    exploration: Strategy = "info_gain"
    task: str = ""  # env task planned for by exploration='task' (the task-specific PETS baseline)
    model: EnsembleConfig = dataclasses.field(default_factory=_cpu_model)  # probabilistic ensemble
    # exploration rollouts: mean propagation (every member at every step gives σ_epi), uncertainty tracked,
    # imagined states within 5 std of the data (an uncertainty objective otherwise prefers the model's runaway
    # extrapolations: soft_arm seed 1 overflowed to a non-finite plan value in its 3rd episode without it)
    rollout: RolloutConfig = dataclasses.field(
        default_factory=lambda: RolloutConfig(
            "mean", 1, sample_aleatoric=False, track_uncertainty=True, state_bound=5.0
        )
    )
    task_rollout: RolloutConfig = dataclasses.field(default_factory=lambda: RolloutConfig("tsinf", 5))  # tasks
    planner: ICEMConfig = dataclasses.field(default_factory=_cpu_planner)  # iCEM (MPC, replans every decision)
    discount: float = 1.0  # γ of the planned objective over the horizon, in (0, 1]
    # E[Σ cost] ≤ remaining budget: "feasibility" (the default) explores safely, planning only candidates the model
    # predicts within the env's budget (infeasible ones ranked by how little they exceed it)
    cost_constraint: Literal["none", "penalty", "feasibility"] = "feasibility"
    penalty: float = 10.0  # for cost_constraint="penalty"
    # where planned costs come from: "env" (the env's cost of each imagined transition, `env.transition_cost`, where
    # it has one; else the model's cost head) or "model" (the cost head: it predicts no cost before one was paid,
    # so exploration under the budget left soft_fish's channel for ≈ 800 of 1000 steps in the first planned episode)
    cost_source: Literal["model", "env"] = "env"
    # the zero-shot task planner's constraint: "same" as cost_constraint, or its own (e.g. explore safely with
    # "feasibility", then plan tasks with "none" exactly as a model explored without constraint would be)
    task_cost_constraint: TaskCostConstraint = "same"
    colored_noise_beta: float = 1.0  # exploration='colored_noise': spectrum exponent β (0 white, 2 brown), ≥ 0
    colored_noise_scale: float = 0.6  # exploration='colored_noise': action = clip(scale · noise), > 0
    action_repeat: int = 2  # env steps per decision (the model's step), ≥ 1
    random_episodes: int = 1  # uniform-random episodes before the first fit, ≥ 1
    buffer_capacity: int = 10_000  # transitions (decisions) kept for model fitting, ≥ 1
    checkpoint_every_episodes: int = 1  # episodes between checkpoints (the last one is always saved), ≥ 1

    def __post_init__(self) -> None:
        if self.exploration not in STRATEGIES:
            raise ValueError(f"exploration must be one of {', '.join(STRATEGIES)}, got {self.exploration!r}")
        if self.exploration == "task" and not self.task:
            raise ValueError("exploration='task' (task-specific PETS) needs task=NAME (see `saferl tasks ENV`)")
        check_episode_loop_fields(self)
        if not self.colored_noise_beta >= 0 or not self.colored_noise_scale > 0:
            raise ValueError(
                f"colored_noise_beta must be >= 0 and colored_noise_scale > 0, got "
                f"{self.colored_noise_beta}, {self.colored_noise_scale}"
            )
        if not self.rollout.track_uncertainty and self.exploration in ("info_gain", "disagreement"):
            raise ValueError(f"exploration='{self.exploration}' needs rollout.track_uncertainty=true")
        check_particles("rollout", self.rollout, self.model)
        check_particles("task_rollout", self.task_rollout, self.model)
        if self.task_rollout.hallucination_scale > 0:
            raise ValueError("task_rollout.hallucination_scale must be 0 (tasks are planned on the model's mean)")
        ObjectiveConfig(
            discount=self.discount, constraint=self.cost_constraint, penalty=self.penalty, cost_source=self.cost_source
        )  # validates
        if self.task_cost_constraint not in TASK_COST_CONSTRAINTS:
            raise ValueError(
                f"task_cost_constraint must be one of {', '.join(TASK_COST_CONSTRAINTS)}, got "
                f"{self.task_cost_constraint!r}"
            )

    @property
    def planned(self) -> bool:
        """Whether exploration plans on the model (else: random actions every episode)."""
        return self.exploration in PLANNED

    def exploration_planning(self) -> PlanningConfig:
        """The planner that explores (info gain / disagreement on `rollout`; the task's return on `task_rollout`)."""
        rollout = self.task_rollout if self.exploration == "task" else self.rollout
        kind = _OBJECTIVE_KIND.get(self.exploration, "return")  # "return" for the noise strategies' unused planner
        return PlanningConfig(self.planner, rollout, self._objective(kind, self.cost_constraint), self.action_repeat)

    def task_planning(self) -> PlanningConfig:
        """The planner of zero-shot tasks (and of the model's own reward head when no task is given), constrained
        as `task_cost_constraint` says."""
        constraint = self.cost_constraint if self.task_cost_constraint == "same" else self.task_cost_constraint
        return PlanningConfig(
            self.planner, self.task_rollout, self._objective("return", constraint), self.action_repeat
        )

    def _objective(self, kind: ObjectiveKind, constraint: CostConstraint) -> ObjectiveConfig:
        return ObjectiveConfig(
            kind=kind, discount=self.discount, constraint=constraint, penalty=self.penalty, cost_source=self.cost_source
        )
