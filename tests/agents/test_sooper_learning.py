"""Learning test (slow): SOOPER on the shifted safe_cartpole (pole twice as heavy, the "real system") from
`make demo`'s CRPO SAC prior trained under domain randomisation (`learning_runs.cartpole_sac_randomized()`):
no episode exceeds the budget, and the learner beats the prior's return on the real system.

Measured on 2 CPU cores (seed 0, 8 real episodes: 1 of the prior, 7 of the learner), 2026-12-02 on an AMD EPYC
VM: the prior returns 728 at cost 0 on the heavy pole; the learner's first 3 episodes explore (364 / 454 / 470, costs
42 / 4 / 32, the shield stepping in 168–412 times), the next 4 return 800 / 795 / 834 / 834 (normalised 1.15, costs
0 / 0 / 28 / 29). With 4 episodes, as before, the learner ended at 753 (1.03) on another host but at 470 (0.64) on
this one: 3 learner episodes were not enough to show the improvement robustly. Before issue #9 switched off
XLA's CPU fusion emitters the test used the nominal-only prior (≈ 420–540, learner > 1.3); with the new floating
point that prior costs 658 on the heavy pole, so it no longer met SOOPER's assumption of a safe prior.
"""

import json

import pytest
from learning_runs import cartpole_sac_randomized

from saferl.training.run import train

EPISODES = 8  # 1 of the prior, 7 of the learner


@pytest.mark.slow
@pytest.mark.long  # ≈ 8–12 min on 2 busy cores: `make test-long`, not `make test`
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
    # the learner beats the prior: measured 728 -> 834 (normalised 1.15, worst cost 42); the randomised prior is
    # strong on the heavy pole already (≈ 800–835 is what the learner reaches), so the margin is modest
    assert summary["normalized_return"] > 1.0, summary["episode_returns"]
