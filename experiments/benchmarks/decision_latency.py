"""Decision latency (issue #28): p50/p99 µs per decision on this CPU of the policies a user deploys on safe_cartpole.

    python experiments/benchmarks/decision_latency.py [--quick] [--runs-dir runs/decision_latency] [--prior RUN]

One run of the script times, on the same recorded observations:
(a) a SAC run exported with `saferl export RUN --format onnx`, run by `hardware.robot.onboard.OnboardPolicy`
(onnxruntime, one thread); (b) the same run's `saferl.policies.load_policy(run).act` in JAX (jitted, one
observation per call, blocking until the action is ready); (c) a SOOPER `learner=mbpo` run exported with
`saferl export RUN --format onnx --out DIR`, run by `hardware.robot.onboard_shield.OnboardShieldedPolicy`, with the
default recovery shield and with `shield=budget`; (d) those runs' `load_policy` in JAX (the actor behind the JAX
shield); (e) SOOPER-MPC (the default learner: iCEM around the prior) and (f) PETS, both `load_policy` in JAX. All
with the project's default network, ensemble and planner sizes. The runs are trained by the script under
`--runs-dir` with the `saferl` CLI (SAC 3 000 steps, PETS 2 episodes, SOOPER 1 prior + 1 learner episode from
`--prior`; latency does not depend on training) and reused when present; the exports are rewritten every time.

The observations are one episode of the prior on the nominal system (`--prior`, default the newest
`runs/priors/sac-safe_cartpole-*`, `make demo`'s), replayed in a loop, a decision every `action_repeat` steps,
with the episode's measured costs fed back between decisions (`observe_cost` in JAX, `observe_cost()` on board)
and the carry reset at each episode's start, as the robot-side runners do. JAX runs with synchronous CPU dispatch
and `gc.freeze()` after warm-up, as `saferl-deploy run` does. Each policy: a warm-up of `--warmup` decisions (the
first compiles), then `--decisions` decisions, each timed with `time.perf_counter_ns` around the call alone
(`--slow-decisions` for a policy whose warm-up decisions take > 10 ms on average; by default also 1 000: even
PETS's take under a minute). Writes decision_latency.json (machine: CPU model, cores, versions, load average
before/after; per policy percentiles, mean and max in µs, sizes, decisions timed, the shield's firing rate) and
decision_latency.png (p50 bars, p99 whiskers, log scale) into `--out` (experiments/benchmarks/results/).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
RESULTS = pathlib.Path(__file__).resolve().parent / "results"
ENV = "safe_cartpole"
SLOW_MS = 10.0  # a policy whose warm-up decisions take longer than this (median) gets --slow-decisions
# run name -> (algo, env steps, --set overrides besides the prior); SOOPER: 1 prior + 1 learner episode
RUNS: dict[str, tuple[str, int, tuple[str, ...]]] = {
    "sac": ("sac", 3000, ()),
    "pets": ("pets", 2000, ()),
    "sooper_mpc": ("sooper", 2000, ()),
    "sooper_mbpo": ("sooper", 2000, ("learner=mbpo",)),
    "sooper_mbpo_budget": ("sooper", 2000, ("learner=mbpo", "shield=budget")),
}

POLICIES = (  # (key, label, run, runtime): in this order, one after another
    ("sac_onnx", "SAC, on board (ONNX)", "sac", "onnx"),
    ("sac_jax", "SAC, JAX", "sac", "jax"),
    ("sooper_mbpo_onnx", "SOOPER mbpo + recovery shield, on board (ONNX)", "sooper_mbpo", "onnx"),
    ("sooper_mbpo_jax", "SOOPER mbpo + recovery shield, JAX", "sooper_mbpo", "jax"),
    ("sooper_mbpo_budget_onnx", "SOOPER mbpo + budget shield, on board (ONNX)", "sooper_mbpo_budget", "onnx"),
    ("sooper_mbpo_budget_jax", "SOOPER mbpo + budget shield, JAX", "sooper_mbpo_budget", "jax"),
    ("sooper_mpc_jax", "SOOPER-MPC (iCEM), JAX", "sooper_mpc", "jax"),
    ("pets_jax", "PETS (iCEM), JAX", "pets", "jax"),
)


# ---- runs and exports ---------------------------------------------------------------------------------------------
def saferl_cli() -> list[str]:
    """The `saferl` console script of this interpreter's environment."""
    script = pathlib.Path(sys.executable).with_name("saferl")
    found = str(script) if script.is_file() else shutil.which("saferl")
    if found is None:
        raise SystemExit("the `saferl` command is not installed (make venv)")
    return [found]


def finished_run(parent: pathlib.Path, steps: int) -> pathlib.Path | None:
    """The newest run under `parent` with a checkpoint at ≥ `steps` env steps (a finished run), or None."""
    from saferl.training import rundir

    runs = sorted((p for p in parent.glob("*") if (p / "config.json").is_file()), key=lambda p: p.stat().st_mtime)
    return next((run for run in reversed(runs) if max(rundir.checkpoint_steps(run), default=0) >= steps), None)


def default_prior() -> pathlib.Path | None:
    """The newest finished `sac-safe_cartpole-*` run under runs/priors (`make demo`'s prior)."""
    from saferl.training import rundir

    runs = sorted((ROOT / "runs" / "priors").glob(f"sac-{ENV}-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    return next((run for run in runs if (run / "config.json").is_file() and rundir.checkpoint_steps(run)), None)


def ensure_run(name: str, runs_dir: pathlib.Path, prior: pathlib.Path, seed: int) -> tuple[pathlib.Path, str]:
    """(run dir, the command that trained it) of run `name`: reused if a finished one exists under
    runs_dir/name, else trained now with the CLI."""
    algo, steps, overrides = RUNS[name]
    sets = [*overrides, f"prior={prior}"] if algo == "sooper" else list(overrides)
    out = runs_dir / name
    args = ["train", algo, "--env", ENV, "--steps", str(steps), "--seed", str(seed)]
    args += [word for value in sets for word in ("--set", value)] + ["--out", str(out), "--quiet", "--logger", "none"]
    command = "saferl " + " ".join(args)
    found = finished_run(out, steps)
    if found is not None:
        print(f"{name}: reusing {found}", flush=True)
        return found, command
    print(f"{name}: training ({command})", flush=True)
    start = time.perf_counter()
    subprocess.run([*saferl_cli(), *args], check=True, cwd=ROOT)
    found = finished_run(out, steps)
    if found is None:
        raise SystemExit(f"{name}: `{command}` finished without a checkpoint at {steps} steps under {out}")
    print(f"{name}: trained in {time.perf_counter() - start:.0f} s -> {found}", flush=True)
    return found, command


def export(run: pathlib.Path, out: pathlib.Path) -> tuple[pathlib.Path, str]:
    """(what `saferl export RUN --format onnx --out OUT` wrote, the command)."""
    args = ["export", str(run), "--format", "onnx", "--out", str(out)]
    subprocess.run([*saferl_cli(), *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return out, "saferl " + " ".join(args)


# ---- the recorded observations ------------------------------------------------------------------------------------
def recorded_episode(prior: pathlib.Path, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One episode of the prior's policy on the nominal system: (obs [T, obs_dim] float32 where each step's action
    was taken, cost [T] float32 of each step)."""
    import jax

    from saferl.policies import load_policy
    from saferl.policies.evaluate import rollout_states
    from saferl.policies.worlds import evaluation_env, evaluation_world

    policy = load_policy(prior)
    states = rollout_states(policy, evaluation_env(policy, evaluation_world(policy, [])), seed)
    obs, cost = jax.device_get((states.obs[:-1], states.info["cost"][1:]))
    return np.asarray(obs, np.float32), np.asarray(cost, np.float32)


def decision_schedule(obs: np.ndarray, cost: np.ndarray, repeat: int) -> tuple[np.ndarray, np.ndarray]:
    """(obs at each decision [D, obs_dim], cost of the steps it is held for [D]) for decisions every `repeat` steps."""
    starts = np.arange(0, len(obs), repeat)
    return obs[starts], np.add.reduceat(cost, starts).astype(np.float32)


# ---- timing -------------------------------------------------------------------------------------------------------
def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def summarise(times_ns: list[int]) -> dict[str, float]:
    """Percentiles, mean, min and max in µs (p25/p75: the two modes of a planner that re-plans every 2nd decision)."""
    us = np.asarray(times_ns, np.float64) / 1e3
    quantiles = {f"p{q}_us": float(np.percentile(us, q)) for q in (10, 25, 50, 75, 90, 99)}
    return {
        **quantiles,
        "mean_us": float(us.mean()),
        "min_us": float(us.min()),
        "max_us": float(us.max()),
    }


def timed_loop(decide: Callable[[int, int], Any], warmup: int, decisions: int, slow_decisions: int) -> dict[str, Any]:
    """Call `decide(i, j)` (i: decision count, j: decision within the episode) `warmup` times, then `decisions`
    more from a new episode (`slow_decisions` if the warm-up's mean, first call excluded, is over SLOW_MS) and
    return the timing of those; `decide` returns the nanoseconds of its policy call. The warm-up threads the carry
    too: a fresh carry and one returned by `act` may differ in type and each compiles once."""
    load_before = load_average()
    warm = [decide(i, i) for i in range(warmup)]
    gc.collect()
    gc.freeze()  # as `saferl-deploy run` after warm-up: the policy's objects are not rescanned mid-run
    warm_ms = float(np.mean(warm[1:]) / 1e6)
    count = slow_decisions if warm_ms > SLOW_MS else decisions
    times = [decide(warmup + i, i) for i in range(count)]
    gc.unfreeze()
    return {
        **summarise(times),
        "decisions": count,
        "warmup": warmup,
        "first_call_s": warm[0] / 1e9,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def time_jax(policy: Any, obs: np.ndarray, cost: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """`policy.act(carry, obs, key)` per decision, blocking until action and carry are ready; the carry threaded,
    the held steps' cost fed back (untimed) and reset at each episode's start."""
    import jax

    from saferl.policies import observe_cost

    step_obs, step_cost = decision_schedule(obs, cost, policy.action_repeat)
    per_episode = len(step_obs)
    total = args.warmup + max(args.decisions, args.slow_decisions)
    keys = np.asarray(jax.random.split(jax.random.PRNGKey(args.seed), total))
    observe = jax.jit(observe_cost)
    state = {"carry": policy.init_carry()}

    def decide(i: int, j: int) -> int:
        j %= per_episode
        if j == 0:
            state["carry"] = policy.init_carry()
        start = time.perf_counter_ns()
        action, carry = policy.act(state["carry"], step_obs[j], keys[i])
        jax.block_until_ready((action, carry))
        elapsed = time.perf_counter_ns() - start
        state["carry"] = observe(carry, step_cost[j])
        return elapsed

    result = timed_loop(decide, args.warmup, args.decisions, args.slow_decisions)
    return {**result, "action_repeat": int(policy.action_repeat), "decisions_per_episode": per_episode}


def time_onboard(runner: Any, obs: np.ndarray, cost: np.ndarray, repeat: int, args: argparse.Namespace) -> dict:
    """The on-board runner called per decision as the robot server calls it (`runner(obs)`, `observe_cost` after
    each step, `reset()` at each episode's start); the held steps' calls (no decision) are not timed."""
    step_obs, step_cost = decision_schedule(obs, cost, repeat)
    per_episode = len(step_obs)
    fired = {"count": 0}

    def decide(i: int, j: int) -> int:
        j %= per_episode
        if j == 0:
            runner.reset()
        interventions = getattr(runner, "interventions", 0)
        start = time.perf_counter_ns()
        runner(step_obs[j])
        elapsed = time.perf_counter_ns() - start
        fired["count"] += getattr(runner, "interventions", 0) - interventions
        for _ in range(repeat - 1):  # the held steps: the runner answers with the held action
            runner(step_obs[j])
        runner.observe_cost(float(step_cost[j]))
        return elapsed

    result = timed_loop(decide, args.warmup, args.decisions, args.slow_decisions)
    result = {**result, "action_repeat": repeat, "decisions_per_episode": per_episode}
    if hasattr(runner, "interventions"):
        result["shield_fired_fraction"] = fired["count"] / (args.warmup + result["decisions"])
    return result


# ---- the policies -------------------------------------------------------------------------------------------------
def sizes_of(run: pathlib.Path) -> dict[str, Any]:
    """The network / ensemble / planner sizes of a run's resolved config (what the timings depend on)."""
    config = json.loads((run / "config.json").read_text())["algo_config"]
    keep = ("hidden_sizes", "num_members", "population", "horizon", "iterations", "num_elites")
    picked: dict[str, Any] = {
        key: config[key]
        for key in ("hidden_sizes", "action_repeat", "particles", "replan_every", "learner", "shield", "shield_horizon")
        if key in config
    }
    for part in ("model", "planner", "rollout"):
        if isinstance(config.get(part), dict):
            picked[part] = {k: v for k, v in config[part].items() if k in keep or k == "num_particles"}
    return picked


def measure_all(args: argparse.Namespace, prior: pathlib.Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train or reuse the runs, export, record the observations, then time every policy; (rows, provenance)."""
    import jax

    from hardware.robot.interface import RobotSpec
    from hardware.robot.onboard import OnboardPolicy
    from hardware.robot.onboard_shield import OnboardShieldedPolicy
    from saferl.policies import load_policy

    jax.config.update("jax_cpu_enable_async_dispatch", False)  # as `saferl-deploy run` does
    runs, commands = {}, {}
    for name in RUNS:
        runs[name], commands[name] = ensure_run(name, args.runs_dir, prior, args.seed)
    exports = args.runs_dir / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    sac_onnx, commands["export_sac"] = export(runs["sac"], exports / "sac.onnx")
    shielded = {}
    for name in ("sooper_mbpo", "sooper_mbpo_budget"):
        shielded[name], commands[f"export_{name}"] = export(runs[name], exports / name)

    obs, cost = recorded_episode(prior, args.seed)
    print(f"recorded episode of the prior: {len(obs)} steps, cost {cost.sum():.1f}", flush=True)
    spec = RobotSpec(ENV, (obs.shape[1],), (-1.0,), (1.0,))
    rows = []
    for key, label, run_name, runtime in POLICIES:
        if runtime == "jax":
            timing = time_jax(load_policy(runs[run_name]), obs, cost, args)
        elif run_name == "sac":
            timing = time_onboard(OnboardPolicy(sac_onnx, spec), obs, cost, 1, args)
        else:
            runner = OnboardShieldedPolicy(shielded[run_name], spec)
            timing = time_onboard(runner, obs, cost, runner.repeat, args)
        row = {"key": key, "label": label, "run": str(runs[run_name]), "sizes": sizes_of(runs[run_name]), **timing}
        rows.append(row)
        print(
            f"{label:44s} p50 {row['p50_us']:10.1f} µs  p99 {row['p99_us']:10.1f} µs  ({row['decisions']} decisions, "
            f"load {row['load_average_before'][0]:.2f})",
            flush=True,
        )
    provenance = {
        "prior": str(prior),
        "runs": {name: str(path) for name, path in runs.items()},
        "commands": commands,
        "recorded_episode": {"steps": len(obs), "cost": float(cost.sum()), "seed": args.seed},
    }
    return rows, provenance


# ---- report -------------------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    import jax
    import onnxruntime

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "saferl", "hardware", "envs"], cwd=ROOT, capture_output=True, text=True
    )
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "jax_device": str(jax.devices()[0]),
        "git_commit": commit,
        "library_tree_dirty": bool(dirty.stdout.strip()),
    }


def plot(report: dict[str, Any], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["policies"]
    p50 = np.array([r["p50_us"] for r in rows])
    p99 = np.array([r["p99_us"] for r in rows])
    colors = ["C0" if r["key"].endswith("_onnx") else "C1" for r in rows]
    fig, ax = plt.subplots(figsize=(11, 5))
    x = np.arange(len(rows))
    ax.bar(x, p50, color=colors, width=0.6)
    ax.errorbar(x, p50, yerr=[np.zeros_like(p50), p99 - p50], fmt="none", ecolor="k", capsize=4, lw=1)
    for xi, a, b in zip(x, p50, p99, strict=True):
        ax.text(xi, b * 1.15, f"{a:,.0f}\n({b:,.0f})", ha="center", va="bottom", fontsize=7)
    for period_us, text in ((20_000, "20 ms: cart-pole at 50 Hz"), (2_000, "2 ms: 500 Hz")):
        ax.axhline(period_us, color="grey", ls="--", lw=0.8)
        ax.text(-0.45, period_us * 1.05, text, ha="left", va="bottom", fontsize=7, color="grey")
    labels = [r["label"].replace(", ", ",\n").replace(" + ", "\n+ ") for r in rows]
    ax.set_xticks(x, labels, fontsize=7)
    machine = report["machine"]
    load = report["load_average_before"][0], report["load_average_after"][0]
    ax.set(
        yscale="log",
        ylabel="µs per decision (bar p50, whisker p99)",
        ylim=(min(p50.min() / 3, 10), p99.max() * 6),
        title=f"decision latency on {ENV}: {machine['cpu_model']}, {machine['cpu_count']} cores, 1-min load "
        f"{load[0]:.1f} → {load[1]:.1f}, {report['date'][:10]}   (blue: onnxruntime on board, orange: JAX)",
    )
    ax.title.set_fontsize(8)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 decisions per policy (50 slow), 5 warm-up")
    parser.add_argument("--decisions", type=int, default=None, help="timed decisions per policy (default 1000)")
    parser.add_argument(
        "--slow-decisions", type=int, default=None, help=f"timed decisions of a policy over {SLOW_MS} ms (default 1000)"
    )
    parser.add_argument("--warmup", type=int, default=None, help="untimed decisions first (default 20)")
    parser.add_argument("--runs-dir", type=pathlib.Path, default=ROOT / "runs" / "decision_latency")
    parser.add_argument("--prior", type=pathlib.Path, default=None, help="SOOPER's prior (default: newest runs/priors)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the runs, the recorded episode and the keys")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--replot", action="store_true", help="only redraw the PNG from --out's JSON")
    args = parser.parse_args()
    if args.replot:
        plot(json.loads((args.out / "decision_latency.json").read_text()), args.out / "decision_latency.png")
        return
    defaults = (200, 50, 5) if args.quick else (1000, 1000, 20)
    for name, default in zip(("decisions", "slow_decisions", "warmup"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
        if getattr(args, name) < (2 if name == "warmup" else 1):
            parser.error(f"--{name.replace('_', '-')} must be >= {2 if name == 'warmup' else 1}")
    prior = args.prior or default_prior()
    if prior is None:
        parser.error("no prior: give --prior RUN or train runs/priors' with `make demo`")
    args.runs_dir = args.runs_dir.resolve()

    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    load_before = load_average()
    rows, provenance = measure_all(args, prior.resolve())
    report = {
        "date": date,
        "command": " ".join(["python experiments/benchmarks/decision_latency.py", *sys.argv[1:]]),
        "quick": args.quick,
        "env": ENV,
        "machine": machine_info(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "settings": {
            "decisions": args.decisions,
            "slow_decisions": args.slow_decisions,
            "slow_ms": SLOW_MS,
            "warmup": args.warmup,
            "jax_cpu_enable_async_dispatch": False,
            "onnxruntime_threads": 1,
            "gc_frozen_after_warmup": True,
        },
        **provenance,
        "policies": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decision_latency.json").write_text(json.dumps(report, indent=2))
    plot(report, args.out / "decision_latency.png")
    print(f"load average {load_before} -> {report['load_average_after']}")
    print(f"wrote {args.out / 'decision_latency.json'} and {args.out / 'decision_latency.png'}")


if __name__ == "__main__":
    main()
