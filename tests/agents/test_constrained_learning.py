"""Learning test (slow): SAC with CRPO (the `make demo` command) keeps safe_cartpole's episode cost within the
budget, where unconstrained SAC (same config and seed) swings the pole up at a cost far above it. Evaluation:
5 deterministic episodes in the run's own world, as `saferl eval` does.

Measured on 2 CPU cores with these defaults (seed 0, 100k steps, 10 deterministic episodes): CRPO return 538 at
cost 0 (budget 100); the augmented Lagrangian returned 406 at cost 132 in the same setting (its final iterate
lands anywhere between 0 and ≈ 1.3·d, see the benchmark); unconstrained SAC at 60k steps returns ≈ 900 at a cost
of 160–950. 3 seeds under domain randomisation: experiments/benchmarks/results/constrained_priors.json.
"""

import pytest
from learning_runs import cartpole_sac

from saferl.policies import load_policy
from saferl.policies.evaluate import evaluate
from saferl.policies.worlds import evaluation_env, evaluation_world


def _final(kind):
    policy = load_policy(cartpole_sac(kind).run_dir)
    return evaluate(policy, evaluation_env(policy, evaluation_world(policy)), episodes=5, seed=1)


@pytest.mark.slow
@pytest.mark.long  # ≈ 6–10 min on 2 cores: `make test-long`, not `make test`
def test_crpo_sac_ends_within_budget_and_below_unconstrained_cost():
    free = _final("none")
    safe = _final("crpo")
    budget = safe["cost_budget"]
    assert budget == 100.0
    assert safe["mean_cost"] <= budget, safe
    assert safe["mean_cost"] < free["mean_cost"], (safe, free)
    assert free["mean_cost"] > budget  # the constraint is what keeps it safe, not an easy task
    assert safe["mean_return"] > 100.0  # well above doing nothing (≈ 0: the pole hangs down)
