"""Learning test (slow): SOOPER on the shifted safe_cartpole (pole twice as heavy, the "real system") from
`make demo`'s CRPO SAC prior trained under domain randomisation (`learning_runs.cartpole_sac_randomized()`):
no episode exceeds the budget, and the learner beats the prior's return on the real system.

Measured on 2 CPU cores (seed 0, 4 real episodes: 1 of the prior, 3 of the learner): the prior returns 728 at
cost 10, the learner ends at 753 (normalised 1.03) with every episode's cost ≤ 12. Before issue #9 switched off
XLA's CPU fusion emitters the test used the nominal-only prior (≈ 420–540, learner > 1.3); with the new floating
point that prior costs 658 on the heavy pole, so it no longer met SOOPER's assumption of a safe prior.
"""

import json

import pytest
from learning_runs import cartpole_sac_randomized

from saferl.training.run import train

EPISODES = 4


@pytest.mark.slow
@pytest.mark.long  # ≈ 4–10 min on 2 busy cores: `make test-long`, not `make test`
def test_sooper_never_exceeds_the_budget_and_improves_on_the_prior(tmp_path):
    # the prior is trained under domain randomisation, as SOOPER assumes and `make demo` does: the nominal-only
    # CRPO prior (cartpole_sac("crpo")) cost 658 on the heavy pole once XLA's fusion emitters were switched off
    # (a floating-point change, issue #9), i.e. it was not a safe prior for this system
    prior = cartpole_sac_randomized().run_dir
    run = train("sooper", "safe_cartpole", steps=EPISODES * 1000, seed=0, overrides={"prior": str(prior)},
                env_overrides={"shift.preset": "heavy_pole"}, out=tmp_path, progress=False, tensorboard=False)
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["episodes"] == EPISODES and summary["budget"] == 100.0
    assert max(summary["episode_costs"]) <= 100.0, summary["episode_costs"]  # every learning episode is safe
    assert summary["safety_margin"] >= 0.0
    assert summary["prior_return"] > 100.0  # the prior swings the pole up on the heavier system too
    # the learner beats the prior: measured 728 -> 753 (normalised 1.03, costs 10/12/6/5); the randomised prior
    # is strong on the heavy pole already, so the margin is small (the nominal prior of before: > 1.1)
    assert summary["normalized_return"] > 1.0, summary["episode_returns"]
