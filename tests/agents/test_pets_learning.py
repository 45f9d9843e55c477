"""PETS learns: on pendulum swing-up it beats the random policy by a clear margin within a few episodes.

The default config also swings up safe_cartpole through the `saferl train` path within 7 episodes; the
issue's full evidence (over seeds, with wall times) is experiments/benchmarks/pets_time_to_solve.py.
"""

import csv

import jax
import pytest

import envs
from saferl.agents.pets import EpisodeRunner, PETSAgent, PETSConfig
from saferl.models import EnsembleConfig
from saferl.planning import ICEMConfig


@pytest.mark.slow
def test_pets_beats_random_on_pendulum_within_five_episodes():
    config = PETSConfig(
        model=EnsembleConfig(num_members=5, hidden_sizes=(64, 64), epochs=50, batch_size=32),
        planner=ICEMConfig(horizon=15, population=100, num_elites=10, iterations=3, population_decay=1.0),
        action_repeat=2,
        random_episodes=1,
    )
    agent = PETSAgent(envs.make("pendulum"), config)
    runner, state = EpisodeRunner(agent), agent.init(jax.random.PRNGKey(0))
    returns = []
    for _ in range(5):  # 1 random episode, then 4 MPC episodes (200 env steps each)
        state, row = runner(state)
        returns.append(row["episode_return"])
    random_return, best_mpc = returns[0], max(returns[1:])
    # Measured (2-core VM, 2026-12-07, seeds 0-5 of this config): the random episode returns 7.1, 21.2, 2.6,
    # -0.2, 3.9, 25.9 (random torques mostly keep the pole near the bottom; a possible ≈ 190), the best of the
    # 4 MPC episodes 39.8, 48.0, 35.2, 38.0, 56.6, 40.9 (mean 43.1, min 35.2). "3x the random episode" failed on
    # seeds 1 and 5 (a lucky random episode), so the bound is absolute: 30 is below every seed's best and above
    # every random episode measured.
    assert best_mpc >= 30.0 and best_mpc > random_return, returns


@pytest.mark.slow
@pytest.mark.long  # ≈ 2.5–4 min on 2 cores: `make test-long`, not `make test`
def test_default_config_swings_up_safe_cartpole_through_the_cli_path(tmp_path):
    """`saferl train pets --env safe_cartpole` with the default config (≈ 1–2 min on 2 busy cores)."""
    from saferl.training.run import train

    result = train("pets", "safe_cartpole", steps=8 * 1000, seed=0, out=tmp_path, progress=False, tensorboard=False)
    with open(result.run_dir / "metrics.csv") as f:
        returns = [float(row["episode_return"]) for row in csv.DictReader(f)]
    # random actions and the first MPC episodes keep the pole down (return ≈ 90–200); the benchmark
    # (experiments/benchmarks/results/pets_time_to_solve.json) swings up to ≥ 900 at episodes 6–8 over seeds, so
    # ≥ 600 within 8 episodes is a swing-up with room for run-to-run noise, well above a pole that stays down.
    # Seed 0 depends on the CPU's float rounding: one 2-core machine reached 600 at episode 7, another
    # 94, 144, 156, 219, 140, 444, 590, 847 (2026-12-02)
    assert len(returns) == 8 and returns[0] < 200.0 and max(returns) >= 600.0, returns
