"""Fixed-capacity ring replay buffer as a jittable pytree, and the `Transition` batch it stores.

Every function is pure: `add` returns a new buffer (under `jit` with donation, XLA updates in place).
Rows `[0, size)` of the storage are valid; once full, `add` overwrites the oldest rows (ring order).
Observations are flat vectors or dicts `{"image": [H, W, C], "state": [d]}` (`saferl.data.observations`);
every function maps over the leaves, and `save`/`restore` write a dict's parts as `data.obs.image`, ….
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from saferl.data import observations
from saferl.errors import UserError


@struct.dataclass
class Transition:
    """One step or a batch of steps; all fields share the leading batch axes `[...]`."""

    obs: Any  # [..., obs_dim], or {"image": [..., H, W, C], "state": [..., d]}
    action: jax.Array  # [..., act_dim], in [-1, 1]
    next_obs: Any  # like obs
    reward: jax.Array  # [...]
    cost: jax.Array  # [...] safety cost of the step, >= 0
    done: jax.Array  # [...] 1.0 where the episode terminated on this step

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.reward.shape)


_FIELDS = ("obs", "action", "next_obs", "reward", "cost", "done")


@struct.dataclass
class ReplayBuffer:
    """Ring buffer: `data` holds `capacity` rows, `position` is the next row written, `size` the valid rows."""

    data: Transition  # leading axis [capacity]
    position: jax.Array  # int32 scalar, next row to write
    size: jax.Array  # int32 scalar, number of valid rows (<= capacity)
    total_added: jax.Array  # int32 scalar, transitions ever added (counts overwritten ones)

    @property
    def capacity(self) -> int:
        return int(self.data.reward.shape[0])


def example_transition(observation_size: Any, action_size: int) -> Transition:
    """One float32 transition of zeros with these sizes (`observation_size` an int or a dict of shapes): the
    `example` every learner's buffer is shaped like."""
    obs = observations.zeros(observation_size)
    zero = jnp.zeros(())
    return Transition(obs=obs, action=jnp.zeros((action_size,)), next_obs=obs, reward=zero, cost=zero, done=zero)


def init(capacity: int, example: Transition) -> ReplayBuffer:
    """An empty buffer for `capacity` transitions shaped like `example` (ONE transition, no batch axis)."""
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    data = jax.tree.map(lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.result_type(x)), example)
    zero = jnp.zeros((), jnp.int32)
    return ReplayBuffer(data=data, position=zero, size=zero, total_added=zero)


def add(buffer: ReplayBuffer, batch: Transition) -> ReplayBuffer:
    """Append `batch` (leading axis [B], any B) in ring order; jittable (B is static under jit).

    If B exceeds the capacity, only the last `capacity` rows of the batch are kept.
    """
    capacity = buffer.capacity
    n_batch = int(batch.reward.shape[0])
    kept = min(n_batch, capacity)
    batch = jax.tree.map(lambda x: x[n_batch - kept :], batch)
    position = (buffer.position + (n_batch - kept)) % capacity
    rows = (position + jnp.arange(kept)) % capacity  # distinct because kept <= capacity
    data = jax.tree.map(lambda store, new: store.at[rows].set(new.astype(store.dtype)), buffer.data, batch)
    return ReplayBuffer(
        data=data,
        position=((position + kept) % capacity).astype(jnp.int32),
        size=jnp.minimum(buffer.size + kept, capacity).astype(jnp.int32),
        total_added=(buffer.total_added + n_batch).astype(jnp.int32),
    )


def sample(buffer: ReplayBuffer, key: jax.Array, n: int) -> Transition:
    """`n` transitions drawn uniformly with replacement from the valid rows: leading axis [n].

    Sampling an empty buffer returns row 0 (zeros); check `buffer.size` first where that matters.
    """
    rows = jax.random.randint(key, (n,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda x: x[rows], buffer.data)


def sample_recent(buffer: ReplayBuffer, key: jax.Array, n: int, window: int) -> Transition:
    """`n` transitions drawn uniformly with replacement from the `window` most recently added rows (all valid
    rows if fewer): leading axis [n]. What an estimate of the *current* policy's state distribution uses."""
    recent = jnp.clip(jnp.minimum(buffer.size, window), 1, None)
    back = jax.random.randint(key, (n,), 0, recent)
    rows = (buffer.position - 1 - back) % buffer.capacity
    return jax.tree.map(lambda x: x[rows], buffer.data)


def valid_mask(buffer: ReplayBuffer) -> jax.Array:
    """[capacity] bool, True on rows that hold data."""
    return jnp.arange(buffer.capacity) < buffer.size


def all_valid(buffer: ReplayBuffer) -> tuple[Transition, jax.Array]:
    """The whole storage [capacity, ...] and its validity mask [capacity]: fixed shapes, for jitted fits."""
    return buffer.data, valid_mask(buffer)


def to_numpy(buffer: ReplayBuffer) -> Transition:
    """The valid rows only, in insertion order (oldest first), as numpy arrays (not jittable)."""
    size, position, capacity = int(buffer.size), int(buffer.position), buffer.capacity
    order = np.arange(size) if size < capacity else (np.arange(capacity) + position) % capacity
    return jax.tree.map(lambda x: np.asarray(x)[order], buffer.data)


def save(buffer: ReplayBuffer, path: str | pathlib.Path) -> pathlib.Path:
    """Write the buffer (storage, counters) to a compressed `.npz` file; returns the path written."""
    path = pathlib.Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {}
    for name in _FIELDS:
        value = getattr(buffer.data, name)
        if isinstance(value, dict):  # dict observations: one array per part
            arrays.update({f"data.{name}.{key}": np.asarray(part) for key, part in value.items()})
        else:
            arrays[f"data.{name}"] = np.asarray(value)
    arrays.update(position=np.asarray(buffer.position), size=np.asarray(buffer.size))
    arrays.update(total_added=np.asarray(buffer.total_added))
    np.savez_compressed(path, **arrays)
    return path


def restore(path: str | pathlib.Path) -> ReplayBuffer:
    """Read a buffer written by `save`; raises `UserError` if the file is missing or malformed."""
    path = pathlib.Path(path)
    if not path.exists():
        raise UserError(f"replay buffer file not found: {path}")
    with np.load(path) as archive:
        fields = {name: _restore_field(archive, name) for name in _FIELDS}
        missing = [f"data.{n}" for n, value in fields.items() if value is None]
        missing += [k for k in ("position", "size") if k not in archive]
        if missing:
            raise UserError(f"replay buffer file {path} lacks {missing}; was it written by saferl.data.buffer.save?")
        data = Transition(**fields)
        total = archive["total_added"] if "total_added" in archive else archive["size"]
        counters = [jnp.asarray(archive[k], jnp.int32) for k in ("position", "size")]
        return ReplayBuffer(
            data=data, position=counters[0], size=counters[1], total_added=jnp.asarray(total, jnp.int32)
        )


def _restore_field(archive: Any, name: str) -> Any:
    """Field `name` of an `.npz` written by `save`: an array, a dict of parts (`data.name.key`), or None."""
    if f"data.{name}" in archive:
        return jnp.asarray(archive[f"data.{name}"])
    prefix = f"data.{name}."
    parts = {key[len(prefix) :]: jnp.asarray(archive[key]) for key in archive.files if key.startswith(prefix)}
    return parts or None
