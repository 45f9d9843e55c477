"""SOOPER's MBPO learner (`learner=mbpo`): SAC on short imagined rollouts in SOOPER's imagined MDP.

After each real episode (and the ensemble's refit), one compiled program: `rollouts` imagined rollouts of
`horizon` decisions branch from states drawn from the real buffer, with the learner's sampled actor, in the
brax-API model env (`saferl.models.model_env.make_model_env`: optimistic r̃ = r̄ + λ_opt·σ, pessimistic
c̃ = c̄ + λ_pess·σ, a member drawn per step). Each starts with the real episode's cost spent C at that state;
where the shield would fire on the actor's action (`TerminationWrapper`) the imagined trajectory ends with
terminal reward Q_r^π̂(s, π̂(s)) (done = 1); the horizon is a time limit (bootstrapped). Then `updates` SAC steps
(the SAC trainer's `make_sac_step`: temperature, twin reward critics, actor; the prior's networks) on the transitions,
in a `lax.scan`. Actor and critics start from the prior's. The cost enters the SAC objective only for the
baselines without a shield whose planner handles it (`actor_constraint`): crpo's switch to minimising the learner's
cost critic Q_c (trained on imagined c̃) while its estimate exceeds d/scale, primal_dual's augmented Lagrangian on it
with the run's λ, c (stepped per episode on the measured cost); sooper and sailr leave the cost to the shield, mbrl
ignores it. In imagination the recovery rule checks the
critic right after the step (`shield_horizon` 0, as the MPC learner's imagination does); the real shield keeps
its prior rollout. The critics see s alone, not C (the reference appends C to the observation; here the
networks are the prior's, whose inputs are s).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from saferl.agents.sac.config import SACConfig
from saferl.agents.sac.train import make_sac_step
from saferl.agents.sooper.config import MBPOConfig, SooperConfig
from saferl.agents.sooper.planner import ShieldRule, recovery_lookahead
from saferl.agents.sooper.prior import Prior
from saferl.constraints import ConstraintConfig, ConstraintState
from saferl.constraints import init as init_constraint
from saferl.data.buffer import ReplayBuffer, Transition
from saferl.models.ensemble import EnsembleState
from saferl.models.model_env import ModelEnvConfig, TerminateFn, make_model_env


class LearnerState(struct.PyTreeNode):
    """The MBPO learner's SAC state (in `SooperState.learner`, checkpointed)."""

    policy_params: Any  # the learner's actor (the prior's actor network)
    policy_optimizer_state: Any
    q_params: Any  # twin reward critics Q_r of the learner
    q_optimizer_state: Any
    target_q_params: Any
    cost_q_params: Any  # twin cost critics Q_c of the learner (trained only where `actor_constraint` uses them)
    cost_q_optimizer_state: Any
    target_cost_q_params: Any
    log_alpha: jax.Array  # log temperature, scalar
    alpha_optimizer_state: Any
    cost_spent: jax.Array  # [buffer capacity] the real episode's cost spent before each real buffer row's decision


class ImprovementInfo(NamedTuple):
    """Scalars of one improvement phase (the last SAC step's losses, the imagined data's means)."""

    critic_loss: jax.Array
    actor_loss: jax.Array
    alpha: jax.Array
    imagined_reward: jax.Array  # mean r̃ (terminal rewards included) over the imagined transitions
    imagined_termination: jax.Array  # share of imagined transitions where the shield ended the trajectory


def init_learner(config: MBPOConfig, prior: Prior, buffer_capacity: int) -> LearnerState:
    """Actor and reward critics (and targets) from the prior's, fresh Adam states, α = `initial_alpha`."""
    optimizer = optax.adam(config.learning_rate)
    log_alpha = jnp.log(jnp.asarray(config.initial_alpha, jnp.float32))
    return LearnerState(
        policy_params=prior.policy_params,
        policy_optimizer_state=optimizer.init(prior.policy_params),
        q_params=prior.q_params,
        q_optimizer_state=optimizer.init(prior.q_params),
        target_q_params=prior.q_params,
        cost_q_params=prior.cost_q_params,
        cost_q_optimizer_state=optimizer.init(prior.cost_q_params),
        target_cost_q_params=prior.cost_q_params,
        log_alpha=log_alpha,
        alpha_optimizer_state=optimizer.init(log_alpha),
        cost_spent=jnp.zeros((buffer_capacity,), jnp.float32),
    )


def record_cost_spent(learner: LearnerState, buffer: ReplayBuffer, cost: jax.Array) -> LearnerState:
    """`learner` with the cost spent before each decision of a real episode (cost [T], in decision order)
    stored at the rows `buffer_lib.add(buffer, episode)` writes it to (`buffer` before that add)."""
    capacity, steps = learner.cost_spent.shape[0], cost.shape[0]
    kept = min(steps, capacity)
    spent = (jnp.cumsum(cost) - cost)[steps - kept :]
    position = (buffer.position + (steps - kept)) % capacity
    rows = (position + jnp.arange(kept)) % capacity
    return learner.replace(cost_spent=learner.cost_spent.at[rows].set(spent.astype(jnp.float32)))


def shield_termination(
    config: SooperConfig, rule: ShieldRule, model: EnsembleState, prior: Prior, margin: jax.Array | float
) -> TerminateFn:
    """`terminate_fn(obs, action, cost_spent) -> (fires, terminal reward)` of SOOPER's imagined MDP for one
    decision (obs [obs_dim], action [act_dim]): the shield's rule, terminal reward Q_r^π̂(s, π̂(s)) (or 0)."""
    lookahead = recovery_lookahead(model, prior, config.pessimism, rule.scale, 0) if rule.kind == "recovery" else None

    def terminate(obs: jax.Array, action: jax.Array, cost_spent: jax.Array) -> tuple[jax.Array, jax.Array]:
        prior_action = prior.action(obs)
        if lookahead is not None:
            fires = rule.recovery_fires(cost_spent, lookahead(obs, action), margin)
        else:
            fires = rule.fires(cost_spent, prior.cost_value(obs, action), prior.cost_value(obs, prior_action))
        value = prior.reward_value(obs, prior_action)
        return fires, value if config.shield_terminal_reward == "prior_value" else jnp.zeros_like(value)

    return terminate


def imagine_rollouts(
    config: SooperConfig,
    rule: ShieldRule,
    model: EnsembleState,
    prior: Prior,
    learner: LearnerState,
    buffer: ReplayBuffer,
    margin: jax.Array | float,
    key: jax.Array,
) -> Transition:
    """`rollouts` × `horizon` imagined transitions [horizon·rollouts] of the learner's sampled actor from real
    buffer states; `done` = 1 only where the shield ended the trajectory (the horizon bootstraps)."""
    mbpo = config.mbpo
    start_key, reset_key, step_key = jax.random.split(key, 3)
    rows = jax.random.randint(start_key, (mbpo.rollouts,), 0, jnp.maximum(buffer.size, 1))
    env_config = ModelEnvConfig(
        optimism=config.optimism,
        pessimism=config.pessimism,
        propagation="random_member",
        sample_aleatoric=config.sample_aleatoric,
        horizon=mbpo.horizon,
    )
    env = make_model_env(
        model,
        buffer.data.obs[rows],
        env_config,
        start_cost_spent=learner.cost_spent[rows],
        terminate_fn=None if rule.kind == "none" else shield_termination(config, rule, model, prior, margin),
    )
    distribution = prior.networks.parametric_action_distribution

    def step(states: Any, step_key: jax.Array) -> tuple[Any, Transition]:
        logits = prior.networks.policy_network.apply(prior.normalizer, learner.policy_params, states.obs)
        action = distribution.sample(logits, step_key)
        next_states = jax.vmap(env.step)(states, action)
        terminated = next_states.done * (1.0 - next_states.info["truncation"])
        transition = Transition(
            obs=states.obs,
            action=action,
            next_obs=next_states.obs,
            reward=next_states.reward,
            cost=next_states.info["cost"],
            done=terminated,
        )
        return next_states, transition

    states = jax.vmap(env.reset)(jax.random.split(reset_key, mbpo.rollouts))
    _, transitions = jax.lax.scan(step, states, jax.random.split(step_key, mbpo.horizon))
    return jax.tree.map(lambda x: x.reshape((-1, *x.shape[2:])), transitions)


def actor_constraint(config: SooperConfig) -> ConstraintConfig:
    """The constraint handler of the learner's SAC objective: none where the shield handles the cost (sooper,
    sailr) or nothing does (mbrl); without a shield, the planner constraint's counterpart — crpo's switch
    ("feasibility") or primal_dual's augmented Lagrangian (`config.dual`)."""
    if config.shield != "none" or config.planner_constraint == "none":
        return ConstraintConfig(kind="none")
    if config.planner_constraint == "augmented_lagrangian":
        return config.dual
    return ConstraintConfig(kind="crpo")


def sac_update(
    config: MBPOConfig, prior: Prior, constraint: ConstraintConfig, constraint_state: Any, budget_q: float
) -> Any:
    """`update(learner, batch, key) -> (learner, (critic loss, actor loss, α))`: the project's SAC step
    (`saferl.agents.sac.train.make_sac_step`) on imagined `batch` [B] with the prior's networks, normaliser and γ,
    γ_c — the twin cost critics on c̃ only where `constraint` uses them, the actor's cost estimate over the
    batch's states with the handler `constraint` at `constraint_state` against d_Q = `budget_q`."""
    sac_config = SACConfig(
        discounting=prior.discounting, cost_discounting=prior.cost_discounting, tau=config.tau, constraint=constraint
    )
    step = make_sac_step(
        sac_config, prior.networks, optax.adam(config.learning_rate), budget_q, constraint.kind != "none"
    )

    def update(learner: LearnerState, batch: Transition, key: jax.Array) -> tuple[LearnerState, tuple]:
        learner, metrics = step(learner, prior.normalizer, constraint_state, batch, batch.obs, key)
        return learner, (metrics["critic_loss"], metrics["actor_loss"], metrics["alpha"])

    return update


def improve(
    config: SooperConfig,
    rule: ShieldRule,
    prior: Prior,
    learner: LearnerState,
    model: EnsembleState,
    buffer: ReplayBuffer,
    margin: jax.Array | float,
    dual: ConstraintState,
    key: jax.Array,
) -> tuple[LearnerState, ImprovementInfo]:
    """One improvement phase (jit it): imagined rollouts with the current actor, then `updates` SAC steps on
    batches drawn uniformly from them. `prior` carries the current (updated) cost critic; `dual` the run's λ, c
    (primal_dual's objective)."""
    rollout_key, sample_key, update_key = jax.random.split(key, 3)
    data = imagine_rollouts(config, rule, model, prior, learner, buffer, margin, rollout_key)
    mbpo = config.mbpo
    rows = jax.random.randint(sample_key, (mbpo.updates, mbpo.batch_size), 0, data.reward.shape[0])
    constraint = actor_constraint(config)
    state = dual if constraint.kind == "augmented_lagrangian" else init_constraint(constraint)
    update = sac_update(mbpo, prior, constraint, state, rule.budget / rule.scale)

    def one_step(learner: LearnerState, inputs: tuple[jax.Array, jax.Array]) -> tuple[LearnerState, tuple]:
        batch_rows, step_key = inputs
        return update(learner, jax.tree.map(lambda x: x[batch_rows], data), step_key)

    learner, (critic_loss, actor_loss, alpha) = jax.lax.scan(
        one_step, learner, (rows, jax.random.split(update_key, mbpo.updates))
    )
    return learner, ImprovementInfo(
        critic_loss=critic_loss[-1],
        actor_loss=actor_loss[-1],
        alpha=alpha[-1],
        imagined_reward=data.reward.mean(),
        imagined_termination=data.done.mean(),
    )
