"""Policies of PPO and SAC runs: restore the last checkpoint and wrap brax's tanh-normal policy network."""

from __future__ import annotations

import pathlib
from typing import Any

import jax

import envs
from saferl.policies.policy import Policy
from saferl.training import rundir
from saferl.training.checkpoints import Checkpoints


def restore_run_state(run_dir: pathlib.Path | str, make_init: Any) -> tuple[rundir.RunRecord, Any, Any, Any, Any]:
    """(record, env config, algo config, env, last training state) of a run; `make_init(config, env) -> init`."""
    from saferl.training.run import algo_config_from_record, env_config_from_record

    record = rundir.read_run(run_dir)
    env_config, algo_config = env_config_from_record(record), algo_config_from_record(record)
    env = envs.make(record.env, config=env_config)
    target = jax.eval_shape(make_init(algo_config, env), jax.random.PRNGKey(0))
    checkpoints = Checkpoints(record.path / "checkpoints")
    try:
        state, _ = checkpoints.restore(rundir.checkpoint_steps(record.path)[-1], target)
    finally:
        checkpoints.close()
    return record, env_config, algo_config, env, state


def _tanh_normal_policy(record: rundir.RunRecord, env_config: Any, env: Any, networks: Any,
                        params: Any) -> Policy:
    """Policy from brax networks whose `policy_network.apply(normalizer, params, obs)` gives tanh-normal logits."""
    distribution = networks.parametric_action_distribution

    def apply(policy_params: Any, obs: jax.Array) -> jax.Array:
        normalizer, network_params = policy_params
        return distribution.mode(networks.policy_network.apply(normalizer, network_params, obs))

    def sample(obs: jax.Array, key: jax.Array) -> jax.Array:
        normalizer, network_params = params
        return distribution.sample(networks.policy_network.apply(normalizer, network_params, obs), key)

    return Policy(act=jax.jit(lambda obs, key: apply(params, obs)), params=params, apply=apply,
                  observation_size=env.observation_size, action_size=env.action_size, env_name=record.env,
                  env_config=env_config, cost_budget=float(env.cost_budget), algo=record.algo,
                  sample=jax.jit(sample), run_dir=record.path)


def load_ppo_policy(run_dir: pathlib.Path | str) -> Policy:
    from saferl.agents import ppo

    record, env_config, config, env, state = restore_run_state(run_dir, lambda c, e: ppo.make_train(c, e)[0])
    networks = ppo.make_networks(config, env.observation_size, env.action_size)
    return _tanh_normal_policy(record, env_config, env, networks, (state.normalizer, state.params.policy))


def load_sac_policy(run_dir: pathlib.Path | str) -> Policy:
    from saferl.agents import sac

    record, env_config, config, env, state = restore_run_state(run_dir, lambda c, e: sac.make_train(c, e)[0])
    networks = sac.make_networks(config, env.observation_size, env.action_size)
    return _tanh_normal_policy(record, env_config, env, networks, (state.normalizer, state.policy_params))
