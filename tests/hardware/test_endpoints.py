"""Bridge addresses: parsing with clear errors, the three planes' ports, and free loopback addresses."""

import socket

import pytest

from hardware import endpoints


def test_plane_addresses_use_port_and_the_next_two():
    assert endpoints.plane_addresses("tcp://robot.local:5555") == {
        "control": "tcp://robot.local:5555",
        "state": "tcp://robot.local:5556",
        "action": "tcp://robot.local:5557",
    }
    assert endpoints.parse("tcp://[::1]:7000") == ("[::1]", 7000)


@pytest.mark.parametrize(
    "address", ["robot:5555", "tcp://robot", "tcp://robot:65534", "tcp://robot:0", "", "udp://robot:5555"]
)
def test_bad_addresses_are_refused_with_the_expected_form(address):
    with pytest.raises(ValueError, match="expected tcp://HOST:PORT"):
        endpoints.parse(address)


def test_free_loopback_address_leaves_all_three_ports_bindable():
    host, port = endpoints.parse(endpoints.free_loopback_address())
    assert host == "127.0.0.1" and port <= 65000
    sockets = [socket.socket() for _ in range(3)]
    try:
        for offset, sock in enumerate(sockets):
            sock.bind((host, port + offset))  # raises if any of them were taken
    finally:
        for sock in sockets:
            sock.close()
