"""Model-based planning: rollouts of action sequences through a learned ensemble, objectives, and iCEM (MPC)."""

from saferl.planning.icem import ICEMConfig, PlanInfo, PlannerState, colored_noise, init_state, plan
from saferl.planning.objectives import ObjectiveConfig, Scores, make_objective, rank, reward_objective, task_rewards
from saferl.planning.rollout import ModelFns, RolloutConfig, Trajectory, make_rollout_fn, rollout

__all__ = [
    "ICEMConfig",
    "ModelFns",
    "ObjectiveConfig",
    "PlanInfo",
    "PlannerState",
    "RolloutConfig",
    "Scores",
    "Trajectory",
    "colored_noise",
    "init_state",
    "make_objective",
    "make_rollout_fn",
    "plan",
    "rank",
    "reward_objective",
    "rollout",
    "task_rewards",
]
