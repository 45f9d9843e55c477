"""Bridge round-trip latency on loopback at 100 Hz, 500 Hz and 1 kHz, policy inference included.

Robot: `PointMassRobot` (numpy) served by `hardware.robot.serve` in its own process. Policy side: a jitted
JAX MLP (2x64 tanh) answering every state. Latency = state published -> the action answering it received,
measured by the robot on its clock. Also: the on-board ONNX mode at each rate (no network round trip).
Writes experiments/benchmarks/results/bridge_latency.{json,png}.

    .venv/bin/python experiments/benchmarks/bridge_latency.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import socket
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from hardware.client import RobotClient
from saferl.export.onnx import export_apply_onnx

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
RATES = (100, 500, 1000)


def _free_port() -> int:
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port < 65000:
            return port


def _mlp(obs_dim: int = 2, act_dim: int = 1, hidden: int = 64):
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = {"w1": jax.random.normal(keys[0], (obs_dim, hidden)) / np.sqrt(obs_dim),
              "w2": jax.random.normal(keys[1], (hidden, hidden)) / np.sqrt(hidden),
              "w3": jax.random.normal(keys[2], (hidden, act_dim)) / np.sqrt(hidden)}

    def apply(p, obs):
        return jnp.tanh(jnp.tanh(jnp.tanh(obs @ p["w1"]) @ p["w2"]) @ p["w3"])

    return params, apply


def _serve(rate: int, onboard: pathlib.Path) -> tuple[subprocess.Popen, str]:
    address = f"tcp://127.0.0.1:{_free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "hardware.robot.serve", "hardware.robot.examples:PointMassRobot",
                             "--bind", address, "--rate", str(rate), "--watchdog", "50", "--onboard", str(onboard),
                             "--set", "episode_length=10000000"], stdout=subprocess.PIPE, text=True)
    while proc.stdout.readline().strip() != "ready":
        if proc.poll() is not None:
            raise RuntimeError("server failed to start")
    return proc, address


def measure(rate: int, seconds: float, act, onboard: pathlib.Path) -> dict:
    proc, address = _serve(rate, onboard)
    try:
        with RobotClient(address) as client:
            result = {"rate_hz": rate}
            for mode in ("remote", "onboard"):
                client.reset(seed=0)
                episode = client.status()["episode"]
                before = client.status()
                client.start(mode=mode)
                state = client.wait_for_state(episode=episode, mode="running" if mode == "remote" else "onboard")
                infer = []
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    if mode == "remote":
                        start = time.perf_counter()
                        action = np.asarray(act(state.body["obs"]))
                        infer.append(time.perf_counter() - start)
                        client.send_action(action, state, validity_s=0.05)
                    state = client.recv_state(1.0)
                status = client.status()
                client.stop()
                periods = status["periods"] - before["periods"]
                result[mode] = {
                    "periods": periods, "overruns": status["overruns"] - before["overruns"],
                    "max_overrun_us": status["max_overrun_us"],
                    "fresh_fraction": (status["actions_applied"] - before["actions_applied"]) / max(periods, 1),
                    "fault": status["fault"], "dropped": status["dropped"],
                    "latency_us": status["latency"] if mode == "remote" else None,
                    "policy_inference_us_p50": float(np.median(infer) * 1e6) if infer else None}
            return result
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def plot(results: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    rates = [r["rate_hz"] for r in results]
    for key, marker in (("p50_us", "o"), ("p99_us", "s"), ("max_us", "^")):
        axes[0].plot(rates, [r["remote"]["latency_us"][key] for r in results], marker=marker, label=key)
    axes[0].plot(rates, [1e6 / r for r in rates], "k--", label="period")
    axes[0].set(xscale="log", yscale="log", xlabel="control rate (Hz)", ylabel="round trip (µs)",
                title="state → action round trip, policy included")
    axes[0].legend()
    width = 0.35
    x = np.arange(len(rates))
    for offset, mode in ((-width / 2, "remote"), (width / 2, "onboard")):
        axes[1].bar(x + offset, [100 * r[mode]["overruns"] / max(r[mode]["periods"], 1) for r in results], width,
                    label=f"{mode} overruns %")
        axes[1].plot(x + offset, [100 * (1 - r[mode]["fresh_fraction"]) for r in results], "kx")
    axes[1].set(xticks=x, xticklabels=[str(r) for r in rates], xlabel="control rate (Hz)", ylabel="% of periods",
                title="overruns (bars) and periods without a fresh action (x)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measurement time per rate and mode")
    args = parser.parse_args()
    params, apply = _mlp()
    act = jax.jit(lambda obs: apply(params, obs))
    act(np.zeros(2, np.float32)).block_until_ready()
    with tempfile.TemporaryDirectory() as tmp:
        onboard = export_apply_onnx(apply, params, 2, pathlib.Path(tmp) / "mlp.onnx")
        results = [measure(rate, args.seconds, act, onboard) for rate in RATES]
    report = {"machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(),
                          "load_average_1_5_15min": list(__import__("os").getloadavg())},
              "policy": "JAX MLP 2-64-64-1 tanh, jitted, CPU", "robot": "PointMassRobot (numpy), own process",
              "seconds_per_rate": args.seconds, "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bridge_latency.json").write_text(json.dumps(report, indent=2))
    plot(results, RESULTS / "bridge_latency.png")
    for r in results:
        lat = r["remote"]["latency_us"]
        print(f"{r['rate_hz']:5d} Hz remote: p50 {lat['p50_us']:.0f} µs p99 {lat['p99_us']:.0f} µs max "
              f"{lat['max_us']:.0f} µs, overruns {r['remote']['overruns']}/{r['remote']['periods']}, fresh "
              f"{100 * r['remote']['fresh_fraction']:.1f} %, policy {r['remote']['policy_inference_us_p50']:.0f} µs"
              f" | onboard: overruns {r['onboard']['overruns']}/{r['onboard']['periods']}, fresh "
              f"{100 * r['onboard']['fresh_fraction']:.1f} %")


if __name__ == "__main__":
    main()
