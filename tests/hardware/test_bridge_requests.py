"""The control-plane handlers alone: `(session, request) -> (session, reply data)`, with a fake robot."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from hardware import protocol
from hardware.protocol import ProtocolError
from hardware.robot import requests
from hardware.robot.interface import RobotSpec
from hardware.robot.session import Request, ServerInfo, Session

SPEC = RobotSpec(
    name="fake", obs_shape=(3,), action_low=(-1.0,), action_high=(1.0,), rate_hz=100.0, params=(("gain", 1.0),)
)
INFO = ServerInfo(spec=SPEC, rate_hz=100.0, state_port=5556, action_port=5557, onboard=False, curve=False)


class FakeRobot:
    def __init__(self, fail_reset: bool = False):
        self.fail_reset, self.calls = fail_reset, []

    def reset(self, seed):
        self.calls.append(("reset", seed))
        return None if self.fail_reset else np.arange(3, dtype=np.float64)

    def safe_now(self):
        self.calls.append(("safe_now",))

    def set_parameter(self, name, value):
        if value > 10:
            raise ValueError("too big")
        self.calls.append(("set", name, value))


def call(session: Session, kind: str, body: dict | None = None, robot: FakeRobot | None = None):
    message = protocol.Message(kind, 7, 0, body or {})
    request = Request(
        message=message, info=INFO, robot=robot or FakeRobot(), counters=lambda: {"periods": 3}, state_seq=42
    )
    before = copy.deepcopy(session)
    result = requests.handle(session, request)
    assert session == before, "a handler never mutates the session it is given"
    return result


def fresh() -> Session:
    return Session(watchdog_periods=5, max_action_age_ns=200_000_000)


def test_reset_begins_an_episode_with_obs_in_the_spec_dtype():
    robot = FakeRobot()
    session, data = call(dataclasses.replace(fresh(), mode="safe", fault="watchdog: x"), "reset", {"seed": 4}, robot)
    assert (session.mode, session.episode, session.step, session.fault, session.ready) == ("idle", 1, 0, "", True)
    assert data["episode"] == 1 and data["obs"]["dtype"] == "float32" and data["obs"]["shape"] == [3]
    assert robot.calls == [("safe_now",), ("reset", 4)]


def test_a_failed_robot_reset_is_a_robot_error_and_changes_nothing():
    with pytest.raises(ProtocolError) as err:
        call(fresh(), "reset", {}, FakeRobot(fail_reset=True))
    assert err.value.code == "robot_error"


def test_start_needs_a_reset_episode_and_reports_the_robot_mode():
    with pytest.raises(ProtocolError, match="send reset first"):
        call(fresh(), "start", {"mode": "remote"})
    ready, _ = call(fresh(), "reset", {})
    session, data = call(ready, "start", {})
    assert session.mode == data["mode"] == "running" and session.starts == ready.starts + 1
    with pytest.raises(ProtocolError, match="no on-board policy"):
        call(ready, "start", {"mode": "onboard"})
    with pytest.raises(ProtocolError, match="unknown"):
        call(ready, "start", {"mode": "fast"})


def test_stop_ends_the_episode_and_is_a_no_op_when_idle():
    robot = FakeRobot()
    running = dataclasses.replace(fresh(), mode="running", ready=True, step=9, episode=2)
    session, data = call(running, "stop", {}, robot)
    assert (session.mode, session.ready, data) == ("idle", False, {"episode": 2, "step": 9})
    assert robot.calls == [("safe_now",)]
    idle = fresh()
    assert call(idle, "stop", {})[0] == idle


def test_status_reports_session_and_counters():
    _, data = call(dataclasses.replace(fresh(), episode=3), "status")
    assert data["episode"] == 3 and data["state_seq"] == 42 and data["periods"] == 3 and data["mode"] == "idle"


def test_set_params_checks_server_parameters_before_touching_the_robot():
    robot = FakeRobot()
    with pytest.raises(ProtocolError) as err:
        call(fresh(), "set_params", {"params": {"gain": 2.0, "watchdog_periods": 0.5}}, robot)
    assert err.value.code == "out_of_range" and robot.calls == []
    with pytest.raises(ProtocolError) as err:
        call(fresh(), "set_params", {"params": {"nope": 1.0}}, robot)
    assert err.value.code == "bad_request"
    session, data = call(
        fresh(), "set_params", {"params": {"watchdog_periods": 8.0, "max_action_age_s": 0.5, "gain": 2.0}}, robot
    )
    assert session.watchdog_periods == 8 and session.max_action_age_ns == 500_000_000
    assert robot.calls == [("set", "gain", 2.0)] and data["applied"]["gain"] == 2.0
    with pytest.raises(ProtocolError) as err:
        call(fresh(), "set_params", {"params": {"gain": 20.0}}, robot)
    assert err.value.code == "out_of_range"


def test_hello_reports_the_static_facts_and_current_parameters():
    _, data = call(dataclasses.replace(fresh(), watchdog_periods=9), "hello")
    assert data["spec"]["name"] == "fake" and data["watchdog_periods"] == 9 and data["state_port"] == 5556
    assert data["max_action_age_s"] == pytest.approx(0.2) and data["onboard"] is False


def test_realtime_priority_is_checked_and_a_refusal_is_a_clear_error(monkeypatch):
    from hardware.robot import server as server_module
    from hardware.robot.examples import PointMassRobot

    with pytest.raises(ValueError, match=r"\[1, 99\]"):
        server_module.ServerConfig(realtime_priority=0)

    def refuse(*args):
        raise PermissionError("not allowed")

    monkeypatch.setattr(server_module.os, "sched_setscheduler", refuse)
    with pytest.raises(ValueError, match="CAP_SYS_NICE"):
        server_module.RobotServer(
            PointMassRobot(), server_module.ServerConfig(bind="tcp://127.0.0.1:5599", realtime_priority=10)
        )
