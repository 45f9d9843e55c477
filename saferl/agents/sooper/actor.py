"""SOOPER's MBPO learner as a `Policy`: the prior's SAC actor network (brax tanh-normal, the prior's observation
normaliser) with the learner's parameters. Deterministic `act` (tanh of the mean, for eval and deployment) and
sampled `sample` (training episodes, as SAC collects). Policy-side only: no optimiser, trainer or buffer, so
`policy.load_policy` and the ONNX exporter can import it."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from saferl.agents.sooper.prior import Prior
from saferl.policies.policy import Policy, stateless, stateless_carry


def actor_apply(prior: Prior) -> Any:
    """`apply(params, obs) -> action`: the deterministic action [..., act_dim] in [-1, 1] of the actor network
    of `prior` with params = (observation normaliser, actor parameters)."""
    network, distribution = prior.networks.policy_network, prior.networks.parametric_action_distribution

    def apply(params: Any, obs: jax.Array) -> jax.Array:
        normalizer, actor_params = params
        return distribution.mode(network.apply(normalizer, actor_params, obs))

    return apply


def learner_actor(prior: Prior, actor_params: Any, template: Policy) -> Policy:
    """The unshielded learner: the actor network of `prior` with `actor_params` (possibly traced), stateless.
    `template` (the prior run's policy) gives the env fields; usable inside `jit`."""
    network, distribution = prior.networks.policy_network, prior.networks.parametric_action_distribution
    params = (prior.normalizer, actor_params)
    apply = actor_apply(prior)

    def sample(obs: jax.Array, key: jax.Array) -> jax.Array:
        return distribution.sample(network.apply(prior.normalizer, actor_params, obs), key)

    return dataclasses.replace(
        template,
        act=stateless(lambda obs, key: apply(params, obs)),
        sample=stateless(sample),
        init_carry=stateless_carry,
        params=params,
        apply=apply,
        reward_value=None,
        cost_value=None,
    )
