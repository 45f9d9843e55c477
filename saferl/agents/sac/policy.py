"""The policy of a SAC run (and SOOPER's prior), rebuilt from its network config and parameters as brax loads a
policy: the networks from the run's `SACConfig` (`saferl.agents.sac.networks`), and from the last checkpoint only
the observation normaliser, the actor and the twin reward and cost critics (`SACState.normalizer`,
`.policy_params`, `.q_params`, `.cost_q_params`). No trainer, optimiser or replay buffer is built or imported."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp

from saferl.agents.modelfree.pixel_networks import init_normalizer
from saferl.agents.modelfree.policy import tanh_normal_policy
from saferl.agents.sac.networks import SACNetworks, cost_value, make_networks
from saferl.policies.policy import Policy
from saferl.training import restore

# key paths in the checkpointed `SACState`
NORMALIZER, POLICY_PARAMS, Q_PARAMS, COST_Q_PARAMS = ".normalizer", ".policy_params", ".q_params", ".cost_q_params"


def restore_actor_critics(run_dir: pathlib.Path | str) -> tuple[restore.RestoredRun, SACNetworks]:
    """The run in `run_dir` and its networks, the run's `state` = {NORMALIZER, POLICY_PARAMS, Q_PARAMS,
    COST_Q_PARAMS: their values at the last checkpoint}."""
    run = restore.load_run(run_dir)
    obs_size = run.env.observation_size
    networks = make_networks(run.algo_config, obs_size, run.env.action_size)
    key = jax.random.PRNGKey(0)
    return restore.restore_subtrees(
        run,
        {
            NORMALIZER: jax.eval_shape(lambda: init_normalizer(obs_size)),
            POLICY_PARAMS: jax.eval_shape(networks.policy_network.init, key),
            Q_PARAMS: jax.eval_shape(networks.q_network.init, key),
            COST_Q_PARAMS: jax.eval_shape(networks.cost_q_network.init, key),
        },
    ), networks


def actor_critic_policy(run: restore.RestoredRun, networks: SACNetworks) -> Policy:
    """The deterministic (tanh of the mean) / stochastic actor of `restore_actor_critics`' run, with
    `reward_value` = min of the twin Q_r and `cost_value` = max of the twin Q_c (pessimistic; discounted scales)."""
    normalizer, q_params, cost_q_params = run.state[NORMALIZER], run.state[Q_PARAMS], run.state[COST_Q_PARAMS]

    def reward_value(obs: jax.Array, action: jax.Array) -> jax.Array:
        return jnp.min(networks.q_network.apply(normalizer, q_params, obs, action), axis=-1)

    def cost_value_of(obs: jax.Array, action: jax.Array) -> jax.Array:
        return cost_value(networks, normalizer, cost_q_params, obs, action)

    return tanh_normal_policy(
        run,
        networks.policy_network,
        networks.parametric_action_distribution,
        (normalizer, run.state[POLICY_PARAMS]),
        jax.jit(reward_value),
        jax.jit(cost_value_of),
    )


def load_policy(run_dir: pathlib.Path | str) -> Policy:
    """`Algorithm.load_policy`: `actor_critic_policy` of the run in `run_dir`."""
    return actor_critic_policy(*restore_actor_critics(run_dir))
