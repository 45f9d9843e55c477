"""experiments/softae_study.py --merge: parts run separately (one strategy / seed / setting each) become one table."""

from __future__ import annotations

import csv
import json
import pathlib
import sys

import pytest

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[2] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))
sys.path.insert(0, str(EXPERIMENTS.parent / "tests" / "training"))

import softae_study  # noqa: E402  (experiments/softae_study.py)

OLD_COLUMNS = [
    "env",
    "variant",
    "strategy",
    "seed",
    "episodes",
    "env_steps",
    "exploration_cost",
    "error_1",
    "error_10",
    "error_50",
    "task",
    "zero_shot_return",
    "zero_shot_cost",
    "seconds",
]


def _row(strategy, seed, task, ret, seconds, settings=None):
    row = {
        "env": "soft_arm",
        "variant": "nominal",
        "strategy": strategy,
        "seed": seed,
        "episodes": 8,
        "env_steps": 1600,
        "exploration_cost": 500.0,
        "error_1": 0.2,
        "error_10": 1.0 + seed,
        "error_50": "nan",
        "task": task,
        "zero_shot_return": ret,
        "zero_shot_cost": 40.0,
        "seconds": seconds,
    }
    if settings is not None:
        row["settings"] = settings
    return row


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_merge_keeps_settings_apart_and_averages_over_seeds(tmp_path, monkeypatch):
    old = _write_csv(
        tmp_path / "old.csv",
        [_row("info_gain", s, t, 100.0 + 10 * s, 300.0 + s) for s in (0, 1) for t in ("reach", "circle")],
    )
    new = _write_csv(
        tmp_path / "new.csv",
        [_row("info_gain", 0, t, 150.0, 400.0, "cost_constraint=penalty") for t in ("reach", "circle")],
    )
    out = tmp_path / "merged"
    monkeypatch.setattr(sys, "argv", ["softae_study.py", "--merge", str(old), str(new), "--out", str(out)])
    softae_study.main()
    with open(out.with_suffix(".csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and list(rows[0])[:4] == ["env", "variant", "strategy", "settings"]
    result = json.loads(out.with_suffix(".json").read_text())
    reach = {s["settings"]: s for s in result["summary"] if s["task"] == "reach"}
    assert set(reach) == {"", "cost_constraint=penalty"}
    assert reach[""]["seeds"] == [0, 1] and reach[""]["zero_shot_return"] == pytest.approx(105.0)
    assert reach[""]["error_10"] == pytest.approx(1.5) and reach[""]["error_10_std"] == pytest.approx(0.5)
    assert reach["cost_constraint=penalty"]["seeds"] == [0]
    assert result["meta"]["wall_s"] == pytest.approx(300.0 + 301.0 + 400.0, abs=5.0)  # each run's own time
    assert result["meta"]["merged_parts"] == [str(old), str(new)]
    assert out.with_suffix(".png").stat().st_size > 0


def test_merge_of_a_missing_part_names_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["softae_study.py", "--merge", str(tmp_path / "nope.csv")])
    with pytest.raises(SystemExit, match=r"nope.csv not found"):
        softae_study.main()


def test_merge_counts_the_wall_clock_of_seeds_explored_together_once(tmp_path, monkeypatch):
    rows = [{**_row("random", s, "reach", 100.0, 600.0 + s), "seed_batch": "0 1 2"} for s in (0, 1, 2)]
    part = _write_csv(tmp_path / "batched.csv", rows)
    out = tmp_path / "merged"
    monkeypatch.setattr(sys, "argv", ["softae_study.py", "--merge", str(part), "--out", str(out)])
    softae_study.main()
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["meta"]["wall_s"] == pytest.approx(602.0, abs=5.0)  # one run of three seeds, not three runs
    assert result["summary"][0]["seeds"] == [0, 1, 2]


@pytest.mark.slow
def test_seeds_explored_together_are_the_single_seed_runs(monkeypatch):
    """`run_seeds` (vmapped seeds) on a tiny pendulum config: each seed's rows equal those of that seed alone."""
    import jax
    from tiny_configs import SOFTAE_TINY

    from saferl.agents.softae import SoftAEConfig, evaluation, make_agent
    from saferl.config import apply_overrides

    monkeypatch.setitem(softae_study.VARIANTS, "short", ({"episode_length": 20}, {}))
    env, world = softae_study._world("pendulum", "short")
    probe = make_agent(apply_overrides(SoftAEConfig(), {**SOFTAE_TINY, "exploration": "random"}), env, world)
    test_set = evaluation.held_out_trajectories(probe, jax.random.PRNGKey(3), 2)
    args = ("pendulum", "short", "info_gain", "")
    together = softae_study.run_seeds(*args, [0, 1], [1, 2], SOFTAE_TINY, test_set, 1)
    alone = softae_study.run_seeds(*args, [1], [1, 2], SOFTAE_TINY, test_set, 1)
    tasks = sorted(env.tasks())
    assert len(together) == 2 * 2 * len(tasks) and {r["seed_batch"] for r in together} == {"0 1"}
    mine = [r for r in together if r["seed"] == 1]
    assert [(r["episodes"], r["task"]) for r in mine] == [(r["episodes"], r["task"]) for r in alone]
    for a, b in zip(mine, alone, strict=False):
        for key in ("exploration_cost", "error_1", "error_10", "zero_shot_return", "zero_shot_cost"):
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-4, nan_ok=True), key
    seed0 = [r for r in together if r["seed"] == 0]
    assert [r["error_1"] for r in seed0] != [r["error_1"] for r in mine]  # another seed, another model


def test_merge_keeps_zero_shot_returns_of_other_evaluation_lengths_apart(tmp_path, monkeypatch):
    two = [{**_row("random", 0, "reach", 150.0, 60.0), "zero_shot_episodes": 2}]
    five = [{**_row("random", 0, "reach", 160.0, 70.0), "zero_shot_episodes": 5}]
    parts = [_write_csv(tmp_path / "two.csv", two), _write_csv(tmp_path / "five.csv", five)]
    out = tmp_path / "merged"
    monkeypatch.setattr(sys, "argv", ["softae_study.py", "--merge", *map(str, parts), "--out", str(out)])
    softae_study.main()
    summary = json.loads(out.with_suffix(".json").read_text())["summary"]
    assert {s["zero_shot_episodes"]: s["zero_shot_return"] for s in summary} == {2: 150.0, 5: 160.0}


def test_set_env_reaches_the_world_and_keeps_rows_apart():
    """`--set-env` pairs go to the env config or the training world as in `saferl train --set-env`, on top of the
    variant's own, and are recorded in `settings` (env:key=value) so rows of other episode lengths stay apart."""
    from saferl.errors import UserError

    env, world = softae_study._world("pendulum", "obs_noise", {"episode_length": 20, "action_delay": 1})
    assert env.config.episode_length == 20
    assert world.obs_noise_std == pytest.approx(0.01) and world.action_delay == 1
    assert softae_study._settings({"cost_constraint": "feasibility"}, {"episode_length": 20}) == (
        "cost_constraint=feasibility env:episode_length=20"
    )
    assert softae_study._settings({}, None) == ""
    with pytest.raises(UserError, match="episode_lenght"):
        softae_study._world("pendulum", "nominal", {"episode_lenght": 20})


def test_tasks_option_limits_the_task_specific_baseline_and_names_an_unknown_task():
    from saferl.errors import UserError

    env, _ = softae_study._world("pendulum", "nominal")
    every = sorted(env.tasks())
    assert softae_study._task_baseline_tasks(env, "pendulum", None) == every
    assert softae_study._task_baseline_tasks(env, "pendulum", [every[-1], "reach_far"]) == [every[-1]]
    with pytest.raises(UserError, match=r"reach_far: none is a task of pendulum \(its tasks: "):
        softae_study._task_baseline_tasks(env, "pendulum", ["reach_far"])


def test_tasks_option_names_a_task_no_env_has_before_running_anything(monkeypatch, tmp_path):
    env = softae_study.envs.make("pendulum")
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "softae_study.py",
            "--envs",
            "pendulum",
            "--strategies",
            "task",
            "--tasks",
            sorted(env.tasks())[0],
            "swing_upp",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    from saferl.errors import UserError

    with pytest.raises(UserError, match="--tasks swing_upp: not a task of any of pendulum"):
        softae_study.main()
    assert not list(tmp_path.iterdir())  # nothing ran, nothing written
