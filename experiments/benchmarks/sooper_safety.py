"""SOOPER's safety over dynamics shifts nobody tuned for (issue #26): one prior, every shift × seed, every episode.

The settings below were fixed before any result was seen (docs/sooper_safety.md) and are not to be changed to
make a claim hold. The prior is `make demo`'s (SAC + CRPO on safe_cartpole, per-body mass ×0.6–1.6 and motor
gain ×0.8–1.2 randomised, plus the default friction ×0.7–1.3 and damping ×0.8–1.2); it is reused from
`--priors-dir` (the newest `sac-safe_cartpole-*` run there) or trained with exactly those settings.

Shifts ("real systems"), inside the prior's ranges: all masses ×1.4 and ×1.6, the pole alone ×1.6, motor gain
×0.8 and ×1.2, masses ×1.4 with gain ×0.85 (issue #26's case), masses ×1.6 with gain ×0.8 (the corner);
outside: `heavy_pole` (pole ×2 > 1.6; `make demo`'s shift, held to the acceptance anyway), `weak_motor` (gain
×0.7), all masses ×2 with gain ×0.7. Per run: `saferl.training.run.train("sooper", ...)` for EPISODES real
episodes (1 of the prior, then the learner), the run's `summary.json`. Per shift: the share of runs with safety
margin ≥ 0 (no episode over the budget), the worst episode cost, the mean normalised return J(π_N)/J(π̂) and the
mean intervention rate of the learner's episodes. Acceptance (issue #26): no episode over the budget in any run
on the shifts marked `acceptance`.

point_goal (`--env point_goal`, issue #26's "the same for point_goal with its prior"; fixed 2026-12-08 03:10 UTC,
before any point_goal suite run): the prior is the `point_goal` recipe's checkpoint chosen in simulation
(`python -m saferl.agents.sac.prior_recipes point_goal`: SAC + augmented Lagrangian, robot mass ×0.8–1.6 and
joint damping ×0.6–1.2 randomised, goals 0.1 m clear of hazards; the newest `prior-point_goal-*` under
`--priors-dir`, trained by the recipe if there is none). It is safe in simulation and on heavy_robot but nearly
inert (return ≈ 2 against unconstrained SAC's ≈ 21, docs/sooper_safety.md §6), so safety here says little about
usefulness. The learner: SOOPER with point_goal's method overrides of experiments/sooper_table.py
(`optimism=0.1`, `pessimism=12.0`) and the prior's task (`goal_clearance=0.1`). The robot is the env's only
body, so mass ×s and body `robot` ×s are the same shift. Shifts, inside the prior's ranges (all held to the
acceptance): `heavy_robot` (robot ×1.5), mass ×0.8, damping ×0.6, mass ×1.5 with damping ×0.7, and the two
slippery corners mass ×1.6 / damping ×0.6 and mass ×0.8 / damping ×0.6 (the corners the selection found worst
most often); outside: `low_friction` (damping and friction ×0.5) and mass ×2 with damping ×0.5. Seeds 0–4, 8
episodes. Order of running, fixed with the rest: seed by seed over all eight shifts (seed 0 on every shift, then
seed 1, ...), so that a suite cut short for time has whole seeds on every shift; what was run is in the results.

Results accumulate in experiments/results/sooper_safety.json (a run already there with the same shift, seed,
episodes and method overrides is skipped; `--redo` replaces it); every invocation rewrites sooper_safety.png
(worst episode cost and normalised return per shift); point_goal's go to sooper_safety_point_goal.{json,png}.
`--overrides` are extra `--set` values of the learner (e.g. `shield=budget`, the paper's rule, for the
before/after comparison); they are part of a run's identity.

    python experiments/benchmarks/sooper_safety.py                                    # the whole suite
    python experiments/benchmarks/sooper_safety.py --shifts heavy_pole mass1.4_gain0.85 --seeds 0 1 2 \\
        --episodes 6 --overrides shield=budget                                        # issue #26's cases, before
    python experiments/benchmarks/sooper_safety.py --env point_goal --seeds 0         # point_goal, one seed

`--trace` (cart-pole only) instead replays the learner's episodes of one shift and seed with the same keys as
the run (the numbers match `saferl train sooper`) and writes per decision (npz under experiments/results/): observation,
cost spent, whether the shield fired, the learner's and the prior's action, the prior's twin Q_c at both (the
critic the shield used and the prior's original one), the model's σ, the recovery bound of the learner's action,
and the prior's true cost-to-go on the shifted system from that state (rolled out in the simulator to the
episode's end, undiscounted and discounted), also after one step of the learner's action.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import statistics
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
RESULTS = ROOT / "experiments" / "results"
ENV = "safe_cartpole"
PRIOR = {
    "steps": 100_000,
    "seed": 0,
    "overrides": {"num_envs": 4, "constraint.kind": "crpo"},
    "env_overrides": {"randomization.mass_scale": [0.6, 1.6], "randomization.actuator_gain_scale": [0.8, 1.2]},
}
# name -> (env overrides of the shift, inside the prior's randomisation ranges, held to the acceptance)
SHIFTS: dict[str, tuple[dict[str, Any], bool, bool]] = {
    "mass1.4": ({"shift.mass_scale": 1.4}, True, True),
    "mass1.6": ({"shift.mass_scale": 1.6}, True, True),
    "pole1.6": ({"shift.body_mass_scale": {"pole": 1.6}}, True, True),
    "gain0.8": ({"shift.actuator_gain_scale": 0.8}, True, True),
    "gain1.2": ({"shift.actuator_gain_scale": 1.2}, True, True),
    "mass1.4_gain0.85": ({"shift.mass_scale": 1.4, "shift.actuator_gain_scale": 0.85}, True, True),
    "mass1.6_gain0.8": ({"shift.mass_scale": 1.6, "shift.actuator_gain_scale": 0.8}, True, True),
    "heavy_pole": ({"shift.preset": "heavy_pole"}, False, True),
    "weak_motor": ({"shift.preset": "weak_motor"}, False, False),
    "mass2_gain0.7": ({"shift.mass_scale": 2.0, "shift.actuator_gain_scale": 0.7}, False, False),
}
# point_goal: the prior of saferl.agents.sac.prior_recipes' `point_goal` recipe (mass ×0.8–1.6, damping ×0.6–1.2)
POINT_GOAL_SHIFTS: dict[str, tuple[dict[str, Any], bool, bool]] = {
    "heavy_robot": ({"shift.preset": "heavy_robot"}, True, True),
    "mass0.8": ({"shift.mass_scale": 0.8}, True, True),
    "damping0.6": ({"shift.damping_scale": 0.6}, True, True),
    "mass1.5_damping0.7": ({"shift.mass_scale": 1.5, "shift.damping_scale": 0.7}, True, True),
    "mass1.6_damping0.6": ({"shift.mass_scale": 1.6, "shift.damping_scale": 0.6}, True, True),
    "mass0.8_damping0.6": ({"shift.mass_scale": 0.8, "shift.damping_scale": 0.6}, True, True),
    "low_friction": ({"shift.preset": "low_friction"}, False, False),
    "mass2_damping0.5": ({"shift.mass_scale": 2.0, "shift.damping_scale": 0.5}, False, False),
}
# per env: how its prior is found or trained, its shifts, the learner's fixed settings, its results file
ENVS: dict[str, dict[str, Any]] = {
    "safe_cartpole": {
        "prior": PRIOR,
        "prior_glob": "sac-safe_cartpole-*",
        "shifts": SHIFTS,
        "method_overrides": {},
        "env_overrides": {},
        "results": "sooper_safety.json",
    },
    "point_goal": {
        "prior": {"recipe": "point_goal"},
        "prior_glob": "prior-point_goal-*",
        "shifts": POINT_GOAL_SHIFTS,
        # experiments/sooper_table.py's SETTINGS["point_goal"]: its method overrides and the prior's task
        "method_overrides": {"optimism": 0.1, "pessimism": 12.0},
        "env_overrides": {"goal_clearance": 0.1},
        "results": "sooper_safety_point_goal.json",
    },
}
SEEDS = (0, 1, 2, 3, 4)
EPISODES = 8


def find_prior(priors_dir: pathlib.Path, env_name: str = ENV) -> pathlib.Path | None:
    """The newest finished prior run of the env under `priors_dir` (one with a checkpoint)."""
    from saferl.training import rundir

    runs = sorted(priors_dir.glob(ENVS[env_name]["prior_glob"]), key=lambda p: p.stat().st_mtime, reverse=True)
    return next((run for run in runs if (run / "config.json").is_file() and rundir.checkpoint_steps(run)), None)


def prior_run(priors_dir: pathlib.Path, env_name: str = ENV) -> pathlib.Path:
    from saferl.training.run import train

    found = find_prior(priors_dir, env_name)
    if found is not None:
        return found
    setting = ENVS[env_name]["prior"]
    if "recipe" in setting:  # candidates trained in simulation, one checkpoint chosen on simulated episodes only
        from saferl.agents.sac.prior_recipes import train_prior

        return train_prior(setting["recipe"], priors_dir)
    print(f"training the prior ({setting['steps']} steps)", flush=True)
    return train(
        "sac",
        env_name,
        steps=setting["steps"],
        seed=setting["seed"],
        overrides=setting["overrides"],
        env_overrides=setting["env_overrides"],
        out=priors_dir,
        progress=False,
        tensorboard=False,
    ).run_dir


def parse_overrides(words: list[str]) -> dict[str, Any]:
    from saferl.config import parse_overrides as parse

    return dict(parse(words))


def run_key(shift: str, seed: int, episodes: int, overrides: dict[str, Any]) -> str:
    return json.dumps([shift, seed, episodes, sorted(overrides.items())])


def run_one(
    shift: str,
    seed: int,
    episodes: int,
    prior: pathlib.Path,
    overrides: dict[str, Any],
    runs_dir: pathlib.Path,
    env_name: str = ENV,
) -> dict[str, Any]:
    """One SOOPER learning run on `shift`; its summary and the equivalent CLI command."""
    import envs
    from saferl.training.run import train

    setting = ENVS[env_name]
    env_overrides = {**setting["env_overrides"], **setting["shifts"][shift][0]}
    learner_overrides = {**setting["method_overrides"], **overrides}
    steps = episodes * envs.default_config(env_name).episode_length
    start = time.perf_counter()
    result = train(
        "sooper",
        env_name,
        steps=steps,
        seed=seed,
        overrides={"prior": str(prior), **learner_overrides},
        env_overrides=env_overrides,
        out=runs_dir,
        progress=False,
        tensorboard=False,
    )
    summary = json.loads((result.run_dir / "summary.json").read_text())
    learner = summary["interventions"][1:]
    sets = " ".join(f"--set {k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in learner_overrides.items())
    set_env = " ".join(f"--set-env '{k}={json.dumps(v)}'" for k, v in env_overrides.items())
    run = {
        "shift": shift,
        "seed": seed,
        "episodes": episodes,
        "overrides": overrides,
    }
    if setting["method_overrides"]:  # fixed per env, not part of a run's identity (cart-pole's rows: none)
        run["method_overrides"] = setting["method_overrides"]
    return {
        **run,
        "budget": summary["budget"],
        "safety_margin": summary["safety_margin"],
        "worst_episode_cost": max(summary["episode_costs"]),
        "normalized_return": summary["normalized_return"],
        "prior_return": summary["prior_return"],
        "episode_costs": summary["episode_costs"],
        "episode_returns": summary["episode_returns"],
        "interventions": summary["interventions"],
        "intervention_rate": (
            statistics.mean(learner) / envs.default_config(env_name).episode_length if learner else math.nan
        ),
        "wall_s": time.perf_counter() - start,
        "run_dir": str(result.run_dir),
        "command": f"saferl train sooper --env {env_name} --steps {steps} --seed {seed} --set prior={prior} "
        f"{sets} {set_env}".replace("  ", " "),
    }


def aggregate(runs: list[dict[str, Any]], shifts: dict[str, Any] = SHIFTS) -> list[dict[str, Any]]:
    """Per (shift, episodes, overrides): share of runs with margin ≥ 0, worst cost, mean normalised return,
    mean intervention rate."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(json.dumps([run["shift"], run["episodes"], sorted(run["overrides"].items())]), []).append(run)
    rows = []
    for key, members in groups.items():
        shift, episodes, overrides = json.loads(key)
        _, inside, acceptance = shifts[shift]
        finite = [r["normalized_return"] for r in members if r["normalized_return"] == r["normalized_return"]]
        rows.append(
            {
                "shift": shift,
                "inside_ranges": inside,
                "acceptance": acceptance,
                "episodes": episodes,
                "overrides": dict(overrides),
                "runs": len(members),
                "seeds": sorted(r["seed"] for r in members),
                "safe_share": sum(r["safety_margin"] >= 0 for r in members) / len(members),
                "worst_episode_cost": max(r["worst_episode_cost"] for r in members),
                "normalized_return": statistics.mean(finite) if finite else math.nan,
                "intervention_rate": statistics.mean(r["intervention_rate"] for r in members),
            }
        )
    return sorted(rows, key=lambda r: (list(shifts).index(r["shift"]), json.dumps(r["overrides"]), r["episodes"]))


def plot(rows: list[dict[str, Any]], path: pathlib.Path, budget: float, env_name: str = ENV) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [
        f"{r['shift']}\n{','.join(f'{k}={v}' for k, v in r['overrides'].items()) or 'default'}"
        f"\n{r['runs']} runs x {r['episodes']} ep"
        for r in rows
    ]
    fig, (ax_cost, ax_return) = plt.subplots(2, 1, figsize=(max(6, 1.3 * len(rows)), 7), sharex=True)
    xs = range(len(rows))
    ax_cost.bar(
        xs,
        [r["worst_episode_cost"] for r in rows],
        color=["tab:red" if r["worst_episode_cost"] > budget else "tab:green" for r in rows],
    )
    ax_cost.axhline(budget, color="k", ls="--", label=f"budget {budget:g}")
    ax_cost.set_ylabel("worst episode cost")
    ax_cost.legend()
    ax_return.bar(xs, [r["normalized_return"] for r in rows])
    ax_return.axhline(1.0, color="k", ls=":")
    ax_return.set_ylabel("normalised return J(π_N)/J(π̂)")
    ax_return.set_xticks(list(xs), labels, rotation=60, ha="right", fontsize=7)
    fig.suptitle(f"SOOPER on {env_name}: one prior, shifted systems")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def trace(
    shift: str, seed: int, episodes: int, prior: pathlib.Path, overrides: dict[str, Any], out: pathlib.Path
) -> None:
    """Per-decision trace of the learner's episodes of one run (see the module docstring)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import envs
    from saferl.agents.sooper.agent import EpisodeStats
    from saferl.agents.sooper.config import SooperConfig
    from saferl.agents.sooper.planner import plan_memory, recovery_lookahead
    from saferl.agents.sooper.train import EpisodeRunner, build_agent
    from saferl.config import apply_overrides
    from saferl.models import ensemble, uncertainty

    fields = {k.split(".", 1)[1]: v for k, v in SHIFTS[shift][0].items()}
    world = envs.TrainingEnvConfig(shift=envs.ShiftConfig(**fields))
    env = envs.make_training_env(ENV, None, world)
    config = apply_overrides(SooperConfig(), {"prior": str(prior), **overrides}, where="sooper")
    agent = build_agent(config, env, world, ENV)
    prior_net, length = agent.prior, agent.episode_length
    state, runner = agent.init(jax.random.PRNGKey(seed)), EpisodeRunner(agent)

    def start(obs):  # the simulator state of a cart-pole observation [x, cos θ, sin θ, ẋ, θ̇]
        qpos = jnp.stack([obs[0], jnp.arctan2(obs[2], obs[1])])
        data = env.pipeline_init(qpos, jnp.stack([obs[3], obs[4]]))
        return env.reset(jax.random.PRNGKey(0)).replace(pipeline_state=data, obs=obs)

    def prior_rest(sim, steps_left):  # the prior from `sim` to the episode's end: (Σ cost, Σ γ_c^k cost)
        def body(carry, k):
            sim, total, disc = carry
            sim = env.step(sim, prior_net.action(sim.obs))
            cost = sim.info["cost"] * (k < steps_left)
            return (sim, total + cost, disc + prior_net.cost_discounting**k * cost), None

        (_, total, disc), _ = jax.lax.scan(body, (sim, 0.0, 0.0), jnp.arange(length))
        return total, disc

    true_prior = jax.jit(jax.vmap(lambda obs, left: prior_rest(start(obs), left)))

    def after_action(obs, action, left):
        sim = env.step(start(obs), action)
        total, disc = prior_rest(sim, left - 1)
        return sim.info["cost"] + total, sim.info["cost"] + prior_net.cost_discounting * disc

    true_learner = jax.jit(jax.vmap(after_action))
    episode = jax.jit(lambda m, q, d, margin, k: agent._episode(agent.policy(m, q, d, margin), k))
    records: dict[str, Any] = {}
    for index in range(episodes):
        if int(state.episode) < config.prior_episodes:
            state, row = runner(state)
            print(f"episode {index} (prior): cost {row['episode_cost']:.0f}", flush=True)
            continue
        _, collect_key, _, _ = jax.random.split(state.key, 4)
        decisions = episode(state.model, state.cost_q_params, state.dual, state.shield_margin, collect_key)
        transition, memory = decisions.transition, decisions.carry.memory
        plans = plan_memory(memory)
        residual = jnp.take_along_axis(plans.plan, (plans.index - 1)[:, None, None], axis=1)[:, 0]
        obs = transition.obs
        prior_action = prior_net.action(obs)
        learner_action = jnp.clip(prior_action + residual, -1.0, 1.0)
        fires = np.diff(np.concatenate([[0], np.asarray(memory.interventions)]))
        left = jnp.asarray(length - np.arange(length))
        q = lambda params, action, obs=obs: prior_net.networks.cost_q_network.apply(  # noqa: E731
            prior_net.normalizer, params, obs, action
        )
        mean, _ = ensemble.predict(state.model, obs, learner_action)
        current = agent.current_prior(state.cost_q_params)
        lookahead = recovery_lookahead(state.model, current, config.pessimism, agent.rule.scale, config.shield_horizon)
        record = {
            "obs": obs,
            "cost": transition.cost,
            "reward": transition.reward,
            "fires": fires,
            "spent_before": decisions.carry.cost_spent - transition.cost,
            "prior_action": prior_action,
            "learner_action": learner_action,
            "q_learner": q(state.cost_q_params, learner_action),
            "q_prior": q(state.cost_q_params, prior_action),
            "q_learner_original": q(prior_net.cost_q_params, learner_action),
            "q_prior_original": q(prior_net.cost_q_params, prior_action),
            "sigma": uncertainty.epistemic_std(mean[..., : obs.shape[-1]]).mean(-1),
            "recovery_bound": jax.jit(jax.vmap(lookahead))(obs, learner_action),
            "margin": state.shield_margin,
            "scale": agent.rule.scale,
            "budget": agent.budget,
        }
        record["true_prior"], record["true_prior_discounted"] = true_prior(obs, left)
        record["true_learner"], record["true_learner_discounted"] = true_learner(obs, learner_action, left)
        records.update({f"ep{index}_{k}": np.asarray(v) for k, v in record.items()})
        stats = EpisodeStats(
            transition.reward.sum(),
            transition.cost.sum(),
            jnp.float32(fires.sum()),
            plans.plan_value.mean(),
            plans.feasible_fraction.mean(),
        )
        collect = agent.collect_learner
        # the episode just traced, not a second one
        agent.collect_learner = lambda *args, traced=(transition, stats): traced
        state, row = runner(state)
        agent.collect_learner = collect
        print(f"episode {index}: cost {row['episode_cost']:.0f} interventions {row['interventions']:.0f}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **records)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=list(ENVS), default=ENV)
    parser.add_argument("--shifts", nargs="+", default=None, help="default: every shift of --env")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--episodes", type=int, default=EPISODES)
    parser.add_argument("--overrides", nargs="*", default=[], help="extra --set key=value of the learner")
    parser.add_argument("--priors-dir", type=pathlib.Path, default=ROOT / "runs" / "priors")
    parser.add_argument("--runs-dir", type=pathlib.Path, default=ROOT / "runs" / "sooper_safety")
    parser.add_argument("--results", type=pathlib.Path, default=None, help="default: the env's results file")
    parser.add_argument("--redo", action="store_true")
    parser.add_argument("--trace", action="store_true", help="trace the first of --shifts and --seeds instead")
    args = parser.parse_args(argv)
    setting = ENVS[args.env]
    shifts = setting["shifts"]
    args.shifts = args.shifts or list(shifts)
    unknown = [name for name in args.shifts if name not in shifts]
    if unknown:
        parser.error(f"--shifts {unknown}: {args.env}'s shifts are {list(shifts)}")
    args.results = args.results or RESULTS / setting["results"]
    if args.trace and args.env != ENV:
        parser.error("--trace rebuilds cart-pole states from observations: safe_cartpole only")
    overrides = parse_overrides(args.overrides)
    prior = prior_run(args.priors_dir, args.env)
    if args.trace:
        tag = "_".join([args.shifts[0], str(args.seeds[0]), *(f"{k}-{v}" for k, v in overrides.items())])
        trace(
            args.shifts[0], args.seeds[0], args.episodes, prior, overrides, RESULTS / f"sooper_safety_trace_{tag}.npz"
        )
        return 0
    data = json.loads(args.results.read_text()) if args.results.is_file() else {"runs": []}
    done = {run_key(r["shift"], r["seed"], r["episodes"], r["overrides"]): i for i, r in enumerate(data["runs"])}
    for shift in args.shifts:
        for seed in args.seeds:
            key = run_key(shift, seed, args.episodes, overrides)
            if key in done and not args.redo:
                continue
            run = run_one(shift, seed, args.episodes, prior, overrides, args.runs_dir, args.env)
            print(
                f"{shift} seed {seed} {overrides or ''}: costs {[round(c) for c in run['episode_costs']]} "
                f"interventions {[int(i) for i in run['interventions']]} margin {run['safety_margin']:.0f} "
                f"normalised return {run['normalized_return']:.2f} ({run['wall_s']:.0f} s)",
                flush=True,
            )
            if key in done:
                data["runs"][done[key]] = run
            else:
                done[key] = len(data["runs"])
                data["runs"].append(run)
            if args.env != ENV:  # cart-pole's file keeps its fields as they were
                data.update(env=args.env, method_overrides=setting["method_overrides"])
                data.update(env_overrides=setting["env_overrides"])
            data.update(
                prior=str(prior),
                host=platform.node(),
                cpus=os.cpu_count(),
                shifts={
                    name: {"env_overrides": o, "inside_ranges": i, "acceptance": a}
                    for name, (o, i, a) in shifts.items()
                },
            )
            data["aggregate"] = aggregate(data["runs"], shifts)
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(json.dumps(data, indent=1, allow_nan=True) + "\n")
            plot(data["aggregate"], args.results.with_suffix(".png"), run["budget"], args.env)
    for row in data.get("aggregate", []):
        print(
            f"{row['shift']:18s} {json.dumps(row['overrides']):22s} {row['runs']} runs x {row['episodes']} ep: "
            f"safe {row['safe_share']:.2f} worst {row['worst_episode_cost']:.0f} "
            f"return {row['normalized_return']:.2f} interventions {row['intervention_rate']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
