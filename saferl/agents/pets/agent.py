"""PETS as pure functions: collect an episode (random or MPC with iCEM on the ensemble) under one `lax.scan`,
add it to the replay buffer, refit the ensemble. The planner's warm start rides in the scan carry.

`PETSState` is everything a bit-for-bit resume needs: ensemble (params, normaliser, optimiser), buffer,
RNG key and episode counter.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jp
from flax import struct

from envs.wrappers import ActionRepeatWrapper
from saferl.agents.modelfree.common import cache_by_env_config
from saferl.agents.pets.config import PETSConfig
from saferl.data import buffer as buffer_lib
from saferl.data.buffer import ReplayBuffer, Transition
from saferl.models import ensemble
from saferl.models.ensemble import EnsembleState
from saferl.planning import ModelFns, icem, make_objective, make_rollout_fn


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


def model_fns(model: EnsembleState) -> ModelFns:
    """The ensemble as the planner's model functions (all members; raw units)."""
    return ModelFns(functools.partial(ensemble.predict, model), functools.partial(ensemble.predict_per_member, model),
                    model.config.num_members)


def planned_action(config: PETSConfig, model: EnsembleState, key: jax.Array, obs: jax.Array,
                   warm_start: icem.PlannerState, remaining_budget: jax.Array) -> tuple[jax.Array, icem.PlanInfo]:
    """MPC: plan from obs [obs_dim] and return the first action [act_dim] in [-1, 1] and the planner info."""
    rollout_fn = make_rollout_fn(model_fns(model), config.rollout, obs)
    objective_fn = make_objective(config.objective, remaining_budget)
    actions, info = icem.plan(config.planner, key, rollout_fn, objective_fn, warm_start)
    return actions[0], info


class PETSAgent:
    """Binds an env and a config; its methods are pure, jitted functions of `PETSState`."""

    def __init__(self, env: Any, config: PETSConfig):
        self.config = config
        self.base_env = env
        self.env = ActionRepeatWrapper(env, config.action_repeat) if config.action_repeat > 1 else env
        self.decisions_per_episode = math.ceil(env.episode_length / config.action_repeat)
        self.env_steps_per_episode = self.decisions_per_episode * config.action_repeat
        self.obs_size, self.action_size = int(env.observation_size), int(env.action_size)
        self.cost_budget = float(env.cost_budget)
        self.collect_random = jax.jit(self._collect_random)
        self.collect_mpc = jax.jit(self._collect_mpc)
        self.add = jax.jit(buffer_lib.add)
        self._compiled_mpc: Any = None  # AOT-compiled `collect_mpc` (the model's shapes are fixed per config)
        self.mpc_compile_s = math.nan  # seconds its compilation took

    def compiled_mpc(self, model: EnsembleState, key: jax.Array) -> Any:
        """`collect_mpc`, compiled ahead of time on first use (so its compile time can be reported)."""
        if self._compiled_mpc is None:
            start = time.perf_counter()
            self._compiled_mpc = self.collect_mpc.lower(model, key).compile()
            self.mpc_compile_s = time.perf_counter() - start
        return self._compiled_mpc

    def init(self, key: jax.Array) -> PETSState:
        """Fresh state: untrained ensemble, empty buffer."""
        model_key, key = jax.random.split(key)
        model = ensemble.init(model_key, self.config.model, self.obs_size, self.action_size, self.obs_size + 2)
        example = Transition(obs=jp.zeros(self.obs_size), action=jp.zeros(self.action_size),
                             next_obs=jp.zeros(self.obs_size), reward=jp.zeros(()), cost=jp.zeros(()),
                             done=jp.zeros(()))
        buffer = buffer_lib.init(self.config.buffer_capacity, example)
        return PETSState(model=model, buffer=buffer, key=key, episode=jp.zeros((), jp.int32))

    def _transition(self, env_state: Any, action: jax.Array) -> tuple[Any, Transition]:
        next_state = self.env.step(env_state, action)
        return next_state, Transition(obs=env_state.obs, action=action, next_obs=next_state.obs,
                                      reward=next_state.reward, cost=next_state.info["cost"], done=next_state.done)

    def _collect_random(self, key: jax.Array) -> tuple[Transition, EpisodeStats]:
        """One episode of uniform random actions: transitions [decisions, ...] and stats."""
        reset_key, action_key = jax.random.split(key)

        def step(env_state, step_key):
            action = jax.random.uniform(step_key, (self.action_size,), minval=-1.0, maxval=1.0)
            return self._transition(env_state, action)

        _, transitions = jax.lax.scan(step, self.env.reset(reset_key),
                                      jax.random.split(action_key, self.decisions_per_episode))
        zero = jp.zeros(())
        return transitions, EpisodeStats(transitions.reward.sum(), transitions.cost.sum(), zero, zero + 1.0)

    def _collect_mpc(self, model: EnsembleState, key: jax.Array) -> tuple[Transition, EpisodeStats]:
        """One episode of MPC on the real env (one compiled scan; warm start in the carry)."""
        reset_key, plan_key = jax.random.split(key)
        budget = self.cost_budget if self.cost_budget > 0 else jp.inf

        def step(carry, step_key):
            env_state, warm_start, cost_spent = carry
            action, info = planned_action(self.config, model, step_key, env_state.obs, warm_start,
                                          budget - cost_spent)
            next_state, transition = self._transition(env_state, action)
            carry = (next_state, info.next_init, cost_spent + transition.cost)
            return carry, (transition, info.best_value, info.feasible_fraction)

        carry = (self.env.reset(reset_key), icem.init_state(self.config.planner, self.action_size), jp.zeros(()))
        _, (transitions, values, feasible) = jax.lax.scan(step, carry,
                                                          jax.random.split(plan_key, self.decisions_per_episode))
        return transitions, EpisodeStats(transitions.reward.sum(), transitions.cost.sum(), values.mean(),
                                         feasible.mean())

    def fit(self, key: jax.Array, model: EnsembleState, buffer: ReplayBuffer) -> tuple[EnsembleState, Any]:
        """Refit the ensemble on every valid row of the buffer (fixed shapes: one compile for the run)."""
        data, mask = buffer_lib.all_valid(buffer)
        return ensemble.fit(key, model, data, self.config.model, mask)


@cache_by_env_config
def make_agent(config: PETSConfig, env: Any) -> PETSAgent:
    """A `PETSAgent`, memoised on (config, env class, env config): a resumed run, a policy loader or a test
    reuses the agent whose episode functions are already traced and compiled (tracing MJX costs seconds)."""
    return PETSAgent(env, config)
