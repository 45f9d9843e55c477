"""hardware/robot/server.py over loopback, server in its own process: watchdog, stale/out-of-order drops,
bad and fuzzed messages, lost client, CURVE keys. Robot: the pure-numpy PointMassRobot at 200 Hz."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
from bridge_helpers import POINT_MASS, start_server, stop_server

from hardware import protocol
from hardware.client import RobotClient, RobotConnectionError, RobotRequestError
from hardware.security import generate_keys

WATCHDOG = 5  # periods


@pytest.fixture(scope="module")
def server():
    proc, address = start_server([*POINT_MASS, "--rate", "200", "--watchdog", str(WATCHDOG)])
    yield address
    assert proc.poll() is None, "the server died during the tests"
    stop_server(proc)


@pytest.fixture
def client(server):
    with RobotClient(server) as c:
        yield c
        c.stop()


def _begin(client: RobotClient, seed: int = 0):
    client.reset(seed=seed)
    episode = client.status()["episode"]
    client.start()
    return client.wait_for_state(episode=episode, mode="running")


def test_hello_declares_the_robot_spec(client):
    assert client.spec.name == "point-mass" and client.spec.obs_shape == (2,) and client.rate_hz == 200.0
    assert client.info["watchdog_periods"] == WATCHDOG


def test_fresh_actions_are_applied_and_reported(client):
    state = _begin(client)
    for _ in range(20):
        client.send_action(np.array([0.5]), state)
        state = client.recv_state(1.0)
    assert state.body["mode"] == "running" and state.body["action_source"] in ("policy", "hold")
    np.testing.assert_allclose(state.body["action"], [0.5])


def test_no_actions_trip_the_watchdog_within_k_periods(client):
    state = _begin(client)
    client.send_action(np.array([0.3]), state)
    last_policy_step = None
    while True:
        state = client.recv_state(1.0)
        if state.body["action_source"] in ("policy", "hold"):
            last_policy_step = state.body["step"]
        if state.body["mode"] == "safe":
            break
    assert state.body["fault"].startswith("watchdog")
    np.testing.assert_array_equal(state.body["action"], [0.0])  # the safe action
    # The robot took at most k-1 further periods (held/safe) after the last policy action.
    assert last_policy_step is not None and state.body["step"] - last_policy_step <= WATCHDOG


def test_stale_and_out_of_order_actions_are_dropped(client):
    state = _begin(client)
    before = client.status()["dropped"]
    stale = {"action": np.array([0.9], np.float32), "state_seq": state.seq, "valid_until_ns": state.t_ns - 1}
    client._action_push.send(protocol.encode("action", 1, stale))
    time.sleep(0.05)
    after = client.status()
    assert after["dropped"].get("stale", 0) > before.get("stale", 0)
    assert after["mode"] in ("running", "safe") and after["bad_messages"].get("stale") is None
    state = _begin(client)
    newer = client.recv_state(1.0)
    client.send_action(np.array([0.1]), newer)
    time.sleep(0.02)
    client.send_action(np.array([0.2]), state)  # answers an older state than one already sent
    time.sleep(0.05)
    assert client.status()["dropped"].get("out_of_order", 0) >= 1


def test_malformed_action_latches_the_safe_action(client):
    state = _begin(client)
    client._action_push.send(b"\x93not msgpack")
    deadline = time.monotonic() + 2
    while state.body["mode"] != "safe" and time.monotonic() < deadline:
        state = client.recv_state(1.0)
    assert state.body["mode"] == "safe" and state.body["fault"].startswith("bad_message")
    out_of_bounds = {"action": np.array([7.0], np.float32), "state_seq": state.seq, "valid_until_ns": state.t_ns}
    client._action_push.send(protocol.encode("action", 2, out_of_bounds))
    time.sleep(0.05)
    assert client.status()["bad_messages"].get("out_of_range", 0) >= 1


def test_control_plane_answers_errors_for_bad_requests(client):
    with pytest.raises(RobotRequestError) as err:
        client.set_params(no_such_param=1.0)
    assert err.value.code == "bad_request"
    client.stop()
    with pytest.raises(RobotRequestError, match="reset first"):
        client.start()
    assert client.set_params(max_force=3.0)["applied"] == {"max_force": 3.0}


def test_fuzzed_messages_over_sockets_are_rejected_and_the_server_keeps_running(server, client):
    rng = np.random.default_rng(0)
    control = zmq.Context.instance().socket(zmq.REQ)
    control.rcvtimeo = 2000
    control.connect(server)
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(client.info and server.rsplit(":", 1)[0] + f":{client.info['action_port']}")
    payloads = [rng.bytes(int(rng.integers(0, 300))) for _ in range(300)]
    payloads += [protocol.encode("hello", 1).replace(b"\xa5hello", b"\xa5helxo"), b"", b"\x81\xa1v\x02"]
    errors, disconnects = 0, client.status()["client_disconnects"]
    for raw in payloads:
        control.send(raw)
        errors += protocol.decode(control.recv()).type == "error"
        push.send(raw)
    control.close(0)
    push.close(0)
    assert errors >= len(payloads) - 1  # every payload is garbage (one might decode: astronomically unlikely)
    # the fuzzer's action connection must be gone before an episode starts: its disconnect (or a garbage action
    # still queued) arriving while running would rightly latch safe (on a slow machine it did, 1 run in many)
    deadline = time.monotonic() + 5.0
    while client.status()["client_disconnects"] == disconnects and time.monotonic() < deadline:
        time.sleep(0.01)
    status = client.status()  # handled after any action frame that reached the server before it
    assert status["client_disconnects"] > disconnects
    assert sum(status["bad_messages"].values()) >= errors
    state = _begin(client, seed=3)  # and it still runs episodes
    client.send_action(np.array([0.2]), state)
    assert client.recv_state(1.0).body["mode"] == "running"


_CLIENT_SCRIPT = """
import sys, numpy as np
from hardware.client import RobotClient
c = RobotClient(sys.argv[1]); c.reset(seed=1); ep = c.status()["episode"]; c.start()
s = c.wait_for_state(episode=ep, mode="running")
print("running", flush=True)
while True:
    c.send_action(np.array([0.4]), s); s = c.recv_state(1.0)
"""


def test_killing_the_policy_process_mid_episode_gives_the_safe_action_within_the_watchdog(server):
    proc = subprocess.Popen([sys.executable, "-c", _CLIENT_SCRIPT, server], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "running"
        with RobotClient(server) as watcher:
            state = watcher.wait_for_state(mode="running", action_source="policy")
            os.kill(proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            last_policy_step = state.body["step"]
            while state.body["mode"] == "running":
                state = watcher.recv_state(1.0)
                if state.body["action_source"] == "policy":
                    last_policy_step = state.body["step"]
            elapsed = time.monotonic() - killed
            assert state.body["mode"] == "safe"
            assert state.body["fault"].split(":")[0] in ("client_lost", "watchdog")
            assert state.body["step"] - last_policy_step <= WATCHDOG
            # 5 periods at 200 Hz = 25 ms; generous slack for a loaded 2-core machine
            assert elapsed < WATCHDOG / 200 + 0.5
            watcher.stop()
    finally:
        proc.kill()
        proc.wait()


def test_curve_rejects_a_client_with_the_wrong_keys(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    generate_keys(good)
    generate_keys(bad)
    proc, address = start_server([*POINT_MASS, "--rate", "100", "--keys", str(good)])
    try:
        with RobotClient(address, key_dir=good) as client:
            assert client.spec.name == "point-mass" and client.info["curve"] is True
        with pytest.raises(RobotConnectionError):
            RobotClient(address, key_dir=bad, timeout_s=0.5)
        with pytest.raises(RobotConnectionError):
            RobotClient(address, key_dir=None, timeout_s=0.5)  # plain text to a CURVE server
    finally:
        stop_server(proc)
