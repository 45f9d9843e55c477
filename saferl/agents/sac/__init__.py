"""SAC with a cost critic and a selectable constraint handler (`--set constraint.kind=...`), registered as
`sac`. Unconstrained by default; `constraint.kind=augmented_lagrangian` trains a prior that keeps the
episode cost within the env's budget (see `saferl.constraints`)."""

from __future__ import annotations

from saferl import registry
from saferl.agents.sac.config import SACConfig

registry.register(
    registry.Algorithm(
        name="sac",
        config_cls=SACConfig,
        train=registry.Lazy("saferl.agents.sac.train", "train"),
        load_policy=registry.Lazy("saferl.agents.sac.policy", "load_policy"),
        description="SAC with reward and cost critics; constrained with --constraint KIND "
        "(lagrangian, augmented_lagrangian, crpo, penalty)",
        uses_recorded_data=True,
    )
)

__getattr__ = registry.lazy_exports(
    __name__,
    {
        "saferl.agents.sac.train": ("LOSS_KEYS", "SACState", "make_train", "make_train_init", "prefill"),
        "saferl.agents.sac.networks": ("SACNetworks", "make_networks"),
        "saferl.agents.sac.policy": ("load_policy",),
    },
)

__all__ = [
    "LOSS_KEYS",
    "SACConfig",
    "SACNetworks",
    "SACState",
    "load_policy",
    "make_networks",
    "make_train",
    "make_train_init",
    "prefill",
]
