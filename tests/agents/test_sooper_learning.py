"""Learning test: SOOPER, as `make demo` runs it (default config, learner=mpc, recovery shield), from `make demo`'s
prior on two shifted "real systems" × two seeds: no episode of any run exceeds the budget (issue #26: the
guarantee must not hold for one seed and one shift only), and the learner does not collapse below the prior.

The prior is `tests/assets/priors/sac-safe_cartpole-demo` (`PRIOR`): the actor and critics of the prior `make demo`
trained on 2026-12-07 (SAC-CRPO, seed 0, 100k steps, pole/cart mass × 0.6–1.6 and motor gain × 0.8–1.2
randomised), the one `experiments/benchmarks/sooper_safety.py`'s shift suite measured; written by
`saferl.agents.sac.policy.save_actor_critics` (tests/assets/README.md). Shipping it saves the suite a 100k-step SAC.

The shifts: `heavy_pole` (pole ×2, `make demo`'s; outside the randomisation) and all masses ×1.4 with motor gain
×0.85 (inside it). Before the recovery shield, with the paper's rule (`shield=budget`), a prior trained the same way
exceeded the budget on seeds 1, 2 of heavy_pole and 0, 1, 2 of the second shift (episode costs 168–283), four of
those five first in the learner's first or second episode — the episodes `make test` runs (3 per run: 1 of the
prior, 2 of the learner, ≈ 45 s each on 2 cores). `make test-long` runs the issue's 6 episodes.
"""

import json
import pathlib

import pytest

from saferl.training.run import train

PRIOR = pathlib.Path(__file__).parents[1] / "assets" / "priors" / "sac-safe_cartpole-demo"
SHIFTS = {
    "heavy_pole": {"shift.preset": "heavy_pole"},
    "mass1.4_gain0.85": {"shift.mass_scale": 1.4, "shift.actuator_gain_scale": 0.85},
}
BUDGET = 100.0  # safe_cartpole's episode cost budget
# mean learner return over the prior's: in experiments/results/sooper_safety.json (this prior, these two shifts,
# seeds 0–4) the learner's first two episodes averaged 1.02 of the prior's episode (min 0.91 over 10 runs) and
# its episodes 2–6 1.05 (min 0.96): the shield may cost return, but the learner must not freeze below the prior
MIN_LEARNER_RETURN_RATIO = 0.75


def run_sooper(tmp_path: pathlib.Path, shift: str, seed: int, episodes: int) -> dict:
    run = train(
        "sooper",
        "safe_cartpole",
        steps=episodes * 1000,
        seed=seed,
        overrides={"prior": str(PRIOR)},
        env_overrides=SHIFTS[shift],
        out=tmp_path,
        progress=False,
        tensorboard=False,
    )
    return json.loads((run.run_dir / "summary.json").read_text())


def check_safe_and_not_frozen(summary: dict, episodes: int) -> None:
    assert summary["episodes"] == episodes and summary["budget"] == BUDGET
    costs, returns = summary["episode_costs"], summary["episode_returns"]
    assert max(costs) <= BUDGET, costs  # every learning episode is safe, the prior's included
    assert summary["safety_margin"] >= 0.0
    assert summary["prior_return"] > 100.0  # the prior swings the pole up on the shifted system too
    learner = returns[1:]
    assert sum(learner) / len(learner) >= MIN_LEARNER_RETURN_RATIO * summary["prior_return"], returns


@pytest.mark.slow
@pytest.mark.parametrize("shift", sorted(SHIFTS))
@pytest.mark.parametrize("seed", [0, 1])
def test_sooper_never_exceeds_the_budget_on_shifted_systems(tmp_path, shift, seed):
    check_safe_and_not_frozen(run_sooper(tmp_path, shift, seed, episodes=3), episodes=3)


@pytest.mark.slow
@pytest.mark.long  # ≈ 1.5 min per run on 2 idle cores, 4 runs: `make test-long`, not `make test`
@pytest.mark.parametrize("shift", sorted(SHIFTS))
@pytest.mark.parametrize("seed", [0, 1])
def test_sooper_never_exceeds_the_budget_over_six_episodes(tmp_path, shift, seed):
    check_safe_and_not_frozen(run_sooper(tmp_path, shift, seed, episodes=6), episodes=6)


def test_the_shipped_prior_is_the_demo_recipe():
    """The asset is what its docstring says: a SAC-CRPO run on safe_cartpole, 100k steps, seed 0, with the demo's
    randomisation, holding one checkpoint of the actor and critics only."""
    record = json.loads((PRIOR / "config.json").read_text())
    assert (record["algo"], record["env"], record["steps"], record["seed"]) == ("sac", "safe_cartpole", 100_000, 0)
    assert record["algo_config"]["constraint"]["kind"] == "crpo"
    randomization = record["training_env"]["randomization"]
    assert randomization["mass_scale"] == [0.6, 1.6] and randomization["actuator_gain_scale"] == [0.8, 1.2]
    assert [p.name for p in (PRIOR / "checkpoints").iterdir()] == ["100096"]
    size = sum(p.stat().st_size for p in PRIOR.rglob("*") if p.is_file())
    assert size < 1_000_000, size  # no replay buffer, optimiser or env states
