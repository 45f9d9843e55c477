"""Control-plane request handlers of the robot server: `(session, request) -> (session, reply data)`.

Each handler reads the validated request, returns a new `Session` (never mutating the one given) and the
reply's `data` map, or raises `ProtocolError` for a refused request (the session is then unchanged). Only
`hardware.robot.server` imports this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from hardware import protocol
from hardware.protocol import ProtocolError
from hardware.robot.session import Request, Session

SERVER_PARAMS = ("watchdog_periods", "max_action_age_s")
START_MODES = {"remote": "running", "onboard": "onboard"}  # start's `mode` -> the robot mode it enters

Reply = tuple[Session, dict[str, Any]]


def handle(session: Session, request: Request) -> Reply:
    """Dispatch one validated request to its handler."""
    return HANDLERS[request.message.type](session, request)


def hello(session: Session, request: Request) -> Reply:
    info = request.info
    return session, {
        "protocol_version": protocol.PROTOCOL_VERSION,
        "spec": info.spec.to_wire(),
        "rate_hz": info.rate_hz,
        "watchdog_periods": session.watchdog_periods,
        "max_action_age_s": session.max_action_age_ns / 1e9,
        "state_port": info.state_port,
        "action_port": info.action_port,
        "onboard": info.onboard,
        "curve": info.curve,
    }


def reset(session: Session, request: Request) -> Reply:
    request.robot.safe_now()
    obs = request.robot.reset(request.message.body.get("seed"))
    if obs is None:
        raise ProtocolError("robot_error", "the robot's reset failed; see the server log")
    spec = request.info.spec
    obs = np.asarray(obs, dtype=protocol.DTYPES[spec.obs_dtype])
    session = dataclasses.replace(session, mode="idle", episode=session.episode + 1, step=0, fault="", ready=True)
    return session, {"episode": session.episode, "obs": protocol.pack_array(obs)}


def start(session: Session, request: Request) -> Reply:
    asked = request.message.body.get("mode", "remote")
    if asked not in START_MODES:
        raise ProtocolError("bad_request", f"start mode '{asked}' unknown; allowed: {', '.join(START_MODES)}")
    if asked == "onboard" and not request.info.onboard:
        raise ProtocolError("bad_request", "no on-board policy loaded (start the server with one)")
    if not session.ready:
        raise ProtocolError("bad_request", "no episode to start: send reset first")
    session = dataclasses.replace(session, mode=START_MODES[asked], fault="", starts=session.starts + 1)
    return session, {"episode": session.episode, "mode": session.mode}


def stop(session: Session, request: Request) -> Reply:
    if session.mode != "idle":
        request.robot.safe_now()
        session = dataclasses.replace(session, mode="idle", ready=False)
    return session, {"episode": session.episode, "step": session.step}


def status(session: Session, request: Request) -> Reply:
    return session, {
        "mode": session.mode,
        "fault": session.fault,
        "episode": session.episode,
        "step": session.step,
        "ready": session.ready,
        "state_seq": request.state_seq,
        **request.counters(),
    }


def set_params(session: Session, request: Request) -> Reply:
    """All-or-nothing for the server's own parameters; robot parameters are set one by one after them."""
    params = request.message.body["params"]
    robot_params = dict(request.info.spec.params)
    unknown = [k for k in params if k not in SERVER_PARAMS and k not in robot_params]
    if unknown:
        raise ProtocolError(
            "bad_request",
            f"unknown parameter(s) {unknown}; settable: {', '.join(list(SERVER_PARAMS) + list(robot_params))}",
        )
    changes: dict[str, Any] = {}  # Session fields to replace (ints here; the fields are of several types)
    if "watchdog_periods" in params:
        value = params["watchdog_periods"]
        if not (value >= 1 and float(value).is_integer()):
            raise ProtocolError("out_of_range", f"watchdog_periods must be an integer >= 1, got {value}")
        changes["watchdog_periods"] = int(value)
    if "max_action_age_s" in params:
        value = params["max_action_age_s"]
        if not 0 < value <= 60:
            raise ProtocolError("out_of_range", f"max_action_age_s must be in (0, 60], got {value}")
        changes["max_action_age_ns"] = int(value * 1e9)
    for name, value in params.items():
        if name not in SERVER_PARAMS:
            try:
                request.robot.set_parameter(name, value)
            except (KeyError, ValueError) as err:
                raise ProtocolError("out_of_range", f"robot refused {name}={value}: {err}") from None
    return dataclasses.replace(session, **changes), {"applied": {k: float(v) for k, v in params.items()}}


HANDLERS: dict[str, Callable[[Session, Request], Reply]] = {
    "hello": hello,
    "reset": reset,
    "start": start,
    "stop": stop,
    "status": status,
    "set_params": set_params,
}
assert set(HANDLERS) == set(protocol.REQUEST_TYPES)
