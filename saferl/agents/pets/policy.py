"""The policy of a PETS run: MPC with iCEM on the trained ensemble, as a `saferl.policies.Policy`.

Each `act` plans from scratch (no warm start) with the env's full cost budget as the remaining budget and
returns the first planned action; the executor holds it for `policy.action_repeat` env steps (the repeat the
model was trained on). A planner has no fixed MLP map, so `apply` is None: PETS policies cannot be exported
to ONNX and run on the policy side of the bridge (`saferl-deploy run`).
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jp

from saferl.agents.pets.agent import PETSAgent, make_agent, planned_action
from saferl.models.ensemble import EnsembleState
from saferl.planning import icem
from saferl.policies.policy import Policy


def mpc_policy(agent: PETSAgent, model: EnsembleState, env_name: str, env_config: object,
               run_dir: pathlib.Path | None = None) -> Policy:
    """`Policy` whose `act(obs [..., obs_dim], key) -> action [..., act_dim]` plans on `model`."""
    config, obs_size, action_size = agent.config, agent.obs_size, agent.action_size
    budget = agent.cost_budget if agent.cost_budget > 0 else jp.inf
    warm_start = icem.init_state(config.planner, action_size)

    def plan(model: EnsembleState, obs: jax.Array, key: jax.Array) -> jax.Array:
        return planned_action(config, model, key, obs, warm_start, budget)[0]

    @jax.jit
    def act_on(model: EnsembleState, obs: jax.Array, key: jax.Array) -> jax.Array:
        obs = jp.asarray(obs, jp.float32)
        if obs.ndim == 1:
            return plan(model, obs, key)
        flat = obs.reshape(-1, obs_size)  # a batch of observations: one independent plan each
        actions = jax.vmap(plan, (None, 0, 0))(model, flat, jax.random.split(key, flat.shape[0]))
        return actions.reshape(obs.shape[:-1] + (action_size,))

    return Policy(act=lambda obs, key: act_on(model, obs, key), params=model, apply=None,
                  observation_size=obs_size, action_size=action_size, env_name=env_name, env_config=env_config,
                  cost_budget=agent.cost_budget, algo="pets", sample=None, run_dir=run_dir,
                  action_repeat=config.action_repeat)


def load_policy(run_dir: pathlib.Path | str) -> Policy:
    """`Algorithm.load_policy`: rebuild env and agent from the run's config and restore the latest model."""
    from saferl.policies.modelfree import restore_run_state

    record, env_config, config, env, state = restore_run_state(run_dir, lambda c, e: make_agent(c, e).init)
    return mpc_policy(make_agent(config, env), state.model, record.env, env_config, record.path)
