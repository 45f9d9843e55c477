"""Trained policies: `load_policy(run_dir)` gives the `Policy` of any run (dispatch on its algorithm).

    from saferl.policies import load_policy
    policy = load_policy("runs/ppo-safe_cartpole-20261125-120000")
    action = policy.act(obs, key)
"""

from __future__ import annotations

import pathlib

from saferl.policies.policy import Policy


def load_policy(run_dir: pathlib.Path | str) -> Policy:
    """The `Policy` of the run in `run_dir` (last checkpoint); `UserError` if the run dir is unusable."""
    from saferl.agents import registry
    from saferl.training import rundir

    record = rundir.read_run(run_dir)
    return registry.get(record.algo).load_policy(pathlib.Path(run_dir))


__all__ = ["Policy", "load_policy"]
