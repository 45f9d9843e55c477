"""hardware/protocol.py: round trips, every rejection with its code, fuzzing, and no JAX on the robot side."""

import subprocess
import sys

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardware import protocol
from hardware.protocol import ProtocolError


def _action_body(action=None):
    action = np.array([0.5, -0.25], np.float32) if action is None else action
    return {"action": action, "state_seq": 7, "valid_until_ns": 123}


def _raw(envelope):
    return msgpack.packb(envelope, use_bin_type=True)


def _envelope(**overrides):
    body = {"action": protocol.pack_array(np.zeros(2, np.float32)), "state_seq": 1, "valid_until_ns": 5}
    return {"v": 1, "type": "action", "seq": 1, "t_ns": 10, "body": body} | overrides


def test_action_round_trip_keeps_array_bytes_and_header():
    raw = protocol.encode("action", 3, _action_body(), t_ns=99)
    msg = protocol.decode(raw)
    assert (msg.type, msg.seq, msg.t_ns) == ("action", 3, 99)
    np.testing.assert_array_equal(msg.body["action"], np.array([0.5, -0.25], np.float32))
    assert msg.body["action"].dtype == np.float32 and msg.body["state_seq"] == 7


def test_big_endian_and_float64_arrays_arrive_as_little_endian_values():
    array = np.arange(6, dtype=">f8").reshape(2, 3)
    back = protocol.unpack_array(protocol.pack_array(array))
    np.testing.assert_array_equal(back, array)
    assert back.dtype == np.dtype("<f8")


@pytest.mark.parametrize(
    "envelope, code",
    [
        (_envelope(v=2), "unsupported_version"),
        (_envelope(v="1"), "unsupported_version"),
        (_envelope(type="launch_missiles"), "unknown_type"),
        (_envelope(seq=-1), "malformed"),
        (_envelope(extra=1), "malformed"),
        (_envelope(body={"state_seq": 1, "valid_until_ns": 5}), "malformed"),
        (_envelope(body={**_envelope()["body"], "surprise": 1}), "malformed"),
        (
            _envelope(body={**_envelope()["body"], "action": {"dtype": "complex64", "shape": [1], "data": b"\0" * 8}}),
            "bad_dtype",
        ),
        (
            _envelope(body={**_envelope()["body"], "action": {"dtype": "float32", "shape": [3], "data": b"\0" * 8}}),
            "bad_shape",
        ),
        (
            _envelope(body={**_envelope()["body"], "action": {"dtype": "float32", "shape": [1 << 20], "data": b""}}),
            "bad_shape",
        ),
        ([1, 2, 3], "malformed"),
    ],
)
def test_decode_rejects_bad_envelopes_with_a_specific_code(envelope, code):
    with pytest.raises(ProtocolError) as err:
        protocol.decode(_raw(envelope))
    assert err.value.code == code


def test_oversized_message_is_rejected_before_unpacking():
    with pytest.raises(ProtocolError) as err:
        protocol.decode(b"\x00" * (protocol.MAX_MESSAGE_BYTES + 1))
    assert err.value.code == "too_large"


def test_unexpected_type_on_a_plane_is_rejected():
    raw = protocol.encode("hello", 1, {})
    with pytest.raises(ProtocolError) as err:
        protocol.decode(raw, expected=("action",))
    assert err.value.code == "unexpected_type"


def test_check_array_enforces_declared_shape_dtype_finiteness_and_bounds():
    low, high = -np.ones(2, np.float32), np.ones(2, np.float32)
    good = np.array([0.1, -1.0], np.float32)
    assert protocol.check_array(good, (2,), "float32", "a", low, high) is good
    cases = [
        (np.zeros(3, np.float32), "bad_shape"),
        (np.zeros(2, np.float64), "bad_dtype"),
        (np.array([np.nan, 0], np.float32), "non_finite"),
        (np.array([1.5, 0], np.float32), "out_of_range"),
    ]
    for array, code in cases:
        with pytest.raises(ProtocolError) as err:
            protocol.check_array(array, (2,), "float32", "a", low, high)
        assert err.value.code == code


def test_sender_cannot_encode_an_invalid_message():
    with pytest.raises(ProtocolError):
        protocol.encode("state", 1, {"obs": np.zeros(2)})  # required fields missing


def _decode_never_crashes(raw: bytes) -> None:
    try:
        msg = protocol.decode(raw)
    except ProtocolError as err:
        assert err.code in protocol.ERROR_CODES  # noqa: PT017 (fuzzing: a rejection is one valid outcome of two)
    else:
        assert msg.type in protocol.MESSAGE_TYPES


_FUZZ = settings(max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@_FUZZ
@given(st.binary(max_size=256))
@pytest.mark.slow
def test_random_bytes_are_rejected_never_crash(raw):
    _decode_never_crashes(raw)


_plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=16),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@_FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["v", "type", "seq", "t_ns", "body", "x"]),
        _plain | st.sampled_from([1, "action", "state", "hello"]),
        max_size=6,
    ),
    st.dictionaries(
        st.sampled_from(["action", "state_seq", "valid_until_ns", "obs", "seed", "params"]), _plain, max_size=4
    ),
)
@pytest.mark.slow
def test_structured_random_messages_are_rejected_or_valid(envelope, body):
    if "body" in envelope:
        envelope["body"] = body
    _decode_never_crashes(_raw(envelope))


def test_robot_side_modules_import_without_jax():
    code = (
        "import sys; import hardware.protocol, hardware.client, hardware.security, hardware.recording, "
        "hardware.robot.server, hardware.robot.serve, hardware.robot.examples, hardware.robot.onboard; "
        "bad = [m for m in sys.modules if m == 'jax' or m.startswith('jax.')]; print(bad); "
        "sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
