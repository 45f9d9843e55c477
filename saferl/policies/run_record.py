"""What a policy loader needs to know about a run directory before it restores anything: its algorithm.

The one reader of a run's `config.json` (written by `saferl train`; `saferl.training.rundir.read_run`
validates the rest of it), so that deployment code can find a run's loader without importing the training
package.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from saferl.errors import UserError

CONFIG_FILE = "config.json"


def read_config(run_dir: pathlib.Path | str) -> tuple[pathlib.Path, Any]:
    """(path of `run_dir/config.json`, its decoded JSON); `UserError` if the directory or the file is missing
    or the file is not JSON."""
    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist")
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise UserError(f"{run_dir} is not a run directory: {CONFIG_FILE} is missing")
    try:
        return config_path, json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{config_path} is corrupt (not valid JSON: {err})") from None


def read_algo(run_dir: pathlib.Path | str) -> str:
    """The algorithm name recorded in `run_dir/config.json`; `UserError` if the run dir is unusable."""
    config_path, record = read_config(run_dir)
    algo = record.get("algo") if isinstance(record, dict) else None
    if not isinstance(algo, str) or not algo:
        raise UserError(f"{config_path} is corrupt: missing keys ['algo']")
    return algo
