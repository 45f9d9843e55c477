"""Policy loaders for deployment, keyed by the algorithm that trained the run (policy side; may use JAX).

The default loader is `saferl.policies.load_policy`; `register_loader("myalgo", fn)` adds others. A policy
has `act(obs [obs_dim], key) -> action [act_dim]`, `observation_size`, `action_size`, `env_name`,
`cost_budget`, `algo` and optionally `action_repeat` (robot steps to hold each action; MPC policies). Only checkpoints/policies are imported from saferl, never training code.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Callable

from saferl.errors import UserError

_LOADERS: dict[str, Callable[[pathlib.Path], Any]] = {}


def register_loader(algo: str, loader: Callable[[pathlib.Path], Any]) -> None:
    _LOADERS[algo] = loader


def run_algorithm(run_dir: pathlib.Path) -> str:
    """The algorithm of a run: config.json's "algo" field, else the run dir name `<algo>-<env>-<time>`."""
    config_path = run_dir / "config.json"
    if config_path.exists():
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{config_path} is not valid JSON: {err}") from None
        for key in ("algo", "algorithm"):
            if isinstance(config.get(key), str):
                return config[key]
    return run_dir.name.split("-", 1)[0]


def load_policy(run_dir: str | pathlib.Path) -> Any:
    """Load the policy of a run directory through the loader registered for its algorithm."""
    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory '{run_dir}' not found; give the path of a `saferl train` run")
    algo = run_algorithm(run_dir)
    loader = _LOADERS.get(algo)
    if loader is None:
        try:
            from saferl.policies import load_policy as saferl_load_policy
        except ImportError as err:
            raise UserError(f"no policy loader for algorithm '{algo}' (saferl.policies unavailable: {err}); "
                            f"registered: {', '.join(sorted(_LOADERS)) or 'none'}") from None
        loader = saferl_load_policy
    try:
        return loader(run_dir)
    except UserError:
        raise
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise UserError(f"cannot load the policy of '{run_dir}' (algorithm '{algo}'): {err}") from None
