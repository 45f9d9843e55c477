"""SAC with a cost critic and a selectable constraint handler (`--set constraint.kind=...`), registered as
`sac`. Unconstrained by default; `constraint.kind=augmented_lagrangian` trains a prior that keeps the
episode cost within the env's budget (see `saferl.constraints`)."""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp

from saferl import registry
from saferl.agents.sac.config import SACConfig
from saferl.agents.sac import losses
from saferl.agents.sac.losses import SACNetworks, make_networks
from saferl.agents.sac.train import LOSS_KEYS, SACState, make_train, prefill, train


def load_policy(run_dir: pathlib.Path | str) -> Any:
    """`Algorithm.load_policy`: the deterministic (tanh of the mean) / stochastic actor of a SAC run, with
    `reward_value` = min of the twin Q_r and `cost_value` = max of the twin Q_c (pessimistic; discounted scales)."""
    from saferl.agents.modelfree.policy import tanh_normal_policy
    from saferl.training.restore import restore_run_state

    run = restore_run_state(run_dir, make_train_init)
    config, state = run.algo_config, run.state
    networks = make_networks(config, run.env.observation_size, run.env.action_size)

    def reward_value(obs: jax.Array, action: jax.Array) -> jax.Array:
        return jnp.min(networks.q_network.apply(state.normalizer, state.q_params, obs, action), axis=-1)

    def cost_value(obs: jax.Array, action: jax.Array) -> jax.Array:
        return losses.cost_value(networks, state.normalizer, state.cost_q_params, obs, action)

    return tanh_normal_policy(run, networks.policy_network, networks.parametric_action_distribution,
                              (state.normalizer, state.policy_params), jax.jit(reward_value), jax.jit(cost_value))


def make_train_init(config: SACConfig, env: Any, training_env: Any) -> Any:
    return make_train(config, env, training_env)[0]


registry.register(registry.Algorithm(
    name="sac", config_cls=SACConfig, train=train, load_policy=load_policy,
    description="SAC with reward and cost critics; constrained with --constraint KIND "
                "(lagrangian, augmented_lagrangian, crpo, penalty)", uses_recorded_data=True))

__all__ = ["LOSS_KEYS", "SACConfig", "SACNetworks", "SACState", "load_policy", "make_networks",
           "make_train", "prefill", "train"]
