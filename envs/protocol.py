"""The env seam as a typing `Protocol`: what saferl's episode loop, evaluation and trainers call on an env.

Every `MjxEnv` has it, and so does every brax `Wrapper` around one (wrappers forward to the env they wrap).
brax ships no type information, so without it the seam is `Any`; its `State` stays `Any` to the checker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import jax
from brax.envs.base import State

from envs.tasks import Task

#: brax's observation size: the length of a vector observation, or {key: shape} of a dict observation
ObservationSize = int | Mapping[str, tuple[int, ...]]


class SafeEnv(Protocol):
    """A brax-API env with a safety cost: pure `reset`/`step` on a brax `State` whose `info["cost"]` is the step's
    cost (≥ 0), episodes of `episode_length` steps and a cost budget per episode."""

    def reset(self, rng: jax.Array) -> State:
        """A fresh episode's state from the PRNG key `rng`."""
        ...

    def step(self, state: State, action: jax.Array) -> State:
        """The state after one env step of `action` [action_size] in [-1, 1]."""
        ...

    @property
    def observation_size(self) -> ObservationSize: ...

    @property
    def action_size(self) -> int: ...

    @property
    def episode_length(self) -> int:
        """Env steps in an episode (the time limit)."""
        ...

    @property
    def cost_budget(self) -> float:
        """The episode's cost budget (Σ cost per episode allowed)."""
        ...

    def tasks(self) -> dict[str, Task]:
        """Named tasks ({name: `envs.tasks.Task`}) a model-based run plans for zero-shot; {} if none."""
        ...


__all__ = ["ObservationSize", "SafeEnv"]
