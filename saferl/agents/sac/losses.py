"""SAC's losses with a cost critic (Haarnoja et al. 2018; constrained as in SAC-Lagrangian), for the actor and the
twin reward and cost critics of `saferl.agents.sac.networks`. Losses, on a `Transition` batch [B] (`done` =
termination only, so time limits bootstrap):
  temperature:  α·(−log π(a|s) − H̄)                       H̄ = −|A|/2
  reward critic: ½(Q_r(s,a) − [r·scale + γ(1−done)(min_i Q̄_r,i(s',a') − α log π(a'|s'))])²
  cost critic:   ½(Q_c(s,a) − [c + γ_c(1−done)·max(0, mean_i Q̄_c,i(s',a'))])²
  actor:         mean(α log π(a|s)) + handler's objective of (−mean min_i Q_r,i(s, a), C), a ~ π(s)
where the constraint's cost estimate C = mean_s' max_i Q_c,i(s', π(s')) is taken over *recent* states s' (the
current policy's state distribution, compared with the discounted budget d_Q), not over the whole replay
buffer whose old states would understate the current policy's cost. The entropy term stays outside the
handler, so CRPO's cost-only steps keep SAC's entropy regularisation.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from saferl import constraints
from saferl.agents.sac.config import SACConfig
from saferl.agents.sac.networks import SACNetworks, cost_value
from saferl.data.buffer import Transition


def sample_action(
    networks: SACNetworks, normalizer: Any, policy_params: Any, obs: jax.Array, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Reparameterised a ~ π(·|obs) in [-1, 1] and its log-probability [...]."""
    distribution = networks.parametric_action_distribution
    logits = networks.policy_network.apply(normalizer, policy_params, obs)
    raw = distribution.sample_no_postprocessing(logits, key)
    return distribution.postprocess(raw), distribution.log_prob(logits, raw)


def alpha_loss(
    log_alpha: jax.Array, networks: SACNetworks, policy_params: Any, normalizer: Any, batch: Transition, key: jax.Array
) -> jax.Array:
    action_size = batch.action.shape[-1]
    _, log_prob = sample_action(networks, normalizer, policy_params, batch.obs, key)
    target_entropy = -0.5 * action_size
    return jnp.mean(jnp.exp(log_alpha) * jax.lax.stop_gradient(-log_prob - target_entropy))


def critic_loss(
    q_params: Any,
    q_network: Any,
    normalizer: Any,
    target_q_params: Any,
    batch: Transition,
    signal: jax.Array,
    next_action: jax.Array,
    next_bonus: jax.Array,
    discount: float,
    is_cost: bool,
) -> jax.Array:
    """TD loss of a twin critic for `signal` [B] (reward or cost); `next_bonus` [B] is added to the next
    value (−α log π for the reward's soft value, 0 for the cost). The next value is the min of the twin
    targets for the reward (against overestimation) and, for the cost, their mean clipped at 0 (costs are
    ≥ 0, so is their discounted sum)."""
    q = q_network.apply(normalizer, q_params, batch.obs, batch.action)
    next_q = q_network.apply(normalizer, target_q_params, batch.next_obs, next_action)
    target = jax.lax.stop_gradient(critic_target(signal, next_q, batch.done, next_bonus, discount, is_cost))
    return 0.5 * jnp.mean(jnp.square(q - target[..., None]))


def critic_target(
    signal: jax.Array, next_q: jax.Array, done: jax.Array, next_bonus: jax.Array, discount: float, is_cost: bool
) -> jax.Array:
    """The TD target [B] of `critic_loss`: signal + γ(1 − done)·(V̄(s') + next_bonus), where V̄(s') is the min
    of the twin target values `next_q` [B, 2] for the reward and max(0, their mean) for the cost; `done` [B]
    is 1 only where the episode terminated (a time limit bootstraps)."""
    next_value = (jnp.maximum(jnp.mean(next_q, axis=-1), 0.0) if is_cost else jnp.min(next_q, axis=-1)) + next_bonus
    return signal + (1.0 - done) * discount * next_value


def actor_loss(
    policy_params: Any,
    networks: SACNetworks,
    normalizer: Any,
    q_params: Any,
    cost_q_params: Any,
    alpha: jax.Array,
    constraint_state: constraints.ConstraintState,
    batch: Transition,
    recent_obs: Any,
    key: jax.Array,
    config: SACConfig,
    cost_budget_q: float,
) -> tuple[jax.Array, dict]:
    """Entropy term + the constraint handler's objective; aux holds `cost_estimate` (mean Q_c(s', π(s')) over
    `recent_obs` [B', obs_dim] or a dict of [B', ...]) and the handler's terms."""
    key_batch, key_recent = jax.random.split(key)
    action, log_prob = sample_action(networks, normalizer, policy_params, batch.obs, key_batch)
    q_reward = jnp.min(networks.q_network.apply(normalizer, q_params, batch.obs, action), axis=-1)
    recent_action, _ = sample_action(networks, normalizer, policy_params, recent_obs, key_recent)
    q_cost = cost_value(networks, normalizer, cost_q_params, recent_obs, recent_action)
    reward_loss = -jnp.mean(q_reward)
    cost_estimate = jnp.mean(q_cost)
    objective, aux = constraints.actor_objective(
        config.constraint, constraint_state, reward_loss, cost_estimate, cost_budget_q
    )
    loss = jnp.mean(alpha * log_prob) + objective
    return loss, {
        **aux,
        "cost_estimate": jax.lax.stop_gradient(cost_estimate),
        "reward_loss": jax.lax.stop_gradient(reward_loss),
    }
