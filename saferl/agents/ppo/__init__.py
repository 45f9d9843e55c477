"""PPO with a cost value head and a selectable constraint handler (`--set constraint.kind=...`), registered
as `ppo`. Unconstrained by default (the cost value is still learned and logged)."""

from __future__ import annotations

import pathlib
from typing import Any

from saferl import registry
from saferl.agents.ppo.config import PPOConfig
from saferl.agents.ppo.losses import PPONetworks, PPOParams, make_networks
from saferl.agents.ppo.train import LOSS_KEYS, PPOState, make_train, train


def make_train_init(config: PPOConfig, env: Any, training_env: Any) -> Any:
    return make_train(config, env, training_env)[0]


def load_policy(run_dir: pathlib.Path | str) -> Any:
    """`Algorithm.load_policy`: the deterministic/stochastic tanh-normal policy of a PPO run (state values
    only, so no `reward_value`/`cost_value` of actions)."""
    from saferl.agents.modelfree.policy import tanh_normal_policy
    from saferl.training.restore import restore_run_state

    run = restore_run_state(run_dir, make_train_init)
    networks = make_networks(run.algo_config, run.env.observation_size, run.env.action_size)
    return tanh_normal_policy(run, networks.policy_network, networks.parametric_action_distribution,
                              (run.state.normalizer, run.state.params.policy))


registry.register(registry.Algorithm(
    name="ppo", config_cls=PPOConfig, train=train, load_policy=load_policy,
    description="PPO with reward and cost value heads; constrained with --constraint KIND",
    recorded_data_refusal="it is on-policy: it learns only from rollouts of its current policy"))

__all__ = ["LOSS_KEYS", "PPOConfig", "PPONetworks", "PPOParams", "PPOState", "load_policy",
           "make_networks", "make_train", "train"]
