"""Model-based planning: rollouts of action sequences through a learned ensemble, objectives, and iCEM (MPC)."""

from saferl.planning.icem import ICEMConfig, PlanInfo, PlannerState, colored_noise, init_state, plan
from saferl.planning.objectives import ObjectiveConfig, Scores, make_objective, rank, reward_objective, task_rewards
from saferl.planning.rollout import ModelFns, RolloutConfig, Trajectory, make_rollout_fn, rollout

__all__ = ["ICEMConfig", "PlanInfo", "PlannerState", "colored_noise", "init_state", "plan", "ObjectiveConfig",
           "Scores", "make_objective", "rank", "reward_objective", "task_rewards", "ModelFns", "RolloutConfig", "Trajectory", "make_rollout_fn",
           "rollout"]
