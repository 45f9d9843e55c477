"""Wire protocol of the saferl robot bridge: msgpack envelopes with strict validation (numpy + msgpack only).

Every message is one msgpack map `{"v": version, "type": str, "seq": uint, "t_ns": uint, "body": map}`;
arrays travel as `{"dtype": name, "shape": [..], "data": bin}` (little-endian, C order). Never pickle.
The full specification, for clients in other languages, is docs/protocol.md.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MAX_MESSAGE_BYTES = 1 << 20  # 1 MiB per message, checked before unpacking
MAX_STRING_CHARS = 1024
MAX_ARRAY_ELEMENTS = 1 << 16
MAX_ARRAY_RANK = 8
MAX_NESTING = 6
MAX_SEQ = (1 << 63) - 1
# dtype name on the wire -> numpy dtype (always little-endian)
DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "uint8": np.dtype("u1"),
    "bool": np.dtype("?"),
}

# Request types (control plane, REQ/REP), their reply types, and the streaming types.
REQUEST_TYPES = ("hello", "reset", "start", "stop", "status", "set_params")
REPLY_TYPES = ("reply", "error")
STREAM_TYPES = ("state", "action")
ACTION_SOURCES = ("policy", "hold", "safe", "onboard")
MODES = ("idle", "running", "onboard", "safe")


class ProtocolError(ValueError):
    """A message that breaks the protocol. `code` is one of ERROR_CODES; the message says what and why."""

    def __init__(self, code: str, message: str):
        assert code in ERROR_CODES, code
        self.code = code
        super().__init__(f"{code}: {message}")


ERROR_CODES = (
    "too_large",
    "malformed",
    "unsupported_version",
    "unknown_type",
    "unexpected_type",
    "bad_dtype",
    "bad_shape",
    "non_finite",
    "out_of_range",
    "stale",
    "out_of_order",
    "bad_request",
    "robot_error",
)

# Field schemas per message type: name -> (kind, required). Kinds: int, float, bool, str, array, params, any.
_SCHEMAS: dict[str, dict[str, tuple[str, bool]]] = {
    "hello": {"client": ("str", False)},
    "reset": {"seed": ("int", False)},
    "start": {"mode": ("str", False)},
    "stop": {},
    "status": {},
    "set_params": {"params": ("params", True)},
    "reply": {"request": ("str", True), "data": ("any", True)},
    "error": {"code": ("str", True), "message": ("str", True)},
    "state": {
        "obs": ("array", True),
        "reward": ("float", True),
        "cost": ("float", True),
        "done": ("bool", True),
        "mode": ("str", True),
        "episode": ("int", True),
        "step": ("int", True),
        "action": ("array", True),
        "action_source": ("str", True),
        "action_seq": ("int", True),
        "fault": ("str", True),
    },
    "action": {"action": ("array", True), "state_seq": ("int", True), "valid_until_ns": ("int", True)},
}
MESSAGE_TYPES = tuple(_SCHEMAS)


@dataclasses.dataclass(frozen=True)
class Message:
    """A decoded, validated message. Arrays in `body` are read-only numpy arrays."""

    type: str
    seq: int  # sender's sequence number (per sender and plane, increasing)
    t_ns: int  # sender's monotonic clock when sent, ns
    body: dict[str, Any]


def now_ns() -> int:
    """Monotonic clock, ns (CLOCK_MONOTONIC: shared by processes on one machine, not across machines)."""
    return time.monotonic_ns()


# ---- encoding -------------------------------------------------------------------------------------
_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()} | {
    dtype.newbyteorder(">"): name for name, dtype in DTYPES.items()
}


def pack_array(array: np.ndarray) -> dict[str, Any]:
    """numpy array -> wire map {dtype, shape, data} (little-endian, C order)."""
    array = np.asarray(array)
    name = _DTYPE_NAMES.get(array.dtype)
    if name is None:
        raise ProtocolError("bad_dtype", f"dtype {array.dtype} not allowed; allowed: {', '.join(DTYPES)}")
    data = np.ascontiguousarray(array, dtype=DTYPES[name]).tobytes()
    return {"dtype": name, "shape": list(array.shape), "data": data}


_SCALARS = (bool, int, float, str, bytes, type(None))


def _to_wire(value: Any) -> Any:
    if type(value) in _SCALARS:  # the common case first: most body fields are scalars
        return value
    if isinstance(value, np.ndarray):
        return pack_array(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _to_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_wire(v) for v in value]
    return value


def encode(
    msg_type: str, seq: int, body: Mapping[str, Any] | None = None, t_ns: int | None = None, check: bool = True
) -> bytes:
    """Build and pack one message. With `check` (default) it is validated as `decode` would and a
    ProtocolError raised if it would not pass; hot paths that have checked their fields already (the
    server's state, the client's action) pass `check=False`."""
    envelope = {
        "v": PROTOCOL_VERSION,
        "type": msg_type,
        "seq": int(seq),
        "t_ns": now_ns() if t_ns is None else int(t_ns),
        "body": _to_wire(dict(body or {})),
    }
    raw = msgpack.packb(envelope, use_bin_type=True)
    if check:
        decode(raw)  # the sender is held to the same rules as the receiver
    return raw


def peek_seq(raw: bytes) -> int:
    """The `seq` of a message that may fail validation, for echoing in an error reply (0 if unreadable)."""
    if not isinstance(raw, (bytes, bytearray, memoryview)) or len(raw) > MAX_MESSAGE_BYTES:
        return 0
    try:
        envelope = msgpack.unpackb(
            bytes(raw),
            raw=False,
            strict_map_key=False,
            ext_hook=_ext_hook,
            timestamp=0,
            max_str_len=MAX_STRING_CHARS * 4,
            max_array_len=MAX_ARRAY_ELEMENTS,
            max_map_len=256,
        )
    except Exception:  # noqa: BLE001 — anything unreadable has no seq to echo
        return 0
    seq = envelope.get("seq") if isinstance(envelope, dict) else None
    return seq if type(seq) is int and 0 <= seq <= MAX_SEQ else 0


# ---- decoding -------------------------------------------------------------------------------------
def _ext_hook(code: int, data: bytes) -> Any:
    raise ProtocolError("malformed", f"msgpack extension type {code} not allowed")


def decode(raw: bytes, expected: tuple[str, ...] | None = None) -> Message:
    """Unpack and validate one message. `expected`: the types allowed here (others: 'unexpected_type')."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise ProtocolError("malformed", f"message must be bytes, got {type(raw).__name__}")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        envelope = msgpack.unpackb(
            bytes(raw),
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_ext_hook,
            max_str_len=MAX_STRING_CHARS * 4,
            max_bin_len=MAX_MESSAGE_BYTES,
            max_array_len=MAX_ARRAY_ELEMENTS,
            max_map_len=256,
            timestamp=0,
        )
    except ProtocolError:
        raise
    except Exception as err:  # noqa: BLE001 — msgpack raises several types (ExtraData, FormatError, ValueError, ...)
        raise ProtocolError("malformed", f"not a msgpack message ({type(err).__name__})") from None
    if not isinstance(envelope, dict):
        raise ProtocolError("malformed", f"top level must be a map, got {type(envelope).__name__}")
    version = envelope.get("v")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise ProtocolError(
            "unsupported_version", f"protocol version {version!r} not supported; supported: {list(SUPPORTED_VERSIONS)}"
        )
    if set(envelope) != {"v", "type", "seq", "t_ns", "body"}:
        raise ProtocolError("malformed", f"envelope keys must be v, type, seq, t_ns, body; got {sorted(envelope)}")
    msg_type = envelope["type"]
    if not isinstance(msg_type, str) or msg_type not in _SCHEMAS:
        raise ProtocolError("unknown_type", f"unknown message type {msg_type!r}; known: {', '.join(MESSAGE_TYPES)}")
    if expected is not None and msg_type not in expected:
        raise ProtocolError(
            "unexpected_type", f"message type '{msg_type}' not accepted here; expected: {', '.join(expected)}"
        )
    seq, t_ns = envelope["seq"], envelope["t_ns"]
    for name, value in (("seq", seq), ("t_ns", t_ns)):
        if type(value) is not int or not 0 <= value <= MAX_SEQ:
            raise ProtocolError("malformed", f"{name} must be an integer in [0, 2^63), got {value!r}")
    body = _validate_body(msg_type, envelope["body"])
    return Message(msg_type, seq, t_ns, body)


_MISSING = object()


def _validate_body(msg_type: str, body: Any) -> dict[str, Any]:
    if type(body) is not dict:
        raise ProtocolError("malformed", f"body of '{msg_type}' must be a map, got {type(body).__name__}")
    schema = _SCHEMAS[msg_type]
    if not body.keys() <= schema.keys():
        unknown = sorted(set(body) - set(schema))
        raise ProtocolError("malformed", f"unknown field(s) {unknown} in '{msg_type}'; allowed: {sorted(schema)}")
    out: dict[str, Any] = {}
    for name, (kind, required) in schema.items():
        value = body.get(name, _MISSING)
        if value is _MISSING:
            if required:
                raise ProtocolError("malformed", f"'{msg_type}' lacks required field '{name}'")
            continue
        out[name] = _FIELD_CHECKS[kind](msg_type, name, value)
    return out


# Field checks: (message type or enclosing field, field name, value) -> the value; the location string of an
# error is only built when there is an error (this is the receive hot path).
def _where(outer: str, name: str) -> str:
    return f"{outer}.{name}"


def _check_int(outer: str, name: str, value: Any) -> int:
    if type(value) is not int or abs(value) > MAX_SEQ:
        raise ProtocolError("malformed", f"{_where(outer, name)} must be a 64-bit integer, got {_short(value)}")
    return value


def _check_float(outer: str, name: str, value: Any) -> float:
    kind = type(value)
    if kind is not float and kind is not int:
        raise ProtocolError("malformed", f"{_where(outer, name)} must be a number, got {_short(value)}")
    if not math.isfinite(value):
        raise ProtocolError("non_finite", f"{_where(outer, name)} is {value}")
    return float(value)


def _check_bool(outer: str, name: str, value: Any) -> bool:
    if type(value) is not bool:
        raise ProtocolError("malformed", f"{_where(outer, name)} must be a boolean, got {_short(value)}")
    return value


def _check_str(outer: str, name: str, value: Any) -> str:
    if type(value) is not str or len(value) > MAX_STRING_CHARS:
        raise ProtocolError("malformed", f"{_where(outer, name)} must be a string of <= {MAX_STRING_CHARS} chars")
    return value


def _check_array_field(outer: str, name: str, value: Any) -> np.ndarray:
    return unpack_array(value, _where(outer, name))


def _check_params(outer: str, name: str, value: Any) -> dict[str, float]:
    where = _where(outer, name)
    if type(value) is not dict or not all(type(k) is str for k in value):
        raise ProtocolError("malformed", f"{where} must be a map of name -> number")
    return {k: _check_float(where, k, v) for k, v in value.items()}


def _check_any(outer: str, name: str, value: Any) -> Any:
    _check_plain(_where(outer, name), value, 0)
    return value


_FIELD_CHECKS = {
    "int": _check_int,
    "float": _check_float,
    "bool": _check_bool,
    "str": _check_str,
    "array": _check_array_field,
    "params": _check_params,
    "any": _check_any,
}


def _check_plain(where: str, value: Any, depth: int) -> None:
    """Free-form data (reply payloads): only nil/bool/int/float/str/bin/list/map, nested <= MAX_NESTING."""
    if depth > MAX_NESTING:
        raise ProtocolError("malformed", f"{where} nested deeper than {MAX_NESTING}")
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return
    if isinstance(value, list):
        for item in value:
            _check_plain(where, item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ProtocolError("malformed", f"{where} map keys must be strings")
            _check_plain(f"{where}.{key}", item, depth + 1)
        return
    raise ProtocolError("malformed", f"{where} holds a value of type {type(value).__name__}")


_ARRAY_KEYS = {"dtype", "shape", "data"}


def unpack_array(value: Any, where: str = "array") -> np.ndarray:
    """Wire map {dtype, shape, data} -> read-only numpy array, checking dtype, shape and byte count."""
    if type(value) is not dict or value.keys() != _ARRAY_KEYS:
        raise ProtocolError("malformed", f"{where} must be a map with exactly dtype, shape, data")
    dtype_name, shape, data = value["dtype"], value["shape"], value["data"]
    dtype = DTYPES.get(dtype_name) if type(dtype_name) is str else None
    if dtype is None:
        raise ProtocolError(
            "bad_dtype", f"{where} dtype {_short(dtype_name)} not allowed; allowed: {', '.join(DTYPES)}"
        )
    bad_shape = f"{where} shape must be a list of <= {MAX_ARRAY_RANK} non-negative ints"
    if type(shape) is not list or len(shape) > MAX_ARRAY_RANK:
        raise ProtocolError("bad_shape", bad_shape)
    size = 1
    for d in shape:
        if type(d) is not int or not 0 <= d <= MAX_ARRAY_ELEMENTS:
            raise ProtocolError("bad_shape", bad_shape)
        size *= d
    if size > MAX_ARRAY_ELEMENTS:
        raise ProtocolError("too_large", f"{where} has {size} elements, limit {MAX_ARRAY_ELEMENTS}")
    if type(data) is not bytes or len(data) != size * dtype.itemsize:
        raise ProtocolError(
            "bad_shape", f"{where} data must be {size * dtype.itemsize} bytes for shape {shape} {dtype_name}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def check_array(
    array: np.ndarray,
    shape: tuple[int, ...],
    dtype: str,
    where: str,
    low: np.ndarray | None = None,
    high: np.ndarray | None = None,
) -> np.ndarray:
    """Check a decoded array against a declared spec: exact shape and dtype, finite, within [low, high]."""
    if array.dtype != DTYPES[dtype]:
        raise ProtocolError("bad_dtype", f"{where} must be {dtype}, got {array.dtype.name}")
    if tuple(array.shape) != tuple(shape):
        raise ProtocolError("bad_shape", f"{where} must have shape {list(shape)}, got {list(array.shape)}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ProtocolError("non_finite", f"{where} holds NaN or Inf")
    if low is not None and high is not None and (np.any(array < low) or np.any(array > high)):
        raise ProtocolError("out_of_range", f"{where} outside its bounds [{low.tolist()}, {high.tolist()}]")
    return array


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
