"""The executed policy of a SOOPER-family run, rebuilt from its config and parameters: the prior from its SAC run
(`prior.load_prior`: network config + parameters), and from the run's last checkpoint only the ensemble, the
pessimistically updated cost critic, the dual variables and the recovery shield's margin (`SooperState.model`,
`.cost_q_params`, `.dual`, `.shield_margin`); then MPC on that ensemble around the prior, behind the shield for the
methods that have one (`planner.executed_policy`). No agent, trainer, optimiser or buffer is built or imported."""

from __future__ import annotations

import dataclasses
import pathlib

import jax

from saferl import constraints
from saferl.agents.pets.policy import MODEL, model_shapes
from saferl.agents.sooper.config import episode_budget
from saferl.agents.sooper.planner import Dual, executed_policy, shield_rule
from saferl.agents.sooper.prior import check_prior_fits, load_prior
from saferl.policies.policy import Policy
from saferl.training import restore

# key paths in the checkpointed `SooperState` (besides MODEL)
COST_Q_PARAMS, DUAL, SHIELD_MARGIN = ".cost_q_params", ".dual", ".shield_margin"


def load_policy(run_dir: pathlib.Path | str) -> Policy:
    """`Algorithm.load_policy`: the run's executed policy — MPC on its last ensemble around the prior, behind
    the shield (with the run's updated cost critic) for the methods that have one."""
    run = restore.load_run(run_dir)
    config, env = run.algo_config, run.env
    prior, template = load_prior(config.prior)
    check_prior_fits(template, env, run.record.env)
    run = restore.restore_subtrees(
        run,
        {
            MODEL: model_shapes(config.model, env),
            COST_Q_PARAMS: jax.eval_shape(lambda: prior.cost_q_params),
            DUAL: jax.eval_shape(lambda: constraints.init(config.dual)),
            SHIELD_MARGIN: jax.ShapeDtypeStruct((), jax.numpy.float32),
        },
    )
    rule = shield_rule(config, episode_budget(config, env.cost_budget), int(env.episode_length), prior.cost_discounting)
    dual = run.state[DUAL]
    policy = executed_policy(
        config,
        rule,
        run.state[MODEL],
        prior.replace(cost_q_params=run.state[COST_Q_PARAMS]),
        Dual(dual.multiplier, dual.penalty),
        template,
        run.state[SHIELD_MARGIN],
    )
    return dataclasses.replace(
        policy,
        act=jax.jit(policy.act),
        env_name=run.record.env,
        env_config=run.env_config,
        cost_budget=rule.budget,
        run_dir=run.record.path,
        training_env=run.training_env,
    )
