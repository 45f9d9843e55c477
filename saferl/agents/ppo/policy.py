"""The policy of a PPO run, rebuilt from its network config and parameters as brax loads a policy: the networks
from the run's `PPOConfig` (`saferl.agents.ppo.networks`), and from the last checkpoint only the observation
normaliser and the policy network's parameters (`PPOState.normalizer`, `PPOState.params.policy`). No trainer,
optimiser or buffer is built or imported."""

from __future__ import annotations

import pathlib

import jax

from saferl.agents.modelfree.pixel_networks import init_normalizer
from saferl.agents.modelfree.policy import tanh_normal_policy
from saferl.agents.ppo.networks import make_networks
from saferl.policies.policy import Policy
from saferl.training import restore

NORMALIZER, POLICY_PARAMS = ".normalizer", ".params.policy"  # key paths in the checkpointed `PPOState`


def load_policy(run_dir: pathlib.Path | str) -> Policy:
    """`Algorithm.load_policy`: the deterministic/stochastic tanh-normal policy of a PPO run (state values
    only, so no `reward_value`/`cost_value` of actions)."""
    run = restore.load_run(run_dir)
    obs_size, action_size = run.env.observation_size, run.env.action_size
    networks = make_networks(run.algo_config, obs_size, action_size)
    run = restore.restore_subtrees(
        run,
        {
            NORMALIZER: jax.eval_shape(lambda: init_normalizer(obs_size)),
            POLICY_PARAMS: jax.eval_shape(networks.policy_network.init, jax.random.PRNGKey(0)),
        },
    )
    return tanh_normal_policy(
        run,
        networks.policy_network,
        networks.parametric_action_distribution,
        (run.state[NORMALIZER], run.state[POLICY_PARAMS]),
    )
