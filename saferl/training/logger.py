"""Metrics logging for a run: one CSV row and TensorBoard scalars per `log(env_steps, metrics)` call.

`metrics.csv` always starts with the columns `env_steps, episode_return, episode_cost`; algorithm
columns follow in first-seen order. A new column appearing later rewrites the header (rows keep their
values, missing cells stay empty), so the file stays one valid CSV. With `write=False` (the processes other than 0 of a multi-process run) rows
are only kept in memory and passed to listeners: no file, no TensorBoard events.
"""

from __future__ import annotations

import csv
import math
import pathlib
from typing import Any, Callable, Mapping

import numpy as np

REQUIRED_COLUMNS = ("env_steps", "episode_return", "episode_cost")


def _to_float(value: Any) -> float:
    """A Python float from a scalar (numpy/jax array of size 1 or a number)."""
    return float(np.asarray(value).reshape(()))


class MetricsLogger:
    """Appends metrics rows to `metrics.csv`, writes TensorBoard events and notifies listeners.

    `log(env_steps, metrics)`: `env_steps` total environment steps so far; `metrics` maps names to
    scalars (`episode_return`, `episode_cost` per episode, plus algorithm quantities like losses).
    """

    def __init__(self, run_dir: pathlib.Path, tensorboard: bool = True, write: bool = True):
        self._csv_path = run_dir / "metrics.csv"
        self._write = write
        self._columns: list[str] = list(REQUIRED_COLUMNS)
        self._rows: list[dict[str, float]] = []
        self._listeners: list[Callable[[int, dict[str, float]], None]] = []
        if self._csv_path.exists():  # resuming: keep what is there and append
            self._rows, self._columns = read_metrics(self._csv_path)
        else:
            self._rewrite()
        self._writer = None
        if tensorboard and write:
            from tensorboardX import SummaryWriter

            self._writer = SummaryWriter(logdir=str(run_dir / "tensorboard"), flush_secs=10)

    @property
    def rows(self) -> list[dict[str, float]]:
        return list(self._rows)

    def add_listener(self, listener: Callable[[int, dict[str, float]], None]) -> None:
        """Call `listener(env_steps, metrics)` after every `log` (e.g. the progress display)."""
        self._listeners.append(listener)

    def log(self, env_steps: int, metrics: Mapping[str, Any]) -> None:
        row = {"env_steps": float(int(env_steps))}
        row.update({name: _to_float(value) for name, value in metrics.items()})
        row.setdefault("episode_return", math.nan)
        row.setdefault("episode_cost", math.nan)
        self._rows.append(row)
        new = [name for name in row if name not in self._columns]
        if new:
            self._columns.extend(new)
            self._rewrite()
        elif self._write:
            with self._csv_path.open("a", newline="") as f:
                csv.DictWriter(f, self._columns).writerow(_format(row))
        if self._writer is not None:
            for name, value in row.items():
                if name != "env_steps" and math.isfinite(value):
                    self._writer.add_scalar(name, value, global_step=int(env_steps))
        for listener in self._listeners:
            listener(int(env_steps), row)

    def truncate_after(self, env_steps: int) -> None:
        """Drop rows logged after `env_steps` (used when resuming from an earlier checkpoint)."""
        kept = [row for row in self._rows if row["env_steps"] <= env_steps]
        if len(kept) != len(self._rows):
            self._rows = kept
            self._rewrite()

    def _rewrite(self) -> None:
        if not self._write:
            return
        tmp = self._csv_path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, self._columns)
            writer.writeheader()
            writer.writerows(_format(row) for row in self._rows)
        tmp.replace(self._csv_path)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None


def _format(row: Mapping[str, float]) -> dict[str, str]:
    return {k: ("" if math.isnan(v) else (str(int(v)) if k == "env_steps" else f"{v:.6g}")) for k, v in row.items()}


def read_metrics(path: pathlib.Path) -> tuple[list[dict[str, float]], list[str]]:
    """Rows (empty cells as NaN) and columns of a `metrics.csv`."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or REQUIRED_COLUMNS)
        rows = [{k: (float(v) if v not in ("", None) else math.nan) for k, v in row.items()} for row in reader]
    return rows, columns
