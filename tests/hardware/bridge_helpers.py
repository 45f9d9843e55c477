"""Shared helpers for the bridge tests: robot servers in their own processes, a tiny MLP policy."""

from __future__ import annotations

import subprocess
import sys
import time

import jax
import jax.numpy as jnp

from hardware import endpoints
from saferl.policies import Policy, stateless, stateless_carry

PYTHON = sys.executable


def free_base_port() -> int:
    """A port P with P, P+1, P+2 free on 127.0.0.1 (control, state, action)."""
    return endpoints.parse(endpoints.free_loopback_address())[1]


def start_server(args: list[str], timeout_s: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Start `args` (a server command line lacking --bind) in its own process; wait for 'ready'."""
    address = f"tcp://127.0.0.1:{free_base_port()}"
    proc = subprocess.Popen(
        [PYTHON, *args, "--bind", address], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
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


def mlp_apply(params, obs):
    """A 2-layer tanh MLP: obs [..., obs_dim] -> action [..., act_dim] in [-1, 1]."""
    return jnp.tanh(jnp.tanh(obs @ params["w1"] + params["b1"]) @ params["w2"])


def tiny_policy(
    observation_size: int, action_size: int, env_name: str = "pendulum", seed: int = 0, action_repeat: int = 1
) -> Policy:
    """A stateless `saferl.policies.Policy` around a small random MLP (`apply`, `params`: exportable)."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    params = {
        "w1": 0.5 * jax.random.normal(k1, (observation_size, 16)),
        "b1": jnp.zeros(16),
        "w2": 0.5 * jax.random.normal(k2, (16, action_size)),
    }
    return Policy(
        act=stateless(lambda obs, key: mlp_apply(params, obs)),
        init_carry=stateless_carry,
        params=params,
        apply=mlp_apply,
        observation_size=observation_size,
        action_size=action_size,
        env_name=env_name,
        env_config=None,
        cost_budget=0.0,
        algo="tiny",
        action_repeat=action_repeat,
    )
