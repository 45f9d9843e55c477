"""PPO with a cost value head and a selectable constraint handler (`--set constraint.kind=...`), registered
as `ppo`. Unconstrained by default (the cost value is still learned and logged)."""

from __future__ import annotations

from saferl import registry
from saferl.agents.ppo.config import PPOConfig

registry.register(
    registry.Algorithm(
        name="ppo",
        config_cls=PPOConfig,
        train=registry.Lazy("saferl.agents.ppo.train", "train"),
        load_policy=registry.Lazy("saferl.agents.ppo.policy", "load_policy"),
        description="PPO with reward and cost value heads; constrained with --constraint KIND",
        recorded_data_refusal="it is on-policy: it learns only from rollouts of its current policy",
    )
)

__getattr__ = registry.lazy_exports(
    __name__,
    {
        "saferl.agents.ppo.train": ("LOSS_KEYS", "PPOState", "make_train"),
        "saferl.agents.ppo.networks": ("PPONetworks", "make_networks"),
        "saferl.agents.ppo.losses": ("PPOParams",),
        "saferl.agents.ppo.policy": ("load_policy",),
    },
)

__all__ = [
    "LOSS_KEYS",
    "PPOConfig",
    "PPONetworks",
    "PPOParams",
    "PPOState",
    "load_policy",
    "make_networks",
    "make_train",
]
