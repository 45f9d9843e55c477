"""`saferl-deploy`: serve a (simulated) robot, run a trained policy on it, manage keys, inspect recordings.

    saferl-deploy sim pendulum --bind tcp://127.0.0.1:5555
    saferl-deploy run runs/ppo-pendulum-... --robot tcp://127.0.0.1:5555 --episodes 3
    saferl-deploy keys ./keys ; saferl-deploy ping tcp://robot:5555 ; saferl-deploy replay runs/.../deploy-...
JAX is imported only by `run` and `sim` (the simulator); `serve`, `keys`, `ping` and `replay` need none.
"""

from __future__ import annotations

import pathlib
import sys
import time

import typer
import zmq
from rich.console import Console
from rich.table import Table

from hardware import endpoints
from saferl.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Deploy saferl policies on robots over the ZeroMQ bridge (docs/protocol.md).",
)
console = Console()


def _address(value: str) -> str:
    try:
        endpoints.parse(value)
    except ValueError as err:
        raise UserError(str(err)) from None
    return value


@app.command()
def sim(
    env: str = typer.Argument(..., help="env name (see `saferl envs`)"),
    bind: str = typer.Option("tcp://127.0.0.1:5555", help="control address; state PORT+1, actions PORT+2"),
    rate: float | None = typer.Option(None, help="control rate, Hz (default 1/ctrl_dt: real time)"),
    seed: int = typer.Option(0, help="default reset seed"),
    latency_periods: int = typer.Option(0, help="inject actuation latency, periods"),
    obs_noise: float = typer.Option(0.0, help="inject Gaussian observation noise (std)"),
    jitter: float = typer.Option(0.0, help="inject uniform [0, jitter] s delays per step"),
    watchdog: int = typer.Option(5, help="periods without a fresh action before the safe action latches"),
    keys: pathlib.Path | None = typer.Option(None, help="CURVE key directory (saferl-deploy keys)"),
    onboard: pathlib.Path | None = typer.Option(None, help="ONNX policy for start mode 'onboard'"),
    duration: float | None = typer.Option(None, help="stop after this many seconds"),
    rt_priority: int | None = typer.Option(
        None, help="SCHED_FIFO priority 1-99 for the control loop (Linux; root or CAP_SYS_NICE)"
    ),
) -> None:
    """Serve a simulated robot: ENV stepped by MuJoCo in real time (or at --rate)."""
    import envs
    from hardware.robot.server import RobotServer, ServerConfig
    from hardware.sim_robot import SimConfig, SimRobot

    if env not in envs.names():
        raise UserError(f"unknown env '{env}'; available: {', '.join(envs.names())}")
    robot = SimRobot(
        SimConfig(env=env, latency_periods=latency_periods, obs_noise_std=obs_noise, jitter_s=jitter), seed=seed
    )
    config = ServerConfig(
        bind=_address(bind),
        rate_hz=rate,
        watchdog_periods=watchdog,
        key_dir=str(keys) if keys else None,
        onboard_policy=str(onboard) if onboard else None,
        max_duration_s=duration,
        realtime_priority=rt_priority,
    )
    server = RobotServer(robot, config)
    console.print(
        f"[bold]{robot.spec().name}[/] on {bind} at {1e9 / server.period_ns:.1f} Hz "
        f"({'CURVE' if keys else 'no encryption'}); Ctrl-C stops"
    )
    stats = server.serve(ready=lambda: print("ready", flush=True))
    console.print(stats.to_wire())


@app.command()
def serve(
    robot: str = typer.Argument(..., help="module:Name of your RobotInterface"),
    bind: str = typer.Option("tcp://127.0.0.1:5555"),
    rate: float | None = typer.Option(None),
    watchdog: int = typer.Option(5),
    keys: pathlib.Path | None = typer.Option(None),
    onboard: pathlib.Path | None = typer.Option(None),
    rt_priority: int | None = typer.Option(None, help="SCHED_FIFO priority 1-99 (Linux)"),
) -> None:
    """Serve your own robot class (same as `python -m hardware.robot.serve`, which needs no typer)."""
    from hardware.robot import serve as serve_module

    argv = [robot, "--bind", _address(bind), "--watchdog", str(watchdog)]
    for flag, value in (("--rate", rate), ("--keys", keys), ("--onboard", onboard), ("--rt-priority", rt_priority)):
        if value is not None:
            argv += [flag, str(value)]
    raise typer.Exit(serve_module.main(argv))


@app.command()
def run(
    run_dir: pathlib.Path = typer.Argument(..., help="a `saferl train` run directory"),
    robot: str = typer.Option("tcp://127.0.0.1:5555", help="the robot's control address"),
    episodes: int = typer.Option(1, min=1),
    seed: int = typer.Option(0),
    max_steps: int | None = typer.Option(None, min=1, help="steps per episode (default: until done)"),
    record: pathlib.Path | None = typer.Option(None, help="recording dir (default RUN_DIR/deploy-TIME)"),
    validity: float = typer.Option(0.1, help="action validity after its state, s"),
    stop_on_budget: bool = typer.Option(False, help="end an episode once its cost exceeds the budget"),
    busy_wait: bool = typer.Option(
        False, help="wait for states without sleeping: lower round trip, one core kept busy"
    ),
    keys: pathlib.Path | None = typer.Option(None),
    quiet: bool = typer.Option(False),
) -> None:
    """Run a trained policy on a robot for N episodes, recording every transition."""
    import jax

    from hardware.policies import load_policy
    from hardware.runner import RunConfig

    # one decision per state: run each compiled call on this thread (no hand-off to XLA's worker thread and
    # back, ~50-80 µs per call on a 2-core machine between states)
    jax.config.update("jax_cpu_enable_async_dispatch", False)

    record = record or run_dir / f"deploy-{time.strftime('%Y%m%d-%H%M%S')}"
    config = RunConfig(
        episodes=episodes,
        seed=seed,
        max_steps=max_steps,
        validity_s=validity,
        record_dir=str(record),
        stop_on_budget=stop_on_budget,
        busy_wait=busy_wait,
    )
    policy = load_policy(run_dir)
    summaries = drive(policy, _address(robot), config, keys, {"run_dir": str(run_dir)}, live=not quiet)
    console.print(f"recorded {len(summaries)} episode(s) to {record}")


def drive(
    policy, robot: str, config, keys: pathlib.Path | None = None, metadata: dict | None = None, live: bool = True
) -> list:
    """Connect, run the episodes with a live status line, print the summary table. Used by `run` and tests."""
    from rich.live import Live

    from hardware.client import RobotClient
    from hardware.runner import run_episodes

    with RobotClient(robot, key_dir=keys) as client:
        metadata = {"algo": getattr(policy, "algo", "?"), "env": getattr(policy, "env_name", "?"), **(metadata or {})}
        if not live:
            summaries = run_episodes(client, policy, config, metadata)
        else:
            with Live(console=console, refresh_per_second=5, transient=True) as view:
                summaries = run_episodes(client, policy, config, metadata, progress=lambda p: view.update(_status(p)))
    console.print(summary_table(summaries))
    return summaries


def _status(progress: dict) -> str:
    budget = f"/{progress['budget']:.1f}" if progress["budget"] else ""
    return (
        f"episode {progress['episode']}  step {progress['step']}  return {progress['return']:.2f}  "
        f"cost {progress['cost']:.2f}{budget}  policy {progress['compute_ms']:.2f} ms  [{progress['mode']}]"
    )


def summary_table(summaries: list) -> Table:
    table = Table("episode", "steps", "return", "cost", "budget", "gaps", "policy ms p50", "sources", "fault")
    for s in summaries:
        cost = f"[red]{s.cost:.2f}[/]" if s.over_budget else f"{s.cost:.2f}"
        table.add_row(
            str(s.episode),
            str(s.steps),
            f"{s.episode_return:.2f}",
            cost,
            f"{s.cost_budget:.2f}",
            str(s.gaps),
            f"{s.compute_ms_p50:.2f}",
            ", ".join(f"{k}={v}" for k, v in s.sources.items()),
            s.fault or "-",
        )
    return table


@app.command()
def keys(
    directory: pathlib.Path = typer.Argument(..., help="where to write the key pairs"),
    overwrite: bool = typer.Option(False, help="replace existing keys"),
) -> None:
    """Generate CURVE key pairs (robot + client) and authorise the client."""
    from hardware.security import generate_keys

    paths = generate_keys(directory, overwrite=overwrite)
    console.print(
        f"server secret: {paths['server_secret']} (robot only)\nclient secret: {paths['client_secret']} "
        f"(policy machine only)\nauthorised client keys: {paths['authorized']}/"
    )


@app.command()
def ping(
    robot: str = typer.Argument(..., help="the robot's control address"),
    keys: pathlib.Path | None = typer.Option(None),
    timeout: float = typer.Option(2.0),
) -> None:
    """Say hello to a robot server: spec, rate, mode, counters and control-plane round trip."""
    from hardware.client import RobotClient

    with RobotClient(_address(robot), key_dir=keys, timeout_s=timeout, streams=False) as client:
        start = time.perf_counter()
        status = client.status()
        round_trip_ms = (time.perf_counter() - start) * 1e3
    spec = client.spec
    console.print(
        f"[bold]{spec.name}[/] obs {list(spec.obs_shape)} action {list(spec.action_shape)} at "
        f"{client.rate_hz:.1f} Hz, watchdog {client.info['watchdog_periods']} periods; "
        f"round trip {round_trip_ms:.2f} ms"
    )
    console.print(status)


@app.command()
def replay(directory: pathlib.Path = typer.Argument(..., help="a recording directory (from `run`)")) -> None:
    """Summarise a recording: per-episode steps, return, cost, action sources; total transitions."""
    from hardware.protocol import ACTION_SOURCES
    from hardware.recording import episode_files, load_episode, load_recordings, read_metadata

    meta = read_metadata(directory)
    table = Table("file", "steps", "return", "cost", "policy", "hold", "safe", "onboard")
    for path in episode_files(directory):
        ep = load_episode(path)
        counts = [int((ep["source"] == i).sum()) for i in range(len(ACTION_SOURCES))]
        table.add_row(
            path.name, str(ep["reward"].size), f"{ep['reward'].sum():.2f}", f"{ep['cost'].sum():.2f}", *map(str, counts)
        )
    console.print(
        f"{meta.get('algo', '?')} on {meta.get('robot', {}).get('name', '?')} ({meta.get('robot_address', '?')})"
    )
    console.print(table)
    batch = load_recordings(directory)
    console.print(
        f"{batch['reward'].size} transitions, obs {list(batch['obs'].shape[1:])}, "
        f"action {list(batch['action'].shape[1:])}: train on them with `saferl train ... --data {directory}`"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line (`error: ...`) and exit with code 2."""
    from hardware.client import RobotConnectionError, RobotRequestError

    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="saferl-deploy", standalone_mode=False)
    except typer.Abort:
        return 130
    except typer.Exit as done:
        return done.exit_code
    except typer.TyperException as err:  # usage errors (typer >= 0.29 vendors click)
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        if message:  # an empty message: no arguments at all, and the help was printed
            print(f"error: {message} (see saferl-deploy --help)", file=sys.stderr)
        return 2
    except (UserError, ValueError, FileNotFoundError, RobotConnectionError, RobotRequestError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (OSError, zmq.ZMQError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
