"""The SoftAE job: explore for `ctx.total_steps` env steps on the shared episodic model-based loop (PETS's
`train_episodes`: collect → buffer → refit per episode, NaN checks, checkpoints, bit-for-bit resume).
`saferl train softae --seeds 0 1 2` runs the seeds' episodes together, vmapped (PETS's `SeedEpisodes`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from saferl import registry
from saferl.agents.pets.train import episodic_seed_batch, train_episodes
from saferl.agents.softae.agent import make_agent

if TYPE_CHECKING:
    from saferl.training.context import TrainContext


def train(ctx: TrainContext) -> dict[str, float]:
    """`Algorithm.train`: SoftAE exploration (or one of its baselines) on `ctx.env`."""
    return train_episodes(ctx, make_agent(ctx.algo_config, ctx.env, ctx.training_env), "softae")


SEEDS = episodic_seed_batch(make_agent)  # `make_seed_episodes(config, env, world)`: S seeds' episodes at once
registry.register_seed_batch("softae", SEEDS.seed_batch)
