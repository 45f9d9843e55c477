"""Tiny training runs shared by every test module of one pytest process: each is trained once (the first
module that asks) under a temporary directory. Tests that change a run dir work on a copy (`copy_run`)."""

from __future__ import annotations

import atexit
import csv
import functools
import os
import pathlib
import shutil
import tempfile

from tiny_configs import ENV_TINY, PETS_ENV, PETS_EPISODE, PETS_TINY, PPO_CHUNK, PPO_TINY

from saferl.training.run import RunResult, train

_ROOT = pathlib.Path(tempfile.mkdtemp(prefix="saferl-tiny-runs-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


def _out(name: str) -> pathlib.Path:
    return _ROOT / name


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


@functools.cache
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


@functools.cache
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


@functools.cache
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


@functools.cache
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


@functools.cache
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
