"""Orbax checkpoints of a run: a training-state pytree plus a small JSON record per step.

Restoring needs a target pytree of the same structure (e.g. a freshly initialised state, or its
`jax.eval_shape`): the saved leaves are put back into the target's tree structure, so optax states and
flax structs come back with their types. Leaves are stored flat (`leaf_00000`, ...) because orbax cannot
store zero-size arrays (MJX data has some); those are rebuilt as zeros from the target. The record keeps every
leaf's key path, so a part of the state can be read alone into a target of its own (`restore_subtrees`: a
policy's parameters, shaped by its network config, without the trainer's state). In a multi-process run
every process calls `save` (leaves split over processes are gathered first), process 0 alone writes, and
each process restores from the shared directory on its own.

Reading a corrupt or mismatched checkpoint fails with a one-line `UserError` whose cause is orbax's own error;
what orbax's asyncio tasks log meanwhile (for a mismatched leaf, its whole TensorStore spec: thousands of lines on
stderr) is held back and kept on that cause (`HELD_BACK_LOG`; the CLI writes both to a log file, `saferl.cli.main`).
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from saferl.errors import UserError
from saferl.training import distributed


class Checkpoints:
    """Save/restore training states under `run_dir/checkpoints/<step>/` (orbax `CheckpointManager`).

    `step` is the number of env steps so far (the same counter as `metrics.csv`). Saving is synchronous,
    so a checkpoint that `save` returned from is complete on disk.
    """

    def __init__(
        self,
        directory: pathlib.Path,
        max_to_keep: int | None = 3,
        before_save: Callable[[], None] | None = None,
    ):
        """`before_save`: called before every save (a run's deferred writes, `saferl.training.run.open_run`)."""
        self._directory = pathlib.Path(directory).resolve()
        self._write = distributed.is_primary()
        self._before_save = before_save
        multiprocessing = ocp.options.MultiprocessingOptions()
        if jax.process_count() > 1:  # each process is its own orbax group: no orbax barriers between them
            process = jax.process_index()
            multiprocessing = ocp.options.MultiprocessingOptions(primary_host=process, active_processes={process})
            if self._write:
                self._directory.mkdir(parents=True, exist_ok=True)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=jax.process_count() == 1,
            enable_async_checkpointing=False,
            multiprocessing_options=multiprocessing,
        )
        self._manager = ocp.CheckpointManager(self._directory, options=options, item_names=("state", "extra"))

    @property
    def directory(self) -> pathlib.Path:
        return self._directory

    def save(self, step: int, state: Any, extra: dict[str, Any] | None = None) -> None:
        """Write `state` (pytree of arrays) and `extra` (JSON-serialisable dict) as checkpoint `step`."""
        if self._before_save is not None:
            self._before_save()
        flat, paths = _flatten(state)
        if jax.process_count() > 1:
            flat = distributed.to_host(flat)  # collective: leaves split over processes made whole
        if not self._write:
            return
        extra = {**(extra or {}), "leaf_paths": paths}
        args = ocp.args.Composite(state=ocp.args.StandardSave(flat), extra=ocp.args.JsonSave(extra))
        self._manager.save(int(step), args=args, force=True)
        self._manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def restore(self, step: int, target: Any) -> tuple[Any, dict[str, Any]]:
        """(state shaped like `target`, extra dict) of checkpoint `step`; corrupt data raises `UserError`."""
        if step not in self._manager.all_steps():
            raise UserError(f"no checkpoint at step {step} in {self._directory}; available: {self.all_steps()}")
        abstract, paths = _flatten(jax.tree.map(ocp.utils.to_shape_dtype_struct, target))
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), extra=ocp.args.JsonRestore())
        where = self._directory / str(step)
        try:
            with _held_back_logs() as held:
                restored = self._manager.restore(int(step), args=args)
        except Exception as err:  # noqa: BLE001 — orbax raises many types for truncated/mismatched files
            raise UserError(
                f"checkpoint {where} cannot be restored (corrupt or from a different config): {one_line(err)}"
            ) from _noted(err, held)
        extra = dict(restored["extra"] or {})
        if extra.pop("leaf_paths", paths) != paths:
            raise UserError(f"checkpoint {where} holds a different state structure than this config expects")
        return _unflatten(target, restored["state"]), extra

    def restore_subtrees(self, step: int, targets: dict[str, Any]) -> dict[str, Any]:
        """{prefix: tree shaped like `targets[prefix]`} of checkpoint `step`, reading those leaves alone: the
        saved leaves whose key paths (the record's `leaf_paths`) are `prefix` + a key path of the target, e.g.
        ".params.policy" + "['params']['hidden_0']['kernel']". What a policy loader reads: its parameters,
        shaped by its network config, without the rest of the training state or a target for it. `UserError`
        for a corrupt checkpoint, a leaf it does not hold, or one of another shape or dtype."""
        where = self._directory / str(step)
        if step not in self._manager.all_steps():
            raise UserError(f"no checkpoint at step {step} in {self._directory}; available: {self.all_steps()}")
        wanted = {
            prefix + jax.tree_util.keystr(path): leaf
            for prefix, target in targets.items()
            for path, leaf in jax.tree_util.tree_flatten_with_path(target)[0]
        }
        try:
            with _held_back_logs() as held:
                extra = self._manager.restore(int(step), args=ocp.args.Composite(extra=ocp.args.JsonRestore()))["extra"]
                names = {path: _leaf_name(i) for i, path in enumerate((extra or {}).get("leaf_paths", []))}
                stored = [names[path] for path, leaf in wanted.items() if path in names and np.size(leaf) > 0]
                item = ocp.args.PyTreeRestore(
                    item=dict.fromkeys(stored, 0),
                    partial_restore=True,
                    restore_args=dict.fromkeys(stored, ocp.RestoreArgs(restore_type=np.ndarray)),
                )
                flat = self._manager.restore(int(step), args=ocp.args.Composite(state=item))["state"] if stored else {}
        except Exception as err:  # noqa: BLE001 — orbax/TensorStore raise many types, with multi-line messages
            raise UserError(f"checkpoint {where} cannot be restored (corrupt?): {one_line(err)}") from _noted(err, held)
        leaves = {path: _checked_leaf(where, path, flat, names, leaf) for path, leaf in wanted.items()}
        trees = {}
        for prefix, target in targets.items():
            paths, treedef = jax.tree_util.tree_flatten_with_path(target)
            trees[prefix] = jax.tree_util.tree_unflatten(
                treedef, [leaves[prefix + jax.tree_util.keystr(path)] for path, _ in paths]
            )
        return trees

    def verify(self, step: int) -> str | None:
        """None if checkpoint `step` reads back whole (every leaf and its record, as saved, no target needed),
        else a one-line reason. Reads the checkpoint once; writes nothing."""
        error = self.verify_error(step)
        return None if error is None else one_line(error)

    def verify_error(self, step: int) -> Exception | None:
        """`verify`, with the reason as the exception that reading the checkpoint raised (orbax's, with what its
        tasks logged meanwhile as `HELD_BACK_LOG`; `one_line(error)` says it in a line), or None if it reads back
        whole."""
        if step not in self._manager.all_steps():
            return FileNotFoundError(f"no checkpoint at step {step}")
        args = ocp.args.Composite(state=ocp.args.StandardRestore(), extra=ocp.args.JsonRestore())
        try:
            with _held_back_logs() as held:
                restored = self._manager.restore(int(step), args=args)
        except Exception as err:  # noqa: BLE001 — orbax/TensorStore raise many types, with multi-line messages
            return _noted(err, held)
        if "leaf_paths" not in (restored["extra"] or {}):
            return ValueError("its record (extra) has no leaf_paths")
        return None

    def close(self) -> None:
        self._manager.close()


def one_line(err: BaseException, limit: int = 160) -> str:
    """`Type: first line of the message`, cut to `limit` characters (TensorStore errors run to many lines)."""
    text = f"{type(err).__name__}: {err}".strip().splitlines()[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: the attribute of a failed read's exception holding what orbax logged meanwhile (`saferl.cli.main` writes it out)
HELD_BACK_LOG = "saferl_held_back_log"
# the loggers whose records orbax's reads emit on a failed read: asyncio logs every task whose exception nobody
# retrieved when orbax's event loop shuts down, each with a full TensorStore spec
_HELD_BACK = ("asyncio",)


@contextlib.contextmanager
def _held_back_logs() -> Iterator[list[logging.LogRecord]]:
    """Collect, instead of emitting, the records of `_HELD_BACK` loggers while an orbax read runs; on leaving
    without an error they are emitted after all (only a failed read's are kept back, for its error)."""
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        held.append(record)
        return False

    loggers = [logging.getLogger(name) for name in _HELD_BACK]
    for logger in loggers:
        logger.addFilter(hold)
    try:
        yield held
    finally:
        for logger in loggers:
            logger.removeFilter(hold)
    for record in held:  # reached only when the read succeeded
        logging.getLogger(record.name).handle(record)
    held.clear()


def _noted(err: Exception, records: list[logging.LogRecord]) -> Exception:
    """`err` with the log records held back while it arose, formatted, as its `HELD_BACK_LOG` attribute (for
    the CLI's log file; not a note, so that a Python traceback stays as long as the error itself)."""
    if records:
        formatter = logging.Formatter("%(levelname)s:%(name)s:%(message)s")
        setattr(err, HELD_BACK_LOG, "\n".join(formatter.format(record) for record in records))
    return err


def _leaf_name(index: int) -> str:
    return f"leaf_{index:05d}"


def _flatten(tree: Any) -> tuple[dict[str, Any], list[str]]:
    """({leaf_name: non-empty leaf}, key path of every leaf) of `tree`."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    flat = {_leaf_name(i): leaf for i, (_, leaf) in enumerate(leaves) if int(np.prod(np.shape(leaf))) > 0}
    return flat, [jax.tree_util.keystr(path) for path, _ in leaves]


def _checked_leaf(
    where: pathlib.Path, path: str, flat: dict[str, Any], names: dict[str, str], target: Any
) -> jax.Array:
    """The restored leaf at key path `path` (zeros for a zero-size one); `UserError` if the checkpoint has none
    there or one of another shape or dtype than `target`."""
    if path not in names:
        raise UserError(f"checkpoint {where} holds no {path} (a run of another config or version)")
    value = flat.get(names[path], np.zeros(np.shape(target), target.dtype))
    if (np.shape(value), np.dtype(value.dtype)) != (np.shape(target), np.dtype(target.dtype)):
        raise UserError(
            f"checkpoint {where}: {path} is {value.dtype}{list(np.shape(value))}, the run's config "
            f"gives {np.dtype(target.dtype)}{list(np.shape(target))}"
        )
    return jax.numpy.asarray(value)


def _unflatten(target: Any, flat: dict[str, Any]) -> Any:
    """Leaves of `flat` (zeros for zero-size ones) in the tree structure of `target`."""
    leaves, treedef = jax.tree_util.tree_flatten(target)
    values = [
        flat[_leaf_name(i)] if _leaf_name(i) in flat else jax.numpy.zeros(np.shape(leaf), leaf.dtype)
        for i, leaf in enumerate(leaves)
    ]
    return jax.tree_util.tree_unflatten(treedef, values)
