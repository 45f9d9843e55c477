"""Serve any `RobotInterface` from the command line, without JAX, typer or rich:

python -m hardware.robot.serve mypackage.mymodule:MyRobot --bind tcp://*:5555 [--set key=value ...]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

import zmq

from hardware.robot.interface import RobotInterface
from hardware.robot.server import RobotServer, ServerConfig


def load_factory(target: str):
    """`module.path:Name` -> the callable it names (a RobotInterface subclass or factory)."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ValueError(f"robot must be given as module:Name, got '{target}'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot load robot '{target}': {err}") from None


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run a robot server (saferl bridge, protocol v1).")
    parser.add_argument("robot", help="module:Name of a RobotInterface subclass or factory")
    parser.add_argument("--bind", default="tcp://127.0.0.1:5555", help="control address (state PORT+1, actions PORT+2)")
    parser.add_argument("--rate", type=float, default=None, help="control rate in Hz (default: the robot's)")
    parser.add_argument("--watchdog", type=int, default=5, help="periods without a fresh action before safe stop")
    parser.add_argument("--max-action-age", type=float, default=0.2, help="longest action validity, s")
    parser.add_argument("--keys", default=None, help="CURVE key directory (from `saferl-deploy keys`)")
    parser.add_argument("--onboard", default=None, help="ONNX policy to run on board (start mode 'onboard')")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument(
        "--rt-priority",
        type=int,
        default=None,
        metavar="1-99",
        help="run the control loop under SCHED_FIFO at this priority (Linux; root or CAP_SYS_NICE)",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="robot constructor argument")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        kwargs = {}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set expects KEY=VALUE, got '{item}'")
            kwargs[key] = _parse_value(value)
        robot = load_factory(args.robot)(**kwargs)
        if not isinstance(robot, RobotInterface):
            raise ValueError(f"'{args.robot}' did not build a RobotInterface")
        config = ServerConfig(
            bind=args.bind,
            rate_hz=args.rate,
            watchdog_periods=args.watchdog,
            max_action_age_s=args.max_action_age,
            key_dir=args.keys,
            onboard_policy=args.onboard,
            max_duration_s=args.duration,
            realtime_priority=args.rt_priority,
        )
        server = RobotServer(robot, config)
    except (ValueError, TypeError, OSError, zmq.ZMQError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"serving {robot.spec().name} on {args.bind}", flush=True)
    stats = server.serve(ready=lambda: print("ready", flush=True))
    print(json.dumps(stats.to_wire()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
