"""Control-plane request handlers of the robot server (hello, reset, start, stop, status, set_params)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hardware import endpoints, protocol
from hardware.protocol import ProtocolError
from hardware.robot.interface import RobotState

if TYPE_CHECKING:
    from hardware.robot.server import RobotServer

SERVER_PARAMS = ("watchdog_periods", "max_action_age_s")


def handle_request(server: "RobotServer", msg: protocol.Message) -> dict[str, Any]:
    """Act on one validated request; returns the reply's `data`. Raises ProtocolError for refused ones."""
    handler = {"hello": _hello, "reset": _reset, "start": _start, "stop": _stop, "status": _status,
               "set_params": _set_params}[msg.type]
    return handler(server, msg.body)


def _hello(server: "RobotServer", body: dict) -> dict[str, Any]:
    _, port = endpoints.parse(server.config.bind)
    return {"protocol_version": protocol.PROTOCOL_VERSION, "spec": server.spec.to_wire(),
            "rate_hz": 1e9 / server.period_ns, "watchdog_periods": server.watchdog_periods,
            "max_action_age_s": server.max_action_age_ns / 1e9, "state_port": port + 1, "action_port": port + 2,
            "onboard": server._onboard is not None, "curve": server.security is not None}


def _reset(server: "RobotServer", body: dict) -> dict[str, Any]:
    server.mode = "idle"
    server.robot_safe_now()
    state = server._guarded(lambda: server.robot.reset(body.get("seed")), "reset", fault=False)
    if not isinstance(state, RobotState):
        raise ProtocolError("robot_error", "the robot's reset failed; see the server log")
    server._last = state
    server.episode += 1
    server.step, server.fault, server.ready = 0, "", True
    return {"episode": server.episode, "obs": protocol.pack_array(np.asarray(state.obs, np.float64))}


def _start(server: "RobotServer", body: dict) -> dict[str, Any]:
    mode = body.get("mode", "remote")
    if mode not in ("remote", "onboard"):
        raise ProtocolError("bad_request", f"start mode '{mode}' unknown; allowed: remote, onboard")
    if mode == "onboard" and server._onboard is None:
        raise ProtocolError("bad_request", "no on-board policy loaded (start the server with one)")
    if not server.ready:
        raise ProtocolError("bad_request", "no episode to start: send reset first")
    server._pending = server._held = None
    server._periods_without_fresh = 0
    server.fault = ""
    server.mode = "running" if mode == "remote" else "onboard"
    return {"episode": server.episode, "mode": server.mode}


def _stop(server: "RobotServer", body: dict) -> dict[str, Any]:
    if server.mode != "idle":
        server.mode, server.ready = "idle", False
        server.robot_safe_now()
    return {"episode": server.episode, "step": server.step}


def _status(server: "RobotServer", body: dict) -> dict[str, Any]:
    return {"mode": server.mode, "fault": server.fault, "episode": server.episode, "step": server.step,
            "ready": server.ready, "state_seq": server._seq, **server.stats.to_wire()}


def _set_params(server: "RobotServer", body: dict) -> dict[str, Any]:
    params = body["params"]
    robot_params = dict(server.spec.params)
    unknown = [k for k in params if k not in SERVER_PARAMS and k not in robot_params]
    if unknown:
        raise ProtocolError("bad_request", f"unknown parameter(s) {unknown}; settable: "
                            f"{', '.join(list(SERVER_PARAMS) + list(robot_params))}")
    for name, value in params.items():
        if name == "watchdog_periods":
            if not (value >= 1 and float(value).is_integer()):
                raise ProtocolError("out_of_range", f"watchdog_periods must be an integer >= 1, got {value}")
            server.watchdog_periods = int(value)
        elif name == "max_action_age_s":
            if not 0 < value <= 60:
                raise ProtocolError("out_of_range", f"max_action_age_s must be in (0, 60], got {value}")
            server.max_action_age_ns = int(value * 1e9)
        else:
            try:
                server.robot.set_parameter(name, value)
            except (KeyError, ValueError) as err:
                raise ProtocolError("out_of_range", f"robot refused {name}={value}: {err}") from None
    return {"applied": {k: float(v) for k, v in params.items()}}
