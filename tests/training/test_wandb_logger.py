"""The Weights & Biases logger of `saferl.training.logger` (`saferl train --logger wandb`), in W&B's offline mode.

Nothing here reaches the network: WANDB_MODE=offline, every W&B directory under the test's tmp dir, and
WANDB_BASE_URL on a closed local port, so a request that offline mode should not make fails instead of leaving
the machine. The offline run is read back from its `run-<id>.wandb` file: a LevelDB-style log (7-byte file
header, 32 KiB blocks of records with a 7-byte header: CRC32, length, type) of `wandb_internal_pb2.Record`s.
"""

import csv
import json
import math
import struct
import sys

import pytest
from tiny_configs import ENV_TINY, PPO_CHUNK, PPO_TINY
from tiny_runs import cli_in_process

from saferl.errors import UserError
from saferl.training.logger import WANDB_MISSING, MetricsLogger, resolve_loggers

CHUNKS = 4  # the chunks of tiny_runs.ppo_run(): the same compiled programs


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B in offline mode with all its directories under tmp_path: the directory its runs are written to."""
    wandb = pytest.importorskip("wandb")
    runs = tmp_path / "wandb-runs"
    for name, sub in (
        ("WANDB_DIR", runs),
        ("WANDB_CONFIG_DIR", tmp_path / "wandb-config"),
        ("WANDB_CACHE_DIR", tmp_path / "wandb-cache"),
        ("WANDB_DATA_DIR", tmp_path / "wandb-data"),
    ):
        sub.mkdir()
        monkeypatch.setenv(name, str(sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing listens there
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    yield runs
    wandb.teardown()  # stop the W&B service this test started (it holds the environment set above)


def _offline_records(wandb_dir):
    """The records of the one offline run under `wandb_dir`, in the order they were written."""
    from wandb.proto import wandb_internal_pb2

    (path,) = wandb_dir.glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, position, pieces, records = 32768, 7, b"", []
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if length == 0 and kind == 0:  # zero padding up to the block's end
            position += block - position % block
            continue
        pieces += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # FULL or LAST: the record is complete
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            records.append(record)
            pieces = b""
    return records


def _history(records):
    """The logged rows without W&B's own keys (`_step`, `_timestamp`, `_runtime`)."""
    rows = [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    return [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]


@pytest.mark.slow
def test_wandb_run_logs_the_rows_of_metrics_csv_with_the_run_config_and_name(offline_wandb, tmp_path):
    sets = [x for k, v in PPO_TINY.items() for x in ("--set", f"{k}={json.dumps(v)}")]
    env_sets = [x for k, v in ENV_TINY.items() for x in ("--set-env", f"{k}={json.dumps(v)}")]
    out = tmp_path / "runs"
    flags = f"--steps {CHUNKS * PPO_CHUNK} --seed 3 --logger wandb --quiet --out {out}".split()
    code, stdout, stderr = cli_in_process(["train", "ppo", "--env", "pendulum", *flags, *sets, *env_sets])
    assert code == 0, stderr
    (run_dir,) = out.iterdir()
    assert "W&B run " + run_dir.name in stdout
    assert not (run_dir / "tensorboard").exists()  # --logger wandb alone: no TensorBoard events

    records = _offline_records(offline_wandb)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.display_name == run_dir.name and run.project == "saferl"
    config = {item.key: json.loads(item.value_json) for item in run.config.update if item.key != "_wandb"}
    assert config == json.loads((run_dir / "config.json").read_text())

    with (run_dir / "metrics.csv").open() as f:
        csv_rows = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    history = _history(records)
    assert [row["env_steps"] for row in history] == [PPO_CHUNK * k for k in range(1, CHUNKS + 1)]
    assert any("episode_return" in row for row in history)  # 40-step episodes end within the run
    assert len(history) == len(csv_rows)
    for logged, written in zip(history, csv_rows, strict=True):
        assert logged.keys() == written.keys()  # empty CSV cells (no episode ended) are left out of W&B too
        for name, value in written.items():  # metrics.csv keeps 6 significant digits (`.6g`), W&B the float
            assert math.isclose(logged[name], value, rel_tol=1e-5, abs_tol=1e-30), name


def test_processes_other_than_0_start_no_wandb_run(offline_wandb, tmp_path):
    logger = MetricsLogger(tmp_path, loggers="wandb", write=False)
    logger.log(64, {"episode_return": 1.0, "episode_cost": 0.0})
    logger.close()
    assert logger.rows[0]["episode_return"] == 1.0
    assert not list(offline_wandb.iterdir()) and not (tmp_path / "metrics.csv").exists()


def test_logger_wandb_without_the_package_is_one_error_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed: find_spec None, import fails
    code, stdout, stderr = cli_in_process(
        ["train", "ppo", "--env", "pendulum", "--logger", "wandb", "--out", str(tmp_path / "runs")]
    )
    assert code == 2 and stderr == f"error: {WANDB_MISSING}\n" and stdout == ""
    assert not (tmp_path / "runs").exists()
    with pytest.raises(UserError, match=r"pip install 'saferl\[wandb\]'"):
        MetricsLogger(tmp_path, loggers=["tensorboard", "wandb"])


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--logger", "mlflow"], "'mlflow' is not a logger; choose tensorboard, wandb, none"),
        (["--logger", "none", "--logger", "tensorboard"], "--logger none contradicts --logger tensorboard"),
    ],
)
def test_unknown_or_contradicting_loggers_are_one_error_line(tmp_path, flags, message):
    code, _, stderr = cli_in_process(["train", "ppo", "--env", "pendulum", *flags, "--out", str(tmp_path / "runs")])
    assert code == 2 and stderr.startswith("error: ") and message in stderr and stderr.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_loggers_resolve_from_the_tensorboard_flag_and_names(tmp_path):
    assert resolve_loggers(True) == ("tensorboard",) and resolve_loggers(False) == ()
    assert resolve_loggers("none") == () and resolve_loggers(["tensorboard", "tensorboard"]) == ("tensorboard",)
    MetricsLogger(tmp_path, loggers="none").close()
    assert (tmp_path / "metrics.csv").exists() and not (tmp_path / "tensorboard").exists()
