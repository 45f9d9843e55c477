"""SOOPER ("Safe Exploration via Policy Priors", ICLR 2026): learn on the real system from a conservative prior,
planning optimistically on the model's reward and pessimistically on its cost, behind a shield that falls back to
the prior wherever the learner could break the episode's cost budget. Registers `sooper` and its baselines
`sailr`, `crpo`, `primal_dual`, `mbrl` — the same learner with other settings (`config.py`).
"""

from __future__ import annotations

from saferl import registry
from saferl.agents.sooper.config import (
    METHOD_CONFIGS,
    CRPOConfig,
    MBRLConfig,
    PrimalDualConfig,
    SailrConfig,
    SooperConfig,
)
from saferl.agents.sooper.shield import (
    ShieldConfig,
    ShieldMemory,
    ShieldTermination,
    shield_fires,
    shield_scale,
    shielded_action,
    shielded_policy,
    terminal_value,
)

_DESCRIPTIONS = {
    "sooper": "SOOPER: MPC (or --set learner=mbpo) around a prior, optimistic reward, pessimistic cost, shield "
    "(--set prior=RUN_DIR)",
    "sailr": "SAILR-like baseline: advantage-filter shield, no optimism (same prior, model, planner)",
    "crpo": "CRPO-like baseline: return while the predicted cost fits the budget, else cost (no shield)",
    "primal_dual": "primal-dual baseline: augmented Lagrangian on the predicted episode cost (no shield)",
    "mbrl": "unconstrained model-based RL around the prior (reference; no shield, no constraint)",
}

for _name, _config_cls in METHOD_CONFIGS.items():
    registry.register(
        registry.Algorithm(
            name=_name,
            config_cls=_config_cls,
            train=registry.Lazy("saferl.agents.sooper.train", "train"),
            load_policy=registry.Lazy("saferl.agents.sooper.policy", "load_policy"),
            description=_DESCRIPTIONS[_name],
            check_config=registry.Lazy("saferl.agents.sooper.train", "check_config"),
        )
    )

__getattr__ = registry.lazy_exports(__name__, {"saferl.agents.sooper.policy": ("load_policy",)})

__all__ = [
    "CRPOConfig",
    "MBRLConfig",
    "PrimalDualConfig",
    "SailrConfig",
    "ShieldConfig",
    "ShieldMemory",
    "ShieldTermination",
    "SooperConfig",
    "load_policy",
    "shield_fires",
    "shield_scale",
    "shielded_action",
    "shielded_policy",
    "terminal_value",
]
