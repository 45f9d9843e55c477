"""Shared test set-up: CPU, float32, and the project's persistent compilation cache (outside the clone, in
`$XDG_CACHE_HOME/saferl/jax` unless `SAFERL_JAX_CACHE` says otherwise: `saferl.compilation_cache`), shared by
the xdist workers, the subprocesses and notebook kernels the tests start, and the next session."""

import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MUJOCO_GL", "egl")

from saferl.compilation_cache import enable_compilation_cache

enable_compilation_cache()


# --- `make test-fast`: the logic, not the physics at size --------------------------------------------------
# `slow` marks what `make test-fast` skips (`make test` runs it). Besides the tests marked in their modules
# (learning tests, subprocesses, fuzzing), every test about a soft robot or an ultrasound env is slow: their MJX
# programs take 10–70 s each to trace and compile on 2 cores, while the logic they share (wrappers, trainers,
# loops) is tested on pendulum, safe_cartpole and point_goal. A test is about such an env when its module is
# one of HEAVY_ENV_MODULES or one of its parameters names a HEAVY_ENV.
HEAVY_ENVS = frozenset(
    {"soft_arm", "soft_fish", "muscle_leg", "race_car", "walker", "us_navigate", "us_coverage", "us_surgery"}
)
HEAVY_ENV_MODULES = frozenset(
    {
        "test_soft_arm.py",
        "test_soft_arm_solver.py",
        "test_soft_fish.py",
        "test_muscle_leg.py",
        "test_ultrasound_env.py",
        "test_race_car.py",
        "test_walker.py",
    }
)


# --- the xdist schedule: one worker per compiled program ---------------------------------------------------
# `make test` runs `--dist loadscope --no-loadscope-reorder` with the scheduler below: the tests of one module (of
# one module and one env, where a test's parameters name a registered env) form one group that a single worker
# runs, so a module-scoped fixture or a program memoised in the process is traced and compiled once per session,
# not once per worker (with per-test scheduling both workers traced and compiled the same program, often at the
# same time). The workers order their tests group by group in decreasing measured cost (`tests/durations.json`:
# seconds per test id of an earlier `make test`, refreshed by `make test-durations`; a test missing from it
# counts 1 s), so no long group is left for the end while the other worker idles. (xdist's own `loadgroup` does
# not group under pytest 9.2: it renames `item._nodeid`, which pytest no longer reads.)
_DURATIONS_FILE = os.path.join(os.path.dirname(__file__), "durations.json")
_ENV_NAMES: frozenset[str] | None = None


def _env_names() -> frozenset[str]:
    global _ENV_NAMES
    if _ENV_NAMES is None:
        import envs

        _ENV_NAMES = frozenset(envs.names())
    return _ENV_NAMES


def xdist_group_of(nodeid: str) -> str:
    """The group of a test id: its module, or its module and env where one of its parameters names a registered env
    (`tests/envs/test_env_contract.py::test_x[soft_arm]` -> `tests/envs/test_env_contract.py/soft_arm`)."""
    module = nodeid.split("::", 1)[0]
    if nodeid.endswith("]") and "[" in nodeid:
        params = nodeid[nodeid.index("[") + 1 : -1].split("-")
        env = next((p for p in params if p in _env_names()), None)
        if env is not None:
            return f"{module}/{env}"
    return module


_SESSION_RUNS_ENV = "SAFERL_TEST_SESSION_RUNS"  # read by tests/training/tiny_runs.py
_SESSION_RUNS_KEY = pytest.StashKey[str]()


def pytest_configure(config):
    """The session's directory for the tiny runs every worker shares (`tests/training/tiny_runs.py`): made by the
    controller (or the only process), inherited by the xdist workers it starts, removed at the end."""
    if hasattr(config, "workerinput") or os.environ.get(_SESSION_RUNS_ENV):
        return
    import tempfile

    os.environ[_SESSION_RUNS_ENV] = config.stash[_SESSION_RUNS_KEY] = tempfile.mkdtemp(
        prefix="saferl-test-session-runs-"
    )


def pytest_unconfigure(config):
    made = config.stash.get(_SESSION_RUNS_KEY, None)
    if made:
        import shutil

        shutil.rmtree(made, ignore_errors=True)
        os.environ.pop(_SESSION_RUNS_ENV, None)


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None  # xdist's own scheduler for the other modes
    from xdist.scheduler import LoadScopeScheduling

    class OneWorkerPerGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group_of(nodeid)

    return OneWorkerPerGroup(config, log)


def _load_durations() -> dict[str, float]:
    import json

    try:
        with open(_DURATIONS_FILE) as file:
            return {str(k): float(v) for k, v in json.load(file).items()}
    except (OSError, ValueError):
        return {}


def pytest_collection_modifyitems(config, items):
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.path.name in HEAVY_ENV_MODULES or any(isinstance(v, str) and v in HEAVY_ENVS for v in params.values()):
            item.add_marker(pytest.mark.slow)
    if not hasattr(config, "workerinput"):
        return  # the order only matters to the xdist schedule
    durations = _load_durations()
    groups = {item.nodeid: xdist_group_of(item.nodeid) for item in items}
    cost: dict[str, float] = {}
    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        group = groups[item.nodeid]
        cost[group] = cost.get(group, 0.0) + durations.get(item.nodeid, 1.0)
        first_seen.setdefault(group, index)
    # a stable sort: the groups by decreasing cost, each group's tests in their collected order
    items.sort(key=lambda item: (-cost[groups[item.nodeid]], first_seen[groups[item.nodeid]]))


# --- the suite's time budget: the slowest tests and their share of the session's wall time -------------------
# `make test` ends with this table (tests/README.md gives the per-test budget). Under xdist the controller
# receives every worker's reports (with their `user_properties`), so the table covers the whole session; setup
# (shared fixtures, where most compilation happens) is counted with the test that ran it first. JAX reports
# how long it spent tracing, lowering and compiling (`jax.monitoring`), so each row also says how much of
# its time was JAX compilation (XLA compile + lowering; tracing is reported apart: nested traces overlap).
import time  # noqa: E402

import jax  # noqa: E402

SLOWEST = 25
_started = time.monotonic()
_durations: dict[str, float] = {}
_jax_seconds: dict[str, dict[str, float]] = {}
_EVENTS = {
    "/jax/core/compile/backend_compile_duration": "xla",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/jaxpr_trace_duration": "trace",
}
_spent = {"xla": 0.0, "lower": 0.0, "trace": 0.0}


def _on_jax_event(event: str, duration: float, **_) -> None:
    kind = _EVENTS.get(event)
    if kind is not None:
        _spent[kind] += duration


jax.monitoring.register_event_duration_secs_listener(_on_jax_event)


_SPENT_KEY = pytest.StashKey[dict]()  # JAX's counters at the end of the item's previous phase


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    item.stash[_SPENT_KEY] = dict(_spent)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    start = item.stash.get(_SPENT_KEY, dict(_spent))
    item.stash[_SPENT_KEY] = dict(_spent)
    outcome.get_result().user_properties.append(("jax_seconds", {k: _spent[k] - start[k] for k in _spent}))


def pytest_runtest_logreport(report):
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration
    for name, value in report.user_properties:
        if name == "jax_seconds":
            mine = _jax_seconds.setdefault(report.nodeid, dict.fromkeys(value, 0.0))
            for kind, seconds in value.items():
                mine[kind] += seconds


def pytest_terminal_summary(terminalreporter):
    if not _durations or hasattr(terminalreporter.config, "workerinput"):
        return
    wall = time.monotonic() - _started
    total = sum(_durations.values())
    workers = getattr(terminalreporter.config.option, "numprocesses", None) or 1
    slowest = sorted(_durations.items(), key=lambda item: -item[1])[:SLOWEST]
    compiled = sum(v["xla"] + v["lower"] for v in _jax_seconds.values())
    terminalreporter.write_sep(
        "=",
        f"{len(slowest)} slowest tests of {len(_durations)}: {wall:.0f} s wall, "
        f"{total:.0f} s in tests over {workers} worker(s), {compiled:.0f} s of it "
        "JAX lowering + XLA compile",
    )
    terminalreporter.write_line(
        f"{'s':>7} {'% wall':>7} {'% tests':>8} {'compile':>8} {'trace':>6}  test (setup + call + teardown)"
    )
    for nodeid, seconds in slowest:
        jax_s = _jax_seconds.get(nodeid, {"xla": 0.0, "lower": 0.0, "trace": 0.0})
        terminalreporter.write_line(
            f"{seconds:7.1f} {100 * seconds / wall:6.1f}% {100 * seconds / total:7.1f}% "
            f"{jax_s['xla'] + jax_s['lower']:8.1f} {jax_s['trace']:6.1f}  {nodeid}"
        )
    share = sum(s for _, s in slowest)
    terminalreporter.write_line(
        f"these {len(slowest)}: {share:.0f} s, {100 * share / total:.0f} % of the time in tests"
    )
    report = os.environ.get("SAFERL_TEST_TIMES")  # every test's seconds as JSON, to compare two sessions
    if report:
        import json

        with open(report, "w") as out:
            json.dump(
                {"wall_s": wall, "tests": {n: {"s": s, **_jax_seconds.get(n, {})} for n, s in _durations.items()}},
                out,
                indent=1,
                sort_keys=True,
            )
