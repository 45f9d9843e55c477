"""`saferl` CLI. Library code raises `UserError`/`EnvError`/`NonFiniteError`; `main` turns them into one
line on stderr and a non-zero exit code (2: bad input, 3: non-finite values in training, 130: Ctrl-C).

Where an error has details beyond its line (the library error that caused it, e.g. orbax's multi-line TensorStore
error for a corrupt checkpoint, and what was logged meanwhile), they go to a log file that the line names:
`$SAFERL_LOG_DIR`, else `$XDG_CACHE_HOME/saferl/logs` (`~/.cache/saferl/logs`), never the run directory; the
newest `KEPT_LOGS` are kept.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
from typing import Any

import typer

from saferl.errors import NonFiniteError, UserError

# typer vendors click; its ClickException (usage errors) is the base class of the public BadParameter (found at run
# time, so typed Any: mypy sees neither the class nor its `format_message`)
_ClickException: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="saferl: safe and model-based RL in JAX (train, evaluate, render, export policies).\n\n"
    "Safe training: `saferl train sac --env safe_cartpole --constraint augmented_lagrangian` keeps "
    "the episode cost within the env's budget (handlers: lagrangian, augmented_lagrangian, crpo, "
    "penalty). The training world: `--set-env randomization.mass_scale=[0.8,1.2]`, "
    "`--set-env obs_noise_std=0.01`, `--set-env action_delay=1`, `--set-env shift.preset=heavy_pole`; "
    "`saferl eval RUN --shift heavy_pole` evaluates on another world.",
)


def _echo(message: str) -> None:
    typer.echo(message)


LOG_DIR_ENV = "SAFERL_LOG_DIR"
KEPT_LOGS = 20  # error logs kept in the log directory (the oldest go)


def log_dir() -> pathlib.Path:
    """Where failed commands write their details: `$SAFERL_LOG_DIR`, else `$XDG_CACHE_HOME/saferl/logs`."""
    if os.environ.get(LOG_DIR_ENV):
        return pathlib.Path(os.environ[LOG_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "saferl" / "logs"


def _details_log(err: BaseException, argv: list[str]) -> pathlib.Path | None:
    """Write what an error's one line leaves out to a new log file in `log_dir()`: the command, the error with
    its chain of causes and their tracebacks, and the log records held back while a checkpoint was read
    (`saferl.training.checkpoints.HELD_BACK_LOG`). Only for errors caused by another (the library's own); None
    otherwise, or if the file cannot be written."""
    import datetime
    import shlex
    import traceback

    from saferl.training.checkpoints import HELD_BACK_LOG

    if err.__cause__ is None:
        return None
    parts = [f"command: {shlex.join(['saferl', *argv])}", "", *traceback.format_exception(err)]
    cause: BaseException | None = err
    while cause is not None:
        if getattr(cause, HELD_BACK_LOG, None):
            parts += ["", f"logged while {type(cause).__name__} arose:", getattr(cause, HELD_BACK_LOG)]
        cause = cause.__cause__
    directory = log_dir()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = directory / f"error-{stamp}-{os.getpid()}.log"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(part.rstrip("\n") for part in parts) + "\n")
        for old in sorted(directory.glob("error-*.log"), key=lambda p: p.stat().st_mtime)[:-KEPT_LOGS]:
            old.unlink(missing_ok=True)
    except OSError:
        return None
    return path


def _error_line(err: BaseException, argv: list[str], prefix: str = "", suffix: str = "") -> str:
    """The one `error:` line of a failed command, naming its details' log file where it wrote one."""
    details = _details_log(err, argv)
    return f"error: {prefix}{err}{suffix}" + (f" (details: {details})" if details else "")


@app.command("envs")
def envs_command() -> None:
    """List the registered environments: sizes, what the safety cost measures, the episode budget and the named
    dynamics shifts (`--set-env shift.preset=NAME`, `saferl eval RUN --shift NAME`)."""
    from rich.console import Console
    from rich.table import Table

    import envs

    table = Table("name", "obs", "action", "episode", "cost", "budget", "shift presets")
    for name in envs.names():
        env = envs.make(name)
        table.add_row(
            name,
            str(env.observation_size),
            str(env.action_size),
            str(env.episode_length),
            env.cost_description,
            f"{env.cost_budget:g}",
            ", ".join(sorted(envs.shift_presets(name))),
        )
    Console(width=160).print(table)


@app.command("tasks")
def tasks_command(env_name: str = typer.Argument(..., help="env name (see `saferl envs`)")) -> None:
    """List an env's tasks: rewards of (obs, action, next_obs) that a model-based run (softae, pets) plans for
    zero-shot with `saferl eval RUN --task NAME`."""
    import envs

    tasks = envs.make(env_name).tasks()  # an unknown name: EnvError listing the envs (one error line, exit 2)
    if not tasks:
        _echo(f"{env_name} has no tasks")
        return
    for name, task in sorted(tasks.items()):
        _echo(f"{name}: {task.description}")


@app.command("train")
def train_command(
    algo: str | None = typer.Argument(None, help="algorithm: ppo, sac, pets, ... (optional with --resume)"),
    env: str | None = typer.Option(None, "--env", help="env name (see `saferl envs`)"),
    steps: int | None = typer.Option(None, "--steps", help="total env steps (default 100000)"),
    seed: int | None = typer.Option(None, "--seed", help="random seed (default 0)"),
    seeds: list[str] = typer.Option(
        [],
        "--seeds",
        help="train several seeds, e.g. --seeds 0 1 2 3 4 (or 0,1,2): "
        "one run dir per seed (<algo>-<env>-seed<k>-<time>), each what --seed k writes; "
        "ppo, sac, pets and softae run all seeds in one compiled program (vmap), "
        "sooper one after another in this process (compiling once)",
    ),
    set_: list[str] = typer.Option([], "--set", help="algorithm config override key=value (repeatable)"),
    set_env: list[str] = typer.Option(
        [],
        "--set-env",
        help="env config or training-world override key=value "
        "(repeatable); world keys: randomization.{mass,friction,damping,actuator_gain}"
        "_scale=[lo,hi], obs_noise_std, action_delay, shift.preset, shift.<scale>",
    ),
    constraint: str | None = typer.Option(
        None,
        "--constraint",
        help="constrain the episode cost to the env's "
        "budget: lagrangian, augmented_lagrangian, crpo, penalty or none "
        "(same as --set constraint.kind=KIND; ppo, sac)",
    ),
    out: pathlib.Path = typer.Option(pathlib.Path("runs"), "--out", help="parent directory of new runs"),
    resume: list[pathlib.Path] = typer.Option(
        [],
        "--resume",
        help="continue this run dir from its last "
        "checkpoint up to --steps; repeat it to continue several seeds' runs "
        "of one config together (as --seeds trains them)",
    ),
    data: pathlib.Path | None = typer.Option(
        None,
        "--data",
        help="recording dir (`saferl-deploy run --record`) whose transitions join the replay data (pets, sac)",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    logger: list[str] = typer.Option(
        [],
        "--logger",
        help="where the scalars of metrics.csv also go: tensorboard "
        "(default), wandb (Weights & Biases, the package's wandb extra: a run named "
        "after the run dir with config.json as its config; WANDB_MODE=offline, "
        "WANDB_PROJECT) or none; repeat it for several",
    ),
    devices: int | None = typer.Option(
        None, "--devices", help="use the first N devices (default: all; batches are split over them)"
    ),
    coordinator: str | None = typer.Option(
        None, "--coordinator", help="multi-process run: HOST:PORT of process 0 (env SAFERL_COORDINATOR)"
    ),
    num_processes: int | None = typer.Option(
        None, "--num-processes", help="multi-process run: number of processes (env SAFERL_NUM_PROCESSES)"
    ),
    process_id: int | None = typer.Option(
        None,
        "--process-id",
        help="multi-process run: this process, 0..N-1; 0 writes the run directory (env SAFERL_PROCESS_ID)",
    ),
) -> None:
    """Train ALGO on --env for --steps env steps; writes a run directory (config, metrics, checkpoints, plots)."""
    from saferl import sharding
    from saferl.config import parse_overrides
    from saferl.training import distributed
    from saferl.training.logger import resolve_loggers
    from saferl.training.run import train

    loggers = resolve_loggers(logger or "tensorboard")  # a bad name or a missing wandb: before anything is written
    group = distributed.initialize_from(coordinator, num_processes, process_id)  # before JAX's devices exist
    sharding.use_devices(devices)

    overrides = parse_overrides(set_)
    if constraint is not None:
        overrides = _with_constraint(overrides, constraint)
    if seeds or len(resume) > 1:
        from saferl.training.seeds import train_seeds

        results = train_seeds(
            algo,
            env,
            _parse_seeds(seeds),
            steps=steps,
            seed=seed,
            overrides=overrides,
            env_overrides=parse_overrides(set_env),
            out=out,
            resume=resume,
            data=data,
            progress=not quiet,
            tensorboard=loggers,
        )
    else:
        results = [
            train(
                algo,
                env,
                steps=steps,
                seed=seed,
                overrides=overrides,
                env_overrides=parse_overrides(set_env),
                out=out,
                resume=resume[0] if resume else None,
                data=data,
                progress=not quiet,
                tensorboard=loggers,
            )
        ]
    if not distributed.is_primary():
        assert group is not None  # only a process of a multi-process group is not the primary
        written = ", ".join(str(r.run_dir) for r in results)
        _echo(f"process {group.process_id} of {group.num_processes} done; process 0 wrote {written}")
        return
    for result in results:
        _report_run(result, loggers)


def _parse_seeds(values: list[str]) -> list[int]:
    """`--seeds` values (each an integer or a comma-separated list of them) as ints; UserError otherwise."""
    seeds = []
    for value in values:
        for part in value.split(","):
            try:
                seeds.append(int(part))
            except ValueError:
                raise UserError(f"--seeds {part!r} is not an integer; give integer seeds, e.g. --seeds 0 1 2") from None
    return seeds


def _expand_seeds(argv: list[str]) -> list[str]:
    """`--seeds 0 1 2` (several values after one option, as users type it) as `--seeds 0 --seeds 1 --seeds 2`,
    which is what the option parser takes; values are the integer-looking tokens that follow."""
    expanded, index = [], 0
    while index < len(argv):
        expanded.append(argv[index])
        if argv[index] == "--seeds":
            index += 1
            values = []
            while index < len(argv) and argv[index].replace(",", "").lstrip("-").isdigit():
                values.append(argv[index])
                index += 1
            expanded[-1:] = [token for value in values for token in ("--seeds", value)] or ["--seeds"]
            continue
        index += 1
    return expanded


def _report_run(result, loggers: tuple[str, ...] = ("tensorboard",)) -> None:
    """Print where a finished run wrote its files and its last episode's return and cost."""
    import math

    from saferl.training.logger import read_metrics

    rows = [r for r in read_metrics(result.run_dir / "metrics.csv")[0] if not math.isnan(r["episode_return"])]
    final = {
        "env_steps": result.metrics.get("env_steps"),
        "last_episode_at": rows[-1]["env_steps"] if rows else None,
        "episode_return": rows[-1]["episode_return"] if rows else None,
        "episode_cost": rows[-1]["episode_cost"] if rows else None,
    }
    _echo(f"run directory: {result.run_dir}")
    other_logs = ([f"TensorBoard: {result.run_dir / 'tensorboard'}"] if "tensorboard" in loggers else []) + (
        [f"W&B run {result.run_dir.name}"] if "wandb" in loggers else []
    )
    _echo(f"metrics:       {result.run_dir / 'metrics.csv'}" + (f"  ({'; '.join(other_logs)})" if other_logs else ""))
    _echo(f"plots:         {', '.join(str(p) for p in result.plots)}")
    _echo(f"final:         {json.dumps(final)}")
    summary_path = result.run_dir / "summary.json"  # SOOPER and its baselines: the paper's metrics
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        _echo(f"summary:       {summary_path}")
        _echo(
            f"  safety margin {summary['safety_margin']:g} (budget {summary['budget']:g}; episode costs "
            f"{', '.join(f'{c:g}' for c in summary['episode_costs'])}), normalised return "
            f"{summary['normalized_return']:.2f} (prior {summary['prior_return']:.1f} -> last episode "
            f"{summary['final_return']:.1f}) over {summary['episodes']} real episodes"
        )


def _with_constraint(overrides: dict, kind: str) -> dict:
    from saferl.constraints import KINDS

    if kind not in KINDS:
        raise UserError(f"--constraint {kind!r} is not a constraint handler; choose one of {', '.join(KINDS)}")
    if "constraint.kind" in overrides and overrides["constraint.kind"] != kind:
        raise UserError(f"--constraint {kind} contradicts --set constraint.kind={overrides['constraint.kind']}")
    return {**overrides, "constraint.kind": kind}


@app.command("eval")
def eval_command(
    run_dir: pathlib.Path = typer.Argument(..., help="run directory"),
    episodes: int = typer.Option(10, "--episodes", min=1, help="episodes to average over"),
    seed: int = typer.Option(0, "--seed"),
    stochastic: bool = typer.Option(False, "--stochastic", help="sample actions instead of the mean action"),
    shift: list[str] = typer.Option(
        [],
        "--shift",
        help="evaluate on shifted physics: a preset name of the env "
        "(e.g. heavy_pole), `nominal`, or key=value of the shift (mass_scale=1.5, "
        'body_mass_scale={"pole":2}); repeatable. Default: the run\'s own world',
    ),
    task: str | None = typer.Option(
        None,
        "--task",
        help="plan zero-shot for this task of the env (see `saferl "
        "tasks ENV`) on the run's learned model and score the task's reward "
        "(model-based runs: softae, pets)",
    ),
) -> None:
    """Evaluate a run's policy in the world it trained in (domain randomisation off; its obs noise, action delay
    and shift kept) or on `--shift`ed physics; writes RUN_DIR/eval.json (eval-<shift>.json with --shift;
    eval-task-<task>[-<shift>].json with --task)."""
    from envs.tasks import get_task
    from saferl.config import to_dict
    from saferl.policies import load_policy
    from saferl.policies.evaluate import evaluate
    from saferl.policies.worlds import evaluation_env, evaluation_world, shift_label
    from saferl.training.rundir import write_json_atomic

    policy = load_policy(run_dir, task)
    world = evaluation_world(policy, shift)
    env = evaluation_env(policy, world)
    chosen = None if task is None else get_task(env, task)
    result = evaluate(policy, env, episodes, seed, deterministic=not stochastic, task=chosen)
    result["training_env"] = to_dict(world)
    parts = ([f"task-{task}"] if task else []) + ([shift_label(shift)] if shift else [])
    name = f"eval-{'-'.join(parts)}.json" if parts else "eval.json"
    write_json_atomic(run_dir / name, result)
    where = (f" (task: {task})" if task else "") + (f" (shift: {shift_label(shift)})" if shift else "")
    _echo(
        f"{policy.algo} on {policy.env_name}{where}, {episodes} episodes: return {result['mean_return']:.3f} "
        f"± {result['std_return']:.3f}, cost {result['mean_cost']:.3f} ± {result['std_cost']:.3f} "
        f"(budget {result['cost_budget']:g})"
    )
    if "success_rate" in result:
        _echo(
            f"success: {result['success_rate']:.0%} of episodes end in success, "
            f"{result['success_any_rate']:.0%} succeed at some step"
        )
    _echo(f"written: {run_dir / name}")


@app.command("render")
def render_command(
    run_dir: pathlib.Path = typer.Argument(..., help="run directory"),
    out: pathlib.Path = typer.Option(..., "--out", help="video file (.mp4; .gif without ffmpeg)"),
    seed: int = typer.Option(0, "--seed"),
    steps: int | None = typer.Option(None, "--steps", help="env steps to render (default: one episode)"),
    task: str | None = typer.Option(
        None,
        "--task",
        help="render the zero-shot planner of this env task (model-based runs, see `saferl eval --task`)",
    ),
) -> None:
    """Render one episode of a run's policy to a video file."""
    from envs.render import render_rollout
    from envs.tasks import get_task
    from saferl.policies import load_policy
    from saferl.policies.evaluate import rollout_states
    from saferl.policies.worlds import evaluation_env, evaluation_world

    policy = load_policy(run_dir, task)
    env = evaluation_env(policy, evaluation_world(policy, []))
    drawn = get_task(env.unwrapped, task) if task is not None else None  # its target replaces the env's goal
    written = render_rollout(env.unwrapped, rollout_states(policy, env, seed, steps), out, task=drawn)
    _echo(f"written: {written}")


@app.command("export")
def export_command(
    run_dir: pathlib.Path = typer.Argument(..., help="run directory"),
    out: pathlib.Path = typer.Option(
        ..., "--out", help="output file (a directory for a SOOPER run with learner=mbpo: its shielded policy)"
    ),
    format_: str = typer.Option(
        "onnx", "--format", help="onnx (the policy, for on-board deployment) | prior (a SAC run's actor and critics)"
    ),
) -> None:
    """Export a run's policy for on-board deployment: MLP policies (ppo, sac) as one ONNX file; a SOOPER run with
    learner=mbpo as a directory (its actor, the prior's actor and cost critic, the shield's constants), which
    `saferl-deploy sim/serve --onboard DIR` runs with its shield; not MPC planners (pets, SOOPER's mpc learner).
    `--format prior` writes a SAC run's config and its last checkpoint's normaliser, actor and critics (no replay
    buffer: ≈ 200 KB for safe_cartpole's prior instead of ≈ 13 MB) as a run directory that `saferl train sooper
    --set prior=OUT` and `saferl eval` read like the run."""
    if format_ not in ("onnx", "prior"):
        raise UserError(f"--format {format_!r} is not supported; supported: onnx, prior")
    if format_ == "prior":
        from saferl.agents.sac.policy import save_actor_critics
        from saferl.agents.sooper.prior import read_prior_run

        read_prior_run(run_dir)  # UserError unless a SAC run directory with a checkpoint
        _echo(f"written: {save_actor_critics(run_dir, out)} (a prior: --set prior={out})")
        return
    from saferl.export.onnx import export_policy_onnx
    from saferl.export.sooper import export_sooper_run, is_learned_sooper_run
    from saferl.policies import load_policy
    from saferl.training import restore, rundir

    if is_learned_sooper_run(restore.algo_config_from_record(rundir.read_run(run_dir))):
        _echo(f"written: {export_sooper_run(run_dir, out).parent} (shielded policy; manifest shield.json)")
        return

    policy = load_policy(run_dir)
    if policy.apply is None:  # only MPC planners lack a fixed network map (see saferl.policies.Policy)
        raise UserError(
            f"{policy.algo} policies are MPC planners and cannot be exported to ONNX; deploy them with "
            f"`saferl-deploy run {run_dir}` (the planner runs on the policy machine)"
        )
    _echo(f"written: {export_policy_onnx(policy, out)}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI, print user errors as one line, exit non-zero."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    from saferl.compilation_cache import enable_compilation_cache

    enable_compilation_cache()  # a second `saferl train` loads its programs from $XDG_CACHE_HOME/saferl/jax
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        code = app(args=_expand_seeds(args), prog_name="saferl", standalone_mode=False)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except _ClickException as err:  # bad command line (unknown option, missing argument, bad int)
        print(f"error: {err.format_message()}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted (the last checkpoint and the plots are saved in the run directory)", file=sys.stderr)
        sys.exit(130)
    except NonFiniteError as err:
        print(_error_line(err, args, "training stopped: ", "; the last good checkpoint is saved"), file=sys.stderr)
        sys.exit(3)
    except UserError as err:
        print(_error_line(err, args), file=sys.stderr)
        sys.exit(2)
    except ValueError as err:  # envs.EnvError and config validation raised outside apply_overrides
        from envs.registry import EnvError

        if not isinstance(err, EnvError):
            raise
        print(_error_line(err, args), file=sys.stderr)
        sys.exit(2)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
