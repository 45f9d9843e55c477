"""saferl.training.distributed and `saferl train` across processes: two CPU processes on localhost (jax.distributed,
gloo collectives, one device each, one mesh of 2) train the tiny PPO run to the numbers one process gets, and
only process 0 writes the run directory. Also the validation of the distributed and `--devices` flags.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from tiny_configs import ENV_TINY, PPO_CHUNK, PPO_TINY
from tiny_runs import cli_in_process

from hardware import endpoints
from saferl.errors import UserError
from saferl.training import distributed
from saferl.training.logger import read_metrics

STEPS = 2 * PPO_CHUNK  # two chunks: the second one starts from the state the first one left on both processes


def _train_args(out) -> list[str]:
    sets = [x for k, v in PPO_TINY.items() for x in ("--set", f"{k}={json.dumps(v)}")]
    env_sets = [x for k, v in ENV_TINY.items() for x in ("--set-env", f"{k}={json.dumps(v)}")]
    return [
        "train",
        "ppo",
        "--env",
        "pendulum",
        "--steps",
        str(STEPS),
        "--seed",
        "3",
        "--quiet",
        "--out",
        str(out),
        *sets,
        *env_sets,
    ]


def _two_processes_and_one(train_args, root, timeout_s: int) -> tuple[list[str], tuple[int, str, str]]:
    """`saferl train_args(root/"two")` in two processes (one device each, one mesh of 2) and, meanwhile,
    `train_args(root/"one")` in this process (one device): (the two processes' logs, this one's CLI result)."""
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", ""))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}
    port = endpoints.parse(endpoints.free_loopback_address())[1]  # a free port for the coordinator
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "saferl.cli.main",
                *train_args(root / "two"),
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in (0, 1)
    ]
    single = cli_in_process(train_args(root / "one"))
    logs = []
    for process in processes:
        try:
            log, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise
        assert process.returncode == 0, log[-3000:]
        logs.append(log)
    assert single[0] == 0, single[2][-3000:]
    return logs, single


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two processes (one device each) and, meanwhile, this process (one device): their outputs and run dirs."""
    root = tmp_path_factory.mktemp("distributed")
    logs, _ = _two_processes_and_one(_train_args, root, timeout_s=300)
    return {"logs": logs, "two": root / "two", "one": root / "one"}


@pytest.mark.slow
def test_only_process_zero_writes_and_every_process_knows_the_run_directory(runs):
    written = list(runs["two"].iterdir())
    assert len(written) == 1  # not one timestamped directory per process
    run_dir = written[0]
    assert {p.name for p in run_dir.iterdir()} >= {"config.json", "metrics.csv", "checkpoints", "plots"}
    assert (run_dir / "checkpoints" / str(STEPS)).is_dir() and (run_dir / "plots" / "return.png").is_file()
    assert f"run directory: {run_dir}" in runs["logs"][0]
    assert f"process 1 of 2 done; process 0 wrote {run_dir}" in runs["logs"][1]


@pytest.mark.slow
def test_two_processes_train_to_the_metrics_of_one_process(runs):
    (one,), (two,) = runs["one"].iterdir(), runs["two"].iterdir()
    rows_one, columns_one = read_metrics(one / "metrics.csv")
    rows_two, columns_two = read_metrics(two / "metrics.csv")
    assert columns_one == columns_two and len(rows_one) == len(rows_two) == 2
    for a, b in zip(rows_one, rows_two, strict=False):
        for column in columns_one:
            if math.isnan(a[column]):
                assert math.isnan(b[column]), column
                continue
            # Two processes split the 4 envs 2 + 2 and all-reduce the gradients and normaliser sums: float32
            # round-off of a few eps, through 4 Adam steps (the same bound as 4 forced devices in
            # test_sharding.py). Measured: last of the 6 digits metrics.csv keeps (<= 1e-5 relative, losses near 0
            # within 1e-7 absolute); a process training on its own half of the envs
            # (no all-reduce) or mixing up envs moves the losses by >= 1e-2.
            assert b[column] == pytest.approx(a[column], rel=1e-4, abs=1e-5), column


@pytest.mark.slow
def test_checkpoint_gathered_by_process_zero_restores_to_the_single_process_params(runs):
    from saferl.policies import load_policy

    (one,), (two,) = runs["one"].iterdir(), runs["two"].iterdir()
    params_one, params_two = load_policy(one).params, load_policy(two).params
    import jax

    for a, b in zip(jax.tree.leaves(params_one), jax.tree.leaves(params_two), strict=False):
        a, b = np.asarray(a), np.asarray(b)
        # the same round-off bound as the metrics (see above)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-4 * max(float(np.max(np.abs(a))), 1e-3))


@pytest.mark.slow
def test_two_processes_resume_to_the_metrics_of_one_process(runs, tmp_path):
    """`saferl train --resume RUN` in two processes: both restore process 0's checkpoint and continue together."""
    import shutil

    for name in ("one", "two"):
        shutil.copytree(runs[name], tmp_path / name)  # the fixture's run dirs stay as they are for other tests

    def resume_args(out):
        (run_dir,) = out.iterdir()
        return ["train", "--resume", str(run_dir), "--steps", str(STEPS + PPO_CHUNK), "--quiet"]

    logs, _ = _two_processes_and_one(resume_args, tmp_path, timeout_s=300)
    (one,), (two,) = (tmp_path / "one").iterdir(), (tmp_path / "two").iterdir()
    assert len(list((tmp_path / "two").iterdir())) == 1 and f"process 0 wrote {two}" in logs[1]
    assert (two / "checkpoints" / str(STEPS + PPO_CHUNK)).is_dir()
    rows_one, columns = read_metrics(one / "metrics.csv")
    rows_two, _ = read_metrics(two / "metrics.csv")
    assert len(rows_one) == len(rows_two) == 3 and rows_two[-1]["env_steps"] == STEPS + PPO_CHUNK
    for column in columns:  # the third chunk, continued from the restored state; bound as above
        a, b = rows_one[-1][column], rows_two[-1][column]
        assert (math.isnan(a) and math.isnan(b)) or b == pytest.approx(a, rel=1e-4, abs=1e-5), column


def test_process_group_comes_from_flags_or_environment_variables():
    assert distributed.process_group(environ={}) is None  # no flag, no variable: a single-process run
    group = distributed.process_group(
        environ={"SAFERL_COORDINATOR": "10.0.0.1:1234", "SAFERL_NUM_PROCESSES": "4", "SAFERL_PROCESS_ID": "3"}
    )
    assert group == distributed.ProcessGroup("10.0.0.1:1234", 4, 3)
    flags_win = distributed.process_group("host:99", 2, 0, environ={"SAFERL_COORDINATOR": "other:1"})
    assert flags_win == distributed.ProcessGroup("host:99", 2, 0)


@pytest.mark.parametrize(
    "args, message",
    [
        ((None, 2, None), "missing: coordinator, process_id"),
        (("localhost", 2, 0), "coordinator='localhost' is not HOST:PORT"),
        (("localhost:70000", 2, 0), "port in 1..65535"),
        (("localhost:1234", 2, 2), r"process_id=2 must be in \[0, num_processes=2\)"),
        (("localhost:1234", 0, 0), "num_processes=0 must be >= 1"),
        (("localhost:1234", "two", 0), "num_processes='two' is not an integer"),
    ],
)
def test_bad_process_groups_are_user_errors_naming_the_field(args, message):
    with pytest.raises(UserError, match=message):
        distributed.process_group(*args, environ={})


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--devices", "0"], "--devices=0 is not a device count"),
        (["--devices", "999"], r"--devices=999 but only \d+ devices are available"),
        (["--num-processes", "2"], "missing: coordinator, process_id"),
    ],
)
def test_cli_rejects_bad_devices_and_distributed_flags_in_one_line(tmp_path, monkeypatch, flags, message):
    for name in ("SAFERL_COORDINATOR", "SAFERL_NUM_PROCESSES", "SAFERL_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = cli_in_process(["train", "ppo", "--env", "pendulum", "--out", str(tmp_path), *flags])
    assert code == 2 and re.search(message, err) and len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir())  # rejected before a run directory exists


@pytest.mark.slow
def test_two_processes_train_pets_to_the_metrics_of_one_process(tmp_path):
    """The model-based path (sharded ensemble fit and iCEM plan on a 2-process mesh), 3 tiny PETS episodes."""
    from tiny_configs import PETS_ENV, PETS_EPISODE, PETS_TINY

    def args(out):
        sets = [x for k, v in PETS_TINY.items() for x in ("--set", f"{k}={json.dumps(v)}")]
        env_sets = [x for k, v in PETS_ENV.items() for x in ("--set-env", f"{k}={json.dumps(v)}")]
        return [
            "train",
            "pets",
            "--env",
            "pendulum",
            "--steps",
            str(3 * PETS_EPISODE),
            "--quiet",
            "--out",
            str(out),
            *sets,
            *env_sets,
        ]

    _two_processes_and_one(args, tmp_path, timeout_s=600)
    (one,), (two,) = (tmp_path / "one").iterdir(), (tmp_path / "two").iterdir()
    rows_one, rows_two = read_metrics(one / "metrics.csv")[0], read_metrics(two / "metrics.csv")[0]
    assert len(rows_one) == len(rows_two) == 3
    for a, b in zip(rows_one, rows_two, strict=False):
        # the bound of the PPO test above; measured: the last of the 6 digits metrics.csv keeps
        assert b["episode_return"] == pytest.approx(a["episode_return"], rel=1e-4, abs=1e-5)
        assert b["episode_cost"] == pytest.approx(a["episode_cost"], rel=1e-4, abs=1e-5)
