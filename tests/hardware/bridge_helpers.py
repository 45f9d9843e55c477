"""Shared helpers for the bridge tests: robot servers in their own processes, a tiny MLP policy."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

PYTHON = sys.executable


def free_base_port() -> int:
    """A port P with P, P+1, P+2 free on 127.0.0.1 (control, state, action)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base > 65000:
            continue
        try:
            sockets = []
            for port in (base, base + 1, base + 2):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no three consecutive free ports")


def start_server(args: list[str], timeout_s: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Start `args` (a server command line lacking --bind) in its own process; wait for 'ready'."""
    address = f"tcp://127.0.0.1:{free_base_port()}"
    proc = subprocess.Popen([PYTHON, *args, "--bind", address], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout_s
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if line.strip() == "ready":
            return proc, address
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"server did not start: {''.join(lines)[-2000:]}")


def stop_server(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


POINT_MASS = ["-m", "hardware.robot.serve", "hardware.robot.examples:PointMassRobot"]


class TinyPolicy:
    """The `saferl.policies.Policy` surface the bridge uses: a 2-layer tanh MLP with `apply` and `act`."""

    def __init__(self, observation_size: int, action_size: int, env_name: str = "pendulum", seed: int = 0):
        k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
        self.params = {"w1": 0.5 * jax.random.normal(k1, (observation_size, 16)), "b1": jnp.zeros(16),
                       "w2": 0.5 * jax.random.normal(k2, (16, action_size))}
        self.observation_size, self.action_size, self.env_name = observation_size, action_size, env_name
        self.cost_budget, self.algo = 0.0, "tiny"
        self.act = jax.jit(lambda obs, key: self.apply(self.params, obs))

    @staticmethod
    def apply(params, obs):
        return jnp.tanh(jnp.tanh(obs @ params["w1"] + params["b1"]) @ params["w2"])
