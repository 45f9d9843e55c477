"""Trained policies: `load_policy(run_dir)` gives the `Policy` of any run (dispatch on its algorithm through
`saferl.registry`); `episode` is the one loop that executes a policy (collection, eval, render, robot).

    from saferl.policies import load_policy
    policy = load_policy("runs/ppo-safe_cartpole-20261125-120000")
    carry = policy.init_carry()                              # at the start of each episode
    action, carry = policy.act(carry, obs, key)              # hold it for policy.action_repeat env steps
    carry = observe_cost(carry, state.info["cost"])          # after every env step
"""

from __future__ import annotations

import pathlib

from saferl.policies.policy import (
    Policy,
    PolicyCarry,
    PolicyLoader,
    observe_cost,
    stateless,
    stateless_carry,
    uniform_random_policy,
)
from saferl.policies.run_record import read_algo


def load_policy(run_dir: pathlib.Path | str, task: str | None = None) -> Policy:
    """The `Policy` of the run in `run_dir` (last checkpoint); `UserError` if the run dir is unusable.

    With `task` (a name from the env's `tasks()`), a policy that plans zero-shot for that task on the run's
    learned model (model-based runs only: `UserError` for others and for an unknown task name)."""
    from envs.tasks import TaskError
    from saferl import registry
    from saferl.errors import UserError

    algorithm = registry.get(read_algo(run_dir))
    if task is None:
        loader: PolicyLoader = algorithm.load_policy
        return loader(pathlib.Path(run_dir))
    if algorithm.load_task_policy is None:
        planners = [name for name in registry.names() if registry.get(name).load_task_policy is not None]
        raise UserError(
            f"--task needs a run with a learned model to plan on; '{algorithm.name}' has none "
            f"(model-based algorithms: {', '.join(planners)})"
        )
    try:
        return algorithm.load_task_policy(pathlib.Path(run_dir), task)
    except TaskError as err:
        raise UserError(str(err)) from None


__all__ = [
    "Policy",
    "PolicyCarry",
    "PolicyLoader",
    "load_policy",
    "observe_cost",
    "read_algo",
    "stateless",
    "stateless_carry",
    "uniform_random_policy",
]
