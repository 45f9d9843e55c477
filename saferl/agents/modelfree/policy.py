"""The `Policy` of a PPO or SAC run: brax's tanh-normal actor (deterministic mode, or sampled), stateless
(the carry holds only the cost spent), with the run's critics where it has them."""

from __future__ import annotations

from typing import Any

import jax

from saferl.policies.policy import Policy, ValueFn, stateless, stateless_carry
from saferl.training.restore import RestoredRun


def tanh_normal_policy(
    run: RestoredRun,
    policy_network: Any,
    distribution: Any,
    params: Any,
    reward_value: ValueFn | None = None,
    cost_value: ValueFn | None = None,
) -> Policy:
    """Policy from a network whose `apply(normalizer, params, obs)` gives tanh-normal logits;
    `params` = (normalizer, network params)."""

    def apply(policy_params: Any, obs: jax.Array) -> jax.Array:
        normalizer, network_params = policy_params
        return distribution.mode(policy_network.apply(normalizer, network_params, obs))

    def sample(obs: jax.Array, key: jax.Array) -> jax.Array:
        normalizer, network_params = params
        return distribution.sample(policy_network.apply(normalizer, network_params, obs), key)

    env = run.env
    return Policy(
        act=jax.jit(stateless(lambda obs, key: apply(params, obs))),
        init_carry=stateless_carry,
        params=params,
        apply=apply,
        observation_size=env.observation_size,
        action_size=env.action_size,
        env_name=run.record.env,
        env_config=run.env_config,
        cost_budget=float(env.cost_budget),
        algo=run.record.algo,
        sample=jax.jit(stateless(sample)),
        run_dir=run.record.path,
        reward_value=reward_value,
        cost_value=cost_value,
        training_env=run.training_env,
    )
