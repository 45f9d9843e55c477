"""SoftAE: uncertainty-driven active exploration of (soft) robots, then zero-shot tasks planned on the learned
model. Registers "softae" (`saferl train softae --env soft_arm`, `saferl eval RUN --task reach`)."""

from saferl import registry
from saferl.agents.softae.config import STRATEGIES, PlanningConfig, SoftAEConfig

_POLICY = registry.Lazy("saferl.agents.softae.policy", "load_policy")
registry.register(
    registry.Algorithm(
        name="softae",
        config_cls=SoftAEConfig,
        train=registry.Lazy("saferl.agents.softae.train", "train"),
        load_policy=_POLICY,
        load_task_policy=_POLICY,
        description="SoftAE: information-gain exploration of the ensemble, then zero-shot task planning (model-based)",
        uses_recorded_data=True,
    )
)

__getattr__ = registry.lazy_exports(
    __name__,
    {"saferl.agents.softae.agent": ("SoftAEAgent", "make_agent"), "saferl.agents.softae.policy": ("load_policy",)},
)

__all__ = ["STRATEGIES", "PlanningConfig", "SoftAEAgent", "SoftAEConfig", "load_policy", "make_agent"]
