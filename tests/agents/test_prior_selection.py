"""Prior selection (`saferl.agents.sac.selection`): it reads only simulated episodes of each run's own training
world (its randomisation and the corners of its box, never a shift), rejects a candidate whose worst simulated
episode exceeds the threshold however rewarding it is, and exports the chosen checkpoint alone."""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import pytest

import envs
from envs.wrappers.domain_randomization import DomainRandomizationConfig
from saferl.agents.sac import selection
from saferl.policies.policy import Policy, stateless_carry

RANGES = DomainRandomizationConfig.off()
RANGES = dataclasses.replace(RANGES, mass_scale=(0.8, 1.6), damping_scale=(0.6, 1.2))
WORLD = envs.TrainingEnvConfig(randomization=RANGES)


def _inside(randomization: DomainRandomizationConfig) -> bool:
    return all(
        getattr(RANGES, f.name)[0] <= low <= high <= getattr(RANGES, f.name)[1]
        for f in dataclasses.fields(RANGES)
        for low, high in [getattr(randomization, f.name)]
    )


def test_simulated_worlds_are_the_ranges_and_their_corners_only():
    worlds = dict(selection.simulated_worlds(RANGES))
    assert worlds.pop("randomized") == RANGES
    assert len(worlds) == 4  # 2 varied ranges -> 4 corners; the degenerate ones stay off
    assert all(_inside(w) for w in worlds.values())
    worst = worlds["mass_scale=1.6,damping_scale=0.6"]
    assert worst.mass_scale == (1.6, 1.6) and worst.damping_scale == (0.6, 0.6)
    assert worst.friction_scale == (1.0, 1.0)


class _Candidate:
    """A stand-in policy: its return and its costs per simulated world (the fake `simulate` reads them)."""

    def __init__(self, name: str, episode_return: float, corner_cost: float):
        self.name, self.episode_return, self.corner_cost = name, episode_return, corner_cost
        self.training_env = WORLD
        self.cost_budget = 25.0


def test_select_rejects_a_rewarding_candidate_whose_worst_simulated_episode_is_over_budget(monkeypatch, tmp_path):
    candidates = {
        ("risky", 100): _Candidate("risky", 20.0, corner_cost=30.0),  # best return, one corner over d
        ("safe", 100): _Candidate("safe", 12.0, corner_cost=20.0),
        ("safe", 200): _Candidate("safe@200", 11.0, corner_cost=5.0),
    }
    seen: list[tuple[str, DomainRandomizationConfig]] = []

    def fake_simulate(policy, randomization, episodes, seed):
        seen.append((policy.name, randomization))
        corner = randomization != RANGES
        cost = policy.corner_cost if corner else 0.0
        return {"returns": [policy.episode_return] * episodes, "costs": [cost] * episodes}

    def fake_built_env(*args, **kwargs):  # `simulate` is the only way to the physics: nothing else builds an env
        raise AssertionError("selection built an env outside `simulate`")

    monkeypatch.setattr(selection, "simulate", fake_simulate)
    monkeypatch.setattr(envs, "make_training_env", fake_built_env)
    monkeypatch.setattr(selection, "checkpoint_policy", lambda run, step: candidates[(pathlib.Path(run).name, step)])
    monkeypatch.setattr(selection.rundir, "checkpoint_steps", lambda run: [s for n, s in candidates if n == run.name])

    result = selection.select([tmp_path / "risky", tmp_path / "safe"], selection.SelectionConfig(4, 2))

    by_run = {(pathlib.Path(c["run"]).name, c["step"]): c for c in result["candidates"]}
    assert not by_run[("risky", 100)]["accepted"] and by_run[("risky", 100)]["worst_cost"] == 30.0
    assert result["chosen"]["run"].endswith("safe") and result["chosen"]["step"] == 100  # highest accepted return
    assert {name for name, _ in seen} == {"risky", "safe", "safe@200"}
    assert all(_inside(randomization) for _, randomization in seen)  # no world outside the run's ranges

    strict = selection.select([tmp_path / "risky", tmp_path / "safe"], selection.SelectionConfig(4, 2, 10.0))
    assert strict["chosen"]["step"] == 200  # a lower threshold keeps only the checkpoint at cost 5


def test_simulate_steps_the_runs_own_world_never_a_shift(monkeypatch):
    """A run trained on a shifted world is simulated on that world with the given randomisation; the selection has
    no way to ask for another shift."""
    built = []
    make = envs.make_training_env

    def spy(name, env_config, world):
        built.append(world)
        return make(name, env_config, world)

    monkeypatch.setattr(envs, "make_training_env", spy)
    env = envs.make("pendulum", episode_length=20)
    policy = Policy(
        act=lambda carry, obs, key: (jnp.zeros(env.action_size), carry),
        init_carry=stateless_carry,
        params=None,
        apply=None,
        observation_size=env.observation_size,
        action_size=env.action_size,
        env_name="pendulum",
        env_config=env.config,
        cost_budget=float(env.cost_budget),
        algo="test",
        training_env=WORLD,
    )
    corner = dict(selection.simulated_worlds(RANGES))["mass_scale=1.6,damping_scale=0.6"]
    out = selection.simulate(policy, corner, episodes=3, seed=0)
    assert len(out["returns"]) == len(out["costs"]) == 3
    assert [w.shift for w in built] == [WORLD.shift] and WORLD.shift.is_identity
    assert built[0].randomization == corner
    assert jax.numpy.all(jnp.isfinite(jnp.asarray(out["returns"])))


def test_export_keeps_only_the_chosen_checkpoint(tmp_path):
    run = tmp_path / "run"
    for step in (100, 200, 300):
        (run / "checkpoints" / str(step)).mkdir(parents=True)
    (run / "config.json").write_text("{}")
    out = selection.export(run, 200, tmp_path / "out")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["200"]
    assert (out / "config.json").is_file()
    with pytest.raises(selection.UserError):
        selection.export(run, 200, out)
