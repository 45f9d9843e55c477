"""`Policy`: what a trained run gives to evaluation, rendering, ONNX export and `hardware/`.

`act(obs, key) -> action` is the deployment policy (pure, jitted, params closed over; deterministic for
PPO/SAC, an MPC planner for model-based agents); `apply(params, obs)` is the same deterministic map as an
explicit function of `params` (MLP policies only: what ONNX export traces; None for planners).
Whoever executes a policy (evaluation, rendering, `hardware.runner`) holds each action for
`action_repeat` env steps — 1 for PPO/SAC, the planning interval for MPC policies.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax


@dataclasses.dataclass(frozen=True)
class Policy:
    act: Callable[[jax.Array, jax.Array], jax.Array]  # (obs [..., obs_dim], key) -> action [..., act_dim] in [-1, 1]
    params: Any  # pytree the policy was built from (for PPO/SAC: (normalizer, policy network params))
    apply: Callable[[Any, jax.Array], jax.Array] | None  # (params, obs) -> deterministic action; None if no MLP
    observation_size: int
    action_size: int
    env_name: str
    env_config: Any  # the env's frozen config the policy was trained on
    cost_budget: float  # episode cost budget of that env config
    algo: str  # algorithm name
    sample: Callable[[jax.Array, jax.Array], jax.Array] | None = None  # stochastic (obs, key) -> action, if any
    run_dir: Any = None  # pathlib.Path of the run it came from
    action_repeat: int = 1  # env steps each action is held for (≥ 1)

    def __post_init__(self) -> None:
        if self.action_repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {self.action_repeat}")
