"""SoftAE as pure functions on PETS's machinery: one episode of the exploration strategy on the env (one compiled
scan: uniform random for the first episodes, then the strategy), buffer, refit. Only the decision differs from
PETS: an information-gain (or disagreement) planner, random or coloured-noise actions, or — the task-specific
baseline — PETS on one task's reward. Zero-shot task policies plan on the learned model with `task_policy`.

The state (`saferl.agents.pets.PETSState`: ensemble, buffer, RNG key, episode counter) is all a bit-for-bit
resume needs.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jp

from envs.tasks import Task, get_task
from saferl.agents.modelfree.common import cache_by_computation
from saferl.agents.pets.agent import EpisodeStats, PETSAgent, _world_env
from saferl.agents.pets.policy import mpc_policy
from saferl.agents.softae.config import SoftAEConfig
from saferl.data.buffer import Transition
from saferl.models.ensemble import EnsembleState
from saferl.planning.icem import colored_noise
from saferl.policies.policy import Policy, PolicyCarry

if TYPE_CHECKING:
    from envs.protocol import SafeEnv
    from envs.training_env import TrainingEnvConfig


class NoiseMemory(NamedTuple):
    """Carry memory of a noise policy: this episode's action sequence and the next decision's index."""

    sequence: jax.Array  # [decisions, act_dim] in [-1, 1], drawn at decision 0
    # int32, the next decision (a field named like tuple.index: it shadows the method, which mypy flags)
    index: jax.Array  # type: ignore[assignment]


class SoftAEAgent(PETSAgent[SoftAEConfig]):
    """Binds an env and a `SoftAEConfig`; methods are pure, jitted functions of `PETSState`."""

    def __init__(self, env: SafeEnv, config: SoftAEConfig):
        super().__init__(env, config)
        self.task = get_task(env, config.task) if config.exploration == "task" else None

    def random_episode(self, episode: int) -> bool:
        """Whether episode `episode` (0-based) acts without the planner."""
        return not self.config.planned or episode < self.config.random_episodes

    def mpc_policy(self, model: EnsembleState) -> Policy:
        """The exploration planner on `model` (PETS on the task for exploration='task')."""
        return mpc_policy(self.config.exploration_planning(), model, self.env, task=self.task, algo="softae")

    def task_policy(self, model: EnsembleState, task: Task | None) -> Policy:
        """Zero-shot: plan for `task`'s reward on `model` (the model's own reward head when `task` is None)."""
        return mpc_policy(self.config.task_planning(), model, self.env, task=task, algo="softae")

    def noise_policy(self) -> Policy:
        """Coloured-noise exploration: one correlated action sequence per episode (β = colored_noise_beta)."""
        config, decisions, size = self.config, self.decisions_per_episode, self.action_size

        def init_carry() -> PolicyCarry:
            return PolicyCarry(
                cost_spent=jp.zeros((), jp.float32),
                memory=NoiseMemory(jp.zeros((decisions, size), jp.float32), jp.zeros((), jp.int32)),
            )

        def draw(key: jax.Array) -> jax.Array:
            noise = colored_noise(key, config.colored_noise_beta, (size, decisions)).T
            return jp.clip(config.colored_noise_scale * noise, -1.0, 1.0)

        def act(carry: PolicyCarry, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, PolicyCarry]:
            memory = carry.memory
            position = memory.index % decisions
            sequence = jax.lax.cond(position == 0, lambda: draw(key), lambda: memory.sequence)
            return sequence[position], carry.replace(memory=NoiseMemory(sequence, memory.index + 1))

        return dataclasses.replace(self.random_policy(), act=act, init_carry=init_carry, algo="colored_noise")

    def _collect(self, model: EnsembleState, key: jax.Array, explore: jax.Array) -> tuple[Transition, EpisodeStats]:
        """One episode: the strategy's policy (uniform random while `explore`), as in PETS; the noise strategies
        never build the planner."""
        if self.config.planned:
            return super()._collect(model, key, explore)
        policy = self.noise_policy() if self.config.exploration == "colored_noise" else self.random_policy()
        transitions = self._episode(policy, key).transition
        zero = jp.zeros((), jp.float32)
        return transitions, EpisodeStats(transitions.reward.sum(), transitions.cost.sum(), zero, zero + 1.0)


@cache_by_computation
def make_agent(config: SoftAEConfig, env: SafeEnv, training_env: TrainingEnvConfig | None = None) -> SoftAEAgent:
    """A `SoftAEAgent` exploring in `training_env`'s world, memoised like PETS's `make_agent`."""
    return SoftAEAgent(_world_env(env, training_env), config)
