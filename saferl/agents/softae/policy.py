"""The policies of a SoftAE run: zero-shot planners on the model it learned by exploring.

`load_policy(run_dir, task=NAME)` plans for the reward of `env.tasks()[NAME]`, a task never used while exploring
(`saferl eval RUN --task NAME`); without a task it plans for the env's own reward as the model's reward head
predicts it. Both are MPC with iCEM on `task_rollout` (TS∞), the cost budget handled as
`task_cost_constraint` says (by default the exploration's `cost_constraint`). The model is the ensemble of the
run's last checkpoint, read alone (no trainer or agent is built).
"""

from __future__ import annotations

import dataclasses
import pathlib

from envs.tasks import get_task
from saferl.agents.pets.policy import MODEL, model_shapes, mpc_policy
from saferl.policies.policy import Policy


def load_policy(run_dir: pathlib.Path | str, task: str | None = None) -> Policy:
    """`Algorithm.load_policy` / `load_task_policy`: restore the run's latest model and plan on it."""
    from saferl.training import restore

    run = restore.load_run(run_dir)
    config = run.algo_config
    run = restore.restore_subtrees(run, {MODEL: model_shapes(config.model, run.env)})
    chosen = None if task is None else get_task(run.env, task)
    policy = mpc_policy(
        config.task_planning(), run.state[MODEL], run.env, run.record.env, run.record.path, task=chosen, algo="softae"
    )
    return dataclasses.replace(policy, env_config=run.env_config, training_env=run.training_env)
