"""`SACConfig`: SAC's options, the cost critic's discount and the constraint handler (`--set key=value`)."""

from __future__ import annotations

import dataclasses

from saferl.agents.modelfree.pixel_networks import PixelEncoderConfig
from saferl.constraints import ConstraintConfig


@dataclasses.dataclass(frozen=True)
class SACConfig:
    num_envs: int = 16  # parallel envs (env steps per iteration)
    learning_rate: float = 1e-3  # Adam step size (actor, critics, temperature)
    discounting: float = 0.97  # γ of the reward critic
    # γ_c of the cost critic Q_c (the constraint's discounted scale). With Polyak targets the critic approaches
    # its fixed point at a rate ≈ tau·(1 − γ_c) per update: 0.97 keeps it as quick as the reward critic (at 0.99
    # it lagged the policy's rising cost by ≈ 10× on safe_cartpole and the constraint looked satisfied)
    cost_discounting: float = 0.97
    tau: float = 0.005  # Polyak factor of the target critics
    batch_size: int = 128  # transitions per gradient update
    grad_updates_per_step: int = 4  # gradient updates per iteration (per num_envs env steps)
    max_replay_size: int = 100_000  # replay capacity, transitions
    min_replay_size: int = 1_024  # transitions collected with random actions before learning starts
    reward_scaling: float = 1.0  # rewards are multiplied by this in the critic target
    normalize_observations: bool = True  # running mean/std observation normaliser
    hidden_sizes: tuple[int, ...] = (64, 64)  # actor and critic MLPs (relu)
    # CNN on the image of dict observations {"image", "state"} (actor and each critic have their own; unused for
    # flat observations). The replay buffer stores images: max_replay_size·2·H·W·C float32 (obs and next_obs)
    encoder: PixelEncoderConfig = PixelEncoderConfig()
    iterations_per_chunk: int = 64  # iterations per jitted chunk (one log row per chunk)
    checkpoint_every: int = 20_000  # env steps between checkpoints (the last state is always saved)
    cost_estimate_window: int = 8_000  # the constraint's cost estimate is over the states of this many most
    # recent transitions (≈ the current policy's state distribution; 2 episodes of 4 envs on safe_cartpole)
    # what the multiplier update compares with the budget: "critic" = mean max-twin Q_c(s, π(s)) over the
    # window's states (the actor's differentiable estimate); "measured" = the window's mean observed cost per
    # step / (1 − γ_c) (the behaviour policy's real cost rate on the same discounted scale, no critic bias)
    constraint_signal: str = "measured"
    # constraint on the episode cost (budget d of the env config): kind none | lagrangian |
    # augmented_lagrangian | crpo | penalty; e.g. --set constraint.kind=augmented_lagrangian
    # budget_scale 0.5: aim at half the episode budget, a margin for the spread of episode costs around their
    # mean (on safe_cartpole a policy aiming at d itself ended at ≈ 1.1–1.2·d). update_every 1000: λ (and c)
    # step once per 1000 gradient updates (≈ one 1000-step episode of 4 envs) on the mean violation, so the
    # policy can respond between steps (per-update steps swung λ between 0 and its cap); multiplier_lr 0.05
    # per such step for the Lagrangian, the augmented Lagrangian's c = 0.05 likewise
    constraint: ConstraintConfig = ConstraintConfig(budget_scale=0.5, update_every=1000, multiplier_lr=0.05)

    def __post_init__(self) -> None:
        for name in (
            "num_envs",
            "batch_size",
            "grad_updates_per_step",
            "max_replay_size",
            "cost_estimate_window",
            "iterations_per_chunk",
            "checkpoint_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.min_replay_size <= self.max_replay_size:
            raise ValueError(
                f"min_replay_size must be in [0, max_replay_size={self.max_replay_size}], got {self.min_replay_size}"
            )
        if self.max_replay_size < self.num_envs:
            raise ValueError(f"max_replay_size must be >= num_envs ({self.num_envs}), got {self.max_replay_size}")
        for name in ("learning_rate", "reward_scaling"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("discounting", "tau"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.constraint_signal not in ("critic", "measured"):
            raise ValueError(f"constraint_signal must be 'critic' or 'measured', got {self.constraint_signal!r}")
        if not 0.0 <= self.cost_discounting < 1.0:
            raise ValueError(f"cost_discounting must be in [0, 1), got {self.cost_discounting}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"hidden_sizes must be a non-empty list of sizes >= 1, got {self.hidden_sizes}")

    @property
    def env_steps_per_chunk(self) -> int:
        return self.num_envs * self.iterations_per_chunk
