"""Batch an env with `jax.vmap`: `reset(keys [B, 2])` (or one key split into `batch_size`), `step` over [B, ...]."""

from __future__ import annotations

import jax
from brax.envs.base import Env, State, Wrapper


class VmapWrapper(Wrapper):
    """Vectorises reset/step over a leading batch axis of keys, states and actions."""

    def __init__(self, env: Env, batch_size: int | None = None):
        super().__init__(env)
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def reset(self, rng: jax.Array) -> State:
        """rng: [2] (split into `batch_size` keys) or [B, 2]."""
        if rng.ndim == 1:
            if self.batch_size is None:
                raise ValueError("VmapWrapper.reset got one key but no batch_size: pass keys [B, 2]")
            rng = jax.random.split(rng, self.batch_size)
        return jax.vmap(self.env.reset)(rng)

    def step(self, state: State, action: jax.Array) -> State:
        """action: [B, action_size]."""
        return jax.vmap(self.env.step)(state, action)
