"""Our chunked PPO learns pendulum swing-up on a small budget (brax's own ppo.train reaches ≈ 39 at 82k steps
with the same sizes; ours ≈ 35 at 82k, 28 at 41k — see the report in saferl/agents/ppo.py's tests).

One seed alone does not make a test that fails only when something is wrong: at 40k steps PPO with the default
config leaves some seeds near the bottom (seed 2 below), so a host whose float rounding sends seed 0 down
another path would fail a one-seed test. Four seeds run vmapped in one compiled program (`saferl train
--seeds`'s `seeds.vmapped`), and the test asserts on their mean and on
half of them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from saferl.agents.ppo import PPOConfig
from saferl.agents.ppo.train import make_parts
from saferl.training import seeds

SEEDS = (0, 1, 2, 3)
CHUNKS = 4  # defaults: 10240 env steps per chunk


@pytest.mark.slow
def test_ppo_learns_pendulum_above_random_on_40k_steps_over_four_seeds():
    init_seeds, chunk_seeds, _ = seeds.vmapped(make_parts(PPOConfig(), envs.make("pendulum")))
    state = init_seeds(jnp.stack([jax.random.PRNGKey(s) for s in SEEDS]))
    returns = []
    for _ in range(CHUNKS):
        state, metrics = chunk_seeds(state)
        returns.append(np.asarray(metrics["episode_return"]))
    final = returns[-1]
    # Measured (2-core VM, 2026-12-07, seeds 0-5 one at a time): return after 4 chunks 30.8, 36.2, 8.1, 36.7,
    # 33.4, 37.3 (mean 30.4, min 8.1: seed 2 stays near the bottom); a random policy gets ≈ 2–4 per 200-step
    # episode. Seeds 0-3 vmapped here: 31.2, 36.4, 8.1, 34.8 (mean 27.6). The mean of four falls below 15 only
    # if three of them fail to learn; a broken update (no learning) leaves every seed near the random return.
    assert final.mean() > 15.0, returns
    assert (final > 15.0).sum() >= 2, returns
    assert np.asarray(state.env_steps).tolist() == [CHUNKS * 10240] * len(SEEDS)
