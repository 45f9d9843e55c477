"""Run directories: `runs/<algo>-<env>-<YYYYmmdd-HHMMSS>/` with config.json, metrics.csv, tensorboard/,
checkpoints/ and plots/; creating them, writing the resolved config and validating existing ones.

Nothing already in a run directory is deleted; files are replaced only atomically (write + rename). The one
directory removed is a new run's that its own command created and failed in before writing anything but its
config.json (`discard_unused_run_dir`). In a multi-process run (`saferl.training.distributed`) only process 0
creates and writes; the others get its path.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import pathlib
import platform
from typing import Any

from saferl.errors import UserError
from saferl.policies.run_record import CONFIG_FILE, read_config  # the one reader of a run's config.json
from saferl.training import distributed

REQUIRED_KEYS = ("algo", "env", "env_config", "algo_config", "steps", "seed")
_VERSIONED = ("saferl", "jax", "jaxlib", "brax", "flax", "optax", "orbax-checkpoint", "mujoco", "mujoco-mjx")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a run's numbers depend on (plus Python)."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """The contents of a run's config.json (configs as plain dicts)."""

    path: pathlib.Path
    algo: str
    env: str
    env_config: dict[str, Any]
    algo_config: dict[str, Any]
    steps: int
    seed: int
    data_dir: str | None = None
    # the training world (`envs.TrainingEnvConfig` as a dict: randomisation, obs noise, action delay, shift);
    # {} = the nominal env (runs written before the world was recorded read as that)
    training_env: dict[str, Any] = dataclasses.field(default_factory=dict)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record.pop("path")
        return record


def new_run_dir(out: pathlib.Path, algo: str, env: str, now: datetime.datetime | None = None) -> pathlib.Path:
    """Create and return a fresh `out/<algo>-<env>-<YYYYmmdd-HHMMSS>[-k]/` (never an existing one).

    Multi-process: process 0 creates it and every process returns its path (a collective: all must call)."""
    path = _create_run_dir(out, algo, env, now) if distributed.is_primary() else None
    return pathlib.Path(distributed.broadcast_text(None if path is None else str(path)))


def _create_run_dir(out: pathlib.Path, algo: str, env: str, now: datetime.datetime | None) -> pathlib.Path:
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create output directory {out}: {err.strerror}") from None
    for k in range(1000):
        path = out / (f"{algo}-{env}-{stamp}" + (f"-{k}" if k else ""))
        try:
            path.mkdir()
        except FileExistsError:
            continue
        (path / "plots").mkdir()
        return path
    raise UserError(f"cannot find a free run directory name under {out}")


def discard_unused_run_dir(path: pathlib.Path) -> bool:
    """Remove the run directory `path` if it holds nothing but what creating it made (config.json, empty plots/
    and checkpoints/): a new run whose trainer refused its input before the first write. Anything else in it
    and it stays. Whether it was removed."""
    made = {CONFIG_FILE: False, "plots": True, "checkpoints": True}  # name: is an (empty) directory
    try:
        entries = list(path.iterdir())
        if any(
            entry.name not in made
            or entry.is_dir() != made[entry.name]
            or (entry.is_dir() and any(entry.iterdir()))
            or entry.is_symlink()
            for entry in entries
        ):
            return False
        for entry in entries:
            entry.rmdir() if entry.is_dir() else entry.unlink()
        path.rmdir()
    except OSError:
        return False
    return True


def write_json_atomic(path: pathlib.Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def write_config(record: RunRecord) -> None:
    """Write the run's config.json (process 0 only in a multi-process run)."""
    if distributed.is_primary():
        write_json_atomic(record.path / CONFIG_FILE, record.to_json())


def read_run(path: pathlib.Path | str, need_checkpoint: bool = True) -> RunRecord:
    """Validate a run directory and return its record; anything missing or corrupt raises `UserError`."""
    path = pathlib.Path(path)
    config_path, data = read_config(path)
    if not isinstance(data, dict) or any(key not in data for key in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(data, dict) or k not in data]
        raise UserError(f"{config_path} is corrupt: missing keys {missing}")
    if not isinstance(data["env_config"], dict) or not isinstance(data["algo_config"], dict):
        raise UserError(f"{config_path} is corrupt: env_config and algo_config must be objects")
    if not isinstance(data.get("training_env", {}), dict):
        raise UserError(f"{config_path} is corrupt: training_env must be an object")
    if need_checkpoint and not checkpoint_steps(path):
        raise UserError(f"run directory {path} has no checkpoint (checkpoints/ is missing or empty)")
    try:
        return RunRecord(
            path=path,
            algo=str(data["algo"]),
            env=str(data["env"]),
            env_config=data["env_config"],
            algo_config=data["algo_config"],
            steps=int(data["steps"]),
            seed=int(data["seed"]),
            data_dir=data.get("data_dir"),
            training_env=dict(data.get("training_env", {})),
            versions=dict(data.get("versions", {})),
        )
    except (TypeError, ValueError) as err:
        raise UserError(f"{config_path} is corrupt: {err}") from None


def checkpoint_steps(path: pathlib.Path) -> list[int]:
    """Steps of the checkpoints present in `path/checkpoints/` (orbax step directories)."""
    directory = path / "checkpoints"
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())
