"""The outer training loop shared by chunked algorithms: jitted chunks in, logs and checkpoints out.

An algorithm provides `train_chunk(state) -> (state, metrics)` (a fixed number of env steps: a jitted
PPO/SAC chunk, or one PETS episode of collect → refit) and this loop does the side effects between chunks: NaN/Inf
checks, logging, progress, checkpoints, saving the last good state when something goes wrong (NaN, Ctrl-C), and
stopping at `ctx.total_steps`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from saferl.errors import NonFiniteError
from saferl.training.context import TrainContext

EPISODE_KEYS = ("episode_return", "episode_cost", "episodes")


def episode_row(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metrics row for the logger: episode stats are NaN when no episode ended in the chunk."""
    row = {k: float(np.asarray(v)) for k, v in metrics.items()}
    if row.get("episodes", 1.0) == 0.0:
        row["episode_return"] = math.nan
        row["episode_cost"] = math.nan
    return row


def run_chunks(
    ctx: TrainContext,
    state: Any,
    train_chunk: Callable[[Any], tuple[Any, Mapping[str, Any]]],
    *,
    steps_per_chunk: int,
    start_steps: int,
    checkpoint_every: int,
    watched: Callable[[Any], Mapping[str, Any]],
    extra: Callable[[int], dict[str, Any]] | None = None,
) -> tuple[Any, int, dict[str, float]]:
    """Run chunks until `ctx.total_steps` env steps; return (final state, env steps, last metrics row).

    `metrics` of a chunk: scalars; `episode_return`/`episode_cost` (mean over episodes that ended in the
    chunk) and `episodes` (how many) plus algorithm losses. Every metric that is not an episode stat, and
    every tree of `watched(state)` (e.g. `{"params": state.params}`), is checked for NaN/Inf; on failure
    the previous state is checkpointed (if not already) and `NonFiniteError` propagates.
    `checkpoint_every`: env steps between checkpoints (the final state is always saved).
    """
    extra = extra or (lambda steps: {})
    env_steps, last_saved, row = int(start_steps), int(start_steps) if ctx.resuming else None, {}
    try:
        while env_steps < ctx.total_steps:
            new_state, metrics = train_chunk(state)
            metrics = jax.device_get(metrics)
            new_steps = env_steps + steps_per_chunk
            losses = {k: v for k, v in metrics.items() if k not in EPISODE_KEYS}
            ctx.check_finite("losses", losses, new_steps)
            for name, tree in watched(new_state).items():
                ctx.check_finite(name, tree, new_steps)
            state, env_steps = new_state, new_steps
            row = episode_row(metrics)
            ctx.logger.log(env_steps, row)
            if env_steps - (last_saved or 0) >= checkpoint_every or env_steps >= ctx.total_steps:
                ctx.checkpoints.save(env_steps, state, extra(env_steps))
                last_saved = env_steps
    except (NonFiniteError, KeyboardInterrupt):
        if last_saved != env_steps:  # keep the last good state (the initial one if the first chunk failed)
            ctx.checkpoints.save(env_steps, state, extra(env_steps))
        raise
    return state, env_steps, row
