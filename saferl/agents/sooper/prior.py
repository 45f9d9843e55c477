"""The prior π̂ of SOOPER and its baselines: a SAC run's actor and twin critics as a pytree of parameters.

SOOPER needs the prior in three roles, all inside jitted code: its deterministic action π̂(s) (the fallback
the shield executes, and the base the planner searches around), its reward critic Q_r^π̂(s, a) (the terminal
value of an imagined trajectory) and its cost critic Q_c^π̂(s, a) (the shield's bound, updated pessimistically
on model data during learning, so its parameters ride in the training state). `Prior` holds the parameters as
pytree leaves and the networks as static fields, so one compiled function serves every updated critic.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import TYPE_CHECKING, Any, Self

import jax
import jax.numpy as jnp
from flax import struct

from saferl.data import observations
from saferl.errors import UserError
from saferl.policies.policy import Policy, stateless, stateless_carry


@struct.dataclass
class Prior:
    """A trained SAC actor with its critics; every method is pure and broadcasts over leading axes [...]."""

    normalizer: Any  # the run's observation normaliser (brax running statistics)
    policy_params: Any  # actor parameters
    q_params: Any  # twin reward critics
    cost_q_params: Any  # twin cost critics (what the pessimistic update changes)
    networks: Any = struct.field(pytree_node=False)  # saferl.agents.sac.SACNetworks
    discounting: float = struct.field(pytree_node=False, default=0.99)  # γ of Q_r (per decision)
    cost_discounting: float = struct.field(pytree_node=False, default=0.99)  # γ_c of Q_c (per decision)

    if TYPE_CHECKING:  # flax's struct.dataclass adds `replace` at run time, unseen by mypy

        def replace(self, **changes: Any) -> Self: ...

    def action(self, obs: jax.Array) -> jax.Array:
        """π̂(s): the actor's deterministic action (tanh of the mean) [..., act_dim] in [-1, 1]."""
        logits = self.networks.policy_network.apply(self.normalizer, self.policy_params, obs)
        return self.networks.parametric_action_distribution.mode(logits)

    def reward_value(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Q_r^π̂(s, a) [...]: the min of the twin reward critics (discounted reward units)."""
        return jnp.min(self.networks.q_network.apply(self.normalizer, self.q_params, obs, action), axis=-1)

    def cost_value(self, obs: jax.Array, action: jax.Array, cost_q_params: Any = None) -> jax.Array:
        """Q_c^π̂(s, a) [...] ≥ 0: the max of the twin cost critics (discounted cost units), with this prior's
        cost critic or `cost_q_params` (e.g. the one being updated)."""
        params = self.cost_q_params if cost_q_params is None else cost_q_params
        q = self.networks.cost_q_network.apply(self.normalizer, params, obs, action)
        return jnp.maximum(jnp.max(q, axis=-1), 0.0)


def read_prior_run(run_dir: pathlib.Path | str) -> Any:
    """The `RunRecord` of a prior's run directory; UserError unless it is a run directory of a `sac` run with a
    checkpoint (what `load_prior` needs)."""
    from saferl.training import rundir

    path = pathlib.Path(run_dir).expanduser()
    if not (path / "config.json").is_file():
        raise UserError(
            f"prior {str(run_dir)!r}: not a run directory (no config.json); train one with "
            "`saferl train sac --env ENV --constraint crpo` and pass --set prior=RUN_DIR"
        )
    record = rundir.read_run(path)  # UserError for a corrupt config or no checkpoint
    if record.algo != "sac":
        raise UserError(
            f"prior {str(run_dir)!r} is a '{record.algo}' run; a prior must be a 'sac' run (it needs "
            "the actor and both critics)"
        )
    return record


def load_prior(run_dir: pathlib.Path | str) -> tuple[Prior, Policy]:
    """The prior of a `saferl train sac` run directory (its latest checkpoint) and its `Policy`, rebuilt from the
    run's network config and parameters (`saferl.agents.sac.policy`; no SAC trainer is built).

    Raises UserError if `run_dir` is not a run directory, not a SAC run, or has no checkpoint.
    """
    from saferl.agents.sac import policy as sac_policy

    run, networks = sac_policy.restore_actor_critics(read_prior_run(run_dir).path)
    config, params = run.algo_config, run.state
    prior = Prior(
        normalizer=params[sac_policy.NORMALIZER],
        policy_params=params[sac_policy.POLICY_PARAMS],
        q_params=params[sac_policy.Q_PARAMS],
        cost_q_params=params[sac_policy.COST_Q_PARAMS],
        networks=networks,
        discounting=float(config.discounting),
        cost_discounting=float(config.cost_discounting),
    )
    return prior, sac_policy.actor_critic_policy(run, networks)


def prior_policy(prior: Prior, template: Policy) -> Policy:
    """The `Policy` of `prior` with its current (possibly traced, updated) parameters: stateless, acting
    π̂(s), with `reward_value`/`cost_value` from `prior`. `template` (the prior run's policy) gives the env
    fields; usable inside `jit`."""
    return dataclasses.replace(
        template,
        act=stateless(lambda obs, key: prior.action(obs)),
        init_carry=stateless_carry,
        sample=None,
        params=(prior.normalizer, prior.policy_params),
        reward_value=prior.reward_value,
        cost_value=prior.cost_value,
    )


def check_prior_fits(prior_policy_: Policy, env: Any, env_name: str) -> None:
    """UserError unless the prior was trained on `env_name` with `env`'s observation and action sizes (for
    dict observations: SOOPER sees only the state part, so the prior must act on that vector)."""
    if prior_policy_.env_name != env_name:
        raise UserError(f"the prior was trained on env '{prior_policy_.env_name}', not '{env_name}'")
    obs_size = observations.state_size(env.observation_size)
    if observations.is_dict(prior_policy_.observation_size):
        raise UserError(
            f"the prior acts on dict observations ({observations.describe(prior_policy_.observation_size)}"
            f"); SOOPER uses only the state part ({obs_size}): train the prior on state observations"
        )
    if (prior_policy_.observation_size, prior_policy_.action_size) != (obs_size, int(env.action_size)):
        raise UserError(
            f"the prior's observation/action sizes ({prior_policy_.observation_size}, "
            f"{prior_policy_.action_size}) differ from env '{env_name}' "
            f"({obs_size}, {int(env.action_size)})"
        )
