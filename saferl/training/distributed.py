"""Multi-host runs with JAX's own runtime (`jax.distributed`): one process per host (or per device group), all
running the same program on one global mesh (`saferl.sharding`), process 0 the only one that writes.

    saferl train ppo --env pendulum --coordinator HOST0:1234 --num-processes 2 --process-id 0   # on host 0
    saferl train ppo --env pendulum --coordinator HOST0:1234 --num-processes 2 --process-id 1   # on host 1

(or the environment variables SAFERL_COORDINATOR / SAFERL_NUM_PROCESSES / SAFERL_PROCESS_ID). On CPU the
cross-process collectives are gloo's (TCP). `initialize` must run before anything asks JAX for its devices.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from saferl.errors import UserError

ENV_COORDINATOR = "SAFERL_COORDINATOR"
ENV_NUM_PROCESSES = "SAFERL_NUM_PROCESSES"
ENV_PROCESS_ID = "SAFERL_PROCESS_ID"
_MAX_PATH_BYTES = 4096  # `broadcast_text` capacity (a run directory path)


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """Where this process sits in a multi-process run."""

    coordinator_address: str  # "host:port" of process 0's coordination service
    num_processes: int  # processes in the run, >= 1
    process_id: int  # this process, in [0, num_processes)

    def __post_init__(self) -> None:
        host, _, port = self.coordinator_address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UserError(
                f"coordinator={self.coordinator_address!r} is not HOST:PORT (e.g. 10.0.0.1:1234, port in 1..65535)"
            )
        if self.num_processes < 1:
            raise UserError(f"num_processes={self.num_processes} must be >= 1")
        if not 0 <= self.process_id < self.num_processes:
            raise UserError(f"process_id={self.process_id} must be in [0, num_processes={self.num_processes})")


def _integer(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{name}={value!r} is not an integer") from None


def process_group(
    coordinator_address: str | None = None,
    num_processes: int | str | None = None,
    process_id: int | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ProcessGroup | None:
    """The process group from arguments (CLI flags), each falling back to its SAFERL_* environment variable;
    None when none of the three is given (a single-process run). `UserError` if only some are given or a value
    is out of range."""
    environ = os.environ if environ is None else environ
    coordinator = coordinator_address or environ.get(ENV_COORDINATOR) or None
    n_processes = _integer(
        num_processes if num_processes is not None else environ.get(ENV_NUM_PROCESSES), "num_processes"
    )
    this_process = _integer(process_id if process_id is not None else environ.get(ENV_PROCESS_ID), "process_id")
    values = {"coordinator": coordinator, "num_processes": n_processes, "process_id": this_process}
    missing = [name for name, value in values.items() if value is None]
    if len(missing) == 3:
        return None
    if coordinator is None or n_processes is None or this_process is None:
        raise UserError(
            f"a multi-process run needs --coordinator, --num-processes and --process-id (or "
            f"{ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}); missing: {', '.join(missing)}"
        )
    return ProcessGroup(coordinator, n_processes, this_process)


def initialize(coordinator_address: str, num_processes: int, process_id: int, timeout_s: int = 300) -> ProcessGroup:
    """Join the multi-process run (`jax.distributed.initialize`); afterwards `jax.devices()` lists the devices of
    every process and `jax.local_devices()` this one's. Call once, before JAX's backend starts (the first
    `jax.devices()` or computation); `UserError` if it already started or the arguments are invalid."""
    group = ProcessGroup(coordinator_address, int(num_processes), int(process_id))
    if jax.distributed.is_initialized():
        raise UserError("jax.distributed is already initialized in this process")
    from jax._src import xla_bridge  # no public "has the backend started" query

    if xla_bridge.backends_are_initialized():
        raise UserError(
            "jax.distributed must be initialized before JAX's devices are used; start the process "
            "with the distributed flags (or SAFERL_* variables) instead"
        )
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU: cross-process collectives over TCP
    jax.distributed.initialize(
        coordinator_address=group.coordinator_address,
        num_processes=group.num_processes,
        process_id=group.process_id,
        initialization_timeout=timeout_s,
    )
    return group


def initialize_from(
    coordinator_address: str | None = None, num_processes: int | str | None = None, process_id: int | str | None = None
) -> ProcessGroup | None:
    """`initialize` from flags or SAFERL_* environment variables (see `process_group`); None: single process."""
    group = process_group(coordinator_address, num_processes, process_id)
    if group is None or group.num_processes == 1:
        return group
    return initialize(group.coordinator_address, group.num_processes, group.process_id)


def is_primary() -> bool:
    """True in the process that writes the run directory (process 0; the only process of a normal run)."""
    return jax.process_index() == 0


def broadcast_text(text: str | None) -> str:
    """Process 0's `text` in every process (others may pass None); a no-op in a single-process run."""
    if jax.process_count() == 1:
        return text or ""
    from jax.experimental import multihost_utils

    data = (text or "").encode() if is_primary() else b""
    if len(data) > _MAX_PATH_BYTES:
        raise UserError(f"cannot share a text of {len(data)} bytes between processes (at most {_MAX_PATH_BYTES})")
    buffer = np.zeros(_MAX_PATH_BYTES + 1, np.uint8)  # last byte unused: keeps a full buffer terminated
    buffer[: len(data)] = np.frombuffer(data, np.uint8)
    shared = np.asarray(multihost_utils.broadcast_one_to_all(buffer))
    return bytes(shared[: int(np.argmin(shared))]).decode()


def to_host(tree: Any) -> Any:
    """Numpy copies of every leaf of `tree`, whole, in every process (a collective in a multi-process run:
    all processes must call it; leaves split over other processes' devices are gathered)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    def whole(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable and not leaf.is_fully_replicated:
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf) if isinstance(leaf, jax.Array) else leaf

    return jax.tree.map(whole, tree)


def barrier(name: str) -> None:
    """Wait until every process got here (no-op in a single-process run)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
