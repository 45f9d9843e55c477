"""Data parallelism with `jax.sharding`: one code path for 1 and N devices (GSPMD, no pmap).

A 1-D `Mesh` over the selected devices (all of `jax.devices()`, i.e. of every process of a `jax.distributed`
run, unless `use_devices(n)` restricted it to the first n) with the axis "data". Batch-shaped parts of a training
state (the `num_envs` env states, rollouts, minibatches) are split along their batch axis over "data"; everything else
(params, optimiser state, normaliser, RNG keys, counters, replay buffers) is replicated. Jitted code only states where
the data lives (`state_shardings`, `constrain`) and XLA inserts the gradient all-reduces. On one device every sharding
is trivial and the compiled program is the unsharded one. Test N devices on a CPU with
`XLA_FLAGS=--xla_force_host_platform_device_count=4`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from saferl.errors import UserError

DATA_AXIS = "data"

_selected_count: int | None = None  # `use_devices(n)`: the first n devices; None: all of them


@functools.cache
def _mesh(devices: tuple[Any, ...]) -> Mesh:
    return Mesh(np.asarray(devices, dtype=object), (DATA_AXIS,))


def use_devices(count: int | None, name: str = "--devices") -> None:
    """Restrict every mesh of this process to the first `count` of `jax.devices()` (None: all of them).

    The one place the device list is held: call it before building trainers; changing it clears JAX's
    compilation caches (compiled programs hold their mesh). `UserError` (naming `name`) if `count` < 1 or
    more than there are, or if it would leave out another process's devices in a multi-process run.
    """
    global _selected_count
    if count is None and _selected_count is None:
        return  # nothing to change; does not start JAX's backend (envs set XLA flags before it starts)
    available = jax.devices()
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise UserError(f"{name}={count} is not a device count; use an integer >= 1 (at most {len(available)})")
        if count > len(available):
            raise UserError(
                f"{name}={count} but only {len(available)} devices are available "
                f"({available[0].platform}); use 1..{len(available)}"
            )
        if jax.process_count() > 1 and count < len(available):
            raise UserError(
                f"{name}={count} cannot restrict a {jax.process_count()}-process run "
                f"({len(available)} devices in all); limit each process's devices instead "
                f"(e.g. CUDA_VISIBLE_DEVICES)"
            )
        count = int(count)
    if count == len(available):
        count = None
    if count != _selected_count:
        _selected_count = count
        jax.clear_caches()  # traced programs captured the previous mesh


def devices() -> list[Any]:
    """The devices meshes are built over: the first `use_devices(n)` of `jax.devices()`, default all."""
    available = jax.devices()
    return available if _selected_count is None else available[:_selected_count]


def data_mesh() -> Mesh:
    """The mesh over the selected devices (`devices()`: all of this process group unless restricted), axis "data"."""
    return _mesh(tuple(devices()))


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
            f"XLA_FLAGS=--xla_force_host_platform_device_count)"
        )


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
    return shardings.replace(
        **{field: batch_shardings(getattr(state, field), 0, mesh, field) for field in batch_fields}
    )


def place(tree: Any, shardings: Any) -> Any:
    """`tree` moved to `shardings` (outside jit; arrays already there are not copied)."""
    return jax.device_put(tree, shardings)


def place_replicated(tree: Any, mesh: Mesh | None = None) -> Any:
    """`tree` replicated on every device of the mesh (outside jit). An episodic agent's first state goes there
    before its first jitted call, so that call and every later one (which return mesh-placed arrays) see the
    same input shardings and compile once."""
    return place(tree, replicated_shardings(tree, mesh))


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


def padding(size: int, mesh: Mesh | None = None) -> int:
    """Rows to append to a batch of `size` so that it splits evenly over the devices (0 on one device)."""
    return -size % device_count(mesh)


def constrain_replicated(tree: Any, mesh: Mesh | None = None) -> Any:
    """Inside jit: every leaf of `tree` whole on every device (params and optimiser state of data parallelism)."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda leaf: jax.lax.with_sharding_constraint(leaf, sharding), tree)


def constrain_to(tree: Any, shardings: Any) -> Any:
    """Inside jit: `tree` laid out as `shardings` (a matching tree, e.g. from `state_shardings`)."""
    return jax.lax.with_sharding_constraint(tree, shardings)
