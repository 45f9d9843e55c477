"""PETS learns: on pendulum swing-up it beats the random policy by a clear margin within a few episodes.

The issue's full evidence (safe_cartpole swing-up vs brax PPO with 100× the env steps) takes tens of
minutes on a 2-core CPU and is run with experiments/benchmarks/models_planning.py instead.
"""

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
        action_repeat=2, random_episodes=1)
    agent = PETSAgent(envs.make("pendulum"), config)
    runner, state = EpisodeRunner(agent), agent.init(jax.random.PRNGKey(0))
    returns = []
    for _ in range(5):  # 1 random episode, then 4 MPC episodes (200 env steps each)
        state, row = runner(state)
        returns.append(row["episode_return"])
    random_return, best_mpc = returns[0], max(returns[1:])
    # random torques keep the pole near the bottom (return ≈ 7 of a possible ≈ 190); measured PETS
    # episodes 2–5 reach 33–50 with this seed, so 3× random (and ≥ 20) leaves room for run-to-run noise
    assert best_mpc >= max(3.0 * random_return, 20.0), returns
