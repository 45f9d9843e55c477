"""Metrics logging for a run: one CSV row per `log(env_steps, metrics)` call, and the same scalars to the chosen
loggers (`LOGGERS`: TensorBoard by default, Weights & Biases with the `wandb` extra, or none).

`metrics.csv` always starts with the columns `env_steps, episode_return, episode_cost`; algorithm
columns follow in first-seen order. A new column appearing later rewrites the header (rows keep their
values, missing cells stay empty), so the file stays one valid CSV. With `write=False` (the processes other than
0 of a multi-process run) rows are only kept in memory and passed to listeners: no file, no TensorBoard events,
no W&B run. With `deferred=True` (what a run uses) nothing is written until the first `log` or `open()`: a
resume that fails to restore its checkpoint leaves metrics.csv as it was and starts no TensorBoard file.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from saferl.errors import UserError

REQUIRED_COLUMNS = ("env_steps", "episode_return", "episode_cost")
LOGGERS = ("tensorboard", "wandb", "none")  # `saferl train --logger NAME` (repeatable); none: metrics.csv only
# where a run's scalars go besides metrics.csv: True (TensorBoard), False (nowhere), or names from LOGGERS
LoggerChoice = bool | str | Sequence[str]
WANDB_MISSING = "--logger wandb needs the wandb package, which is not installed: pip install 'saferl[wandb]'"


def resolve_loggers(choice: LoggerChoice) -> tuple[str, ...]:
    """The loggers named by `choice`, without `none` (`()`: metrics.csv only); UserError on an unknown name,
    `none` next to another logger, or `wandb` without the wandb package."""
    if isinstance(choice, bool):
        return ("tensorboard",) if choice else ()
    names = [choice] if isinstance(choice, str) else list(choice)
    for name in names:
        if name not in LOGGERS:
            raise UserError(
                f"--logger {name!r} is not a logger; choose {', '.join(LOGGERS)} (repeat --logger for several)"
            )
    if "none" in names and len(set(names)) > 1:
        raise UserError(f"--logger none contradicts --logger {' --logger '.join(n for n in names if n != 'none')}")
    if "wandb" in names and importlib.util.find_spec("wandb") is None:
        raise UserError(WANDB_MISSING)
    return tuple(dict.fromkeys(n for n in names if n != "none"))  # in the order given, once each


def _to_float(value: Any) -> float:
    """A Python float from a scalar (numpy/jax array of size 1 or a number)."""
    return float(np.asarray(value).reshape(()))


class MetricsLogger:
    """Appends metrics rows to `metrics.csv`, sends them to the chosen loggers and notifies listeners.

    `log(env_steps, metrics)`: `env_steps` total environment steps so far; `metrics` maps names to
    scalars (`episode_return`, `episode_cost` per episode, plus algorithm quantities like losses).
    `loggers`: a `LoggerChoice` (`resolve_loggers`), TensorBoard by default.
    """

    def __init__(
        self,
        run_dir: pathlib.Path,
        loggers: LoggerChoice = True,
        write: bool = True,
        deferred: bool = False,
        before_open: Callable[[], None] | None = None,
    ):
        """`deferred`: write nothing (metrics.csv, TensorBoard, W&B) until the first `log` or `open()`;
        `before_open`: called once, first thing in `open()` (a run's other deferred writes, e.g. config.json)."""
        self._names = resolve_loggers(loggers)
        self._run_dir = run_dir
        self._csv_path = run_dir / "metrics.csv"
        self._write = write
        self._columns: list[str] = list(REQUIRED_COLUMNS)
        self._rows: list[dict[str, float]] = []
        self._listeners: list[Callable[[int, dict[str, float]], None]] = []
        self._opened = False
        self._stale = not self._csv_path.exists()  # metrics.csv to be (re)written when opened
        self._before_open = before_open
        if self._csv_path.exists():  # resuming: keep what is there and append
            self._rows, self._columns = read_metrics(self._csv_path)
        self._wandb_run: Any = None
        self._writer: Any = None
        if not deferred:
            self.open()

    @property
    def opened(self) -> bool:
        """Whether the logger has written (or would have written, with `write=False`) to the run directory."""
        return self._opened

    def open(self) -> None:
        """Make the writes held back so far (`deferred`): `before_open`, metrics.csv (created, or cut back by
        `truncate_after`), the TensorBoard writer and the W&B run. Idempotent; `log` calls it."""
        if self._opened:
            return
        self._opened = True
        if self._before_open is not None:
            self._before_open()
        if self._stale:
            self._rewrite()
        if not self._write:
            return
        self._wandb_run = _start_wandb_run(self._run_dir) if "wandb" in self._names else None
        if "tensorboard" in self._names:
            from tensorboardX import SummaryWriter

            self._writer = SummaryWriter(logdir=str(self._run_dir / "tensorboard"), flush_secs=10)

    @property
    def rows(self) -> list[dict[str, float]]:
        return list(self._rows)

    def add_listener(self, listener: Callable[[int, dict[str, float]], None]) -> None:
        """Call `listener(env_steps, metrics)` after every `log` (e.g. the progress display)."""
        self._listeners.append(listener)

    def log(self, env_steps: int, metrics: Mapping[str, Any]) -> None:
        self.open()
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
        if self._wandb_run is not None:  # one W&B history row per CSV row; empty cells (NaN) left out
            self._wandb_run.log(
                {
                    name: (int(value) if name == "env_steps" else value)
                    for name, value in row.items()
                    if not math.isnan(value)
                }
            )
        for listener in self._listeners:
            listener(int(env_steps), row)

    def truncate_after(self, env_steps: int) -> None:
        """Drop rows logged after `env_steps` (used when resuming from an earlier checkpoint)."""
        kept = [row for row in self._rows if row["env_steps"] <= env_steps]
        if len(kept) != len(self._rows):
            self._rows = kept
            if self._opened:
                self._rewrite()
            else:  # deferred: rewritten when opened
                self._stale = True

    def _rewrite(self) -> None:
        self._stale = False
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
        if self._wandb_run is not None:
            self._wandb_run.finish()
            self._wandb_run = None


def _start_wandb_run(run_dir: pathlib.Path) -> Any:
    """A W&B run named after the run directory, with its config.json as config and `env_steps` as every
    metric's x-axis (so several rows at one env step, and resumed runs, keep metrics.csv's rows). Project
    `saferl` unless WANDB_PROJECT is set; its files go under the run directory unless WANDB_DIR is set;
    WANDB_MODE=offline keeps it off the network (`wandb sync` uploads it later)."""
    try:
        import wandb
    except ImportError:
        raise UserError(WANDB_MISSING) from None
    config_path = run_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    try:
        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "saferl"),
            name=run_dir.name,
            config=config,
            dir=os.environ.get("WANDB_DIR") or str(run_dir),
            reinit="create_new",
            settings=wandb.Settings(console="off"),
        )  # leave stdout/stderr to the progress display
    except wandb.errors.Error as err:  # not logged in, no network, bad entity/project
        raise UserError(f"--logger wandb: {err} (log in with `wandb login`, or set WANDB_MODE=offline)") from None
    run.define_metric("env_steps")
    run.define_metric("*", step_metric="env_steps")
    return run


def _format(row: Mapping[str, float]) -> dict[str, str]:
    return {k: ("" if math.isnan(v) else (str(int(v)) if k == "env_steps" else f"{v:.6g}")) for k, v in row.items()}


def read_metrics(path: pathlib.Path) -> tuple[list[dict[str, float]], list[str]]:
    """Rows (empty cells as NaN) and columns of a `metrics.csv`."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or REQUIRED_COLUMNS)
        rows = [{k: (float(v) if v not in ("", None) else math.nan) for k, v in row.items()} for row in reader]
    return rows, columns
