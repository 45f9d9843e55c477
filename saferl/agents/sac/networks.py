"""SAC's networks: brax's tanh-normal actor and twin Q MLPs, one pair for the reward Q_r and one for the cost Q_c
(for dict observations {"image", "state"}: each with its own CNN encoder, `modelfree.pixel_networks`). What the
trainer learns and what a run's policy (and SOOPER's prior) is rebuilt from (`saferl.agents.sac.policy`)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from brax.training import distribution as brax_distribution
from brax.training import networks as brax_networks
from brax.training.acme import running_statistics
from brax.training.agents.sac import networks as sac_networks

from saferl.agents.modelfree import pixel_networks
from saferl.agents.sac.config import SACConfig
from saferl.data import observations


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
    base = sac_networks.make_sac_networks(
        observation_size, action_size, preprocess_observations_fn=normalize, hidden_layer_sizes=config.hidden_sizes
    )
    cost_q = brax_networks.make_q_network(
        observation_size,
        action_size,
        preprocess_observations_fn=normalize,
        hidden_layer_sizes=config.hidden_sizes,
        n_critics=2,
    )
    return SACNetworks(base.policy_network, base.q_network, cost_q, base.parametric_action_distribution)


def _make_pixel_networks(config: SACConfig, observation_size: Any, action_size: int, normalize: Any) -> SACNetworks:
    """Actor, twin Q_r and twin Q_c, each critic its own CNN encoder + relu MLP, on dict observations."""
    observations.shapes(observation_size)  # UserError for malformed dict shapes
    distribution = brax_distribution.NormalTanhDistribution(event_size=action_size)
    policy = pixel_networks.make_policy_network(
        config.encoder, observation_size, distribution.param_size, config.hidden_sizes, jax.nn.relu, normalize
    )

    def twin_q() -> Any:
        return pixel_networks.make_q_network(
            config.encoder, observation_size, action_size, config.hidden_sizes, jax.nn.relu, normalize
        )

    return SACNetworks(policy, twin_q(), twin_q(), distribution)


def cost_value(
    networks: SACNetworks, normalizer: Any, cost_q_params: Any, obs: jax.Array, action: jax.Array
) -> jax.Array:
    """Pessimistic Q_c [...]: the max of the twin cost critics. The actor minimises it, so taking the max
    keeps it from exploiting one critic's underestimate (the cost mirror of the min over reward critics)."""
    return jnp.max(networks.cost_q_network.apply(normalizer, cost_q_params, obs, action), axis=-1)
