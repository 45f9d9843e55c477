"""CURVE keys for the bridge: generation (`saferl-deploy keys`) and socket set-up (pyzmq only, no JAX).

Layout of a key directory: `server.key` / `server.key_secret` (the robot), `client.key` /
`client.key_secret` (the policy machine), and `authorized/` holding the public keys of allowed clients.
"""

from __future__ import annotations

import pathlib
import shutil

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


class KeyFileError(ValueError):
    """A key directory or file that is missing or unreadable."""


def generate_keys(directory: str | pathlib.Path, overwrite: bool = False) -> dict[str, pathlib.Path]:
    """Create a server and a client key pair in `directory` and authorise the client. Returns the paths."""
    directory = pathlib.Path(directory)
    if (directory / "server.key_secret").exists() and not overwrite:
        raise KeyFileError(f"keys already exist in {directory}; pass overwrite to replace them")
    if not zmq.has("curve"):
        raise KeyFileError("this libzmq has no CURVE support")
    directory.mkdir(parents=True, exist_ok=True)
    server_public, server_secret = zmq.auth.create_certificates(directory, "server")
    client_public, client_secret = zmq.auth.create_certificates(directory, "client")
    authorized = directory / "authorized"
    authorized.mkdir(exist_ok=True)
    shutil.copy(client_public, authorized / "client.key")
    for secret in (server_secret, client_secret):
        pathlib.Path(secret).chmod(0o600)
    return {
        "server_public": pathlib.Path(server_public),
        "server_secret": pathlib.Path(server_secret),
        "client_public": pathlib.Path(client_public),
        "client_secret": pathlib.Path(client_secret),
        "authorized": authorized,
    }


def _load(path: pathlib.Path, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.exists():
        raise KeyFileError(f"key file {path} not found (create keys with `saferl-deploy keys DIR`)")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as err:
        raise KeyFileError(f"cannot read key file {path}: {err}") from None
    if secret and secret_key is None:
        raise KeyFileError(f"{path} holds no secret key")
    return public, secret_key


class ServerSecurity:
    """CURVE server side: an authenticator admitting only keys in `authorized/`, applied to each socket."""

    def __init__(self, context: zmq.Context, key_dir: str | pathlib.Path):
        key_dir = pathlib.Path(key_dir)
        self.public, self.secret = _load(key_dir / "server.key_secret", secret=True)
        authorized = key_dir / "authorized"
        if not authorized.is_dir():
            raise KeyFileError(f"{authorized} not found: put the public keys of allowed clients there")
        self._auth = ThreadAuthenticator(context)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(authorized))

    def apply(self, socket: zmq.Socket) -> None:
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        socket.curve_server = True

    def close(self) -> None:
        self._auth.stop()


def apply_client_keys(socket: zmq.Socket, key_dir: str | pathlib.Path) -> None:
    """CURVE client side: our key pair plus the server's public key (must be set before connect)."""
    key_dir = pathlib.Path(key_dir)
    public, secret = _load(key_dir / "client.key_secret", secret=True)
    server_public, _ = _load(key_dir / "server.key", secret=False)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = server_public
