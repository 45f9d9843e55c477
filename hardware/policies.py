"""Load the policy of a `saferl train` run for deployment (policy side; may use JAX).

One registry: `saferl.policies.load_policy` dispatches on the run's algorithm through
`saferl.registry` (register new algorithms there). A policy is a `saferl.policies.Policy`: stateful
across an episode (`init_carry`, `act(carry, obs, key) -> (action, carry)`), each action held for
`action_repeat` robot steps; `hardware.runner.Actor` executes it. Only saferl's checkpoints/policies are
imported here, never training code.
"""

from __future__ import annotations

import pathlib
from typing import Any

from saferl.errors import UserError


def load_policy(run_dir: str | pathlib.Path) -> Any:
    """The `Policy` of a run directory; `UserError` (one line) for anything that makes it unusable."""
    from saferl.policies import load_policy as saferl_load_policy
    from saferl.policies import read_algo

    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory '{run_dir}' not found; give the path of a `saferl train` run")
    algo = read_algo(run_dir)
    try:
        return saferl_load_policy(run_dir)
    except UserError:
        raise
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise UserError(f"cannot load the policy of '{run_dir}' (algorithm '{algo}'): {err}") from None
