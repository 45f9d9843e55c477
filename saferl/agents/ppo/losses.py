"""PPO's GAE on reward and cost, and the clipped loss with a cost value head V_c (PPO-Lagrangian style; the
networks are `saferl.agents.ppo.networks`). GAE on a rollout [T, B] uses the true next observation of every step
(also where a time limit ended the episode), so no step is masked out:
  δ_t = x_t + γ(1 − term_t)·V(s'_t) − V(s_t),   A_t = δ_t + γλ(1 − done_t)·A_{t+1}
for x = reward (γ) and x = cost (γ_c). The actor minimises the constraint handler's objective of
  reward_loss   = −mean(min(ρA_r, clip(ρ)A_r))                               (A_r normalised)
  cost_estimate = mean(V_c targets) + mean(max(ρA_c, clip(ρ)A_c)) − mean(A_c)   (A_c centred)
i.e. the current discounted cost level plus the clipped (pessimistic) surrogate of its change; the entropy
bonus −entropy_cost·H[π] is added outside the handler (CRPO's cost-only steps keep it).
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from saferl import constraints
from saferl.agents.ppo.config import PPOConfig
from saferl.agents.ppo.networks import PPONetworks
from saferl.data.buffer import Transition


@flax.struct.dataclass
class PPOParams:
    policy: Any
    value: Any
    cost_value: Any


@flax.struct.dataclass
class Rollout:
    """On-policy data, leading axes [T, B] (or flattened segments [N, T]): the project's `Transition`
    (`done` = termination) plus what PPO needs of the behaviour policy and the episode boundaries."""

    transition: Transition  # obs, action, next_obs (true next observation), reward, cost, done (terminated)
    raw_action: jax.Array  # [..., act_dim] pre-tanh sample
    log_prob: jax.Array  # [...] behaviour log-probability of raw_action
    episode_end: jax.Array  # [...] 1 where the episode ended (termination or time limit: the trace stops)


def init_params(networks: PPONetworks, key: jax.Array) -> PPOParams:
    key_policy, key_value, key_cost = jax.random.split(key, 3)
    return PPOParams(
        policy=networks.policy_network.init(key_policy),
        value=networks.value_network.init(key_value),
        cost_value=networks.cost_value_network.init(key_cost),
    )


def gae(
    signal: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    discount: float,
    lambda_: float,
) -> tuple[jax.Array, jax.Array]:
    """(advantages, value targets), both [T, B], for per-step `signal` and values [T, B] (time first)."""
    deltas = signal + discount * (1.0 - terminated) * next_values - values

    def backward(next_advantage, step):
        delta, episode_done = step
        advantage = delta + discount * lambda_ * (1.0 - episode_done) * next_advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(deltas[0]), (deltas, done), reverse=True)
    return advantages, advantages + values


def loss(
    params: PPOParams,
    normalizer: Any,
    data: Rollout,
    key: jax.Array,
    constraint_state: Any,
    networks: PPONetworks,
    config: PPOConfig,
    cost_budget_q: float,
) -> tuple[jax.Array, dict]:
    """PPO loss on segments [N, T] (time second, as collected): actor objective + ½-weighted value losses."""
    data = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), data)  # [T, N]
    step = data.transition
    values = networks.value_network.apply(normalizer, params.value, step.obs)
    next_values = networks.value_network.apply(normalizer, params.value, step.next_obs)
    cost_values = networks.cost_value_network.apply(normalizer, params.cost_value, step.obs)
    next_cost_values = networks.cost_value_network.apply(normalizer, params.cost_value, step.next_obs)
    stop = jax.lax.stop_gradient
    adv, targets = gae(
        step.reward * config.reward_scaling,
        stop(values),
        stop(next_values),
        step.done,
        data.episode_end,
        config.discounting,
        config.gae_lambda,
    )
    cost_adv, cost_targets = gae(
        step.cost,
        stop(cost_values),
        stop(next_cost_values),
        step.done,
        data.episode_end,
        config.cost_discounting,
        config.gae_lambda,
    )
    distribution = networks.parametric_action_distribution
    logits = networks.policy_network.apply(normalizer, params.policy, step.obs)
    ratio = jnp.exp(distribution.log_prob(logits, data.raw_action) - data.log_prob)
    clipped = jnp.clip(ratio, 1 - config.clipping_epsilon, 1 + config.clipping_epsilon)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    cost_adv = cost_adv - cost_adv.mean()
    entropy = jnp.mean(distribution.entropy(logits, key))
    reward_loss = -jnp.mean(jnp.minimum(ratio * adv, clipped * adv))
    cost_level = jnp.mean(cost_targets)
    cost_estimate = cost_level + jnp.mean(jnp.maximum(ratio * cost_adv, clipped * cost_adv))
    actor_loss, aux = constraints.actor_objective(
        config.constraint, constraint_state, reward_loss, cost_estimate, cost_budget_q
    )
    v_loss = 0.25 * jnp.mean(jnp.square(targets - values))
    cost_v_loss = 0.25 * jnp.mean(jnp.square(cost_targets - cost_values))
    total = actor_loss - config.entropy_cost * entropy + v_loss + cost_v_loss  # entropy outside the handler
    return total, {
        "total_loss": total,
        "policy_loss": reward_loss,
        "v_loss": v_loss,
        "cost_v_loss": cost_v_loss,
        "entropy_loss": -config.entropy_cost * entropy,
        "cost_estimate": stop(cost_level),
        "constraint_violation": aux["constraint_violation"],
    }
