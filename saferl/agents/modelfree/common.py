"""Pieces PPO and SAC share: the training-wrapped env, episode statistics of a rollout, strong types, the
memoised `make_train`, and placing states on the devices (`data_parallel`).

Episode statistics come from brax's `EpisodeWrapper`, which keeps per-env sums of reward and of every
`state.metrics` entry (our envs put the safety cost there) and flags the step an episode ends.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from brax.envs.wrappers import training as brax_training

from saferl.training import sharding

EPISODE_FIELDS = ("truncation", "episode_metrics", "episode_done")


def wrap_for_training(env: Any) -> Any:
    """Vmapped, time-limited (`env.episode_length`), auto-resetting env: brax's training wrapper stack."""
    return brax_training.wrap(env, episode_length=env.episode_length, action_repeat=1)


def episode_sums(state_extras: dict[str, Any]) -> dict[str, jax.Array]:
    """Totals over episodes that ended in a rollout: `episodes`, `return_sum`, `cost_sum` (scalars).

    `state_extras`: from `acting.generate_unroll(..., extra_fields=EPISODE_FIELDS)`, any leading axes.
    """
    done = state_extras["episode_done"].astype(jnp.float32)
    metrics = state_extras["episode_metrics"]
    cost = metrics.get("cost", jnp.zeros_like(done))
    return {"episodes": done.sum(), "return_sum": (metrics["sum_reward"] * done).sum(),
            "cost_sum": (cost * done).sum()}


def episode_means(sums: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Mean episode return and cost from `episode_sums` totals (0 where no episode ended; see `episodes`)."""
    count = jnp.maximum(sums["episodes"], 1.0)
    return {"episodes": sums["episodes"], "episode_return": sums["return_sum"] / count,
            "episode_cost": sums["cost_sum"] / count}


def strong_types(tree: Any) -> Any:
    """`tree` with every array strongly typed, so a jitted chunk's output state has the same avals as its
    input (brax wrappers produce weakly typed flags; a mismatch would recompile the chunk once)."""
    def strong(leaf: Any) -> jax.Array:
        array = jnp.asarray(leaf)
        return array.astype(array.dtype)

    return jax.tree.map(strong, tree)


def cache_by_env_config(make_train: Callable) -> Callable:
    """Memoise `make_train(config, env)` on (config, env class, env config): equal configs build the same
    env, so a resumed run, a policy loader or a test reuses the already traced and compiled functions
    (tracing an MJX training step costs seconds)."""
    cache: dict[tuple, Any] = {}

    @functools.wraps(make_train)
    def cached(config: Any, env: Any) -> Any:
        key = (config, type(env), getattr(env, "config", id(env)))
        try:
            hash(key)
        except TypeError:  # an unhashable config: no memoising
            return make_train(config, env)
        if key not in cache:
            if len(cache) >= 8:
                cache.pop(next(iter(cache)))
            cache[key] = make_train(config, env)
        return cache[key]

    return cached


def data_parallel(init: Callable[[jax.Array], Any], chunk: Callable[[Any], tuple[Any, Any]],
                  state_shardings: Callable[[Any], Any]) -> tuple[Callable, Callable]:
    """`(init, train_chunk)` around jitted ones so that states live where `state_shardings(state)` says
    (see `saferl.training.sharding`): `init`'s state is moved there, and `train_chunk` first moves its input
    there (a no-op for the previous chunk's output; restored or `prefill`ed states may sit elsewhere), so
    the jitted chunk always sees the same input shardings and compiles once."""
    def placed_init(key: jax.Array) -> Any:
        state = init(key)
        return sharding.place(state, state_shardings(state))

    def train_chunk(state: Any) -> tuple[Any, Any]:
        return chunk(sharding.place(state, state_shardings(state)))

    return placed_init, train_chunk
