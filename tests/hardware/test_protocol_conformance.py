"""The robot server (`saferl-deploy sim`) against docs/protocol.md, as a client written from the document alone.

Every message here is built with plain pyzmq + msgpack from the document's tables (field names and types are
parsed from docs/protocol.md), never from `hardware/protocol.py`; every answer is checked against those tables:
exactly the documented fields, of the documented types, `seq` echoed, arrays in the spec's dtypes, and every
error code of the document triggered as the document says.
"""

from __future__ import annotations

import pathlib
import re
import time

import msgpack
import numpy as np
import pytest
import zmq
from bridge_helpers import start_server, stop_server

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
TIMEOUT_MS = 5000


# ---- the document ------------------------------------------------------------------------------------
def _table_rows(lines: list[str]) -> list[list[str]]:
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines if line.startswith("|")]
    return rows[2:]  # skip the header and the |---| line


def doc_sections() -> dict[str, list[list[str]]]:
    """Heading text of every `####` section -> the rows of the first table under it."""
    sections: dict[str, list[list[str]]] = {}
    heading, lines = None, []
    for line in [*DOC.read_text().splitlines(), "#### end"]:
        if line.startswith("#"):
            if heading is not None:
                sections[heading] = _table_rows(lines)
            heading, lines = (line[5:].strip() if line.startswith("#### ") else None), []
        elif heading is not None and line.startswith("|"):
            lines.append(line)
    return sections


SECTIONS = doc_sections()


def fields(heading: str) -> dict[str, str]:
    """`field` -> type text of the table under `#### heading`."""
    rows = SECTIONS[heading]
    return {re.fullmatch(r"`(\w+)`", row[0]).group(1): row[1] for row in rows}


def error_codes() -> dict[str, str]:
    """code -> plane column of the 'Error codes' table."""
    text = DOC.read_text().split("## Error codes", 1)[1].split("\n## ", 1)[0]
    rows = _table_rows([line for line in text.splitlines() if line.startswith("|")])
    return {re.fullmatch(r"`(\w+)`", row[0]).group(1): row[1] for row in rows}


def check_value(where: str, type_text: str, value) -> None:
    base = type_text.split(",")[0].strip()
    if base == "int":
        assert type(value) is int, f"{where}: {value!r} is not an int"
    elif base == "float":
        assert type(value) in (int, float), f"{where}: {value!r} is not a number"
    elif base == "bool":
        assert type(value) is bool, f"{where}: {value!r} is not a bool"
    elif base == "str":
        assert type(value) is str, f"{where}: {value!r} is not a str"
    elif base == "array":
        assert isinstance(value, dict) and set(value) == {"dtype", "shape", "data"}, f"{where}: not an array map"
        assert len(value["data"]) == int(np.prod(value["shape"])) * np.dtype(value["dtype"]).itemsize
    elif base == "map":
        assert isinstance(value, dict), f"{where}: {value!r} is not a map"
    elif base.startswith("list of "):
        assert isinstance(value, list), f"{where}: {value!r} is not a list"
        for i, item in enumerate(value):
            check_value(f"{where}[{i}]", base[len("list of ") :], item)
    elif base.startswith("map of str to "):
        assert isinstance(value, dict), f"{where}: {value!r} is not a map"
        for key, item in value.items():
            assert type(key) is str
            check_value(f"{where}.{key}", base[len("map of str to ") :], item)
    else:
        raise AssertionError(f"{where}: type '{type_text}' of the document is not understood by this test")


def check_map(heading: str, value: dict) -> None:
    """`value` has exactly the fields of the document's table (optional ones may be absent), each typed so."""
    documented = fields(heading)
    assert isinstance(value, dict)
    assert set(value) <= set(documented), f"{heading}: undocumented fields {set(value) - set(documented)}"
    required = {name for name, kind in documented.items() if "optional" not in kind}
    assert required <= set(value), f"{heading}: documented fields missing {required - set(value)}"
    for name, item in value.items():
        check_value(f"{heading}.{name}", documented[name], item)


def array(dtype: str, shape: list[int], values) -> dict:
    return {
        "dtype": dtype,
        "shape": list(shape),
        "data": np.asarray(values, np.dtype(dtype).newbyteorder("<")).reshape(shape).tobytes(),
    }


def envelope(kind: str, seq: int, body: dict, **override) -> bytes:
    message = {"v": 1, "type": kind, "seq": seq, "t_ns": time.monotonic_ns(), "body": body} | override
    return msgpack.packb(message, use_bin_type=True)


# ---- a client from the document -----------------------------------------------------------------------
class DocClient:
    def __init__(self, address: str):
        self.address = address
        self.ctx = zmq.Context()
        self.seq = 100
        self.req = self._req()
        self.hello = self.ok("hello", {"client": "conformance"})
        host = address.rsplit(":", 1)[0]
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.CONFLATE, 1)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(f"{host}:{self.hello['state_port']}")
        self.push = self._push(host)

    def _req(self):
        sock = self.ctx.socket(zmq.REQ)
        sock.linger, sock.rcvtimeo = 0, TIMEOUT_MS
        sock.connect(self.address)
        return sock

    def _push(self, host: str):
        sock = self.ctx.socket(zmq.PUSH)
        sock.linger = 0
        sock.connect(f"{host}:{self.hello['action_port']}")
        return sock

    def raw(self, frame: bytes) -> dict:
        self.req.send(frame)
        return msgpack.unpackb(self.req.recv(), raw=False)

    def call(self, kind: str, body: dict) -> tuple[int, dict]:
        self.seq += 1
        return self.seq, self.raw(envelope(kind, self.seq, body))

    def ok(self, kind: str, body: dict) -> dict:
        seq, reply = self.call(kind, body)
        assert reply["type"] == "reply", reply
        assert reply["seq"] == seq, "the reply's seq echoes the request's"
        check_map("`reply` body", reply["body"])
        assert reply["body"]["request"] == kind
        check_map(f"`{kind}` reply data", reply["body"]["data"])
        return reply["body"]["data"]

    def error(self, kind: str, body: dict, code: str) -> dict:
        seq, reply = self.call(kind, body)
        assert reply["type"] == "error" and reply["seq"] == seq, reply
        check_map("`error` body", reply["body"])
        assert reply["body"]["code"] == code, reply["body"]
        return reply["body"]

    def state(self, **match) -> dict:
        deadline = time.monotonic() + TIMEOUT_MS / 1e3
        while time.monotonic() < deadline:
            if self.sub.poll(100):
                message = msgpack.unpackb(self.sub.recv(), raw=False)
                if all(message["body"].get(k) == v for k, v in match.items()):
                    return message
        raise AssertionError(f"no state matching {match}")

    def act(self, state: dict, values=None, validity_ns: int = 100_000_000, **body_override) -> None:
        spec = self.hello["spec"]
        values = np.zeros(spec["action_shape"]) if values is None else values
        body = {
            "action": array(spec["action_dtype"], spec["action_shape"], values),
            "state_seq": state["seq"],
            "valid_until_ns": state["t_ns"] + validity_ns,
        } | body_override
        self.seq += 1
        self.push.send(envelope("action", self.seq, body))

    def running(self) -> dict:
        """reset + start remote; the first state of the running episode."""
        episode = self.ok("reset", {"seed": 0})["episode"]
        self.ok("start", {"mode": "remote"})
        return self.state(episode=episode, mode="running")

    def close(self) -> None:
        for sock in (self.req, self.sub, self.push):
            sock.close(linger=0)
        self.ctx.term()


@pytest.fixture(scope="module")
def server():
    proc, address = start_server(["-m", "hardware.cli", "sim", "pendulum", "--rate", "100", "--watchdog", "300"])
    yield address
    stop_server(proc)


@pytest.fixture
def client(server):
    c = DocClient(server)
    yield c
    c.close()


# ---- the tests ----------------------------------------------------------------------------------------
def test_the_document_has_a_table_for_every_message():
    for kind in ("hello", "reset", "start", "stop", "status", "set_params"):
        assert f"`{kind}` request body" in SECTIONS and f"`{kind}` reply data" in SECTIONS
    for heading in ("`reply` body", "`error` body", "`state` body", "`action` body", "`spec` map", "`latency` map"):
        assert SECTIONS[heading], heading


def test_hello_and_spec_match_the_document(client):
    hello = client.hello
    check_map("`spec` map", hello["spec"])
    assert hello["protocol_version"] == 1 and hello["spec"]["name"] == "pendulum-sim"
    assert hello["spec"]["obs_dtype"] in ("float32", "float64")


def test_every_request_of_the_document_is_answered_as_documented(client):
    spec = client.hello["spec"]
    sample = {"client": "conformance", "seed": 3, "mode": "remote", "params": {"watchdog_periods": 300}}
    for kind in ("hello", "reset", "start", "status", "set_params", "stop"):
        body = {name: sample[name] for name in fields(f"`{kind}` request body")}
        data = client.ok(kind, body)
        if kind == "reset":
            assert data["obs"]["dtype"] == spec["obs_dtype"] and data["obs"]["shape"] == spec["obs_shape"]
        if kind == "start":
            assert data["mode"] == "running"  # the robot mode `remote` enters
        if kind == "status":
            check_map("`latency` map", data["latency"])
        if kind == "set_params":
            assert data["applied"] == {"watchdog_periods": 300}


def test_states_match_the_document_and_actions_are_applied(client):
    spec = client.hello["spec"]
    state = client.running()
    client.act(state, np.full(spec["action_shape"], 0.5))
    applied = client.state(action_source="policy")
    for message in (state, applied):
        assert set(message) == {"v", "type", "seq", "t_ns", "body"} and message["type"] == "state"
        check_map("`state` body", message["body"])
        body = message["body"]
        assert body["obs"]["dtype"] == spec["obs_dtype"] and body["obs"]["shape"] == spec["obs_shape"]
        assert body["action"]["dtype"] == spec["action_dtype"] and body["action"]["shape"] == spec["action_shape"]
    assert applied["body"]["action_seq"] == state["seq"] and applied["seq"] > state["seq"]
    np.testing.assert_allclose(np.frombuffer(applied["body"]["action"]["data"], "<f4"), 0.5)
    first = client.state()
    second = client.state()
    assert second["seq"] > first["seq"]
    status = client.ok("status", {})
    assert status["latency"]["count"] >= 1 and status["latency"]["p50_us"] > 0
    client.ok("stop", {})


def test_error_replies_echo_the_request_seq(client):
    client.running()
    client.ok("stop", {})
    client.error("start", {"mode": "remote"}, "bad_request")  # well-formed but refused: seq echoed
    seq = 777
    reply = client.raw(envelope("reset", seq, {"seed": "zero"}))  # malformed body, readable seq
    assert reply["type"] == "error" and reply["seq"] == seq and reply["body"]["code"] == "malformed"
    reply = client.raw(b"\xc1 not msgpack")  # nothing readable: seq 0
    assert reply["type"] == "error" and reply["seq"] == 0 and reply["body"]["code"] == "malformed"


def test_start_onboard_without_a_policy_is_refused(client):
    assert client.hello["onboard"] is False
    client.ok("reset", {"seed": 0})
    client.error("start", {"mode": "onboard"}, "bad_request")


# Each code of the document's table, triggered as the document says. Control-plane triggers: a raw frame.
_BIG = b"x" * (1 << 20)
CONTROL_TRIGGERS = {
    "too_large": lambda c: envelope("hello", 1, {"client": "x"}, pad=_BIG),
    "malformed": lambda c: envelope("reset", 1, {"seed": 1.5}),
    "unsupported_version": lambda c: envelope("hello", 1, {}, v=2),
    "unknown_type": lambda c: envelope("teleport", 1, {}),
    "unexpected_type": lambda c: envelope("error", 1, {"code": "malformed", "message": "x"}),
    "non_finite": lambda c: envelope("set_params", 1, {"params": {"max_action_age_s": float("nan")}}),
    "out_of_range": lambda c: envelope("set_params", 1, {"params": {"max_action_age_s": 100.0}}),
    "bad_request": lambda c: envelope("set_params", 1, {"params": {"no_such_param": 1.0}}),
}
# Action-plane triggers: the action (or frame) sent answering a fresh state `s` of a running episode.
ACTION_TRIGGERS = {
    "too_large": lambda c, s: c.act(s, pad=_BIG),
    "malformed": lambda c, s: c.act(s, extra_field=1),
    "unsupported_version": lambda c, s: c.push.send(envelope("action", 1, {}, v=0)),
    "unknown_type": lambda c, s: c.push.send(envelope("teleport", 1, {})),
    "unexpected_type": lambda c, s: c.push.send(envelope("hello", 1, {})),
    "bad_dtype": lambda c, s: c.act(s, action=array("float64", [1], [0.0])),
    "bad_shape": lambda c, s: c.act(s, action={"dtype": "float32", "shape": [1], "data": b"\x00" * 3}),
    "non_finite": lambda c, s: c.act(s, [np.nan]),
    "out_of_range": lambda c, s: c.act(s, [2.0]),
    "bad_request": lambda c, s: c.act(s, state_seq=s["seq"] + 1000),
}
# Drops: `first` was answered by an applied action, `later` is a newer state.
DROP_TRIGGERS = {
    "stale": lambda c, first, later: c.act(later, validity_ns=-1_000_000),
    "out_of_order": lambda c, first, later: c.act(first),
}


def test_every_documented_error_code_has_a_trigger_here():
    codes = error_codes()
    triggered = set(CONTROL_TRIGGERS) | set(ACTION_TRIGGERS) | set(DROP_TRIGGERS) | {"robot_error"}
    assert set(codes) == triggered
    for code, plane in codes.items():
        assert ("reply" in plane) == (code in CONTROL_TRIGGERS or code == "robot_error"), code
        assert ("bad" in plane) == (code in ACTION_TRIGGERS), code
        assert ("drop" in plane) == (code in DROP_TRIGGERS), code


@pytest.mark.parametrize("code", sorted(CONTROL_TRIGGERS))
def test_control_plane_error_codes(client, code):
    before = client.ok("status", {})["bad_messages"].get(code, 0)
    reply = client.raw(CONTROL_TRIGGERS[code](client))
    assert reply["type"] == "error" and reply["body"]["code"] == code, reply
    assert reply["seq"] == (0 if code == "too_large" else 1)  # an oversized frame is not read
    assert client.ok("status", {})["bad_messages"][code] == before + 1


@pytest.mark.parametrize("code", sorted(ACTION_TRIGGERS))
def test_action_plane_bad_messages_latch_safe(client, code):
    state = client.running()
    before = client.ok("status", {})["bad_messages"].get(code, 0)
    ACTION_TRIGGERS[code](client, state)
    safe = client.state(mode="safe")
    assert safe["body"]["fault"].startswith(f"bad_message: {code}"), safe["body"]["fault"]
    assert safe["body"]["action_source"] == "safe" and safe["body"]["action_seq"] == -1
    assert client.ok("status", {})["bad_messages"][code] == before + 1


@pytest.mark.parametrize("code", sorted(DROP_TRIGGERS))
def test_action_plane_drops_without_a_fault(client, code):
    state = client.running()
    client.act(state)  # a good action first, so an older one is out of order
    client.state(action_source="policy")
    later = client.state()
    before = client.ok("status", {})["dropped"].get(code, 0)
    DROP_TRIGGERS[code](client, state, later)
    deadline = time.monotonic() + 5
    while client.ok("status", {})["dropped"].get(code, 0) == before:
        assert time.monotonic() < deadline, f"{code} not counted in dropped"
        time.sleep(0.02)
    status = client.ok("status", {})
    assert status["mode"] == "running" and status["fault"] == ""
    client.ok("stop", {})


@pytest.mark.slow
def test_oversized_frames_beyond_4_mib_close_the_connection(client):
    client.running()
    before = client.ok("status", {})["client_disconnects"]
    client.push.send(b"\x00" * (5 << 20))
    safe = client.state(mode="safe")
    assert safe["body"]["fault"].startswith("client_lost")
    assert client.ok("status", {})["client_disconnects"] > before
    client.req.send(b"\x00" * (5 << 20))
    with pytest.raises(zmq.Again):
        client.req.recv()  # no reply: the REQ socket is stuck and must be replaced
    client.req.close(linger=0)
    client.req = client._req()
    assert client.ok("status", {})["periods"] > 0  # the robot still serves a new connection


class _ResetFails(Exception):
    pass


def test_a_failed_robot_reset_is_answered_robot_error():
    import threading

    from bridge_helpers import free_base_port

    from hardware.robot.examples import PointMassRobot
    from hardware.robot.server import RobotServer, ServerConfig

    class BrokenReset(PointMassRobot):
        def reset(self, seed=None):
            raise _ResetFails("the gripper is stuck")

    address = f"tcp://127.0.0.1:{free_base_port()}"
    server = RobotServer(BrokenReset(), ServerConfig(bind=address, max_duration_s=30))
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    client = DocClient(address)
    try:
        body = client.error("reset", {"seed": 1}, "robot_error")
        assert "reset" in body["message"]
        status = client.ok("status", {})
        assert status["episode"] == 0 and status["robot_errors"] == 1 and status["bad_messages"]["robot_error"] == 1
    finally:
        client.close()
        server.request_stop()
        thread.join(timeout=10)
