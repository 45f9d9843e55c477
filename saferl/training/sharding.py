"""Data parallelism with `jax.sharding`: one code path for 1 and N devices (GSPMD, no pmap).

A 1-D `Mesh` over all `jax.devices()` with the axis "data". Batch-shaped parts of a training state (the
`num_envs` env states, rollouts, minibatches) are split along their batch axis over "data"; everything else
(params, optimiser state, normaliser, RNG keys, counters, replay buffers) is replicated. Jitted code only
states where the data lives (`state_shardings`, `constrain`) and XLA inserts the gradient all-reduces.
On one device every sharding is trivial and the compiled program is the unsharded one.
Test N devices on a CPU with `XLA_FLAGS=--xla_force_host_platform_device_count=4`.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from saferl.errors import UserError

DATA_AXIS = "data"


@functools.cache
def _mesh(devices: tuple[Any, ...]) -> Mesh:
    return Mesh(np.asarray(devices, dtype=object), (DATA_AXIS,))


def data_mesh() -> Mesh:
    """The mesh over all devices of this process group (`jax.devices()`), axis "data"."""
    return _mesh(tuple(jax.devices()))


def device_count(mesh: Mesh | None = None) -> int:
    """Devices along the "data" axis."""
    return (mesh or data_mesh()).shape[DATA_AXIS]


def check_divisible(size: int, name: str, mesh: Mesh | None = None) -> None:
    """Raise `UserError` unless a batch of `size` (config field `name`) splits evenly over the devices."""
    count = device_count(mesh)
    if size % count:
        raise UserError(
            f"{name}={size} cannot be split evenly over {count} devices; use a multiple of {count} "
            f"(or make fewer devices visible, e.g. CUDA_VISIBLE_DEVICES / "
            f"XLA_FLAGS=--xla_force_host_platform_device_count)")


def replicated(mesh: Mesh | None = None) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh or data_mesh(), PartitionSpec())


def batch_sharded(axis: int = 0, mesh: Mesh | None = None) -> NamedSharding:
    """The array's `axis` is split over "data" (each device holds a contiguous block), the rest whole."""
    return NamedSharding(mesh or data_mesh(), PartitionSpec(*([None] * axis), DATA_AXIS))


def _leaf_sharding(leaf: Any, axis: int, mesh: Mesh, where: str) -> NamedSharding:
    shape = np.shape(leaf)
    if len(shape) <= axis or 0 in shape:  # nothing to split (MJX keeps some zero-size arrays)
        return replicated(mesh)
    check_divisible(shape[axis], f"the batch axis of {where}", mesh)
    return batch_sharded(axis, mesh)


def batch_shardings(tree: Any, axis: int = 0, mesh: Mesh | None = None, where: str = "a batch") -> Any:
    """Shardings for `tree` (arrays, tracers or `ShapeDtypeStruct`s): `axis` split over "data" on leaves that
    have it, scalars and zero-size leaves replicated. A batch axis that does not split evenly raises
    `UserError`."""
    mesh = mesh or data_mesh()
    return jax.tree.map(lambda leaf: _leaf_sharding(leaf, axis, mesh, where), tree)


def replicated_shardings(tree: Any, mesh: Mesh | None = None) -> Any:
    """A replicated sharding for every leaf of `tree`."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda _: sharding, tree)


def state_shardings(state: Any, batch_fields: Sequence[str], mesh: Mesh | None = None) -> Any:
    """Shardings for a flax-struct training state: the fields `batch_fields` (e.g. `("env_state",)`, leaves
    [num_envs, ...]) split along their leading axis, every other field replicated."""
    mesh = mesh or data_mesh()
    shardings = replicated_shardings(state, mesh)
    return shardings.replace(**{field: batch_shardings(getattr(state, field), 0, mesh, field)
                                for field in batch_fields})


def place(tree: Any, shardings: Any) -> Any:
    """`tree` moved to `shardings` (outside jit; arrays already there are not copied)."""
    return jax.device_put(tree, shardings)


def constrain(tree: Any, axis: int = 0, mesh: Mesh | None = None) -> Any:
    """Inside jit: ask GSPMD to keep `tree`'s `axis` split over "data" (leaves [..., batch, ...]).

    Leaves without that axis, or whose axis does not split evenly (e.g. a minibatch size that is not a
    multiple of the device count), are left to the compiler, so this never changes what is computed.
    """
    mesh = mesh or data_mesh()
    count = device_count(mesh)

    def one(leaf: jax.Array) -> jax.Array:
        if leaf.ndim <= axis or leaf.shape[axis] % count:
            return leaf
        return jax.lax.with_sharding_constraint(leaf, batch_sharded(axis, mesh))

    return jax.tree.map(one, tree)


def constrain_to(tree: Any, shardings: Any) -> Any:
    """Inside jit: `tree` laid out as `shardings` (a matching tree, e.g. from `state_shardings`)."""
    return jax.lax.with_sharding_constraint(tree, shardings)
