"""Learning test (slow): SAC with the augmented Lagrangian keeps safe_cartpole's episode cost within the budget,
where unconstrained SAC (same config, seed and steps) swings the pole up at a cost far above it.

Measured on 2 CPU cores at 60k steps, seed 0 (see experiments/benchmarks/results/constrained_priors.json for
3 seeds under domain randomisation): unconstrained ≈ 700-900 return at cost ≈ 450-800; augmented Lagrangian
≈ 570 return at cost ≈ 55 (budget 100). The thresholds leave room for machine-to-machine float differences.
"""

import pytest

from saferl.policies import load_policy
from saferl.policies.evaluate import evaluate
from saferl.policies.worlds import evaluation_env, evaluation_world
from saferl.training.run import train

STEPS = 60_000


def _final(kind, tmp_path):
    run = train("sac", "safe_cartpole", steps=STEPS, seed=0, overrides={"num_envs": 4, "constraint.kind": kind},
                out=tmp_path / kind, progress=False, tensorboard=False)
    policy = load_policy(run.run_dir)
    return evaluate(policy, evaluation_env(policy, evaluation_world(policy)), episodes=5, seed=1)


@pytest.mark.slow
def test_augmented_lagrangian_sac_ends_within_budget_and_below_unconstrained_cost(tmp_path):
    free = _final("none", tmp_path)
    safe = _final("augmented_lagrangian", tmp_path)
    budget = safe["cost_budget"]
    assert budget == 100.0
    assert safe["mean_cost"] <= budget, safe
    assert safe["mean_cost"] < free["mean_cost"], (safe, free)
    assert free["mean_cost"] > budget  # the constraint is what keeps it safe, not an easy task
    assert safe["mean_return"] > 150.0  # well above doing nothing (≈ 0: the pole hangs down)
