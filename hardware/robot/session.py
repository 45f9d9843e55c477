"""The robot server's session state: what control requests read and change, as a type of its own.

`Session` is the episode-level state (mode, fault, episode, step, readiness, the settable server
parameters). Request handlers (`hardware.robot.requests`) are functions `(session, request) -> (session,
reply data)`: they never mutate the session they are given, they return a new one (`dataclasses.replace`),
and they reach the robot only through the `RobotCalls` in the request. The server owns the current session
and is the only module that imports the handlers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from hardware import protocol
from hardware.robot.interface import RobotSpec

MODES = protocol.MODES  # idle, running (remote policy), onboard, safe (a fault latched)


@dataclasses.dataclass
class Session:
    """Episode-level state of one robot server (a plain dataclass: the control loop updates `step`,
    `mode` and `fault` in place every period; request handlers return modified copies instead)."""

    watchdog_periods: int  # periods without a fresh action before the safe action latches (>= 1)
    max_action_age_ns: int  # an action expires at most this long after the state it answers, ns
    mode: str = "idle"  # one of MODES
    fault: str = ""  # why the safe action latched ("" if none)
    episode: int = 0  # episodes begun by `reset`
    step: int = 0  # actions applied in this episode
    ready: bool = False  # an episode was reset and may be started
    starts: int = 0  # `start`s accepted; when it changes the server discards queued actions

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    """Facts about the server that requests report but never change."""

    spec: RobotSpec
    rate_hz: float  # control rate actually run, Hz
    state_port: int
    action_port: int
    onboard: bool  # an on-board ONNX policy is loaded
    curve: bool  # CURVE encryption is on


class RobotCalls(Protocol):
    """The robot-side effects a request may cause (the server implements them, guarded against robot
    exceptions; tests pass fakes)."""

    def reset(self, seed: int | None) -> np.ndarray | None:
        """Reset the robot for a new episode; the first observation, or None if the robot failed."""

    def safe_now(self) -> None:
        """Command the safe action immediately."""

    def set_parameter(self, name: str, value: float) -> None:
        """Set one robot parameter (KeyError/ValueError: refused)."""


@dataclasses.dataclass(frozen=True)
class Request:
    """One validated control request and what its handler may consult."""

    message: protocol.Message
    info: ServerInfo
    robot: RobotCalls
    counters: Callable[[], Mapping[str, Any]]  # the loop's counters as `status` reports them (LoopStats.to_wire);
    # a callable: the latency percentiles are computed only for the request that reports them
    state_seq: int  # seq of the last published state
