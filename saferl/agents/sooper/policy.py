"""The executed policy of a SOOPER-family run, rebuilt from its config and parameters: the prior from its SAC run
(`prior.load_prior`: network config + parameters), and from the run's last checkpoint only the ensemble, the
pessimistically updated cost critic, the dual variables and the recovery shield's margin (`SooperState.model`,
`.cost_q_params`, `.dual`, `.shield_margin`); then MPC on that ensemble around the prior, behind the shield for the
methods that have one (`planner.executed_policy`). With `learner=mbpo` the learner is the SAC actor of
`SooperState.learner.policy_params` (the prior's actor network, `actor.learner_actor`), deterministic, behind the
same shield; `load_learner_actor` gives that actor alone (for the ONNX export). No agent, trainer, optimiser or
buffer is built or imported."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax

from saferl import constraints
from saferl.agents.pets.policy import MODEL, model_shapes
from saferl.agents.sooper.actor import learner_actor
from saferl.agents.sooper.config import episode_budget
from saferl.agents.sooper.planner import Dual, behind_shield, executed_policy, shield_rule
from saferl.agents.sooper.prior import Prior, check_prior_fits, load_prior
from saferl.errors import UserError
from saferl.policies.policy import Policy
from saferl.training import restore

# key paths in the checkpointed `SooperState` (besides MODEL)
COST_Q_PARAMS, DUAL, SHIELD_MARGIN = ".cost_q_params", ".dual", ".shield_margin"
LEARNER_ACTOR = ".learner.policy_params"  # learner=mbpo: the actor's parameters


def load_learner_actor(run_dir: pathlib.Path | str) -> Policy:
    """The MBPO learner's actor of a `learner=mbpo` run, unshielded and deterministic: `policy.apply(policy.params,
    obs) -> action` with params = (the prior's observation normaliser, the actor's parameters at the last
    checkpoint) — the network the ONNX export writes beside the prior's actor and cost critic. UserError for an
    mpc run (it has no actor)."""
    run = restore.load_run(run_dir)
    if getattr(run.algo_config, "learner", "mpc") != "mbpo":
        raise UserError(f"run {str(run_dir)!r} has learner=mpc: it plans every decision and has no learned actor")
    prior, template = load_prior(run.algo_config.prior)
    check_prior_fits(template, run.env, run.record.env)
    run = restore.restore_subtrees(run, {LEARNER_ACTOR: jax.eval_shape(lambda: prior.policy_params)})
    budget = episode_budget(run.algo_config, run.env.cost_budget)
    return _bind(learner_actor(prior, run.state[LEARNER_ACTOR], template), run, budget)


def _bind(policy: Policy, run: restore.RestoredRun, budget: float) -> Policy:
    """`policy` with a jitted `act` and the run's env fields."""
    return dataclasses.replace(
        policy,
        act=jax.jit(policy.act),
        env_name=run.record.env,
        env_config=run.env_config,
        cost_budget=budget,
        run_dir=run.record.path,
        training_env=run.training_env,
    )


def load_policy(run_dir: pathlib.Path | str) -> Policy:
    """`Algorithm.load_policy`: the run's executed policy — MPC on its last ensemble around the prior (or, with
    `learner=mbpo`, the learned actor, deterministic), behind the shield (with the run's updated cost critic and
    margin) for the methods that have one."""
    run = restore.load_run(run_dir)
    config, env = run.algo_config, run.env
    prior, template = load_prior(config.prior)
    check_prior_fits(template, env, run.record.env)
    mbpo = getattr(config, "learner", "mpc") == "mbpo"
    targets = {
        MODEL: model_shapes(config.model, env),
        COST_Q_PARAMS: jax.eval_shape(lambda: prior.cost_q_params),
        DUAL: jax.eval_shape(lambda: constraints.init(config.dual)),
        SHIELD_MARGIN: jax.ShapeDtypeStruct((), jax.numpy.float32),
    }
    if mbpo:
        targets[LEARNER_ACTOR] = jax.eval_shape(lambda: prior.policy_params)
    run = restore.restore_subtrees(run, targets)
    rule = shield_rule(config, episode_budget(config, env.cost_budget), int(env.episode_length), prior.cost_discounting)
    dual, updated = run.state[DUAL], prior.replace(cost_q_params=run.state[COST_Q_PARAMS])
    if mbpo:
        policy = _mbpo_policy(config, rule, run, updated, template)
    else:
        policy = executed_policy(
            config,
            rule,
            run.state[MODEL],
            updated,
            Dual(dual.multiplier, dual.penalty),
            template,
            run.state[SHIELD_MARGIN],
        )
    return _bind(policy, run, rule.budget)


def _mbpo_policy(config: Any, rule: Any, run: restore.RestoredRun, prior: Prior, template: Policy) -> Policy:
    """learner=mbpo: the checkpoint's actor behind the shield (the recovery rule's lookahead through its ensemble)."""
    actor = learner_actor(prior, run.state[LEARNER_ACTOR], template)
    return behind_shield(config, rule, actor, run.state[MODEL], prior, template, run.state[SHIELD_MARGIN])
