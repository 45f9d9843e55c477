"""SoftAE: uncertainty-driven active exploration of (soft) robots, then zero-shot tasks planned on the learned
model. Registers "softae" (`saferl train softae --env soft_arm`, `saferl eval RUN --task reach`)."""

from saferl import registry
from saferl.agents.softae.agent import SoftAEAgent, make_agent
from saferl.agents.softae.config import STRATEGIES, PlanningConfig, SoftAEConfig
from saferl.agents.softae.policy import load_policy
from saferl.agents.softae.train import train

registry.register(registry.Algorithm(
    name="softae", config_cls=SoftAEConfig, train=train, load_policy=load_policy, load_task_policy=load_policy,
    description="SoftAE: information-gain exploration of the ensemble, then zero-shot task planning (model-based)",
    uses_recorded_data=True))

__all__ = ["STRATEGIES", "PlanningConfig", "SoftAEAgent", "SoftAEConfig", "load_policy", "make_agent", "train"]
