"""SOOPER ("Safe Exploration via Policy Priors", ICLR 2026): learn on the real system from a conservative prior,
planning optimistically on the model's reward and pessimistically on its cost, behind a shield that falls back to
the prior wherever the learner could break the episode's cost budget. Registers `sooper` and its baselines
`sailr`, `crpo`, `primal_dual`, `mbrl` — the same learner with other settings (`config.py`).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax

from saferl import registry
from saferl.agents.sooper.config import (METHOD_CONFIGS, CRPOConfig, MBRLConfig, PrimalDualConfig, SailrConfig,
                                         SooperConfig)
from saferl.agents.sooper.shield import (ShieldConfig, ShieldMemory, ShieldTermination, shield_fires,
                                         shield_scale, shielded_action, shielded_policy, terminal_value)


def load_policy(run_dir: pathlib.Path | str) -> Any:
    """`Algorithm.load_policy`: the run's executed policy — MPC on its last ensemble around the prior, behind
    the shield (with the run's updated cost critic) for the methods that have one."""
    from saferl.agents.sooper.train import restore_agent

    agent, run = restore_agent(run_dir)
    state = run.state
    policy = agent.policy(state.model, state.cost_q_params, state.dual, state.shield_margin)
    return dataclasses.replace(policy, act=jax.jit(policy.act), env_name=run.record.env, env_config=run.env_config,
                               cost_budget=agent.budget, run_dir=run.record.path, training_env=run.training_env)


def _train(ctx: Any) -> Any:
    from saferl.agents.sooper.train import train

    return train(ctx)


def _check_config(config: Any, env: Any, env_name: str) -> None:
    from saferl.agents.sooper.train import check_config

    check_config(config, env, env_name)


_DESCRIPTIONS = {
    "sooper": "SOOPER: MPC around a prior, optimistic reward, pessimistic cost, shield (--set prior=RUN_DIR)",
    "sailr": "SAILR-like baseline: advantage-filter shield, no optimism (same prior, model, planner)",
    "crpo": "CRPO-like baseline: return while the predicted cost fits the budget, else cost (no shield)",
    "primal_dual": "primal-dual baseline: augmented Lagrangian on the predicted episode cost (no shield)",
    "mbrl": "unconstrained model-based RL around the prior (reference; no shield, no constraint)",
}

for _name, _config_cls in METHOD_CONFIGS.items():
    registry.register(registry.Algorithm(name=_name, config_cls=_config_cls, train=_train, load_policy=load_policy,
                                         description=_DESCRIPTIONS[_name],
                                         check_config=_check_config))

__all__ = ["CRPOConfig", "MBRLConfig", "PrimalDualConfig", "SailrConfig", "ShieldConfig", "ShieldMemory",
           "ShieldTermination", "SooperConfig", "load_policy", "shield_fires", "shield_scale", "shielded_action",
           "shielded_policy", "terminal_value"]
