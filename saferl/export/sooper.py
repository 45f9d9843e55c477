"""`saferl export RUN --format onnx --out DIR` of a SOOPER-family run with a learned actor (`learner=mbpo`): the
actor of its last checkpoint behind the run's shield, as a shielded on-board policy (`saferl.export.shielded`):
the prior's actor, the prior's cost critic as the run updated it, the shield's budget and scale, and for the
recovery rule its lookahead through the run's ensemble with the run's margin — what `saferl.policies.load_policy`
executes (`saferl.agents.sooper.policy`), without JAX on the robot.
"""

from __future__ import annotations

import pathlib
from typing import Any

from saferl.errors import UserError
from saferl.export.shielded import RULES, ShieldConstants, export_shielded_onnx


def is_learned_sooper_run(config: Any) -> bool:
    """Whether a run's algo config is a SOOPER-family config with a learned actor (`learner=mbpo`)."""
    from saferl.agents.sooper.policy import is_mbpo

    return is_mbpo(config)


def export_sooper_run(run_dir: str | pathlib.Path, out_dir: str | pathlib.Path) -> pathlib.Path:
    """Export the `learner=mbpo` SOOPER run at `run_dir` (its last checkpoint) to `out_dir`; returns the manifest.

    UserError for an MPC learner (no actor: it plans every decision), a shield the robot cannot run
    (`advantage`, `none`), or a run directory that cannot be restored.
    """
    from saferl.agents.sooper.planner import recovery_lookahead
    from saferl.agents.sooper.policy import (
        COST_Q_PARAMS,
        LEARNER_ACTOR,
        MODEL,
        SHIELD_MARGIN,
        restore_shielded_run,
    )
    from saferl.training import restore, rundir

    config = restore.algo_config_from_record(rundir.read_run(run_dir))
    if not is_learned_sooper_run(config):
        raise UserError(
            f"run {str(run_dir)!r} is not a SOOPER run with learner=mbpo: an MPC learner plans every decision and "
            f"has no actor to export; deploy it with `saferl-deploy run {run_dir}`"
        )
    if config.shield not in RULES:
        raise UserError(
            f"run {str(run_dir)!r} has shield={config.shield!r}; the robot runs the shield rules {'/'.join(RULES)} only"
        )
    recovery = config.shield == "recovery"
    subtrees = (LEARNER_ACTOR, COST_Q_PARAMS, SHIELD_MARGIN) + ((MODEL,) if recovery else ())
    run, updated, template, rule = restore_shielded_run(run_dir, subtrees)
    episode_length = int(run.env.episode_length)
    lookahead = (
        recovery_lookahead(run.state[MODEL], updated, config.pessimism, rule.scale, config.shield_horizon)
        if recovery
        else None
    )
    constants = ShieldConstants(
        rule.kind,
        rule.budget,
        rule.scale,
        episode_length=episode_length,
        action_repeat=template.action_repeat,
        margin=float(run.state[SHIELD_MARGIN]) if recovery else 0.0,
    )
    info = {
        "algo": config.method,
        "learner": "mbpo",
        "env_name": run.record.env,
        "run_dir": str(run.record.path),
        "prior": str(config.prior),
        "pessimism": float(config.pessimism),
        "shield_horizon": int(config.shield_horizon),
    }
    return export_shielded_onnx(
        out_dir,
        _learner_apply(updated),  # the actor network and normaliser (the cost critic is not used)
        run.state[LEARNER_ACTOR],
        updated,
        constants,
        template.observation_size,
        template.action_size,
        lookahead=lookahead,
        info=info,
    )


def _learner_apply(prior: Any) -> Any:
    """`apply(actor_params, obs) -> action`: the learner's deterministic action, the prior's actor network (and
    observation normaliser) with the learner's parameters."""
    return lambda actor_params, obs: prior.replace(policy_params=actor_params).action(obs)
