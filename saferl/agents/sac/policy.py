"""The policy of a SAC run (and SOOPER's prior), rebuilt from its network config and parameters as brax loads a
policy: the networks from the run's `SACConfig` (`saferl.agents.sac.networks`), and from the last checkpoint only
the observation normaliser, the actor and the twin reward and cost critics (`SACState.normalizer`,
`.policy_params`, `.q_params`, `.cost_q_params`). No trainer, optimiser or replay buffer is built or imported."""

from __future__ import annotations

import pathlib
import shutil
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from saferl.agents.modelfree.pixel_networks import init_normalizer
from saferl.agents.modelfree.policy import tanh_normal_policy
from saferl.agents.sac.networks import SACNetworks, cost_value, make_networks
from saferl.errors import UserError
from saferl.policies.policy import Policy
from saferl.policies.run_record import CONFIG_FILE
from saferl.training import restore, rundir
from saferl.training.checkpoints import Checkpoints

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


@struct.dataclass
class _ActorCritics:
    """The leaves `restore_actor_critics` reads, under the key paths they have in the training state."""

    normalizer: Any
    policy_params: Any
    q_params: Any
    cost_q_params: Any


def save_actor_critics(run_dir: pathlib.Path | str, out_dir: pathlib.Path | str) -> pathlib.Path:
    """Write `out_dir`, a run directory of the SAC run in `run_dir` that holds only what a policy and a SOOPER
    prior read: its config.json and, of its last checkpoint (same step), the observation normaliser, the actor
    and the twin reward and cost critics — no replay buffer, optimiser states or env states (≈ 200 KB for
    safe_cartpole's prior instead of ≈ 13 MB). `load_policy`, `saferl.agents.sooper.prior.load_prior` (so
    `--set prior=OUT_DIR`) and `saferl eval` of the policy read it as they read the run; resuming the SAC
    training from it is not possible (its checkpoint lacks the rest of the state). Returns `out_dir`."""
    out = pathlib.Path(out_dir)
    if out.exists():  # before the restore: nothing read or written for a command that must fail
        raise UserError(f"{out} exists; give a new directory")
    run, _ = restore_actor_critics(run_dir)
    step = rundir.checkpoint_steps(run.record.path)[-1]
    out.mkdir(parents=True)
    shutil.copy2(run.record.path / CONFIG_FILE, out / CONFIG_FILE)
    state = _ActorCritics(*(run.state[key] for key in (NORMALIZER, POLICY_PARAMS, Q_PARAMS, COST_Q_PARAMS)))
    checkpoints = Checkpoints(out / "checkpoints", max_to_keep=None)
    try:
        checkpoints.save(step, state, {"actor_critics_of": run.record.path.name})
    finally:
        checkpoints.close()
    return out
