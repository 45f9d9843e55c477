"""Choose a SAC prior in simulation only: every kept checkpoint of every candidate run is scored on simulated
episodes of its own training world, and the most rewarding one whose worst simulated episode stays within the cost
threshold is chosen. No shifted ("real") system is ever built here: the only worlds are the run's own randomisation
and the corners of its randomisation box (each range collapsed to one of its ends), the same physics the run trained
on, with the run's own shift (none for a prior) and observation channel.

Rule (`SelectionConfig`): per candidate (run, checkpoint step), `randomized_episodes` deterministic episodes with
physics drawn per episode from the run's ranges, plus `corner_episodes` at each corner of the box of its
non-degenerate ranges. Rejected if any of those episodes costs more than `max_episode_cost` (default: the env's
budget d). Chosen: the accepted candidate with the highest mean return over all its simulated episodes. None
accepted: no prior (`SelectionError`).

    python -m saferl.agents.sac.selection runs/pg_prior/*/sac-point_goal-* --out runs/priors/point_goal-selected

writes OUT/ (a copy of the chosen run holding only the chosen checkpoint, usable as `--set prior=OUT`) and
OUT/selection.json (every candidate's figures and the rule).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import pathlib
import shutil
import sys
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

import envs
from envs.wrappers.domain_randomization import DomainRandomizationConfig
from envs.wrappers.episode_randomization import EpisodeRandomizationWrapper
from saferl.errors import UserError
from saferl.policies.evaluate import rollout_returns
from saferl.policies.policy import Policy
from saferl.training import restore, rundir
from saferl.training.checkpoints import Checkpoints

SELECTION_FILE = "selection.json"


class SelectionError(UserError):
    """No candidate passed the rule."""


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
    randomized_episodes: int = 32  # episodes with physics drawn from the run's randomisation ranges
    corner_episodes: int = 16  # episodes at each corner of the randomisation box
    max_episode_cost: float | None = None  # reject above this worst simulated episode cost (None: the env's budget)
    seed: int = 0  # episode keys (layouts, starts, physics draws); the same for every candidate

    def __post_init__(self) -> None:
        if self.randomized_episodes < 0 or self.corner_episodes < 0:
            raise ValueError("randomized_episodes and corner_episodes must be >= 0")
        if self.randomized_episodes + self.corner_episodes == 0:
            raise ValueError("at least one simulated episode is needed")


def simulated_worlds(randomization: DomainRandomizationConfig) -> list[tuple[str, DomainRandomizationConfig]]:
    """(label, randomisation) of every simulated world of a run trained with `randomization`: the ranges as they
    are ("randomized"), then each corner of the box of its non-degenerate ranges (every such range collapsed to
    its low or high end, e.g. "mass_scale=1.6,damping_scale=0.6"). Nothing outside the ranges."""
    names = [f.name for f in dataclasses.fields(randomization)]
    varied = [name for name in names if getattr(randomization, name)[0] != getattr(randomization, name)[1]]
    worlds = [("randomized", randomization)]
    for ends in itertools.product((0, 1), repeat=len(varied)):
        fields = {name: (getattr(randomization, name)[end],) * 2 for name, end in zip(varied, ends, strict=True)}
        label = ",".join(f"{name}={value[0]:g}" for name, value in fields.items())
        worlds.append((label, dataclasses.replace(randomization, **fields)))
    return worlds


def checkpoint_policy(run_dir: pathlib.Path | str, step: int) -> Policy:
    """The SAC policy of checkpoint `step` of the run in `run_dir` (`load_policy` reads the last one)."""
    from saferl.agents.sac import policy as sac_policy

    run = restore.load_run(run_dir)
    last = rundir.checkpoint_steps(run.record.path)
    if step not in last:
        raise UserError(f"{run_dir}: no checkpoint at step {step}; available: {last}")
    # restore_actor_critics reads the last checkpoint; build the same targets and read `step` instead
    shaped, networks = sac_policy.restore_actor_critics(run_dir)
    checkpoints = Checkpoints(run.record.path / "checkpoints")
    try:
        targets = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), shaped.state)
        state = checkpoints.restore_subtrees(step, targets)
    finally:
        checkpoints.close()
    return sac_policy.actor_critic_policy(shaped._replace(state=state), networks)


def simulate(policy: Policy, randomization: DomainRandomizationConfig, episodes: int, seed: int) -> dict[str, Any]:
    """Returns and costs [episodes] of `policy` in its training world with `randomization` in place of the
    run's ranges (drawn per episode); the run's shift and observation channel are kept as they are."""
    world = dataclasses.replace(policy.training_env or envs.TrainingEnvConfig(), randomization=randomization)
    env = envs.wrap_evaluation_env(envs.make_training_env(policy.env_name, policy.env_config, world), world)
    if not randomization.is_off:
        env = EpisodeRandomizationWrapper(env, randomization)
    returns, costs = rollout_returns(policy, env, episodes, seed=seed)
    return {"returns": returns.tolist(), "costs": costs.tolist()}


def score(policy: Policy, config: SelectionConfig) -> dict[str, Any]:
    """Every simulated world's episodes of `policy` and the rule's figures: mean return, worst and mean cost."""
    world = policy.training_env or envs.TrainingEnvConfig()
    per_world: dict[str, Any] = {}
    for label, randomization in simulated_worlds(world.randomization):
        episodes = config.randomized_episodes if label == "randomized" else config.corner_episodes
        if episodes:
            per_world[label] = simulate(policy, randomization, episodes, config.seed)
    returns = [r for w in per_world.values() for r in w["returns"]]
    costs = [c for w in per_world.values() for c in w["costs"]]
    threshold = policy.cost_budget if config.max_episode_cost is None else config.max_episode_cost
    return {
        "mean_return": float(np.mean(returns)),
        "worst_cost": float(np.max(costs)),
        "mean_cost": float(np.mean(costs)),
        "threshold": float(threshold),
        "accepted": bool(np.max(costs) <= threshold),
        "worlds": {
            label: {
                "mean_return": float(np.mean(w["returns"])),
                "worst_cost": float(np.max(w["costs"])),
                "mean_cost": float(np.mean(w["costs"])),
                "episode_costs": [round(float(c), 2) for c in w["costs"]],
                "episode_returns": [round(float(r), 3) for r in w["returns"]],
            }
            for label, w in per_world.items()
        },
    }


def select(runs: Sequence[pathlib.Path | str], config: SelectionConfig | None = None) -> dict[str, Any]:
    """Score every kept checkpoint of every run in `runs`; {"chosen": the best accepted candidate or None,
    "candidates": [...], "rule": config}. Only simulated episodes of each run's own training world are read."""
    config = config or SelectionConfig()
    candidates = []
    for run_dir in runs:
        run_dir = pathlib.Path(run_dir)
        for step in rundir.checkpoint_steps(run_dir):
            figures = score(checkpoint_policy(run_dir, step), config)
            candidates.append({"run": str(run_dir), "step": step, **figures})
            print(
                f"{run_dir.name} @ {step}: return {figures['mean_return']:.2f}, worst cost {figures['worst_cost']:g}"
                f" (mean {figures['mean_cost']:.2f}) -> {'accepted' if figures['accepted'] else 'rejected'}",
                flush=True,
            )
    accepted = [c for c in candidates if c["accepted"]]
    chosen = max(accepted, key=lambda c: c["mean_return"]) if accepted else None
    return {"chosen": chosen, "candidates": candidates, "rule": dataclasses.asdict(config)}


def export(run_dir: pathlib.Path | str, step: int, out: pathlib.Path | str) -> pathlib.Path:
    """A copy of the run in `run_dir` at `out` holding checkpoint `step` alone (so `load_policy(out)` and
    `--set prior=out` read that checkpoint); config, metrics and plots come along."""
    source, out = pathlib.Path(run_dir), pathlib.Path(out)
    if out.exists():
        raise UserError(f"{out} exists; give a new directory")

    def ignore(directory: str, names: list[str]) -> list[str]:
        if pathlib.Path(directory).resolve() == (source / "checkpoints").resolve():
            return [name for name in names if name.isdigit() and int(name) != step]
        return []

    shutil.copytree(source, out, ignore=ignore)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("runs", nargs="+", type=pathlib.Path, help="candidate SAC run directories")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="new directory for the chosen prior")
    parser.add_argument("--randomized-episodes", type=int, default=SelectionConfig.randomized_episodes)
    parser.add_argument("--corner-episodes", type=int, default=SelectionConfig.corner_episodes)
    parser.add_argument("--max-episode-cost", type=float, default=None, help="default: the env's budget")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = SelectionConfig(args.randomized_episodes, args.corner_episodes, args.max_episode_cost, args.seed)
    result = select(args.runs, config)
    chosen = result["chosen"]
    if chosen is None:
        print(json.dumps(result, indent=1), file=sys.stderr)
        raise SelectionError("no candidate's worst simulated episode stayed within the threshold")
    out = export(chosen["run"], chosen["step"], args.out)
    (out / SELECTION_FILE).write_text(json.dumps(result, indent=1))
    print(f"chosen: {chosen['run']} @ {chosen['step']} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
