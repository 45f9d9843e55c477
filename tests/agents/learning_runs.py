"""Learning-scale runs shared by the slow learning tests of one pytest process (each trained once)."""

from __future__ import annotations

import atexit
import functools
import pathlib
import shutil
import tempfile

from saferl.training.run import RunResult, train

_ROOT = pathlib.Path(tempfile.mkdtemp(prefix="saferl-learning-runs-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)

SAC_STEPS = {"none": 60_000, "crpo": 100_000}  # the unconstrained run needs less to show its cost


@functools.cache
def cartpole_sac(kind: str) -> RunResult:
    """SAC on safe_cartpole (seed 0, 4 envs) with constraint `kind`: "crpo" is `make demo`'s constrained
    prior without domain randomisation (return ≈ 540 at cost 0), and SOOPER's prior in its learning test."""
    return train(
        "sac",
        "safe_cartpole",
        steps=SAC_STEPS[kind],
        seed=0,
        overrides={"num_envs": 4, "constraint.kind": kind},
        out=_ROOT / kind,
        progress=False,
        tensorboard=False,
    )


@functools.cache
def cartpole_sac_randomized() -> RunResult:
    """`make demo`'s prior: SAC-CRPO on safe_cartpole (seed 0, 4 envs, 100k steps) under domain randomisation
    (pole/cart mass × 0.6–1.6, motor gain × 0.8–1.2), the SOOPER recipe for a prior that stays safe on a shifted
    system."""
    return train(
        "sac",
        "safe_cartpole",
        steps=SAC_STEPS["crpo"],
        seed=0,
        overrides={"num_envs": 4, "constraint.kind": "crpo"},
        env_overrides={"randomization.mass_scale": [0.6, 1.6], "randomization.actuator_gain_scale": [0.8, 1.2]},
        out=_ROOT / "crpo-randomized",
        progress=False,
        tensorboard=False,
    )
