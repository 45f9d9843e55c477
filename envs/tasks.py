"""Tasks: reward functions of a transition, so a new task for an env is a function, not a new env.

A `Task` scores one transition (one decision: obs → action → next_obs) with a pure, jittable
`reward(obs [..., obs_dim], action [..., act_dim], next_obs [..., obs_dim]) -> [...]` that uses only the last
axis (leading axes broadcast). Planners use it on imagined trajectories (zero-shot tasks on a learned model:
`saferl.planning.reward_objective`), evaluation uses it on real transitions. An env lists its tasks with
`env.tasks()` ({name: Task}, built once per env instance so compiled planners are reused); tasks read only
the observation layout the env documents, never hidden simulator state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

RewardFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """A named reward of a transition (hashable by identity: one compiled planner per task object)."""

    name: str  # e.g. "reach"
    description: str  # one line: what is rewarded, units and range
    reward: RewardFn  # (obs, action, next_obs) -> reward per transition, leading axes broadcast
    # what a video of the task draws (`envs.base.RenderMarker`s: its target, its path), in place of the env's
    # own episode goal (`env.render_markers(info, task)`); empty for tasks without a place in the scene
    markers: tuple[Any, ...] = ()

    def __call__(self, obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
        return self.reward(obs, action, next_obs)


class TaskError(ValueError):
    """Unknown task name for an env (the message lists the env's tasks)."""


def get_task(env, name: str) -> Task:
    """`env.tasks()[name]`, or `TaskError` listing the env's tasks."""
    tasks = env.tasks()
    if name not in tasks:
        available = ", ".join(sorted(tasks)) or "none"
        raise TaskError(f"unknown task '{name}' for this env; available tasks: {available}")
    return tasks[name]
