"""`PPOConfig`: PPO's options, the cost value head's discount and the constraint handler (`--set key=value`)."""

from __future__ import annotations

import dataclasses

from saferl.agents.modelfree.pixel_networks import PixelEncoderConfig
from saferl.constraints import ConstraintConfig


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    num_envs: int = 32  # parallel envs
    unroll_length: int = 20  # env steps per rollout segment
    batch_size: int = 32  # segments per minibatch
    num_minibatches: int = 4  # minibatches per iteration (batch_size·num_minibatches segments collected)
    num_updates_per_batch: int = 4  # passes (epochs) over the collected data per iteration
    learning_rate: float = 1e-3  # Adam step size
    max_grad_norm: float = 1.0  # global gradient-norm clip (> 0)
    discounting: float = 0.97  # γ of the reward value
    cost_discounting: float = 0.99  # γ_c of the cost value head (the constraint's discounted scale)
    gae_lambda: float = 0.95  # GAE λ
    clipping_epsilon: float = 0.3  # PPO ratio clip
    entropy_cost: float = 1e-3  # weight of the entropy bonus
    reward_scaling: float = 1.0  # rewards are multiplied by this in the loss
    normalize_observations: bool = True  # running mean/std observation normaliser
    policy_hidden_sizes: tuple[int, ...] = (64, 64)  # policy MLP (swish)
    value_hidden_sizes: tuple[int, ...] = (64, 64)  # value MLP (swish)
    # CNN on the image of dict observations {"image", "state"} (each network has its own; unused for flat
    # observations), e.g. --set encoder.channels=[8,16] encoder.features=32
    encoder: PixelEncoderConfig = PixelEncoderConfig()
    iterations_per_chunk: int = 4  # PPO iterations per jitted chunk (one log row per chunk)
    checkpoint_every: int = 50_000  # env steps between checkpoints (the last state is always saved)
    # constraint on the episode cost (budget d of the env config): kind none | lagrangian |
    # augmented_lagrangian | crpo | penalty; e.g. --set constraint.kind=lagrangian
    # budget_scale 0.5: aim at half the episode budget, a margin for the spread of episode costs around their
    # mean (on safe_cartpole a policy aiming at d itself ended at ≈ 1.1–1.2·d)
    constraint: ConstraintConfig = ConstraintConfig(budget_scale=0.5)

    def __post_init__(self) -> None:
        for name in (
            "num_envs",
            "unroll_length",
            "batch_size",
            "num_minibatches",
            "num_updates_per_batch",
            "iterations_per_chunk",
            "checkpoint_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if (self.batch_size * self.num_minibatches) % self.num_envs:
            raise ValueError(
                f"batch_size·num_minibatches ({self.batch_size}·{self.num_minibatches}) must be a "
                f"multiple of num_envs ({self.num_envs})"
            )
        for name in ("learning_rate", "max_grad_norm", "clipping_epsilon", "reward_scaling"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.cost_discounting < 1.0:
            raise ValueError(f"cost_discounting must be in [0, 1), got {self.cost_discounting}")
        for name in ("discounting", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.entropy_cost < 0:
            raise ValueError(f"entropy_cost must be >= 0, got {self.entropy_cost}")
        if (
            not self.policy_hidden_sizes
            or not self.value_hidden_sizes
            or min(self.policy_hidden_sizes + self.value_hidden_sizes) < 1
        ):
            raise ValueError("policy_hidden_sizes and value_hidden_sizes must be non-empty lists of sizes >= 1")

    @property
    def env_steps_per_iteration(self) -> int:
        return self.batch_size * self.num_minibatches * self.unroll_length

    @property
    def env_steps_per_chunk(self) -> int:
        return self.env_steps_per_iteration * self.iterations_per_chunk
