"""`TrainContext`: everything an algorithm's `train(ctx)` needs, built by `saferl.training.run`.

An algorithm reads the env and configs from it, logs with `ctx.logger.log(env_steps, metrics)`, saves
with `ctx.checkpoints.save(env_steps, state, extra)`, resumes with `ctx.resume(target)` and checks
values with `ctx.check_finite(name, tree, env_steps)` and reads `--data` recordings with
`ctx.recorded_transitions()`. Step counters are always env steps.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import jax
import numpy as np

from saferl.errors import NonFiniteError, UserError
from saferl.training.checkpoints import Checkpoints
from saferl.training.logger import MetricsLogger
from saferl.training.progress import ProgressDisplay

if TYPE_CHECKING:  # typing only: the env seam's Protocol
    from envs.protocol import SafeEnv
    from envs.training_env import TrainingEnvConfig


def nonfinite_leaves(tree: Any) -> list[str]:
    """Key paths (e.g. `params/policy/dense_0/kernel`) of the leaves of `tree` holding NaN or ±Inf."""
    bad = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        array = np.asarray(leaf)
        if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
            bad.append(jax.tree_util.keystr(path, simple=True, separator="/"))
    return bad


def check_finite(name: str, tree: Any, step: int) -> None:
    """Raise `NonFiniteError(quantity, step)` if any float leaf of `tree` is NaN/Inf.

    `quantity` is `name` plus the first offending key path, e.g. `"losses/policy_loss"`.
    Call it on losses and parameters between jitted chunks, before saving a checkpoint.
    """
    bad = nonfinite_leaves(tree)
    if bad:
        quantity = f"{name}/{bad[0]}" if bad[0] else name
        detail = f"{len(bad)} non-finite entries" + (f" (also {', '.join(bad[1:4])})" if len(bad) > 1 else "")
        raise NonFiniteError(quantity, int(step), detail)


@dataclasses.dataclass(frozen=True)
class TrainContext:
    """One training job. Built by `saferl.training.run.start_run` (or by tests directly)."""

    algo: str  # algorithm name in the registry, e.g. "ppo"
    env_name: str  # env name in `envs.names()`
    # the built env (`envs.make_training_env(env_name, env_config, training_env)`: shift applied), unwrapped
    env: SafeEnv
    env_config: Any  # the env's frozen config
    algo_config: Any  # the algorithm's frozen config
    total_steps: int  # env steps to train for in total (including those before a resume)
    seed: int  # master seed; derive every key from jax.random.PRNGKey(seed)
    run_dir: pathlib.Path  # runs/<algo>-<env>-<time>/
    logger: MetricsLogger  # log(env_steps, metrics) -> metrics.csv + TensorBoard + progress
    checkpoints: Checkpoints  # save(step, state, extra) / latest_step() / restore(step, target)
    progress: ProgressDisplay  # updated by the logger; algorithms rarely touch it
    training_env: TrainingEnvConfig | None = (
        None  # `envs.TrainingEnvConfig`: randomisation, obs noise, action delay, shift (None: nominal)
    )
    resume_step: int | None = None  # env steps of the checkpoint to resume from (None: fresh start)
    data_dir: pathlib.Path | None = None  # recorded transitions given with --data (None: none)

    @property
    def resuming(self) -> bool:
        return self.resume_step is not None

    def resume(self, target: Any) -> tuple[Any, dict[str, Any]] | None:
        """The state to resume from, restored into the structure of `target`, and its extra dict.

        None on a fresh start. `target` is a freshly initialised state of the same config. Validate and restore
        first, write after: the run's writes held back by `run.open_run` (config.json's new steps, metrics.csv cut
        back to the checkpoint, a new TensorBoard file) are made once the state is restored. A checkpoint that does
        not fit `target` (config.json edited since) is a `UserError` naming the run, and nothing was changed.
        """
        if self.resume_step is None:
            return None
        try:
            restored = self.checkpoints.restore(self.resume_step, target)
        except UserError as err:
            untouched = "" if self.logger.opened else "; nothing was changed"
            raise UserError(f"--resume {self.run_dir}: {err}{untouched}") from err
        self.logger.open()
        return restored

    def recorded_transitions(self, action_repeat: int = 1) -> dict[str, np.ndarray]:
        """The `--data` recordings as float32 transition arrays [N, ...] fitting this env (`UserError` if they
        don't or there is no --data); `action_repeat` > 1 gives transitions over that many held steps."""
        from saferl.data.recordings import load_training_data

        if self.data_dir is None:
            raise UserError(f"{self.algo}: no recorded data given (--data DIR)")
        from saferl.data.observations import state_size

        return load_training_data(
            self.data_dir,
            state_size(self.env.observation_size),
            int(self.env.action_size),
            f"env '{self.env_name}'",
            action_repeat,
        )

    def check_finite(self, name: str, tree: Any, step: int) -> None:
        """See `check_finite`: raise `NonFiniteError` naming the quantity and step."""
        check_finite(name, tree, step)


class Trainer(Protocol):
    """An algorithm's `train` (`saferl.registry.Algorithm.train`): run the whole job against `ctx` (init or resume,
    the training loop, logging, checkpoints, NaN checks) and return the final scalar metrics."""

    def __call__(self, ctx: TrainContext, /) -> Mapping[str, float]: ...
