"""Counters of the robot server's control loop: overruns, round-trip latency, dropped and bad messages."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import numpy as np

_LATENCY_WINDOW = 100_000  # latencies kept for percentiles (a ring buffer)


@dataclasses.dataclass
class LoopStats:
    periods: int = 0  # control periods run
    overruns: int = 0  # periods whose work ended after the next deadline
    max_overrun_ns: int = 0
    actions_applied: int = 0  # fresh actions applied
    faults: int = 0  # times the safe action latched
    client_disconnects: int = 0
    auth_failures: int = 0  # failed CURVE (or ZMTP) handshakes on the action socket
    robot_errors: int = 0
    dropped: Counter = dataclasses.field(default_factory=Counter)  # stale / out_of_order actions
    bad_messages: Counter = dataclasses.field(default_factory=Counter)  # rejected messages by error code
    _latency_ns: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(_LATENCY_WINDOW, np.int64))
    _latency_count: int = 0

    def record_overrun(self, late_ns: int) -> None:
        self.overruns += 1
        self.max_overrun_ns = max(self.max_overrun_ns, int(late_ns))

    def record_latency(self, latency_ns: int) -> None:
        """Round trip: state published -> the action answering it received, ns (robot clock)."""
        self._latency_ns[self._latency_count % _LATENCY_WINDOW] = latency_ns
        self._latency_count += 1

    def count_drop(self, code: str) -> None:
        self.dropped[code] += 1

    def count_bad(self, code: str) -> None:
        self.bad_messages[code] += 1

    def latencies_ns(self) -> np.ndarray:
        return self._latency_ns[: min(self._latency_count, _LATENCY_WINDOW)].copy()

    def reset_latencies(self) -> None:
        self._latency_count = 0

    def to_wire(self) -> dict[str, Any]:
        lat = self.latencies_ns() / 1e3
        percentiles = (
            {
                "p50_us": float(np.percentile(lat, 50)),
                "p99_us": float(np.percentile(lat, 99)),
                "max_us": float(lat.max()),
            }
            if lat.size
            else {}
        )
        return {
            "periods": self.periods,
            "overruns": self.overruns,
            "max_overrun_us": self.max_overrun_ns / 1e3,
            "actions_applied": self.actions_applied,
            "faults": self.faults,
            "client_disconnects": self.client_disconnects,
            "auth_failures": self.auth_failures,
            "robot_errors": self.robot_errors,
            "dropped": dict(self.dropped),
            "bad_messages": dict(self.bad_messages),
            "latency": {"count": int(lat.size), **percentiles},
        }
