"""SAC's networks and losses with a cost critic (Haarnoja et al. 2018; constrained as in SAC-Lagrangian).

Networks are brax's: a tanh-normal actor and twin Q MLPs, one pair for the reward Q_r and one for the cost
Q_c (for dict observations {"image", "state"}: each with its own CNN encoder, `modelfree.pixel_networks`). Losses, on a `Transition` batch [B] (`done` = termination only, so time limits bootstrap):
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

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from brax.training import distribution as brax_distribution
from brax.training import networks as brax_networks
from brax.training.acme import running_statistics
from brax.training.agents.sac import networks as sac_networks

from saferl import constraints
from saferl.agents.modelfree import pixel_networks
from saferl.agents.sac.config import SACConfig
from saferl.data import observations
from saferl.data.buffer import Transition


class SACNetworks(NamedTuple):
    policy_network: Any  # (normalizer, params, obs [..., obs_dim]) -> tanh-normal logits [..., 2·act_dim]
    q_network: Any  # (normalizer, params, obs, action) -> [..., 2] twin Q_r
    cost_q_network: Any  # (normalizer, params, obs, action) -> [..., 2] twin Q_c
    parametric_action_distribution: Any  # brax NormalTanhDistribution


def make_networks(config: SACConfig, observation_size: Any, action_size: int) -> SACNetworks:
    """brax's MLPs for a flat `observation_size` (int); CNN encoder + MLPs for a dict of shapes."""
    normalize = running_statistics.normalize if config.normalize_observations else (lambda x, _: x)
    if observations.is_dict(observation_size):
        return _make_pixel_networks(config, observation_size, action_size, normalize)
    base = sac_networks.make_sac_networks(observation_size, action_size, preprocess_observations_fn=normalize,
                                          hidden_layer_sizes=config.hidden_sizes)
    cost_q = brax_networks.make_q_network(observation_size, action_size, preprocess_observations_fn=normalize,
                                          hidden_layer_sizes=config.hidden_sizes, n_critics=2)
    return SACNetworks(base.policy_network, base.q_network, cost_q, base.parametric_action_distribution)


def _make_pixel_networks(config: SACConfig, observation_size: Any, action_size: int, normalize: Any
                         ) -> SACNetworks:
    """Actor, twin Q_r and twin Q_c, each critic its own CNN encoder + relu MLP, on dict observations."""
    observations.shapes(observation_size)  # UserError for malformed dict shapes
    distribution = brax_distribution.NormalTanhDistribution(event_size=action_size)
    policy = pixel_networks.make_policy_network(config.encoder, observation_size, distribution.param_size,
                                                config.hidden_sizes, jax.nn.relu, normalize)

    def twin_q() -> Any:
        return pixel_networks.make_q_network(config.encoder, observation_size, action_size, config.hidden_sizes,
                                             jax.nn.relu, normalize)

    return SACNetworks(policy, twin_q(), twin_q(), distribution)


def sample_action(networks: SACNetworks, normalizer: Any, policy_params: Any, obs: jax.Array,
                  key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reparameterised a ~ π(·|obs) in [-1, 1] and its log-probability [...]."""
    distribution = networks.parametric_action_distribution
    logits = networks.policy_network.apply(normalizer, policy_params, obs)
    raw = distribution.sample_no_postprocessing(logits, key)
    return distribution.postprocess(raw), distribution.log_prob(logits, raw)


def alpha_loss(log_alpha: jax.Array, networks: SACNetworks, policy_params: Any, normalizer: Any,
               batch: Transition, key: jax.Array) -> jax.Array:
    action_size = batch.action.shape[-1]
    _, log_prob = sample_action(networks, normalizer, policy_params, batch.obs, key)
    target_entropy = -0.5 * action_size
    return jnp.mean(jnp.exp(log_alpha) * jax.lax.stop_gradient(-log_prob - target_entropy))


def critic_loss(q_params: Any, q_network: Any, normalizer: Any, target_q_params: Any, batch: Transition,
                signal: jax.Array, next_action: jax.Array, next_bonus: jax.Array, discount: float,
                is_cost: bool) -> jax.Array:
    """TD loss of a twin critic for `signal` [B] (reward or cost); `next_bonus` [B] is added to the next
    value (−α log π for the reward's soft value, 0 for the cost). The next value is the min of the twin
    targets for the reward (against overestimation) and, for the cost, their mean clipped at 0 (costs are
    ≥ 0, so is their discounted sum)."""
    q = q_network.apply(normalizer, q_params, batch.obs, batch.action)
    next_q = q_network.apply(normalizer, target_q_params, batch.next_obs, next_action)
    target = jax.lax.stop_gradient(critic_target(signal, next_q, batch.done, next_bonus, discount, is_cost))
    return 0.5 * jnp.mean(jnp.square(q - target[..., None]))


def critic_target(signal: jax.Array, next_q: jax.Array, done: jax.Array, next_bonus: jax.Array, discount: float,
                  is_cost: bool) -> jax.Array:
    """The TD target [B] of `critic_loss`: signal + γ(1 − done)·(V̄(s') + next_bonus), where V̄(s') is the min
    of the twin target values `next_q` [B, 2] for the reward and max(0, their mean) for the cost; `done` [B]
    is 1 only where the episode terminated (a time limit bootstraps)."""
    next_value = (jnp.maximum(jnp.mean(next_q, axis=-1), 0.0) if is_cost else jnp.min(next_q, axis=-1)) + next_bonus
    return signal + (1.0 - done) * discount * next_value


def cost_value(networks: SACNetworks, normalizer: Any, cost_q_params: Any, obs: jax.Array, action: jax.Array
               ) -> jax.Array:
    """Pessimistic Q_c [...]: the max of the twin cost critics. The actor minimises it, so taking the max
    keeps it from exploiting one critic's underestimate (the cost mirror of the min over reward critics)."""
    return jnp.max(networks.cost_q_network.apply(normalizer, cost_q_params, obs, action), axis=-1)


def actor_loss(policy_params: Any, networks: SACNetworks, normalizer: Any, q_params: Any, cost_q_params: Any,
               alpha: jax.Array, constraint_state: constraints.ConstraintState, batch: Transition,
               recent_obs: Any, key: jax.Array, config: SACConfig, cost_budget_q: float
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
    objective, aux = constraints.actor_objective(config.constraint, constraint_state, reward_loss, cost_estimate,
                                                 cost_budget_q)
    loss = jnp.mean(alpha * log_prob) + objective
    return loss, {**aux, "cost_estimate": jax.lax.stop_gradient(cost_estimate),
                  "reward_loss": jax.lax.stop_gradient(reward_loss)}
