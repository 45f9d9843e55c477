"""Progress display of a run: a rich bar with env steps, steps/s and the latest episode return and cost."""

from __future__ import annotations

import math
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class ProgressDisplay:
    """`update(env_steps, metrics)` after each logged chunk; `close()` at the end. Silent if `enabled=False`."""

    def __init__(self, total_steps: int, description: str, enabled: bool = True, start_steps: int = 0):
        self._total = int(total_steps)
        self._start_steps = int(start_steps)
        self._start_time = time.perf_counter()
        self._progress: Progress | None = None
        if enabled:
            console = Console(file=sys.stderr)
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} steps/s  return {task.fields[ret]}  cost {task.fields[cost]}"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self._task = self._progress.add_task(
                description, total=self._total, completed=self._start_steps, rate="-", ret="-", cost="-"
            )
            self._progress.start()

    def steps_per_second(self, env_steps: int) -> float:
        elapsed = time.perf_counter() - self._start_time
        return (env_steps - self._start_steps) / elapsed if elapsed > 0 else 0.0

    def update(self, env_steps: int, metrics: dict[str, float]) -> None:
        if self._progress is None:
            return
        ret, cost = metrics.get("episode_return", math.nan), metrics.get("episode_cost", math.nan)
        self._progress.update(
            self._task,
            completed=min(env_steps, self._total),
            rate=f"{self.steps_per_second(env_steps):,.0f}",
            ret="-" if math.isnan(ret) else f"{ret:.2f}",
            cost="-" if math.isnan(cost) else f"{cost:.2f}",
        )

    def close(self) -> None:
        """Stop the bar."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
