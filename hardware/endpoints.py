"""Addresses of the bridge's three sockets: control on PORT, state stream on PORT+1, actions on PORT+2."""

from __future__ import annotations

import re
import socket

_TCP = re.compile(r"^tcp://(?P<host>\*|[A-Za-z0-9_.\-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")


def parse(address: str) -> tuple[str, int]:
    """`tcp://HOST:PORT` -> (host, port). Raises ValueError naming the address and the allowed form."""
    match = _TCP.match(address or "")
    if not match or not 1 <= int(match["port"]) <= 65533:
        raise ValueError(
            f"invalid address '{address}'; expected tcp://HOST:PORT with 1 <= PORT <= 65533 "
            "(PORT+1 and PORT+2 are used too)"
        )
    return match["host"], int(match["port"])


def plane_addresses(address: str) -> dict[str, str]:
    """The control, state and action addresses derived from the control address."""
    host, port = parse(address)
    return {
        "control": f"tcp://{host}:{port}",
        "state": f"tcp://{host}:{port + 1}",
        "action": f"tcp://{host}:{port + 2}",
    }


def free_loopback_address(host: str = "127.0.0.1", attempts: int = 200) -> str:
    """`tcp://HOST:PORT` with PORT, PORT+1 and PORT+2 free on `host` right now (for a local robot server: tests,
    benchmarks, notebooks). Another process may still take them before the server binds."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind((host, 0))
            base = probe.getsockname()[1]
        if base > 65000:
            continue
        sockets = [socket.socket() for _ in range(3)]
        try:
            for offset, sock in enumerate(sockets):
                sock.bind((host, base + offset))
            return f"tcp://{host}:{base}"
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no three consecutive free ports on {host} in {attempts} attempts")
