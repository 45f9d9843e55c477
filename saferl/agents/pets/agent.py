"""PETS as pure functions: collect an episode (random actions, or MPC with iCEM on the ensemble) on the one
episode loop (`saferl.policies.episode`), add it to the replay buffer, refit the ensemble. MPC collection
runs the run's own `Policy` (saferl.agents.pets.policy), built from the model inside the jitted collection:
the planner's warm start and the cost spent ride in its carry, as they do in `saferl eval` and on the robot.

`PETSState` is everything a bit-for-bit resume needs: ensemble (params, normaliser, optimiser), buffer,
RNG key and episode counter.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar

import jax
import jax.numpy as jp
from flax import struct

import envs
from saferl.agents.modelfree.common import cache_by_computation
from saferl.agents.pets.config import PETSConfig
from saferl.agents.pets.policy import model_fns, mpc_policy, planned_action
from saferl.data import buffer as buffer_lib
from saferl.data.buffer import ReplayBuffer, Transition
from saferl.models import ensemble
from saferl.models.ensemble import EnsembleConfig, EnsembleState
from saferl.policies import episode
from saferl.policies.policy import Policy, uniform_random_policy

if TYPE_CHECKING:
    from envs.protocol import SafeEnv
    from envs.training_env import TrainingEnvConfig

__all__ = ["EpisodeStats", "PETSAgent", "PETSState", "make_agent", "model_fns", "planned_action"]


class PETSState(struct.PyTreeNode):
    model: EnsembleState
    buffer: ReplayBuffer  # decision-level transitions (reward/cost summed over the action repeat)
    key: jax.Array  # PRNG key for everything that follows
    episode: jax.Array  # int32, episodes collected so far


class EpisodeStats(NamedTuple):
    episode_return: jax.Array  # scalar, Σ reward over the episode (env units)
    episode_cost: jax.Array  # scalar, Σ cost over the episode (≥ 0)
    plan_value: jax.Array  # scalar, mean over decisions of the planner's predicted return over its horizon
    feasible_fraction: jax.Array  # scalar, mean share of feasible candidates (1 when unconstrained)


class EpisodeLoopConfig(Protocol):
    """What `PETSAgent` reads off its config (a `PETSConfig`, or a `SoftAEConfig` for its subclass)."""

    @property
    def model(self) -> EnsembleConfig: ...
    @property
    def buffer_capacity(self) -> int: ...
    @property
    def random_episodes(self) -> int: ...
    @property
    def action_repeat(self) -> int: ...


#: the agent's config type (the parameter of `PETSAgent`)
ConfigT = TypeVar("ConfigT", bound=EpisodeLoopConfig)


class PETSAgent(Generic[ConfigT]):
    """Binds an env and a config; its methods are pure, jitted functions of `PETSState`."""

    def __init__(self, env: SafeEnv, config: ConfigT):
        self.config = config
        self.env = env
        self.decisions_per_episode = math.ceil(env.episode_length / config.action_repeat)
        self.env_steps_per_episode = self.decisions_per_episode * config.action_repeat
        if not isinstance(env.observation_size, int):  # a dict observation: the ensemble models vectors
            raise TypeError(f"a model-based agent needs a vector observation, got {env.observation_size!r}")
        self.obs_size, self.action_size = env.observation_size, int(env.action_size)
        self.cost_budget = float(env.cost_budget)
        self.init = jax.jit(self._init)  # one compile (the ensemble's eager init compiles ≈ 50 small programs)
        self.collect = jax.jit(self._collect)
        self.collect_mpc = jax.jit(self._collect_mpc)
        self.add = jax.jit(buffer_lib.add)
        self._compiled_collect: Any = None  # AOT-compiled `collect` (the model's shapes are fixed per config)
        self.collect_compile_s = math.nan  # seconds its compilation took

    def compiled_collect(self, model: EnsembleState, key: jax.Array) -> Any:
        """`collect`, compiled ahead of time on first use (so its compile time can be reported)."""
        if self._compiled_collect is None:
            start = time.perf_counter()
            self._compiled_collect = self.collect.lower(model, key, jp.array(True)).compile()
            self.collect_compile_s = time.perf_counter() - start
        return self._compiled_collect

    def _init(self, key: jax.Array) -> PETSState:
        """Fresh state: untrained ensemble, empty buffer (`init` is this, jitted)."""
        model_key, key = jax.random.split(key)
        model = ensemble.init(model_key, self.config.model, self.obs_size, self.action_size, self.obs_size + 2)
        buffer = buffer_lib.init(
            self.config.buffer_capacity, buffer_lib.example_transition(self.obs_size, self.action_size)
        )
        return PETSState(model=model, buffer=buffer, key=key, episode=jp.zeros((), jp.int32))

    def random_episode(self, episode: int) -> bool:
        """Whether episode `episode` (0-based) collects with uniform random actions instead of the planner."""
        return episode < self.config.random_episodes

    def mpc_policy(self, model: EnsembleState) -> Policy:
        """The MPC policy of `model` on this agent's env (what a run's `load_policy` gives, too)."""
        return mpc_policy(self.config, model, self.env)

    def random_policy(self) -> Policy:
        """Uniform random actions in [-1, 1], held like the planner's (the first episodes' exploration)."""
        return uniform_random_policy(
            self.action_size,
            self.obs_size,
            self.cost_budget,
            self.config.action_repeat,
            env_config=getattr(self.env, "config", None),
        )

    def _episode(self, policy: Policy, key: jax.Array) -> episode.Decision:
        """One episode of `policy` on the env from a fresh reset: `Decision`s [decisions_per_episode]."""
        reset_key, act_key = jax.random.split(key)
        _, decisions = episode.run(policy, self.env, self.env.reset(reset_key), act_key, self.decisions_per_episode)
        return decisions

    def _collect(self, model: EnsembleState, key: jax.Array, explore: jax.Array) -> tuple[Transition, EpisodeStats]:
        """One episode on the real env (one compiled scan): uniform random actions where `explore` (bool
        scalar), else the MPC policy of `model`. Both in one program, so the env is compiled once per run.
        Returns transitions [decisions, ...] and stats (plan value 0, feasible fraction 1 when exploring)."""
        mpc, random = self.mpc_policy(model), self.random_policy()

        def act(carry: Any, obs: jax.Array, act_key: jax.Array) -> tuple[jax.Array, Any]:
            return jax.lax.cond(
                explore,
                lambda: (random.act(random.init_carry(), obs, act_key)[0], carry),
                lambda: mpc.act(carry, obs, act_key),
            )

        decisions = self._episode(dataclasses.replace(mpc, act=act), key)
        transitions, plans = decisions.transition, decisions.carry.memory
        plan_value = jp.where(explore, 0.0, plans.plan_value.mean())
        feasible = jp.where(explore, 1.0, plans.feasible_fraction.mean())
        return transitions, EpisodeStats(transitions.reward.sum(), transitions.cost.sum(), plan_value, feasible)

    def _collect_mpc(self, model: EnsembleState, key: jax.Array) -> tuple[Transition, EpisodeStats]:
        """One episode of the MPC policy of `model` on the real env (one compiled scan)."""
        return self._collect(model, key, jp.array(False))

    def fit(self, key: jax.Array, model: EnsembleState, buffer: ReplayBuffer) -> tuple[EnsembleState, Any]:
        """Refit the ensemble on every valid row of the buffer (fixed shapes: one compile for the run)."""
        data, mask = buffer_lib.all_valid(buffer)
        return ensemble.fit(key, model, data, self.config.model, mask)


@cache_by_computation
def make_agent(
    config: PETSConfig, env: SafeEnv, training_env: TrainingEnvConfig | None = None
) -> PETSAgent[PETSConfig]:
    """A `PETSAgent` collecting in `training_env`'s world (obs noise, action delay, per-episode domain
    randomisation; its shift is already in `env`), memoised like PPO's and SAC's `make_train` on everything
    its compiled functions depend on (`saferl.agents.modelfree.common.computation_key`), so a resumed run, a
    policy loader or a test reuses the already traced agent, and a shifted env never gets the nominal env's
    closures."""
    return PETSAgent(_world_env(env, training_env), config)


def _world_env(env: SafeEnv, world: Any) -> Any:
    """The unbatched env PETS collects in: delay → noise → per-episode randomisation (when the world has it);
    for dict observations {"image", "state"} only the state part (the ensemble models the state vector)."""
    from envs.wrappers.state_observation import StateObservationWrapper, has_dict_observations

    wrapped = envs.wrap_evaluation_env(env, world)
    if world.randomized:
        from envs.wrappers.episode_randomization import EpisodeRandomizationWrapper

        wrapped = EpisodeRandomizationWrapper(wrapped, world.randomization)
    return StateObservationWrapper(wrapped) if has_dict_observations(wrapped) else wrapped
