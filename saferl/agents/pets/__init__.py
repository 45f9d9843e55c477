"""PETS (Chua et al. 2018): probabilistic ensemble + trajectory sampling + iCEM MPC. Registers "pets"."""

from saferl import registry
from saferl.agents.pets.config import PETSConfig, preset

_POLICY = registry.Lazy("saferl.agents.pets.policy", "load_policy")
registry.register(
    registry.Algorithm(
        name="pets",
        config_cls=PETSConfig,
        train=registry.Lazy("saferl.agents.pets.train", "train"),
        load_policy=_POLICY,
        load_task_policy=_POLICY,
        description="PETS: probabilistic ensemble, TS∞ rollouts, iCEM MPC (model-based)",
        uses_recorded_data=True,
    )
)

__getattr__ = registry.lazy_exports(
    __name__,
    {
        "saferl.agents.pets.agent": ("PETSAgent", "PETSState", "make_agent"),
        "saferl.agents.pets.policy": ("load_policy", "mpc_policy", "planned_action"),
        "saferl.agents.pets.train": ("EpisodeRunner",),
    },
)

__all__ = [
    "EpisodeRunner",
    "PETSAgent",
    "PETSConfig",
    "PETSState",
    "load_policy",
    "make_agent",
    "mpc_policy",
    "planned_action",
    "preset",
]
