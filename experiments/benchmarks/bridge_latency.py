"""Bridge round-trip latency on loopback at 100 Hz, 500 Hz and 1 kHz, policy inference included.

Robot: `PointMassRobot` (numpy) served by `hardware.robot.serve` in its own process. Policy side: a jitted
JAX MLP (2x64 tanh) answering every state. Latency = state published -> the action answering it received,
measured by the robot on its clock. Also: the on-board ONNX mode at each rate (no network round trip).
Writes experiments/benchmarks/results/bridge_latency.{json,png}.

    .venv/bin/python experiments/benchmarks/bridge_latency.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from hardware import endpoints, protocol
from hardware.client import RobotClient
from hardware.protocol import now_ns
from saferl.export.onnx import export_apply_onnx

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
RATES = (100, 500, 1000)


def _mlp(obs_dim: int = 2, act_dim: int = 1, hidden: int = 64):
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = {
        "w1": jax.random.normal(keys[0], (obs_dim, hidden)) / np.sqrt(obs_dim),
        "w2": jax.random.normal(keys[1], (hidden, hidden)) / np.sqrt(hidden),
        "w3": jax.random.normal(keys[2], (hidden, act_dim)) / np.sqrt(hidden),
    }

    def apply(p, obs):
        return jnp.tanh(jnp.tanh(jnp.tanh(obs @ p["w1"]) @ p["w2"]) @ p["w3"])

    return params, apply


def _serve(rate: int, onboard: pathlib.Path, rt_priority: int | None) -> tuple[subprocess.Popen, str]:
    address = endpoints.free_loopback_address()
    extra = ["--rt-priority", str(rt_priority)] if rt_priority else []
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hardware.robot.serve",
            "hardware.robot.examples:PointMassRobot",
            "--bind",
            address,
            "--rate",
            str(rate),
            "--watchdog",
            "50",
            "--onboard",
            str(onboard),
            "--set",
            "episode_length=10000000",
            *extra,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    while proc.stdout.readline().strip() != "ready":
        if proc.poll() is not None:
            raise RuntimeError("server failed to start")
    return proc, address


def _percentiles(values_ns: list[int]) -> dict:
    us = np.asarray(values_ns, np.float64) / 1e3
    return (
        {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)), "max_us": float(us.max())}
        if us.size
        else {}
    )


def measure(
    rate: int,
    seconds: float,
    act,
    onboard: pathlib.Path,
    rt_priority: int | None = None,
    busy_wait_variant: bool = True,
) -> dict:
    """Both modes at `rate`; remote mode also times each hop of the round trip (one machine, one clock).

    Hops, per answered state: `publish_to_receive` (the robot's clock at publishing, `t_ns`, to the client
    holding the frame: robot encode + send, loopback, client wake-up), `decode`, `inference`, `encode_send`
    (encode + push), and `push_to_robot` (p50 of the robot's round trip minus p50 of `t_ns` -> sent: loopback
    back and the robot's wake-up and decode).
    """
    proc, address = _serve(rate, onboard, rt_priority)
    try:
        with RobotClient(address) as client:
            result = {"rate_hz": rate}
            variants = [("remote", False)] + ([("remote_busy_wait", True)] if busy_wait_variant else [])
            for label, busy_wait in [*variants, ("onboard", False)]:
                mode = "onboard" if label == "onboard" else "remote"
                client.reset(seed=0)
                episode = client.status()["episode"]
                before = client.status()
                client.start(mode=mode)
                state = client.wait_for_state(episode=episode, mode="running" if mode == "remote" else "onboard")
                hops = {name: [] for name in ("publish_to_receive", "decode", "inference", "encode_send", "sent")}
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    if mode == "remote":
                        t_infer = now_ns()
                        action = np.asarray(act(state.body["obs"]))
                        t_encode = now_ns()
                        client.send_action(action, state, validity_s=0.05)
                        t_sent = now_ns()
                        hops["inference"].append(t_encode - t_infer)
                        hops["encode_send"].append(t_sent - t_encode)
                        hops["sent"].append(t_sent - state.t_ns)
                    raw = client.recv_state_frame(1.0, busy_wait)
                    t_received = now_ns()
                    state = protocol.decode(raw, expected=("state",))
                    hops["decode"].append(now_ns() - t_received)
                    hops["publish_to_receive"].append(t_received - state.t_ns)
                status = client.status()
                client.stop()
                periods = status["periods"] - before["periods"]
                result[label] = {
                    "periods": periods,
                    "overruns": status["overruns"] - before["overruns"],
                    "max_overrun_us": status["max_overrun_us"],
                    "fresh_fraction": (status["actions_applied"] - before["actions_applied"]) / max(periods, 1),
                    "fault": status["fault"],
                    "dropped": status["dropped"],
                    "latency_us": status["latency"] if mode == "remote" else None,
                    "policy_inference_us_p50": (
                        float(np.median(hops["inference"]) / 1e3) if hops["inference"] else None
                    ),
                }
                if mode == "remote":
                    profile = {name: _percentiles(values) for name, values in hops.items() if name != "sent"}
                    profile["push_to_robot"] = {
                        "p50_us": status["latency"]["p50_us"] - float(np.median(hops["sent"])) / 1e3
                    }
                    result[label]["hops_us"] = profile
            return result
    finally:
        proc.terminate()
        proc.wait(timeout=10)


_ECHO = """
import sys, zmq
ctx = zmq.Context(); sub = ctx.socket(zmq.SUB); sub.setsockopt(zmq.CONFLATE, 1); sub.setsockopt(zmq.SUBSCRIBE, b"")
sub.connect(sys.argv[1]); push = ctx.socket(zmq.PUSH); push.connect(sys.argv[2]); print("ready", flush=True)
import msgpack
while True:
    message = msgpack.unpackb(sub.recv())
    if message is None:
        break
    push.send(msgpack.packb(message))
"""


def bare_round_trip(rate: int, seconds: float) -> dict:
    """Reference measured in the same run: PUB -> SUB (another process: msgpack unpack + pack) -> PUSH -> PULL,
    the same sockets and conflation as the bridge, no validation, no policy, no control loop."""
    import zmq

    ctx = zmq.Context()
    pub, pull = ctx.socket(zmq.PUB), ctx.socket(zmq.PULL)
    pub_port, pull_port = pub.bind_to_random_port("tcp://127.0.0.1"), pull.bind_to_random_port("tcp://127.0.0.1")
    proc = subprocess.Popen(
        [sys.executable, "-c", _ECHO, f"tcp://127.0.0.1:{pub_port}", f"tcp://127.0.0.1:{pull_port}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        proc.stdout.readline()
        import msgpack

        latencies, period = [], 1e9 / rate
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # the SUB connection needs a moment before messages flow
            pub.send(msgpack.packb({"t_ns": now_ns()}))
            if pull.poll(10):
                pull.recv()
                break
        next_send = now_ns()
        end = next_send + int(seconds * 1e9)
        while next_send < end:
            while now_ns() < next_send:
                time.sleep(max(next_send - now_ns(), 0) / 1e9)
            pub.send(msgpack.packb({"t_ns": now_ns(), "obs": np.zeros(2, np.float32).tobytes()}))
            if pull.poll(int(period / 1e6) + 1):
                latencies.append(now_ns() - msgpack.unpackb(pull.recv())["t_ns"])
            next_send += int(period)
        pub.send(msgpack.packb(None))
        return {"rate_hz": rate, "count": len(latencies), **_percentiles(latencies)}
    finally:
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
        pub.close(linger=0)
        pull.close(linger=0)
        ctx.term()


def codec_costs(repeats: int = 20000) -> dict:
    """Microseconds to encode / decode the state and action messages of the point-mass robot, in process."""
    state_body = {
        "obs": np.zeros(2, np.float32),
        "reward": 0.0,
        "cost": 0.0,
        "done": False,
        "mode": "running",
        "episode": 1,
        "step": 1,
        "action": np.zeros(1, np.float32),
        "action_source": "policy",
        "action_seq": 1,
        "fault": "",
    }
    action_body = {"action": np.zeros(1, np.float32), "state_seq": 1, "valid_until_ns": 1}
    costs = {}
    for name, body in (("state", state_body), ("action", action_body)):
        raw = protocol.encode(name, 1, body)
        for label, call in (
            (f"encode_{name}", lambda name=name, body=body: protocol.encode(name, 1, body, check=False)),
            (f"encode_checked_{name}", lambda name=name, body=body: protocol.encode(name, 1, body)),
            (f"decode_{name}", lambda name=name, raw=raw: protocol.decode(raw, expected=(name,))),
        ):
            start = time.perf_counter()
            for _ in range(repeats):
                call()
            costs[label] = (time.perf_counter() - start) / repeats * 1e6
    return costs


def plot(results: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    rates = [r["rate_hz"] for r in results]
    for key, marker in (("p50_us", "o"), ("p99_us", "s"), ("max_us", "^")):
        axes[0].plot(rates, [r["remote"]["latency_us"][key] for r in results], marker=marker, label=key)
    axes[0].plot(rates, [1e6 / r for r in rates], "k--", label="period")
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="control rate (Hz)",
        ylabel="round trip (µs)",
        title="state → action round trip, policy included",
    )
    axes[0].legend()
    width = 0.35
    x = np.arange(len(rates))
    for offset, mode in ((-width / 2, "remote"), (width / 2, "onboard")):
        axes[1].bar(
            x + offset,
            [100 * r[mode]["overruns"] / max(r[mode]["periods"], 1) for r in results],
            width,
            label=f"{mode} overruns %",
        )
        axes[1].plot(x + offset, [100 * (1 - r[mode]["fresh_fraction"]) for r in results], "kx")
    axes[1].set(
        xticks=x,
        xticklabels=[str(r) for r in rates],
        xlabel="control rate (Hz)",
        ylabel="% of periods",
        title="overruns (bars) and periods without a fresh action (x)",
    )
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measurement time per rate and mode")
    parser.add_argument(
        "--no-busy-wait-variant",
        action="store_true",
        help="skip the second remote measurement with the client busy-waiting for states",
    )
    parser.add_argument(
        "--rt-priority",
        type=int,
        default=None,
        help="also measure with the robot server under SCHED_FIFO at this priority (root)",
    )
    args = parser.parse_args()
    jax.config.update("jax_cpu_enable_async_dispatch", False)  # as `saferl-deploy run` does
    params, apply = _mlp()
    act = jax.jit(lambda obs: apply(params, obs))
    act(np.zeros(2, np.float32)).block_until_ready()
    gc.collect()
    gc.freeze()  # as `saferl-deploy run` does after warm-up: JAX's many objects are not rescanned mid-run
    load_before = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        onboard = export_apply_onnx(apply, params, 2, pathlib.Path(tmp) / "mlp.onnx")
        results = [
            measure(rate, args.seconds, act, onboard, busy_wait_variant=not args.no_busy_wait_variant) for rate in RATES
        ]
        realtime = (
            [measure(rate, args.seconds, act, onboard, args.rt_priority, busy_wait_variant=False) for rate in RATES]
            if args.rt_priority
            else None
        )
    reference = bare_round_trip(500, args.seconds)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_1_5_15min_before": load_before,
            "load_average_1_5_15min": list(os.getloadavg()),
        },
        "policy": "JAX MLP 2-64-64-1 tanh, jitted, CPU",
        "robot": "PointMassRobot (numpy), own process",
        "seconds_per_rate": args.seconds,
        "results": results,
        "results_server_realtime": realtime,
        "realtime_priority": args.rt_priority,
        "reference_bare_pyzmq_msgpack_500hz": reference,
        "codec_us": codec_costs(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bridge_latency.json").write_text(json.dumps(report, indent=2))
    plot(results, RESULTS / "bridge_latency.png")
    for r in results:
        lat = r["remote"]["latency_us"]
        print(
            f"{r['rate_hz']:5d} Hz remote: p50 {lat['p50_us']:.0f} µs p99 {lat['p99_us']:.0f} µs max "
            f"{lat['max_us']:.0f} µs, overruns {r['remote']['overruns']}/{r['remote']['periods']}, fresh "
            f"{100 * r['remote']['fresh_fraction']:.1f} %, policy {r['remote']['policy_inference_us_p50']:.0f} µs"
            f" | onboard: overruns {r['onboard']['overruns']}/{r['onboard']['periods']}, fresh "
            f"{100 * r['onboard']['fresh_fraction']:.1f} %"
        )
        print(
            "        hops p50/p99 µs: "
            + ", ".join(
                f"{name} {h.get('p50_us', 0):.0f}/{h.get('p99_us', float('nan')):.0f}"
                for name, h in r["remote"]["hops_us"].items()
            )
        )
    for r in results:
        if "remote_busy_wait" in r:
            b = r["remote_busy_wait"]
            print(
                f"{r['rate_hz']:5d} Hz remote, client busy-waiting: p50 {b['latency_us']['p50_us']:.0f} µs p99 "
                f"{b['latency_us']['p99_us']:.0f} µs, overruns {b['overruns']}/{b['periods']}, fresh "
                f"{100 * b['fresh_fraction']:.1f} %, policy {b['policy_inference_us_p50']:.0f} µs"
            )
    for r in realtime or []:
        lat = r["remote"]["latency_us"]
        print(
            f"{r['rate_hz']:5d} Hz remote, server SCHED_FIFO {args.rt_priority}: p50 {lat['p50_us']:.0f} µs "
            f"p99 {lat['p99_us']:.0f} µs, overruns {r['remote']['overruns']}/{r['remote']['periods']}, fresh "
            f"{100 * r['remote']['fresh_fraction']:.1f} %"
        )
    print(
        f"reference bare pyzmq+msgpack round trip at 500 Hz: p50 {reference['p50_us']:.0f} µs, "
        f"p99 {reference['p99_us']:.0f} µs; load average {report['machine']['load_average_1_5_15min']}"
    )


if __name__ == "__main__":
    main()
