"""Learning test (slow): SOOPER from `make demo`'s CRPO SAC prior trained under domain randomisation
(`learning_runs.cartpole_sac_randomized()`) on two shifted "real systems" × two seeds: no episode of any run
exceeds the budget (issue #26: the guarantee must not hold for one seed and one shift only), and the learner does
not collapse below the prior.

The shifts: `heavy_pole` (pole ×2, `make demo`'s) and all masses ×1.4 with motor gain ×0.85 (inside the prior's
randomisation ranges). Before the recovery shield (issue #26), with the paper's rule (`shield=budget`), the
issue's prior exceeded the budget on seeds 1, 2 of heavy_pole and 0, 1, 2 of the second shift (episode costs
168–283); docs/sooper_safety.md has the traces and the measured numbers of the recovery shield.
"""

import json

import pytest
from learning_runs import cartpole_sac_randomized

from saferl.training.run import train

EPISODES = 6  # 1 of the prior, 5 of the learner (issue #26's runs: --steps 6000)
SHIFTS = {
    "heavy_pole": {"shift.preset": "heavy_pole"},
    "mass1.4_gain0.85": {"shift.mass_scale": 1.4, "shift.actuator_gain_scale": 0.85},
}


@pytest.mark.slow
@pytest.mark.long  # ≈ 2–3 min per run on 2 idle cores, 4 runs: `make test-long`, not `make test`
@pytest.mark.parametrize("shift", sorted(SHIFTS))
@pytest.mark.parametrize("seed", [0, 1])
def test_sooper_never_exceeds_the_budget_on_shifted_systems(tmp_path, shift, seed):
    prior = cartpole_sac_randomized().run_dir
    run = train(
        "sooper",
        "safe_cartpole",
        steps=EPISODES * 1000,
        seed=seed,
        overrides={"prior": str(prior)},
        env_overrides=SHIFTS[shift],
        out=tmp_path,
        progress=False,
        tensorboard=False,
    )
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["episodes"] == EPISODES and summary["budget"] == 100.0
    assert max(summary["episode_costs"]) <= 100.0, summary["episode_costs"]  # every learning episode is safe
    assert summary["safety_margin"] >= 0.0
    assert summary["prior_return"] > 100.0  # the prior swings the pole up on the shifted system too
    # the shield may cost return where safety needs it, but the learner must not fall far below the prior
    assert summary["normalized_return"] > 0.8, summary["episode_returns"]
