"""The policies of a SoftAE run: zero-shot planners on the model it learned by exploring.

`load_policy(run_dir, task=NAME)` plans for the reward of `env.tasks()[NAME]`, a task never used while exploring
(`saferl eval RUN --task NAME`); without a task it plans for the env's own reward as the model's reward head
predicts it. Both are MPC with iCEM on `task_rollout` (TS∞), the cost budget handled as
`task_cost_constraint` says (by default the exploration's `cost_constraint`).
"""

from __future__ import annotations

import dataclasses
import pathlib

from envs.tasks import get_task
from saferl.policies.policy import Policy


def load_policy(run_dir: pathlib.Path | str, task: str | None = None) -> Policy:
    """`Algorithm.load_policy` / `load_task_policy`: restore the run's latest model and plan on it."""
    from saferl.agents.softae.agent import make_agent
    from saferl.training.restore import restore_run_state

    run = restore_run_state(run_dir, lambda config, env, world: make_agent(config, env, world).init)
    agent = make_agent(run.algo_config, run.env, run.training_env)
    chosen = None if task is None else get_task(run.env, task)
    policy = agent.task_policy(run.state.model, chosen)
    return dataclasses.replace(policy, env_name=run.record.env, run_dir=run.record.path, env_config=run.env_config,
                               training_env=run.training_env)
