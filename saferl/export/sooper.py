"""`saferl export RUN --format onnx --out DIR` of a SOOPER-family run with a learned actor (`learner=mbpo`): the
actor of its last checkpoint behind the run's shield, as a shielded on-board policy (`saferl.export.shielded`):
the prior's actor, the prior's cost critic as the run updated it, the shield's budget and scale, and for the
recovery rule its lookahead through the run's ensemble with the run's margin — what `saferl.policies.load_policy`
executes (`saferl.agents.sooper.policy`), without JAX on the robot.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp

from saferl.errors import UserError
from saferl.export.shielded import RULES, ShieldConstants, export_shielded_onnx


def is_learned_sooper_run(config: Any) -> bool:
    """Whether a run's algo config is a SOOPER-family config with a learned actor (`learner=mbpo`)."""
    return hasattr(config, "shield") and getattr(config, "learner", "mpc") == "mbpo"


def export_sooper_run(run_dir: str | pathlib.Path, out_dir: str | pathlib.Path) -> pathlib.Path:
    """Export the `learner=mbpo` SOOPER run at `run_dir` (its last checkpoint) to `out_dir`; returns the manifest.

    UserError for an MPC learner (no actor: it plans every decision), a shield the robot cannot run
    (`advantage`, `none`), or a run directory that cannot be restored.
    """
    from saferl.agents.pets.policy import MODEL, model_shapes
    from saferl.agents.sooper.config import episode_budget
    from saferl.agents.sooper.planner import recovery_lookahead, shield_rule
    from saferl.agents.sooper.policy import COST_Q_PARAMS, LEARNER_ACTOR, SHIELD_MARGIN
    from saferl.agents.sooper.prior import check_prior_fits, load_prior
    from saferl.training import restore

    run = restore.load_run(run_dir)
    config, env = run.algo_config, run.env
    if not is_learned_sooper_run(config):
        raise UserError(
            f"run {str(run_dir)!r} is not a SOOPER run with learner=mbpo: an MPC learner plans every decision and "
            f"has no actor to export; deploy it with `saferl-deploy run {run_dir}`"
        )
    if config.shield not in RULES:
        raise UserError(
            f"run {str(run_dir)!r} has shield={config.shield!r}; the robot runs the shield rules {'/'.join(RULES)} only"
        )
    prior, template = load_prior(config.prior)
    check_prior_fits(template, env, run.record.env)
    recovery = config.shield == "recovery"
    targets: dict[str, Any] = {
        LEARNER_ACTOR: jax.eval_shape(lambda: prior.policy_params),
        COST_Q_PARAMS: jax.eval_shape(lambda: prior.cost_q_params),
        SHIELD_MARGIN: jax.ShapeDtypeStruct((), jnp.float32),
    }
    if recovery:
        targets[MODEL] = model_shapes(config.model, env)
    run = restore.restore_subtrees(run, targets)
    episode_length = int(env.episode_length)
    rule = shield_rule(config, episode_budget(config, env.cost_budget), episode_length, prior.cost_discounting)
    updated = prior.replace(cost_q_params=run.state[COST_Q_PARAMS])
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
        _learner_apply(prior),
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
