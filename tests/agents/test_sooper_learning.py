"""Learning test (slow): SOOPER on the shifted safe_cartpole (pole twice as heavy, the "real system") from the
CRPO SAC prior trained on the nominal system (`learning_runs.cartpole_sac("crpo")`, the constrained learning
test's run): no episode exceeds the budget, and the learner beats the prior's return on the real system.

Measured on 2 CPU cores (seed 0, 4 real episodes: 1 of the prior, 3 of the learner; see the README's SOOPER
table for 3 seeds and the baselines): the prior returns ≈ 420–540 at cost 0 there, the learner ends at a
normalised return above 1.3 with every episode's cost under 100.
"""

import json

import pytest
from learning_runs import cartpole_sac

from saferl.training.run import train

EPISODES = 4


@pytest.mark.slow
def test_sooper_never_exceeds_the_budget_and_improves_on_the_prior(tmp_path):
    prior = cartpole_sac("crpo").run_dir
    run = train("sooper", "safe_cartpole", steps=EPISODES * 1000, seed=0, overrides={"prior": str(prior)},
                env_overrides={"shift.preset": "heavy_pole"}, out=tmp_path, progress=False, tensorboard=False)
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["episodes"] == EPISODES and summary["budget"] == 100.0
    assert max(summary["episode_costs"]) <= 100.0, summary["episode_costs"]  # every learning episode is safe
    assert summary["safety_margin"] >= 0.0
    assert summary["prior_return"] > 100.0  # the prior swings the pole up on the heavier system too
    assert summary["normalized_return"] > 1.1, summary["episode_returns"]  # the learner beats the prior
