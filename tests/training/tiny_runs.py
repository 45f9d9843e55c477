"""Tiny training runs shared by every test module of one pytest session: each is trained once (by the first
module that asks, in whichever xdist worker runs it) under a directory of the session (`SESSION_RUNS_ENV`,
made by tests/conftest.py in the controller, which the workers inherit); a worker that asks for a run another
worker is training waits for it and reads the run directory and its result from disk. Tests that change a run
dir work on a copy (`copy_run`)."""

from __future__ import annotations

import atexit
import csv
import dataclasses
import fcntl
import functools
import inspect
import os
import pathlib
import pickle
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import jax
from tiny_configs import ENV_TINY, PETS_ENV, PETS_EPISODE, PETS_TINY, PPO_CHUNK, PPO_TINY

from saferl.training.run import RunResult, train

#: the environment variable naming the session's directory of shared runs (set by tests/conftest.py)
SESSION_RUNS_ENV = "SAFERL_TEST_SESSION_RUNS"
if os.environ.get(SESSION_RUNS_ENV):
    _ROOT = pathlib.Path(os.environ[SESSION_RUNS_ENV])
    _ROOT.mkdir(parents=True, exist_ok=True)
else:  # imported outside the test session: this process's own directory
    _ROOT = pathlib.Path(tempfile.mkdtemp(prefix="saferl-tiny-runs-"))
    atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


def _out(name: str) -> pathlib.Path:
    return _ROOT / name


def _once_per_session(produce: Callable[..., RunResult]) -> Callable[..., RunResult]:
    """Memoise `produce(*args)` in the process and, through `_ROOT` and a file lock, across the session's xdist
    workers: the first worker to ask trains, the others wait for its lock and unpickle its `RunResult`."""

    signature = inspect.signature(produce)

    @functools.wraps(produce)
    def shared(*args: Any, **kwargs: Any) -> RunResult:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return _shared(*bound.args)

    @functools.cache
    def _shared(*args: Any) -> RunResult:
        name = "-".join([produce.__name__, *map(str, args)])
        done = _ROOT / f"{name}.result.pickle"
        with open(_ROOT / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or by the OS if the worker dies
            if done.exists():
                with open(done, "rb") as file:
                    return pickle.load(file)
            result = produce(*args)
            partial = done.with_suffix(".partial")
            with open(partial, "wb") as file:
                pickle.dump(dataclasses.replace(result, metrics=jax.device_get(result.metrics)), file)
            partial.rename(done)
            return result

    return shared


def metric_rows(run_dir: pathlib.Path) -> list[dict[str, str]]:
    """The rows of a run's metrics.csv (one per logged episode/chunk), as strings."""
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def cli_in_process(args: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `saferl args...` run in this process (the CLI's own `main`)."""
    import contextlib
    import io

    from saferl.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as done:
            code = done.code or 0
    return code, out.getvalue(), err.getvalue()


def final_agent_state(run_dir: pathlib.Path, make_agent):
    """The last checkpointed state of a model-based run (PETS/SoftAE), restored with `make_agent(config, env,
    training_env)`."""
    from saferl.training.restore import restore_run_state

    return restore_run_state(run_dir, lambda config, env, world: make_agent(config, env, world).init)[-1]


@_once_per_session
def ppo_run(chunks: int = 4, seed: int = 3) -> RunResult:
    """A PPO run of `chunks` chunks of PPO_TINY on pendulum with ENV_TINY."""
    return train(
        "ppo",
        "pendulum",
        steps=chunks * PPO_CHUNK,
        overrides=PPO_TINY,
        env_overrides=ENV_TINY,
        out=_out(f"ppo-{chunks}-{seed}"),
        seed=seed,
        progress=False,
    )


@_once_per_session
def pets_run(episodes: int = 3) -> RunResult:
    """A PETS run of `episodes` episodes (1 random, then MPC) of PETS_TINY on pendulum with PETS_ENV."""
    return train(
        "pets",
        "pendulum",
        steps=episodes * PETS_EPISODE,
        overrides=PETS_TINY,
        env_overrides=PETS_ENV,
        out=_out(f"pets-{episodes}"),
        progress=False,
        tensorboard=False,
    )


def copy_run(run_dir: pathlib.Path, destination: pathlib.Path) -> pathlib.Path:
    """A copy of a shared run dir that a test may change."""
    return pathlib.Path(shutil.copytree(run_dir, destination / run_dir.name))


@_once_per_session
def sooper_prior_run() -> RunResult:
    """A tiny constrained SAC run on safe_cartpole with SOOPER_ENV: the prior of the SOOPER tests."""
    from tiny_configs import SAC_TINY, SOOPER_ENV, SOOPER_PRIOR_STEPS

    return train(
        "sac",
        "safe_cartpole",
        steps=SOOPER_PRIOR_STEPS,
        overrides={**SAC_TINY, "constraint.kind": "crpo"},
        env_overrides=SOOPER_ENV,
        out=_out("sooper-prior"),
        progress=False,
        tensorboard=False,
    )


@_once_per_session
def sooper_run(method: str = "sooper", episodes: int = 3) -> RunResult:
    """`episodes` episodes (1 of the prior, then the learner) of `method` with SOOPER_TINY on safe_cartpole
    with the heavy pole (the "real system")."""
    from tiny_configs import SOOPER_ENV, SOOPER_EPISODE, SOOPER_TINY

    prior = os.path.relpath(sooper_prior_run().run_dir)  # relative, as users type it (made absolute in the run)
    return train(
        method,
        "safe_cartpole",
        steps=episodes * SOOPER_EPISODE,
        overrides={**SOOPER_TINY, "prior": prior},
        env_overrides={**SOOPER_ENV, "shift.preset": "heavy_pole"},
        out=_out(f"{method}-{episodes}"),
        progress=False,
        tensorboard=False,
    )


@_once_per_session
def softae_run(exploration: str = "info_gain", episodes: int = 3) -> RunResult:
    """A SoftAE run of `episodes` episodes (1 random, then the strategy) of SOFTAE_TINY on pendulum with PETS_ENV."""
    from tiny_configs import SOFTAE_TINY

    overrides = {**SOFTAE_TINY, "exploration": exploration}
    if exploration == "task":
        overrides["task"] = "swing_up"
    return train(
        "softae",
        "pendulum",
        steps=episodes * PETS_EPISODE,
        overrides=overrides,
        env_overrides=PETS_ENV,
        out=_out(f"softae-{exploration}-{episodes}"),
        progress=False,
        tensorboard=False,
    )
