"""Read a run back: its record, configs and env (`load_run`), and of its last checkpoint either the leaves a
policy needs (`restore_subtrees`: policy loaders, `Algorithm.load_policy`, rebuild a policy from those and the
networks its config gives, as brax loads a policy from network config + params; no trainer is built) or the
whole training state (`restore_run_state`, into the structure of a trainer's initial state)."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax

import envs
from saferl.config import from_dict
from saferl.errors import UserError
from saferl.training import rundir
from saferl.training.checkpoints import Checkpoints

if TYPE_CHECKING:
    from envs.protocol import SafeEnv


class RestoredRun(NamedTuple):
    record: rundir.RunRecord
    env_config: Any  # the env's frozen config
    algo_config: Any  # the algorithm's frozen config
    env: SafeEnv  # the env the run trained on (its training world's shift applied), unwrapped
    state: Any = None  # what was restored of the last checkpoint (None: nothing yet)

    @property
    def training_env(self) -> Any:
        """The run's `envs.TrainingEnvConfig`."""
        return training_env_from_record(self.record)


def env_config_from_record(record: rundir.RunRecord) -> Any:
    """The run's env config (`UserError` if its env is not registered here)."""
    if record.env not in envs.names():
        raise UserError(f"run {record.path} uses env '{record.env}', which is not registered here")
    return from_dict(type(envs.default_config(record.env)), record.env_config)


# RolloutConfig fields renamed when optimism/pessimism became the one imagined step's (λ·σ of the next state, not of
# the reward/cost head): runs recorded before carry them as 0 (nothing set them), the same rollout under the new names
_RENAMED_AT_ZERO = {"reward_bonus": "optimism", "cost_penalty": "pessimism"}


def _renamed(data: Any) -> Any:
    if not isinstance(data, dict):
        return data
    return {_RENAMED_AT_ZERO.get(k, k) if v == 0 else k: _renamed(v) for k, v in data.items()}


def algo_config_from_record(record: rundir.RunRecord) -> Any:
    """The run's algorithm config (`UserError` for an unknown algorithm)."""
    from saferl import registry

    return from_dict(registry.get(record.algo).config_cls, _renamed(record.algo_config))


def training_env_from_record(record: rundir.RunRecord) -> Any:
    """The run's `envs.TrainingEnvConfig` (the nominal world for runs that recorded none)."""
    return from_dict(envs.TrainingEnvConfig, record.training_env)


def load_run(run_dir: pathlib.Path | str) -> RestoredRun:
    """The run in `run_dir` with its configs and env, nothing restored yet; `UserError` if it is unusable
    (no config, a corrupt one, no checkpoint, an env or algorithm not registered here)."""
    record = rundir.read_run(run_dir)
    env_config, algo_config = env_config_from_record(record), algo_config_from_record(record)
    env = envs.make_training_env(record.env, env_config, training_env_from_record(record))
    return RestoredRun(record, env_config, algo_config, env)


def _last_checkpoint(run: RestoredRun, restore: Callable[[Checkpoints, int], Any]) -> Any:
    checkpoints = Checkpoints(run.record.path / "checkpoints")
    try:
        return restore(checkpoints, rundir.checkpoint_steps(run.record.path)[-1])
    finally:
        checkpoints.close()


def restore_subtrees(run: RestoredRun, targets: dict[str, Any]) -> RestoredRun:
    """`run` with `state` = {prefix: subtree} of its last checkpoint, only those leaves read
    (`Checkpoints.restore_subtrees`): `targets` maps key paths of the training state (e.g. ".normalizer",
    ".params.policy") to trees of their shapes (e.g. `jax.eval_shape` of a network's `init`)."""
    return run._replace(state=_last_checkpoint(run, lambda ckpt, step: ckpt.restore_subtrees(step, targets)))


def restore_run_state(
    run_dir: pathlib.Path | str, make_init: Callable[[Any, Any, Any], Callable[[jax.Array], Any]]
) -> RestoredRun:
    """The run in `run_dir` and its last training state, whole: `make_init(algo_config, env, training_env) ->
    init(key)` gives the state structure to restore into (a trainer's; a randomised world keeps the per-episode
    physics in the env states). `UserError` if the run dir is unusable."""
    run = load_run(run_dir)
    target = jax.eval_shape(make_init(run.algo_config, run.env, run.training_env), jax.random.PRNGKey(0))
    return run._replace(state=_last_checkpoint(run, lambda ckpt, step: ckpt.restore(step, target)[0]))
