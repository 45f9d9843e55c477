"""Restore a run's last training state: what policy loaders (`Algorithm.load_policy`) build policies from."""

from __future__ import annotations

import inspect
import pathlib
from typing import Any, Callable, NamedTuple

import jax

import envs
from saferl.config import from_dict
from saferl.errors import UserError
from saferl.training import rundir
from saferl.training.checkpoints import Checkpoints


class RestoredRun(NamedTuple):
    record: rundir.RunRecord
    env_config: Any  # the env's frozen config
    algo_config: Any  # the algorithm's frozen config
    env: Any  # the env the run trained on (its training world's shift applied), unwrapped
    state: Any  # the last checkpoint's training state

    @property
    def training_env(self) -> Any:
        """The run's `envs.TrainingEnvConfig`."""
        return training_env_from_record(self.record)


def env_config_from_record(record: rundir.RunRecord) -> Any:
    """The run's env config (`UserError` if its env is not registered here)."""
    if record.env not in envs.names():
        raise UserError(f"run {record.path} uses env '{record.env}', which is not registered here")
    return from_dict(type(envs.default_config(record.env)), record.env_config)


def algo_config_from_record(record: rundir.RunRecord) -> Any:
    """The run's algorithm config (`UserError` for an unknown algorithm)."""
    from saferl import registry

    return from_dict(registry.get(record.algo).config_cls, record.algo_config)


def training_env_from_record(record: rundir.RunRecord) -> Any:
    """The run's `envs.TrainingEnvConfig` (the nominal world for runs that recorded none)."""
    return from_dict(envs.TrainingEnvConfig, record.training_env)


def restore_run_state(run_dir: pathlib.Path | str, make_init: Callable[..., Callable[[jax.Array], Any]]
                      ) -> RestoredRun:
    """The run in `run_dir` and its last training state.

    `make_init(algo_config, env[, training_env]) -> init(key)` gives the state structure to restore into
    (called with the run's training world when it takes three arguments: a randomised world keeps the
    per-episode physics in the env states). `UserError` if the run dir is unusable.
    """
    record = rundir.read_run(run_dir)
    env_config, algo_config = env_config_from_record(record), algo_config_from_record(record)
    world = training_env_from_record(record)
    env = envs.make_training_env(record.env, env_config, world)
    takes_world = len(inspect.signature(make_init).parameters) >= 3
    init = make_init(algo_config, env, world) if takes_world else make_init(algo_config, env)
    target = jax.eval_shape(init, jax.random.PRNGKey(0))
    checkpoints = Checkpoints(record.path / "checkpoints")
    try:
        state, _ = checkpoints.restore(rundir.checkpoint_steps(record.path)[-1], target)
    finally:
        checkpoints.close()
    return RestoredRun(record, env_config, algo_config, env, state)
