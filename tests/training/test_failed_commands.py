"""A failed command touches nothing (issue #29): a `saferl train` that fails on bad input, a corrupt checkpoint or a
checkpoint its config does not fit exits 2 with one `error:` line (the details in a log file it names, never in the
run directory) and leaves the run directory byte for byte as it was, with no file added; a new run that fails
creates no run directory. Works on copies of the session's shared tiny PPO run (`tiny_runs.ppo_run`)."""

import dataclasses
import hashlib
import json
import logging
import re
import shlex
import shutil

import pytest
from tiny_configs import PPO_CHUNK, PPO_TINY
from tiny_runs import cli_in_process, copy_run, metric_rows, ppo_run

from saferl import registry
from saferl.cli.main import LOG_DIR_ENV
from saferl.errors import UserError
from saferl.training import checkpoints, rundir
from saferl.training.run import train


@pytest.fixture(autouse=True)
def log_dir(tmp_path, monkeypatch):
    """The failed commands' details go to this test's directory, not the user's cache."""
    path = tmp_path / "logs"
    monkeypatch.setenv(LOG_DIR_ENV, str(path))
    return path


@pytest.fixture
def run_dir(tmp_path):
    """A copy of the shared 4-chunk PPO run (checkpoints every 2 chunks) that a test may change."""
    return copy_run(ppo_run(4).run_dir, tmp_path / "copy")


def _snapshot(root):
    """{relative path: (sha256, mtime_ns)} of every file and {relative path/: None} of every directory under
    `root`: equal snapshots mean nothing was written, replaced, touched, created or removed."""
    entries: dict[str, tuple[str, int] | None] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_dir():
            entries[name + "/"] = None
        else:
            entries[name] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return entries


def _corrupt(checkpoint_dir):
    """Overwrite the array data of a checkpoint (what a disk error or an interrupted copy leaves)."""
    for path in (checkpoint_dir / "state").rglob("*"):
        if path.is_file() and path.stat().st_size > 0 and "metadata" not in path.name:
            path.write_bytes(b"garbage")


def _fails_in_one_line(args, caplog):
    """The stderr line of `saferl args...`, asserted to exit 2 with exactly one line and no library log record
    (orbax's asyncio tasks log whole TensorStore specs on a failed read) reaching the logging handlers."""
    with caplog.at_level(logging.WARNING):
        code, out, err = cli_in_process(args)
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text[:2000]
    return lines[0]


def test_resume_from_a_corrupt_newest_checkpoint_names_the_intact_one_and_touches_nothing(run_dir, log_dir, caplog):
    """The newest checkpoint is corrupt: exit 2, one line naming the corrupt and the newest intact older step and
    the command that resumes from it, details in the log file the line names; the run dir unchanged. The
    command in the message, run as given, resumes from the intact step."""
    steps = rundir.checkpoint_steps(run_dir)
    newest, intact = steps[-1], steps[-2]
    _corrupt(run_dir / "checkpoints" / str(newest))
    before = _snapshot(run_dir)
    target = newest + PPO_CHUNK
    line = _fails_in_one_line(["train", "--resume", str(run_dir), "--steps", str(target), "--quiet"], caplog)
    assert f"checkpoint {newest} cannot be restored" in line, line
    assert f"checkpoint {intact} is intact: to resume from step {intact}" in line, line
    assert "nothing was changed" in line, line
    assert _snapshot(run_dir) == before  # config.json, metrics.csv, TensorBoard, checkpoints, plots
    details = re.search(r"\(details: (.+)\)$", line)
    assert details and details.group(1).startswith(str(log_dir)), line
    log = (log_dir / details.group(1).split("/")[-1]).read_text()
    assert "Traceback" in log and "JSONDecodeError" in log and f"--resume {run_dir}" in log

    # the command the message gives: remove the corrupt checkpoint, resume (from the intact one)
    command = re.search(r"`rm -r (\S+) && (saferl train .+?)`", line)
    assert command, line
    shutil.rmtree(command.group(1))
    argv = shlex.split(command.group(2))
    assert argv[:2] == ["saferl", "train"] and argv[-2:] == ["--steps", str(target)]
    code, _, err = cli_in_process([*argv[1:-2], "--steps", str(intact + PPO_CHUNK), "--quiet"])  # one chunk
    assert code == 0, err
    assert rundir.checkpoint_steps(run_dir)[-1] == intact + PPO_CHUNK
    assert [int(row["env_steps"]) for row in metric_rows(run_dir)][-1] == intact + PPO_CHUNK


def test_resume_with_a_config_its_checkpoint_does_not_fit_touches_nothing(run_dir, caplog):
    """config.json edited after training (a wider policy network): the checkpoint reads back whole but does not
    fit the state the config gives; the failed restore comes before any write: exit 2, one line, the run dir
    unchanged (before issue #29 config.json was rewritten, a TensorBoard file created, the plots redrawn and
    orbax's asyncio dump of thousands of lines printed)."""
    config = json.loads((run_dir / "config.json").read_text())
    config["algo_config"]["policy_hidden_sizes"] = [32]
    (run_dir / "config.json").write_text(json.dumps(config, indent=2))
    before = _snapshot(run_dir)
    newest = rundir.checkpoint_steps(run_dir)[-1]
    line = _fails_in_one_line(["train", "--resume", str(run_dir), "--steps", str(newest + 1000), "--quiet"], caplog)
    assert f"--resume {run_dir}" in line and "cannot be restored" in line and "nothing was changed" in line, line
    # the shapes that do not fit (of whichever leaf orbax reads first)
    assert re.search(
        r"Requested shape: \([^)]*32[^)]*\) is not compatible with the stored shape: \([^)]*16[^)]*\)", line
    ), line
    assert _snapshot(run_dir) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--resume", "RUN", "--set", "num_envs=abc"], "cannot change a run being resumed"),
        (["--resume", "RUN", "--set-env", "episode_length=-3"], "cannot change a run being resumed"),
        (["--resume", "RUN", "--steps", "0"], "--steps must be >= 1"),
        (["--resume", "RUN", "--logger", "bogus"], "is not a logger"),
        (["sac", "--resume", "RUN"], "the run is 'ppo', not 'sac'"),
    ],
)
def test_bad_input_on_resume_touches_nothing(run_dir, caplog, args, message):
    before = _snapshot(run_dir)
    line = _fails_in_one_line(["train", *(arg.replace("RUN", str(run_dir)) for arg in args), "--quiet"], caplog)
    assert message in line, line
    assert _snapshot(run_dir) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["ppo", "--env", "nosuchenv"], "unknown env 'nosuchenv'"),
        (["ppo", "--env", "pendulum", "--set", "num_envs=abc"], "expected an integer, got 'abc'"),
        (["ppo", "--env", "pendulum", "--set", "nosuchkey=1"], "unknown config key 'nosuchkey'"),
        (["ppo", "--env", "pendulum", "--set-env", "episode_length=-3"], "episode_length must be >= 1"),
        (["sooper", "--env", "safe_cartpole", "--set", "prior=RUN"], "a prior must be a 'sac' run"),
    ],
)
def test_a_new_run_with_bad_input_creates_no_run_directory(run_dir, tmp_path, caplog, args, message):
    out = tmp_path / "runs"
    out.mkdir()
    args = [arg.replace("RUN", str(run_dir)) for arg in args]
    line = _fails_in_one_line(["train", *args, "--steps", "64", "--quiet", "--out", str(out)], caplog)
    assert message in line, line
    assert list(out.iterdir()) == []


def test_a_new_run_its_trainer_refuses_before_its_first_write_leaves_no_run_directory(tmp_path, monkeypatch):
    """Bad input only a trainer finds (e.g. a SOOPER prior whose checkpoint cannot be read) comes after the run
    directory was made: it is removed again, as it holds only what making it wrote. A trainer that wrote first
    keeps its run directory, and a directory with anything else in it is never removed."""
    real_get = registry.get
    wrote_first: list[bool] = []

    def refuse(ctx):
        if wrote_first:
            ctx.logger.log(0, {"episode_return": 1.0})
        raise UserError("prior 'x': checkpoint cannot be restored")

    monkeypatch.setattr(registry, "get", lambda name: dataclasses.replace(real_get(name), train=refuse))
    out = tmp_path / "runs"
    with pytest.raises(UserError, match="cannot be restored"):
        train("ppo", "pendulum", steps=PPO_CHUNK, overrides=PPO_TINY, out=out, progress=False)
    assert list(out.iterdir()) == []
    wrote_first.append(True)
    with pytest.raises(UserError, match="cannot be restored"):
        train("ppo", "pendulum", steps=PPO_CHUNK, overrides=PPO_TINY, out=out, progress=False)
    (kept,) = out.iterdir()
    assert {p.name for p in kept.iterdir()} >= {"config.json", "metrics.csv", "plots", "tensorboard"}

    for extra in ("metrics.csv", "plots/return.png", "checkpoints/0/x"):
        used = tmp_path / "used"
        for directory in ("plots", "checkpoints"):
            (used / directory).mkdir(parents=True, exist_ok=True)
        (used / "config.json").write_text("{}")
        (used / extra).parent.mkdir(parents=True, exist_ok=True)
        (used / extra).write_text("x")
        before = _snapshot(used)
        assert not rundir.discard_unused_run_dir(used)
        assert _snapshot(used) == before
        shutil.rmtree(used)


def test_logs_of_a_failed_checkpoint_read_are_held_back_for_the_details_and_a_good_reads_pass_through(caplog):
    """What orbax's asyncio tasks log during a failed read goes with the error (the CLI's log file), not to the
    handlers; records logged during a read that succeeds are emitted after it as usual."""
    asyncio_logger = logging.getLogger("asyncio")

    def failed_read():
        with checkpoints._held_back_logs() as held:
            asyncio_logger.error("unhandled exception during asyncio.run() shutdown\nTensorStore({...})")
            raise checkpoints._noted(ValueError("Requested shape: (32,)"), held)

    with caplog.at_level(logging.WARNING):
        with pytest.raises(ValueError, match="Requested shape") as failed:
            failed_read()
        assert not caplog.records
        assert "TensorStore({...})" in getattr(failed.value, checkpoints.HELD_BACK_LOG)
        with checkpoints._held_back_logs():
            asyncio_logger.warning("a read that succeeds")
        assert [r.getMessage() for r in caplog.records] == ["a read that succeeds"]
    assert not asyncio_logger.filters
