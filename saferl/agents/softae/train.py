"""The SoftAE job: explore for `ctx.total_steps` env steps on the shared episodic model-based loop (PETS's
`train_episodes`: collect → buffer → refit per episode, NaN checks, checkpoints, bit-for-bit resume)."""

from __future__ import annotations

from typing import Any

from saferl.agents.pets.train import train_episodes
from saferl.agents.softae.agent import make_agent


def train(ctx: Any) -> dict[str, float]:
    """`Algorithm.train`: SoftAE exploration (or one of its baselines) on `ctx.env`."""
    return train_episodes(ctx, make_agent(ctx.algo_config, ctx.env, ctx.training_env), "softae")
