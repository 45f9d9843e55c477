"""PPO's networks: brax's tanh-normal policy and value MLPs plus a second value head V_c for the discounted cost;
for dict observations {"image", "state"} each network is a CNN encoder + MLP (`modelfree.pixel_networks`). What
the trainer learns and what a run's policy is rebuilt from (`saferl.agents.ppo.policy`)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
from brax.training import distribution as brax_distribution
from brax.training import networks as brax_networks
from brax.training.acme import running_statistics
from brax.training.agents.ppo import networks as ppo_networks

from saferl.agents.modelfree import pixel_networks
from saferl.agents.ppo.config import PPOConfig
from saferl.data import observations


class PPONetworks(NamedTuple):
    policy_network: Any  # (normalizer, params, obs) -> tanh-normal logits
    value_network: Any  # (normalizer, params, obs) -> V_r [...]
    cost_value_network: Any  # (normalizer, params, obs) -> V_c [...]
    parametric_action_distribution: Any


def make_networks(config: PPOConfig, observation_size: Any, action_size: int) -> PPONetworks:
    """brax's MLPs for a flat `observation_size` (int); CNN encoder + MLPs for a dict of shapes."""
    normalize = running_statistics.normalize if config.normalize_observations else (lambda x, _: x)
    if observations.is_dict(observation_size):
        return _make_pixel_networks(config, observation_size, action_size, normalize)
    base = ppo_networks.make_ppo_networks(
        observation_size,
        action_size,
        preprocess_observations_fn=normalize,
        policy_hidden_layer_sizes=config.policy_hidden_sizes,
        value_hidden_layer_sizes=config.value_hidden_sizes,
    )
    cost_value = brax_networks.make_value_network(
        observation_size,
        preprocess_observations_fn=normalize,
        hidden_layer_sizes=config.value_hidden_sizes,
        activation=jax.nn.swish,
    )
    return PPONetworks(base.policy_network, base.value_network, cost_value, base.parametric_action_distribution)


def _make_pixel_networks(config: PPOConfig, observation_size: Any, action_size: int, normalize: Any) -> PPONetworks:
    """Policy, V_r and V_c, each its own CNN encoder + swish MLP, on dict observations (state normalised)."""
    observations.shapes(observation_size)  # UserError for malformed dict shapes
    distribution = brax_distribution.NormalTanhDistribution(event_size=action_size)
    policy = pixel_networks.make_policy_network(
        config.encoder, observation_size, distribution.param_size, config.policy_hidden_sizes, jax.nn.swish, normalize
    )

    def value() -> Any:
        return pixel_networks.make_value_network(
            config.encoder, observation_size, config.value_hidden_sizes, jax.nn.swish, normalize
        )

    return PPONetworks(policy, value(), value(), distribution)
