"""SOOPER (and its baselines) as pure functions of `SooperState`: collect one real episode on the one episode
loop — the prior alone for the first `prior_episodes`, then the learner (MPC, or the MBPO actor sampling) behind
the shield — add it to the buffer, refit the ensemble, update the prior's cost critic pessimistically, step the
primal-dual multiplier and, with `learner=mbpo`, improve the actor on imagined rollouts (`mbpo.improve`).

`SooperState` is everything a bit-for-bit resume needs (ensemble, buffer, updated cost critic and its optimiser,
λ/c, RNG key, episode counter, the ledger of costs that the safety margin is computed from, and the MBPO
learner's SAC state); the prior's other parameters are read from its run directory, which the run's config names.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from saferl import constraints
from saferl.agents.sooper import critic as critic_lib
from saferl.agents.sooper import mbpo
from saferl.agents.sooper.actor import learner_actor
from saferl.agents.sooper.config import SooperConfig, episode_budget
from saferl.agents.sooper.planner import Dual, PlanMemory, behind_shield, executed_policy, shield_rule
from saferl.agents.sooper.prior import Prior, prior_policy
from saferl.agents.sooper.shield import ShieldMemory
from saferl.data import buffer as buffer_lib
from saferl.data.buffer import ReplayBuffer, Transition
from saferl.errors import UserError
from saferl.models import ensemble
from saferl.models.ensemble import EnsembleState
from saferl.policies import episode
from saferl.policies.policy import Policy


class Ledger(struct.PyTreeNode):
    """Running totals over the real episodes (float32 scalars)."""

    prior_return_sum: jax.Array  # Σ return of the prior-only episodes
    max_episode_cost: jax.Array  # max_n J_c(π_n) over every episode so far (0 before the first)
    cumulative_cost: jax.Array  # Σ cost over every episode so far


class SooperState(struct.PyTreeNode):
    model: EnsembleState
    buffer: ReplayBuffer  # real transitions (one per decision)
    cost_q_params: Any  # the prior's cost critic, updated pessimistically on model data
    critic_optimizer_state: Any
    dual: constraints.ConstraintState  # primal_dual's λ, c (untouched by the other methods)
    ledger: Ledger
    key: jax.Array
    episode: jax.Array  # int32, real episodes so far
    prior_obs: jax.Array  # [prior_episodes, T, obs_dim] the prior-only episodes' observations (the margin's data)
    prior_cost_to_go: jax.Array  # [prior_episodes, T] their measured cost from each decision to the episode's end
    shield_margin: jax.Array  # float32, the recovery shield's margin m (episode cost units)
    # learner=mbpo: the actor's SAC state (`mbpo.LearnerState`); None for mpc (no leaves: its checkpoints unchanged)
    learner: Any = None


class EpisodeStats(NamedTuple):
    episode_return: jax.Array  # Σ reward
    episode_cost: jax.Array  # Σ cost
    interventions: jax.Array  # decisions where the shield executed the prior's action (0 without a shield)
    plan_value: jax.Array  # mean imagined value of the plans (0 for prior episodes)
    feasible_fraction: jax.Array  # mean share of feasible candidates (1 for prior episodes)


class SooperAgent:
    """Binds the real env (unbatched, the run's world), the config and the prior; methods are jitted."""

    def __init__(self, env: Any, config: SooperConfig, prior: Prior, prior_template: Policy):
        self.env, self.config, self.prior, self.prior_template = env, config, prior, prior_template
        self.episode_length = int(env.episode_length)
        self.obs_size, self.action_size = int(env.observation_size), int(env.action_size)
        budget = episode_budget(config, env.cost_budget)
        if not budget > 0:
            raise UserError(
                f"{config.method} needs a cost budget > 0: the env has {env.cost_budget:g}; "
                "give one with --set budget=... or --set-env cost_budget=..."
            )
        self.rule = shield_rule(config, budget, self.episode_length, prior.cost_discounting)
        self.budget = budget
        self.fixed_margin = config.shield_margin
        self.calibrate = jax.jit(self._calibrate)
        self.collect_prior = jax.jit(self._collect_prior)
        self.collect_learner = jax.jit(self._collect_learner)
        self.update_critic = jax.jit(self._update_critic)
        self.add = jax.jit(buffer_lib.add)
        self.mbpo = config.learner == "mbpo"
        self.improve = jax.jit(self._improve)
        self.record_cost_spent = jax.jit(mbpo.record_cost_spent)

    def init(self, key: jax.Array) -> SooperState:
        model_key, key = jax.random.split(key)
        model = ensemble.init(model_key, self.config.model, self.obs_size, self.action_size, self.obs_size + 2)
        optimizer = critic_lib.make_optimizer(self.config.critic_learning_rate)
        zero = jnp.zeros((), jnp.float32)
        example = buffer_lib.example_transition(self.obs_size, self.action_size)
        return SooperState(
            model=model,
            buffer=buffer_lib.init(self.config.buffer_capacity, example),
            cost_q_params=self.prior.cost_q_params,
            critic_optimizer_state=optimizer.init(self.prior.cost_q_params),
            dual=constraints.init(self.config.dual),
            ledger=Ledger(zero, zero, zero),
            key=key,
            episode=jnp.zeros((), jnp.int32),
            prior_obs=jnp.zeros((self.config.prior_episodes, self.episode_length, self.obs_size), jnp.float32),
            prior_cost_to_go=jnp.zeros((self.config.prior_episodes, self.episode_length), jnp.float32),
            shield_margin=zero + (self.fixed_margin or 0.0),
            learner=mbpo.init_learner(self.config.mbpo, self.prior, self.config.buffer_capacity) if self.mbpo else None,
        )

    def current_prior(self, cost_q_params: Any) -> Prior:
        return self.prior.replace(cost_q_params=cost_q_params)

    def policy(
        self,
        model: EnsembleState,
        cost_q_params: Any,
        dual: constraints.ConstraintState,
        margin: jax.Array | float = 0.0,
        actor_params: Any = None,
    ) -> Policy:
        """The executed policy of this state: the learner behind the shield (usable inside jit); `margin` the
        state's `shield_margin` (the recovery shield's m), `actor_params` the MBPO actor's (learner=mbpo)."""
        if self.mbpo:
            prior = self.current_prior(cost_q_params)
            actor = learner_actor(prior, actor_params, self.prior_template)
            return behind_shield(self.config, self.rule, actor, model, prior, self.prior_template, margin)
        return executed_policy(
            self.config,
            self.rule,
            model,
            self.current_prior(cost_q_params),
            Dual(dual.multiplier, dual.penalty),
            self.prior_template,
            margin,
        )

    def _calibrate(self, state: SooperState) -> jax.Array:
        """The recovery margin of `state`: fixed (`config.shield_margin`) or calibrated on the prior's real
        episodes with the state's cost critic (`critic.calibrated_margin`)."""
        if self.fixed_margin is not None:
            return jnp.asarray(self.fixed_margin, jnp.float32)
        valid = jnp.arange(self.config.prior_episodes) < state.episode
        return critic_lib.calibrated_margin(
            self.prior, state.cost_q_params, state.prior_obs, state.prior_cost_to_go, valid, self.rule.scale
        )

    def record_prior_episode(self, state: SooperState, transitions: Transition) -> SooperState:
        """`state` with prior-only episode number `state.episode` stored for the margin (before the count
        advances)."""
        index = int(state.episode)
        cost = jnp.asarray(transitions.cost, jnp.float32)
        cost_to_go = jnp.flip(jnp.cumsum(jnp.flip(cost)))  # from each decision to the end
        return state.replace(
            prior_obs=state.prior_obs.at[index].set(transitions.obs),
            prior_cost_to_go=state.prior_cost_to_go.at[index].set(cost_to_go),
        )

    def _episode(self, policy: Policy, key: jax.Array, deterministic: bool = True) -> episode.Decision:
        reset_key, act_key = jax.random.split(key)
        _, decisions = episode.run(
            policy, self.env, self.env.reset(reset_key), act_key, self.episode_length, deterministic=deterministic
        )
        return decisions

    def _collect_prior(self, cost_q_params: Any, key: jax.Array) -> tuple[Transition, EpisodeStats]:
        """One episode of the prior alone."""
        transitions = self._episode(
            prior_policy(self.current_prior(cost_q_params), self.prior_template), key
        ).transition
        zero = jnp.zeros((), jnp.float32)
        return transitions, EpisodeStats(transitions.reward.sum(), transitions.cost.sum(), zero, zero, zero + 1)

    def _collect_learner(
        self,
        model: EnsembleState,
        cost_q_params: Any,
        dual: constraints.ConstraintState,
        margin: jax.Array,
        key: jax.Array,
        actor_params: Any = None,
    ) -> tuple[Transition, EpisodeStats]:
        """One episode of the executed policy (one compiled scan; the MBPO actor samples, as SAC collects)."""
        policy = self.policy(model, cost_q_params, dual, margin, actor_params)
        decisions = self._episode(policy, key, deterministic=not self.mbpo)
        transitions, memory = decisions.transition, decisions.carry.memory
        interventions = memory.interventions[-1] if isinstance(memory, ShieldMemory) else jnp.zeros((), jnp.int32)
        plans = memory.learner if isinstance(memory, ShieldMemory) else memory
        zero = jnp.zeros((), jnp.float32)
        plan_value, feasible = (
            (plans.plan_value.mean(), plans.feasible_fraction.mean())
            if isinstance(plans, PlanMemory)
            else (zero, zero + 1)
        )
        return transitions, EpisodeStats(
            transitions.reward.sum(),
            transitions.cost.sum(),
            interventions.astype(jnp.float32),
            plan_value,
            feasible,
        )

    def _improve(self, state: SooperState, key: jax.Array) -> tuple[Any, mbpo.ImprovementInfo]:
        """learner=mbpo: `mbpo.improve` with the state's ensemble, real buffer, cost critic and margin."""
        return mbpo.improve(
            self.config,
            self.rule,
            self.current_prior(state.cost_q_params),
            state.learner,
            state.model,
            state.buffer,
            state.shield_margin,
            state.dual,
            key,
        )

    def fit(self, key: jax.Array, model: EnsembleState, buffer: ReplayBuffer) -> tuple[EnsembleState, Any]:
        data, mask = buffer_lib.all_valid(buffer)
        return ensemble.fit(key, model, data, self.config.model, mask)

    def _update_critic(self, state: SooperState, key: jax.Array) -> tuple[Any, Any, critic_lib.CriticUpdateInfo]:
        config = self.config
        return critic_lib.update_cost_critic(
            self.current_prior(state.cost_q_params),
            state.model,
            state.buffer,
            state.cost_q_params,
            state.critic_optimizer_state,
            key,
            steps=config.critic_updates,
            batch_size=config.critic_batch_size,
            pessimism=config.pessimism,
            learning_rate=config.critic_learning_rate,
        )

    def step_dual(self, dual: constraints.ConstraintState, episode_cost: float) -> constraints.ConstraintState:
        """primal_dual: one λ/c step on the measured episode cost against d (a no-op for other methods)."""
        if self.config.planner_constraint != "augmented_lagrangian":
            return dual
        dual, _ = constraints.update(self.config.dual, dual, jnp.asarray(episode_cost, jnp.float32), self.budget)
        return dual


def make_agent(config: SooperConfig, env: Any, world: Any, prior: Prior, prior_template: Policy) -> SooperAgent:
    """The agent collecting in `world`'s evaluation stack around `env` (obs noise, action delay; the shift
    is in `env`: it is the real system). Dict observations {"image", "state"}: the agent (ensemble, planner,
    prior) sees only the state part."""
    import envs
    from envs.wrappers.state_observation import StateObservationWrapper, has_dict_observations

    wrapped = envs.wrap_evaluation_env(env, world)
    return SooperAgent(
        StateObservationWrapper(wrapped) if has_dict_observations(wrapped) else wrapped, config, prior, prior_template
    )
