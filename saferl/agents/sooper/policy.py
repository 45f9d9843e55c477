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
from typing import Any, NamedTuple

import jax

from saferl import constraints
from saferl.agents.pets.policy import MODEL, model_shapes
from saferl.agents.sooper.actor import learner_actor
from saferl.agents.sooper.config import episode_budget
from saferl.agents.sooper.planner import Dual, ShieldRule, behind_shield, executed_policy, shield_rule
from saferl.agents.sooper.prior import Prior, check_prior_fits, load_prior
from saferl.errors import UserError
from saferl.policies.policy import Policy
from saferl.training import restore, rundir

# key paths in the checkpointed `SooperState` (besides MODEL)
COST_Q_PARAMS, DUAL, SHIELD_MARGIN = ".cost_q_params", ".dual", ".shield_margin"
LEARNER_ACTOR = ".learner.policy_params"  # learner=mbpo: the actor's parameters


def is_mbpo(config: Any) -> bool:
    """Whether a run's algo config is a SOOPER-family config with a learned actor (`learner=mbpo`)."""
    return hasattr(config, "shield") and getattr(config, "learner", "mpc") == "mbpo"


def is_mbpo_run(run_dir: pathlib.Path | str) -> bool:
    """`is_mbpo` of the run in `run_dir` (its config read, no env built); UserError for an unusable run dir."""
    return is_mbpo(restore.algo_config_from_record(rundir.read_run(run_dir, need_checkpoint=False)))


class ShieldedRun(NamedTuple):
    """What every reader of a SOOPER-family run rebuilds (the policy loader, the learner's actor, the ONNX export)."""

    run: restore.RestoredRun  # its `state`: {key path: value} of the subtrees asked for at the last checkpoint
    prior: Prior  # the run's prior, with the cost critic as the run updated it (when COST_Q_PARAMS was read)
    template: Policy  # the prior run's policy (env fields)
    rule: ShieldRule  # the run's shield rule against its episode budget


def restore_shielded_run(run_dir: pathlib.Path | str, subtrees: tuple[str, ...]) -> ShieldedRun:
    """The run in `run_dir` with its prior (checked against the run's env) and shield rule, and of its last
    checkpoint the `subtrees` among MODEL, COST_Q_PARAMS, DUAL, SHIELD_MARGIN, LEARNER_ACTOR (LEARNER_ACTOR only
    for learner=mbpo). UserError if the run, its prior or the checkpoint cannot be read."""
    run = restore.load_run(run_dir)
    config, env = run.algo_config, run.env
    prior, template = load_prior(config.prior)
    check_prior_fits(template, env, run.record.env)
    shapes = {
        MODEL: lambda: model_shapes(config.model, env),
        COST_Q_PARAMS: lambda: jax.eval_shape(lambda: prior.cost_q_params),
        DUAL: lambda: jax.eval_shape(lambda: constraints.init(config.dual)),
        SHIELD_MARGIN: lambda: jax.ShapeDtypeStruct((), jax.numpy.float32),
        LEARNER_ACTOR: lambda: jax.eval_shape(lambda: prior.policy_params),
    }
    run = restore.restore_subtrees(run, {key: shapes[key]() for key in subtrees})
    if COST_Q_PARAMS in subtrees:
        prior = prior.replace(cost_q_params=run.state[COST_Q_PARAMS])
    rule = shield_rule(config, episode_budget(config, env.cost_budget), int(env.episode_length), prior.cost_discounting)
    return ShieldedRun(run, prior, template, rule)


def load_learner_actor(run_dir: pathlib.Path | str) -> Policy:
    """The MBPO learner's actor of a `learner=mbpo` run, unshielded and deterministic: `policy.apply(policy.params,
    obs) -> action` with params = (the prior's observation normaliser, the actor's parameters at the last
    checkpoint) — the network the ONNX export writes beside the prior's actor and cost critic. UserError for an
    mpc run (it has no actor)."""
    if not is_mbpo_run(run_dir):
        raise UserError(f"run {str(run_dir)!r} has learner=mpc: it plans every decision and has no learned actor")
    run, prior, template, rule = restore_shielded_run(run_dir, (LEARNER_ACTOR,))
    return _bind(learner_actor(prior, run.state[LEARNER_ACTOR], template), run, rule.budget)


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
    mbpo = is_mbpo_run(run_dir)
    subtrees = (MODEL, COST_Q_PARAMS, DUAL, SHIELD_MARGIN) + ((LEARNER_ACTOR,) if mbpo else ())
    run, prior, template, rule = restore_shielded_run(run_dir, subtrees)
    config, state = run.algo_config, run.state
    if mbpo:
        actor = learner_actor(prior, state[LEARNER_ACTOR], template)
        policy = behind_shield(config, rule, actor, state[MODEL], prior, template, state[SHIELD_MARGIN])
    else:
        dual = Dual(state[DUAL].multiplier, state[DUAL].penalty)
        policy = executed_policy(config, rule, state[MODEL], prior, dual, template, state[SHIELD_MARGIN])
    return _bind(policy, run, rule.budget)
