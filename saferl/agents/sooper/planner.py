"""SOOPER's learner as MPC: iCEM over residuals δ around the prior, scored on SOOPER's imagined MDP.

A candidate is a sequence δ [H, A]; in imagination it acts a_t = clip(π̂(s_t) + δ_t, −1, 1) (closed loop around
the prior, so δ = 0 *is* the prior and the search starts from it). Each of P particles steps the ensemble with a
member drawn per step (`saferl.models.model_env.ensemble_step`: optimistic r̃ = r̄ + λ_opt·σ, pessimistic
c̃ = c̄ + λ_pess·σ). Where the shield would fire on a_t the imagined trajectory ends with the terminal reward
Q_r^π̂(s_t, π̂(s_t)) (or 0) and the rest of the episode's cost is the prior's, scale·Q_c^π̂(s_t, π̂(s_t));
trajectories that reach the horizon end the same way (the prior takes over). With the recovery shield the
imagined step is checked ahead like on the real system, but with the critic alone after the step (the real shield
adds the prior's H-step model rollout): it fires where C_spent + Σc̃ + c̃_t + scale·Q_c^π̂(s_{t+1}, π̂(s_{t+1})) + m
≥ d on the particle's own next state, and the predicted cost includes m.
With discount γ of the prior's critics, per particle

    value = Σ_{t<τ} γ^t r̃_t + γ^τ·V_τ,        predicted cost = C_spent + Σ_{t<τ} c̃_t + scale·Q_c^π̂(s_τ, π̂(s_τ)),

and the planner ranks candidates on their particle means: feasible ones (predicted cost ≤ d) by value, the
others by how little they exceed d ("feasibility"), or by value − ψ(predicted cost − d; λ, c)
("augmented_lagrangian"), or by value alone ("none").
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from saferl.agents.sooper.config import SooperConfig
from saferl.agents.sooper.prior import Prior, prior_policy
from saferl.agents.sooper.shield import (
    recovery_bound,
    recovery_fires,
    shield_fires,
    shield_scale,
    shielded_policy,
)
from saferl.constraints import augmented_lagrangian_term
from saferl.models import ensemble
from saferl.models.ensemble import EnsembleState
from saferl.models.imagination import imagine_step
from saferl.models.model_env import ModelEnvConfig, ensemble_step
from saferl.planning import icem
from saferl.planning.objectives import Scores
from saferl.policies.policy import Policy, PolicyCarry


@dataclasses.dataclass(frozen=True)
class ShieldRule:
    """When the shield replaces an action (static: closed over by compiled functions)."""

    kind: str  # "recovery" | "budget" | "advantage" | "none"
    budget: float  # d (episode cost units)
    scale: float  # episode cost units per unit of Q_c
    advantage_threshold: float = 0.2  # kind="advantage"

    def fires(self, cost_spent: jax.Array, q_action: jax.Array, q_prior: jax.Array) -> jax.Array:
        """bool [...]: the shield fires for an action with Q_c(s, a) = q_action when Q_c(s, π̂(s)) = q_prior
        (the rules that judge an action by the critic at it: "budget", "advantage", "none")."""
        if self.kind == "recovery":
            raise ValueError("the recovery rule judges an action by its next state: use recovery_fires")
        if self.kind == "budget":
            return shield_fires(cost_spent, q_action, self.budget, self.scale)
        if self.kind == "advantage":
            return q_action - q_prior > self.advantage_threshold
        return jnp.zeros(jnp.broadcast_shapes(jnp.shape(cost_spent), jnp.shape(q_action)), bool)

    def recovery_fires(self, cost_spent: jax.Array, bound: jax.Array, margin: jax.Array | float) -> jax.Array:
        """bool [...]: the recovery rule on `bound` (the step's cost and the prior's cost-to-go after it)."""
        return recovery_fires(cost_spent, bound, self.budget, margin)


def shield_rule(config: SooperConfig, budget: float, episode_length: int, prior_cost_discounting: float) -> ShieldRule:
    """The rule of `config.shield` against the episode budget d = `budget`, its scale `config.shield_scale` or,
    unset, `shield_scale(T, γ_c)` for episodes of T = `episode_length` decisions and the prior's cost critic's γ_c."""
    scale = config.shield_scale
    if scale is None:
        scale = shield_scale(episode_length, prior_cost_discounting, 1)
    return ShieldRule(config.shield, budget, float(scale), config.advantage_threshold)


def _pessimistic_step(
    model: EnsembleState, obs: jax.Array, action: jax.Array, pessimism: float
) -> tuple[jax.Array, jax.Array]:
    """Every member's mean next state and pessimistic cost from its own input: obs [E, obs_dim] (row e is
    member e's state), action [E, act_dim] -> (next obs [E, obs_dim], c̃ [E]); σ at row e is the members'
    spread of s' at member e's state (mean over dims), as imagination uses it."""
    mean, var = ensemble.predict(model, obs, action)  # [E members, E rows, obs + 2]
    imagined = imagine_step(obs, mean, var, jnp.arange(obs.shape[0]), pessimism=pessimism)  # member e at row e
    return imagined.next_obs, imagined.cost


def prior_cost_to_go(
    model: EnsembleState, prior: Prior, pessimism: float, scale: float, horizon: int, obs: jax.Array
) -> jax.Array:
    """The prior's cost-to-go from member e's state obs [E, obs_dim], in member e's own dynamics (episode cost
    units, [E]): max( scale·Q_c^π̂(s_0, π̂(s_0)),  Σ_{k<H} c̃_k + scale·Q_c^π̂(s_H, π̂(s_H)) ) along the prior's
    H-step rollout — the critic's discounted ~1/(1−γ_c)-step view is checked against the cost the model predicts
    for the prior over the next H decisions on the real system (H = `horizon`; 0 = the critic alone)."""
    critic = scale * prior.cost_value(obs, prior.action(obs))
    if horizon == 0:
        return critic

    def step(carry, _):
        state, total = carry
        next_state, cost = _pessimistic_step(model, state, prior.action(state), pessimism)
        return (next_state, total + cost), None

    (end, total), _ = jax.lax.scan(step, (obs, jnp.zeros(obs.shape[:1], obs.dtype)), None, length=horizon)
    return jnp.maximum(critic, total + scale * prior.cost_value(end, prior.action(end)))


def recovery_lookahead(model: EnsembleState, prior: Prior, pessimism: float, scale: float, horizon: int) -> Any:
    """`lookahead(obs, action) -> bound` of the real recovery shield for one decision (obs [obs_dim], action
    [act_dim]): every ensemble member's mean next state s'_e and pessimistic cost c̃_e = max(0, c̄_e + λ_pess·σ),
    then `recovery_bound(c̃, Û_e/scale, scale)` with Û_e the prior's cost-to-go from s'_e (`prior_cost_to_go`,
    in member e's dynamics): the worst member counts."""

    def lookahead(obs: jax.Array, action: jax.Array) -> jax.Array:
        members = model.config.num_members
        rows = lambda x: jnp.broadcast_to(x, (members, *x.shape))  # noqa: E731
        next_obs, cost = _pessimistic_step(model, rows(obs), rows(action), pessimism)
        rest = prior_cost_to_go(model, prior, pessimism, scale, horizon, next_obs)
        return recovery_bound(cost, rest / scale, scale)

    return lookahead


class Dual(NamedTuple):
    """primal_dual's multiplier λ and penalty c (scalars; unused by the other planner constraints)."""

    multiplier: jax.Array
    penalty: jax.Array


class Imagination(NamedTuple):
    """Particle means per candidate [N]."""

    value: jax.Array  # Σ_{t<τ} γ^t r̃_t + γ^τ·V_τ
    cost: jax.Array  # C_spent + Σ_{t<τ} c̃_t + scale·Q_c^π̂(s_τ, π̂(s_τ)) (episode cost units)
    shield_fraction: jax.Array  # share of particles whose trajectory the shield ended before the horizon


def imagine(
    config: SooperConfig,
    rule: ShieldRule,
    model: EnsembleState,
    prior: Prior,
    key: jax.Array,
    obs0: jax.Array,
    cost_spent: jax.Array,
    deltas: jax.Array,
    margin: jax.Array | float = 0.0,
) -> Imagination:
    """Score residual sequences deltas [N, H, A] from obs0 [obs_dim] with C_spent = cost_spent (scalar);
    `margin`: the recovery shield's margin m (unused by the other rules)."""
    n = deltas.shape[0]
    obs = jnp.broadcast_to(obs0, (n, config.particles, obs0.shape[-1]))
    model_config = ModelEnvConfig(
        optimism=config.optimism,
        pessimism=config.pessimism,
        propagation="random_member",
        sample_aleatoric=config.sample_aleatoric,
    )
    gamma = prior.discounting
    terminal_reward = config.shield_terminal_reward == "prior_value"
    zeros = jnp.zeros(obs.shape[:2], jnp.float32)

    def step(carry, inputs):
        obs, alive, value, cost, discount = carry
        delta, step_key = inputs  # [N, A], key
        prior_action = prior.action(obs)
        action = jnp.clip(prior_action + delta[:, None, :], -1.0, 1.0)
        q_prior = prior.cost_value(obs, prior_action)
        imagined = ensemble_step(model, model_config, step_key, obs, action)
        if rule.kind == "recovery":
            next_q = prior.cost_value(imagined.next_obs, prior.action(imagined.next_obs))
            fires = rule.recovery_fires(cost_spent + cost, imagined.cost + rule.scale * next_q, margin)
        else:
            fires = rule.fires(cost_spent + cost, prior.cost_value(obs, action), q_prior)
        ends = alive * fires
        if terminal_reward:
            value = value + ends * discount * prior.reward_value(obs, prior_action)
        cost = cost + ends * rule.scale * q_prior
        alive = alive * (1.0 - fires)
        value = value + alive * discount * imagined.reward
        cost = cost + alive * imagined.cost
        return (imagined.next_obs, alive, value, cost, discount * gamma), None

    keys = jax.random.split(key, deltas.shape[1])
    carry = (obs, zeros + 1.0, zeros, zeros, zeros + 1.0)
    (obs, alive, value, cost, discount), _ = jax.lax.scan(step, carry, (jnp.swapaxes(deltas, 0, 1), keys))
    prior_action = prior.action(obs)  # the horizon: the prior takes over
    value = value + alive * discount * prior.reward_value(obs, prior_action)
    cost = cost + alive * rule.scale * prior.cost_value(obs, prior_action)
    if rule.kind == "recovery":
        cost = cost + margin  # the plan must leave the margin the real shield keeps
    return Imagination(value=value.mean(-1), cost=cost_spent + cost.mean(-1), shield_fraction=(1.0 - alive).mean(-1))


def scores(config: SooperConfig, budget: float, imagination: Imagination, dual: Dual) -> Scores:
    """What iCEM ranks (see the module docstring)."""
    excess = imagination.cost - budget
    if config.planner_constraint == "feasibility":
        return Scores(imagination.value, excess)
    if config.planner_constraint == "augmented_lagrangian":
        g = imagination.cost - config.dual.budget_scale * budget
        penalty = augmented_lagrangian_term(g, dual.multiplier, dual.penalty)
        return Scores(imagination.value - penalty, jnp.zeros_like(excess))
    return Scores(imagination.value, jnp.zeros_like(excess))


class PlanMemory(NamedTuple):
    """The MPC learner's `PolicyCarry.memory`."""

    warm_start: icem.PlannerState  # the last solution shifted to the next re-plan
    plan: jax.Array  # [H, A] residuals of the last plan
    # int32, decisions taken from `plan` so far (re-plan when it reaches replan_every); a field named like
    # tuple.index: it shadows the method, which mypy flags
    index: jax.Array  # type: ignore[assignment]
    plan_value: jax.Array  # scalar, the last plan's imagined value (diagnostics)
    feasible_fraction: jax.Array  # scalar, share of feasible candidates in the last plan's final iteration


def init_memory(config: SooperConfig, action_size: int) -> PlanMemory:
    """A fresh episode: zero residuals, re-plan at the first decision."""
    zero = jnp.zeros((), jnp.float32)
    return PlanMemory(
        warm_start=icem.init_state(config.planner, action_size),
        plan=jnp.zeros((config.planner.horizon, action_size), jnp.float32),
        index=jnp.asarray(config.replan_every, jnp.int32),
        plan_value=zero,
        feasible_fraction=zero + 1,
    )


def _shift(x: jax.Array, steps: int) -> jax.Array:
    """x [..., H, A] moved `steps` earlier along H, zeros appended."""
    if steps == 0:
        return x
    return jnp.concatenate([x[..., steps:, :], jnp.zeros_like(x[..., :steps, :])], axis=-2)


def plan_residuals(
    config: SooperConfig,
    rule: ShieldRule,
    model: EnsembleState,
    prior: Prior,
    dual: Dual,
    key: jax.Array,
    obs: jax.Array,
    cost_spent: jax.Array,
    warm_start: icem.PlannerState,
    margin: jax.Array | float = 0.0,
) -> tuple[jax.Array, icem.PlanInfo]:
    """One iCEM solve from obs [obs_dim]: residuals [H, A] and the planner's info (warm start shifted by
    `replan_every` decisions, ready for the next re-plan)."""
    rollout_fn = functools.partial(imagine, config, rule, model, prior, obs0=obs, cost_spent=cost_spent, margin=margin)
    objective_fn = functools.partial(scores, config, rule.budget, dual=dual)
    deltas, info = icem.plan(config.planner, key, lambda k, d: rollout_fn(k, deltas=d), objective_fn, warm_start)
    extra = config.replan_every - 1  # icem already shifted by one decision
    next_init = icem.PlannerState(_shift(info.next_init.mean, extra), _shift(info.next_init.kept, extra))
    return deltas, info._replace(next_init=next_init)


def mpc_learner(
    config: SooperConfig,
    rule: ShieldRule,
    model: EnsembleState,
    prior: Prior,
    dual: Dual,
    template: Policy,
    margin: jax.Array | float = 0.0,
) -> Policy:
    """The learner as a stateful `Policy` (no shield: wrap it with `shielded_policy` for execution): every
    `replan_every` decisions it re-plans residuals δ, in between it plays the plan's next δ around the prior,
    a = clip(π̂(s) + δ, −1, 1). `template` supplies the env fields. Usable inside `jit` (traced arguments)."""
    action_size = template.action_size

    def act(carry: PolicyCarry, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, PolicyCarry]:
        memory: PlanMemory = carry.memory
        obs = jnp.asarray(obs, jnp.float32)

        def replan(_):
            deltas, info = plan_residuals(
                config, rule, model, prior, dual, key, obs, carry.cost_spent, memory.warm_start, margin
            )
            return (
                deltas,
                info.next_init,
                info.best_value.astype(jnp.float32),
                info.feasible_fraction.astype(jnp.float32),
                jnp.zeros((), jnp.int32),
            )

        def keep(_):
            return memory.plan, memory.warm_start, memory.plan_value, memory.feasible_fraction, memory.index

        plan, warm_start, plan_value, feasible, index = jax.lax.cond(
            memory.index >= config.replan_every, replan, keep, None
        )
        action = jnp.clip(prior.action(obs) + plan[index], -1.0, 1.0)
        return action, carry.replace(memory=PlanMemory(warm_start, plan, index + 1, plan_value, feasible))

    return dataclasses.replace(
        template,
        act=act,
        sample=None,
        apply=None,
        params=model,
        algo=config.method,
        action_repeat=1,
        init_carry=lambda: PolicyCarry(cost_spent=jnp.zeros((), jnp.float32), memory=init_memory(config, action_size)),
        reward_value=None,
        cost_value=None,
    )


def executed_policy(
    config: SooperConfig,
    rule: ShieldRule,
    model: EnsembleState,
    prior: Prior,
    dual: Dual,
    template: Policy,
    margin: jax.Array | float = 0.0,
) -> Policy:
    """What runs on the real system: the MPC learner, behind the shield when `rule.kind` is not "none"
    (`margin`: the recovery shield's m, episode cost units)."""
    learner = mpc_learner(config, rule, model, prior, dual, template, margin)
    return behind_shield(config, rule, learner, model, prior, template, margin)


def behind_shield(
    config: SooperConfig,
    rule: ShieldRule,
    learner: Policy,
    model: EnsembleState,
    prior: Prior,
    template: Policy,
    margin: jax.Array | float = 0.0,
) -> Policy:
    """`learner` (MPC or the MBPO actor) behind the shield of `rule` with the prior as fallback (the recovery
    rule's lookahead through `model`), or `learner` itself when `rule.kind` is "none"."""
    if rule.kind == "none":
        return learner
    fallback = prior_policy(prior, template)
    threshold = rule.advantage_threshold if rule.kind == "advantage" else None
    lookahead = (
        recovery_lookahead(model, prior, config.pessimism, rule.scale, config.shield_horizon)
        if rule.kind == "recovery"
        else None
    )
    policy = shielded_policy(
        learner,
        fallback,
        scale=rule.scale,
        budget=rule.budget,
        advantage_threshold=threshold,
        lookahead=lookahead,
        margin=margin,
    )
    return dataclasses.replace(policy, algo=config.method)


def plan_memory(memory: Any) -> PlanMemory:
    """The learner's `PlanMemory` inside an executed policy's carry memory (shielded or not)."""
    return memory if isinstance(memory, PlanMemory) else memory.learner
