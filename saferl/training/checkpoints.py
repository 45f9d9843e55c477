"""Orbax checkpoints of a run: a training-state pytree plus a small JSON record per step.

Restoring needs a target pytree of the same structure (e.g. a freshly initialised state): orbax then
returns the saved arrays with the target's container types (optax states, flax structs), not plain lists.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from saferl.errors import UserError


class Checkpoints:
    """Save/restore training states under `run_dir/checkpoints/<step>/` (orbax `CheckpointManager`).

    `step` is the number of env steps so far (the same counter as `metrics.csv`). Saving is synchronous,
    so a checkpoint that `save` returned from is complete on disk.
    """

    def __init__(self, directory: pathlib.Path, max_to_keep: int | None = 3):
        self._directory = pathlib.Path(directory).resolve()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(self._directory, options=options, item_names=("state", "extra"))

    @property
    def directory(self) -> pathlib.Path:
        return self._directory

    def save(self, step: int, state: Any, extra: dict[str, Any] | None = None) -> None:
        """Write `state` (pytree of arrays) and `extra` (JSON-serialisable dict) as checkpoint `step`."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(dict(extra or {})))
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
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), extra=ocp.args.JsonRestore())
        try:
            restored = self._manager.restore(int(step), args=args)
        except Exception as err:  # orbax raises many types for truncated/mismatched files
            raise UserError(f"checkpoint {self._directory / str(step)} cannot be restored "
                            f"(corrupt or from a different config): {type(err).__name__}: {err}".splitlines()[0]
                            ) from None
        return restored["state"], dict(restored["extra"] or {})

    def close(self) -> None:
        self._manager.close()
