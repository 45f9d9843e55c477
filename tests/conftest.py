"""Shared test set-up: CPU, float32, and the project's persistent compilation cache (outside the clone, in
`$XDG_CACHE_HOME/saferl/jax` unless `SAFERL_JAX_CACHE` says otherwise: `saferl.compilation_cache`), shared by
the xdist workers, the subprocesses and notebook kernels the tests start, and the next session."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MUJOCO_GL", "egl")

from saferl.compilation_cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()


# --- the suite's time budget: the slowest tests and their share of the session's wall time -------------------
# `make test` ends with this table (tests/README.md gives the per-test budget). Under xdist the controller
# receives every worker's reports, so the table covers the whole session; setup (shared fixtures, where most
# compilation happens) is counted with the test that ran it first.
import time  # noqa: E402

SLOWEST = 25
_started = time.monotonic()
_durations: dict[str, float] = {}


def pytest_runtest_logreport(report):
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if not _durations or hasattr(terminalreporter.config, "workerinput"):
        return
    wall = time.monotonic() - _started
    total = sum(_durations.values())
    workers = getattr(terminalreporter.config.option, "numprocesses", None) or 1
    slowest = sorted(_durations.items(), key=lambda item: -item[1])[:SLOWEST]
    terminalreporter.write_sep("=", f"{len(slowest)} slowest tests of {len(_durations)}: {wall:.0f} s wall, "
                                    f"{total:.0f} s in tests over {workers} worker(s)")
    terminalreporter.write_line(f"{'s':>7} {'% wall':>7} {'% tests':>8}  test (setup + call + teardown)")
    for nodeid, seconds in slowest:
        terminalreporter.write_line(f"{seconds:7.1f} {100 * seconds / wall:6.1f}% {100 * seconds / total:7.1f}%  "
                                    f"{nodeid}")
    share = sum(s for _, s in slowest)
    terminalreporter.write_line(f"these {len(slowest)}: {share:.0f} s, {100 * share / total:.0f} % of the time in tests")
