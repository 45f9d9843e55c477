"""Start or resume a training run: resolve configs, make the run directory, build the `TrainContext`,
call the algorithm's `train(ctx)` and always finish with plots (also on errors and Ctrl-C). In a multi-process run
(`saferl.training.distributed`) every process trains; only process 0 creates the run directory and writes
logs, plots and checkpoints. The pieces (`prepare_new_run`, `create_run`, `open_run`, `close_run`) also serve
`saferl.training.seeds`, which trains many seeds' runs together.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import envs
from saferl import registry
from saferl.config import apply_overrides, field_names, to_dict
from saferl.errors import UserError
from saferl.training import distributed, rundir
from saferl.training.checkpoints import Checkpoints, one_line
from saferl.training.context import TrainContext, Trainer
from saferl.training.logger import LoggerChoice, MetricsLogger
from saferl.training.plots import write_plots
from saferl.training.progress import ProgressDisplay
from saferl.training.restore import algo_config_from_record, env_config_from_record, training_env_from_record

if TYPE_CHECKING:
    from envs.protocol import SafeEnv

DEFAULT_STEPS = 100_000


@dataclasses.dataclass(frozen=True)
class RunResult:
    run_dir: pathlib.Path
    metrics: dict[str, Any]  # what the algorithm's train(ctx) returned
    plots: list[pathlib.Path]


def split_env_overrides(env_name: str, overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`--set-env` pairs split into (env config overrides, training-world overrides): keys whose first part
    is a field of `envs.TrainingEnvConfig` (randomization, obs_noise_std, action_delay, shift) go to the world."""
    world_fields = set(field_names(envs.TrainingEnvConfig))
    env_fields = set(field_names(envs.default_config(env_name)))
    clash = world_fields & env_fields
    if clash:  # an env whose config reuses a world key would be ambiguous
        raise UserError(f"env '{env_name}' config fields {sorted(clash)} clash with training-world keys")
    env_part = {k: v for k, v in overrides.items() if k.partition(".")[0] not in world_fields}
    world_part = {k: v for k, v in overrides.items() if k.partition(".")[0] in world_fields}
    return env_part, world_part


def resolve_world(env_name: str, overrides: Mapping[str, Any]) -> tuple[Any, Any]:
    """(env config, `envs.TrainingEnvConfig`) from `--set-env` pairs; UserError on an unknown env, key or
    value (the message lists the env's keys and the world's keys). Presets are checked by `build_training_env`."""
    if env_name not in envs.names():
        raise UserError(f"unknown env '{env_name}'; available: {', '.join(envs.names())}")
    env_part, world_part = split_env_overrides(env_name, overrides)
    try:
        env_config = apply_overrides(envs.default_config(env_name), env_part, where="env")
    except UserError as err:
        raise UserError(f"{err}; training-world keys: {', '.join(field_names(envs.TrainingEnvConfig))}") from None
    return env_config, apply_overrides(envs.TrainingEnvConfig(), world_part, where="training world")


def build_training_env(env_name: str, env_config: Any, world: Any) -> Any:
    """`envs.make_training_env`, with a shift the env can't take (unknown preset or body name) as a UserError."""
    try:
        return envs.make_training_env(env_name, env_config, world)
    except ValueError as err:  # envs.EnvError
        raise UserError(f"training world: {err}") from None


def _check_data_dir(data: pathlib.Path | str | None, env: SafeEnv, env_name: str) -> pathlib.Path | None:
    """The resolved `--data` directory after checking that its recordings load and fit the env's sizes."""
    if data is None:
        return None
    path = pathlib.Path(data)
    if not path.is_dir():
        raise UserError(f"--data {path}: no such directory")
    from saferl.data.observations import state_size
    from saferl.data.recordings import load_training_data

    # recordings hold flat observation vectors: the env's own, or the `state` part of dict observations (what
    # the model-based agents model; SAC refuses recordings for dict observations)
    load_training_data(path, state_size(env.observation_size), int(env.action_size), f"env '{env_name}'")
    return path.resolve()


@dataclasses.dataclass(frozen=True)
class NewRun:
    """The validated inputs of a new run, before any run directory exists (`prepare_new_run`)."""

    algo: str
    env_name: str
    env_config: Any  # the env's frozen config
    world: Any  # `envs.TrainingEnvConfig`
    algo_config: Any  # the algorithm's frozen config
    steps: int  # total env steps
    data_dir: pathlib.Path | None  # resolved --data directory
    env: SafeEnv  # the built training env (shift applied)


def prepare_new_run(
    algo: str,
    env_name: str,
    steps: int | None,
    overrides: Mapping[str, Any],
    env_overrides: Mapping[str, Any],
    data: pathlib.Path | str | None,
) -> NewRun:
    """Validate everything a new run needs (`UserError` naming the bad field) without creating anything."""
    algorithm = registry.get(algo)
    env_config, world = resolve_world(env_name, env_overrides)
    algo_config = apply_overrides(algorithm.config_cls(), overrides)
    steps = DEFAULT_STEPS if steps is None else steps
    if steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}")
    if data is not None and not algorithm.uses_recorded_data:
        users = [name for name in registry.names() if registry.get(name).uses_recorded_data]
        raise UserError(
            f"{algo} cannot use --data: {algorithm.recorded_data_refusal}; "
            f"algorithms that learn from recorded transitions: {', '.join(users)}"
        )
    env = build_training_env(env_name, env_config, world)
    constraint = getattr(algo_config, "constraint", None)
    if constraint is not None and constraint.enabled and not env.cost_budget > 0:
        raise UserError(
            f"constraint.kind={constraint.kind} needs an env with a cost budget; env '{env_name}' has "
            f"cost_budget {env.cost_budget:g} (give one with --set-env cost_budget=...)"
        )
    if algorithm.check_config is not None:
        algorithm.check_config(algo_config, env, env_name)
    data_dir = _check_data_dir(data, env, env_name)
    return NewRun(
        algo=algo,
        env_name=env_name,
        env_config=env_config,
        world=world,
        algo_config=algo_config,
        steps=int(steps),
        data_dir=data_dir,
        env=env,
    )


def create_run(new: NewRun, seed: int, out: pathlib.Path, label: str | None = None) -> rundir.RunRecord:
    """Create the run directory `out/<algo>-<label>-<time>/` (label: the env name by default) of `new` with
    seed `seed` and write its config.json."""
    path = rundir.new_run_dir(pathlib.Path(out), new.algo, label or new.env_name)
    record = rundir.RunRecord(
        path=path,
        algo=new.algo,
        env=new.env_name,
        env_config=to_dict(new.env_config),
        algo_config=to_dict(new.algo_config),
        steps=new.steps,
        seed=int(seed),
        data_dir=str(new.data_dir) if new.data_dir else None,
        training_env=to_dict(new.world),
        versions=rundir.package_versions(),
    )
    rundir.write_config(record)
    return record


def _new_record(
    algo: str,
    env_name: str,
    steps: int | None,
    seed: int,
    overrides: Mapping[str, Any],
    env_overrides: Mapping[str, Any],
    out: pathlib.Path,
    data: pathlib.Path | str | None,
) -> tuple[rundir.RunRecord, Any, Any, Any]:
    """Validate everything, then create the run directory: (record, env config, algo config, env)."""
    new = prepare_new_run(algo, env_name, steps, overrides, env_overrides, data)
    return create_run(new, seed, out), new.env_config, new.algo_config, new.env


def _intact_newest_checkpoint(resume: pathlib.Path, run_dir: pathlib.Path, steps: int | None) -> int:
    """The newest checkpoint step of `run_dir`, read back whole before anything is written; a corrupt one is a
    one-line `UserError` (caused by orbax's error, the details) naming the newest intact older checkpoint, if
    any, and the command that resumes from it (nothing is resumed from it on its own: the user removes the
    corrupt one, so no training is silently redone)."""
    available = rundir.checkpoint_steps(run_dir)
    checkpoints = Checkpoints(run_dir / "checkpoints")
    try:
        error = checkpoints.verify_error(available[-1])
        if error is None:
            return available[-1]
        intact = next((step for step in reversed(available[:-1]) if checkpoints.verify(step) is None), None)
    finally:
        checkpoints.close()
    corrupt = run_dir / "checkpoints" / str(available[-1])
    if intact is None:
        older = "no older checkpoint is intact"
    else:
        again = ["saferl", "train", "--resume", str(resume)] + ([] if steps is None else ["--steps", str(steps)])
        older = (
            f"checkpoint {intact} is intact: to resume from step {intact}, delete the corrupt one and rerun: "
            f"`rm -r {shlex.quote(str(corrupt))} && {shlex.join(again)}`"
        )
    raise UserError(
        f"--resume {resume}: checkpoint {available[-1]} cannot be restored ({one_line(error)}); {older}; "
        "nothing was changed"
    ) from error


def _resumed_record(
    resume: pathlib.Path, algo: str | None, env_name: str | None, steps: int | None, changed: bool
) -> tuple[rundir.RunRecord, Any, Any, int]:
    """(record with the new `steps`, env config, algo config, the step to resume from) of the run `resume`, all
    validated and its newest checkpoint read back whole; writes nothing (`open_run` defers the new steps'
    config.json to the run's first write, after the checkpoint was restored into the trainer's state)."""
    record = rundir.read_run(resume)
    if algo is not None and algo != record.algo:
        raise UserError(f"--resume {resume}: the run is '{record.algo}', not '{algo}'")
    if env_name is not None and env_name != record.env:
        raise UserError(f"--resume {resume}: the run's env is '{record.env}', not '{env_name}'")
    if changed:
        raise UserError("--set/--set-env/--seed/--data cannot change a run being resumed; start a new run instead")
    env_config, algo_config = env_config_from_record(record), algo_config_from_record(record)
    if steps is not None and steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}")
    resume_step = _intact_newest_checkpoint(resume, record.path, steps)
    if steps is not None and steps != record.steps:
        record = dataclasses.replace(record, steps=int(steps))
    return record, env_config, algo_config, resume_step


def train(
    algo: str | None,
    env_name: str | None,
    *,
    steps: int | None = None,
    seed: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    env_overrides: Mapping[str, Any] | None = None,
    out: pathlib.Path | str = "runs",
    resume: pathlib.Path | str | None = None,
    data: pathlib.Path | str | None = None,
    progress: bool = True,
    tensorboard: LoggerChoice = True,
) -> RunResult:
    """Train `algo` on `env_name` for `steps` env steps in a new run dir under `out`, or resume `resume`.
    `tensorboard`: where the scalars of metrics.csv also go: True (TensorBoard), False (nowhere) or logger names
    (`saferl.training.logger.LOGGERS`, e.g. "wandb"; `saferl train --logger`)."""
    overrides, env_overrides = dict(overrides or {}), dict(env_overrides or {})
    resume_step, env = None, None
    if resume is not None:
        changed = bool(overrides or env_overrides or data is not None or seed is not None)
        record, env_config, algo_config, resume_step = _resumed_record(
            pathlib.Path(resume), algo, env_name, steps, changed
        )
    else:
        if algo is None or env_name is None:
            raise UserError("an algorithm and --env are required (or --resume RUN_DIR)")
        record, env_config, algo_config, env = _new_record(
            algo, env_name, steps, seed or 0, overrides, env_overrides, pathlib.Path(out), data
        )
    return _run(record, env_config, algo_config, resume_step, progress, tensorboard, env)


def open_run(
    record: rundir.RunRecord,
    env_config: Any,
    algo_config: Any,
    resume_step: int | None,
    progress: bool | ProgressDisplay,
    tensorboard: LoggerChoice,
    env: SafeEnv | None = None,
) -> TrainContext:
    """The `TrainContext` of a created or resumed run: logger (cut back to `resume_step`), checkpoints and
    progress display (a shared `ProgressDisplay` is used as given and left open). Close with `close_run`.

    Writes nothing yet: the run directory's writes (a resumed run's config.json with its new steps, metrics.csv
    cut back to the checkpoint, a new TensorBoard file) wait until `ctx.resume` has restored the state (or the
    first `logger.log` or `checkpoints.save`): a resume that cannot restore (a checkpoint that does not fit the
    run's config) leaves the run directory as it was."""
    world = training_env_from_record(record)
    env = envs.make_training_env(record.env, env_config, world) if env is None else env
    primary = distributed.is_primary()
    owed_config = resume_step is not None and primary and _saved_steps(record.path) != record.steps
    logger = MetricsLogger(  # only process 0 writes and logs
        record.path,
        loggers=tensorboard,
        write=primary,
        deferred=True,
        before_open=(lambda: rundir.write_config(record)) if owed_config else None,
    )
    if resume_step is not None:
        logger.truncate_after(resume_step)  # rows past the checkpoint get recomputed
    checkpoints = Checkpoints(record.path / "checkpoints", before_save=logger.open)
    if isinstance(progress, ProgressDisplay):
        display = progress
    else:
        display = ProgressDisplay(
            record.steps, f"{record.algo} {record.env}", enabled=progress and primary, start_steps=resume_step or 0
        )
        logger.add_listener(display.update)
    return TrainContext(
        algo=record.algo,
        env_name=record.env,
        env=env,
        env_config=env_config,
        training_env=world,
        algo_config=algo_config,
        total_steps=record.steps,
        seed=record.seed,
        run_dir=record.path,
        logger=logger,
        checkpoints=checkpoints,
        progress=display,
        resume_step=resume_step,
        data_dir=pathlib.Path(record.data_dir) if record.data_dir else None,
    )


def _saved_steps(path: pathlib.Path) -> int:
    """The `steps` of the run's config.json as it is on disk."""
    return rundir.read_run(path, need_checkpoint=False).steps


def close_run(ctx: TrainContext, close_display: bool = True) -> list[pathlib.Path]:
    """Close the run's display (unless shared), logger and checkpoints; write its plots (process 0) unless the
    run never wrote (a resume that failed before its first write leaves the plots as they were). The plots."""
    if close_display:
        ctx.progress.close()
    ctx.logger.close()
    ctx.checkpoints.close()
    if not distributed.is_primary() or not ctx.logger.opened:
        return []
    return write_plots(ctx.run_dir, ctx.env.cost_budget, f"{ctx.algo} on {ctx.env_name}")


def _run(
    record: rundir.RunRecord,
    env_config: Any,
    algo_config: Any,
    resume_step: int | None,
    progress: bool,
    tensorboard: LoggerChoice,
    env: SafeEnv | None = None,
) -> RunResult:
    algorithm = registry.get(record.algo)
    ctx = open_run(record, env_config, algo_config, resume_step, progress, tensorboard, env)
    plots: list[pathlib.Path] = []
    trainer: Trainer = algorithm.train
    unused = False  # a new run's directory that the trainer refused before its first write
    try:
        metrics = trainer(ctx)
    except UserError:  # bad input only the trainer finds (e.g. a SOOPER prior whose checkpoint cannot be read)
        unused = resume_step is None and not ctx.logger.opened
        raise
    finally:
        plots = close_run(ctx)
        if unused and distributed.is_primary():  # created by this call and never used: it goes again
            rundir.discard_unused_run_dir(record.path)
    return RunResult(run_dir=record.path, metrics=dict(metrics or {}), plots=plots)
