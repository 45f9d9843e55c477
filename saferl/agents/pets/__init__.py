"""PETS (Chua et al. 2018): probabilistic ensemble + trajectory sampling + iCEM MPC. Registers "pets"."""

from saferl import registry
from saferl.agents.pets.agent import PETSAgent, PETSState, make_agent, planned_action
from saferl.agents.pets.config import PETSConfig, preset
from saferl.agents.pets.policy import load_policy, mpc_policy
from saferl.agents.pets.train import EpisodeRunner, train

registry.register(registry.Algorithm(
    name="pets", config_cls=PETSConfig, train=train, load_policy=load_policy, load_task_policy=load_policy,
    description="PETS: probabilistic ensemble, TS∞ rollouts, iCEM MPC (model-based)",
    uses_recorded_data=True))

__all__ = ["EpisodeRunner", "PETSAgent", "PETSConfig", "PETSState", "load_policy", "make_agent", "mpc_policy",
           "planned_action", "preset", "train"]
