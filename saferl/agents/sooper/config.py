"""`SooperConfig`: SOOPER's options and those of its baselines, which are the same learner with other settings.

Every method runs the same loop on the real system (the run's env, shifted with `--set-env shift.preset=...`):
the prior's episodes first, then the learner — `learner=mpc` (default): MPC with iCEM on the ensemble around the
prior; `learner=mbpo`: a SAC actor trained on imagined rollouts (`MBPOConfig`) — in SOOPER's imagined MDP
(optimistic reward, pessimistic cost, terminal value Q_r^π̂), executed behind a shield or not. The baselines
differ only in these fields (with mbpo, the planner constraint is the SAC objective's: `mbpo.actor_constraint`):

| method | optimism | pessimism | shield | terminal reward where it fires | planner constraint | critic update |
|---|---|---|---|---|---|---|
| sooper | λ_opt | λ_pess | recovery | Q_r^π̂(s, π̂(s)) | feasibility | yes |
| sailr | 0 | λ_pess | advantage | 0 | feasibility | no |
| crpo | 0 | 0 | none | — | feasibility | no |
| primal_dual | 0 | 0 | none | — | augmented_lagrangian | no |
| mbrl | 0 | 0 | none | — | none | no |

SOOPER's shield is the recovery rule (`shield.py`, issue #26): the learner's action is checked one step ahead
through the pessimistic ensemble, the prior's cost critic is queried only at the prior's own actions, and a
recovery margin calibrated on the prior's real episodes is kept; `shield=budget` is the paper's rule
C_spent + scale·Q_c(s, a) ≥ d (what SOOPER ran before; `docs/sooper_safety.md` compares them).
"""

from __future__ import annotations

import dataclasses
import math

from saferl.config import is_integer, is_real
from saferl.constraints import ConstraintConfig
from saferl.models import EnsembleConfig
from saferl.planning import ICEMConfig

SHIELDS = ("recovery", "budget", "advantage", "none")
TERMINAL_REWARDS = ("prior_value", "zero")
PLANNER_CONSTRAINTS = ("feasibility", "augmented_lagrangian", "none")
LEARNERS = ("mpc", "mbpo")


def _model() -> EnsembleConfig:
    # calibrate=False: SOOPER's shield, pessimism and demo figures were measured with raw ensemble σ's; the
    # per-output calibration (on by default since issue #9) widens σ_epi off the data, i.e. more pessimism —
    # not yet measured for SOOPER (`--set model.calibrate=true` to try it)
    return EnsembleConfig(
        num_members=5,
        hidden_sizes=(128, 128),
        num_elites=5,
        epochs=40,
        patience=5,
        batch_size=128,
        learning_rate=1e-3,
        calibrate=False,
    )


def _planner() -> ICEMConfig:
    return ICEMConfig(
        horizon=10,
        population=48,
        num_elites=6,
        iterations=2,
        noise_beta=1.0,
        keep_elites_fraction=0.3,
        population_decay=1.0,
        init_std=0.3,
    )


def _dual() -> ConstraintConfig:
    # primal_dual: λ, c step once per episode on the measured episode cost (episode cost units)
    return ConstraintConfig(
        kind="augmented_lagrangian",
        multiplier_lr=0.05,
        initial_multiplier=0.0,
        max_multiplier=10.0,
        penalty=0.05,
        max_penalty=1.0,
        budget_scale=1.0,
    )


@dataclasses.dataclass(frozen=True)
class MBPOConfig:
    """`learner=mbpo`: SAC on short imagined rollouts branched from real states (`mbpo.py`), once per real episode.

    CPU sizes, changed from the reference's (REFERENCES.md: 100k one-step rollouts and 4 000 critic updates of
    batch 256 per data collection, actor/critic lr 1e-5, policy 256³ and Q 512²): the networks are the prior's own
    (64, 64) SAC networks (actor and critics start from the prior's, so their sizes are the prior run's); 1 000
    rollouts of 5 steps and 1 000 updates per episode keep an episode's improvement to seconds on 2 cores (a
    10-episode safe_cartpole run in ≤ 10 min) where the reference spends minutes on a GPU; with 4× fewer updates
    per episode and ≈ 8× fewer episodes the step size is 10× the reference's (1e-4), still 10× below the prior's
    own SAC lr (1e-3) so that the actor moves away from the prior gradually; rollouts of 5 steps (not 1) let the
    terminal reward Q_r^π̂ where the shield fires reach states a few decisions ahead of the real data.
    """

    rollouts: int = 1000  # imagined rollouts branched per real episode, from states drawn from the real buffer
    horizon: int = 5  # imagined decisions per rollout (then bootstrapped: a time limit, not a termination)
    updates: int = 1000  # SAC gradient steps per real episode, on that episode's imagined transitions
    batch_size: int = 256  # imagined transitions per gradient step
    learning_rate: float = 1e-4  # Adam step size of the actor, the reward critics and the temperature
    tau: float = 0.005  # Polyak factor of the target reward critics
    initial_alpha: float = (
        0.01  # SAC temperature α at the start (the safe_cartpole prior ended its training at ≈ 0.011)
    )

    def __post_init__(self) -> None:
        for name in ("rollouts", "horizon", "updates", "batch_size"):
            value = getattr(self, name)
            if not is_integer(value) or value < 1:
                raise ValueError(f"mbpo.{name} must be an integer >= 1, got {value!r}")
        for name in ("learning_rate", "initial_alpha"):
            value = getattr(self, name)
            if not is_real(value) or not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"mbpo.{name} must be a finite number > 0, got {value!r}")
        if not is_real(self.tau) or not (0.0 < self.tau <= 1.0):
            raise ValueError(f"mbpo.tau must be in (0, 1], got {self.tau!r}")


@dataclasses.dataclass(frozen=True)
class SooperConfig:
    """`saferl train sooper --set prior=RUN_DIR --set optimism=1 ...`; `--steps` counts real env steps
    (rounded up to whole episodes)."""

    prior: str = ""  # run directory of the prior (`saferl train sac --constraint crpo`), required
    method: str = "sooper"  # label of the method (the table's row); the fields below define it
    optimism: float = 1.0  # λ_opt ≥ 0: imagined reward + λ_opt·σ (σ: member spread of s', mean over dims)
    pessimism: float = 20.0  # λ_pess ≥ 0: imagined cost + λ_pess·σ
    # recovery: C_spent + max_e[c̃_e(s, a) + scale·Q_c(s'_e, π̂(s'_e))] + m ≥ d | budget: C_spent + scale·Q_c(s, a) ≥ d
    # | advantage: Q_c(s,a) − Q_c(s,π̂(s)) > thr | none
    shield: str = "recovery"
    # m of the recovery shield (episode cost units); None = calibrated: the largest shortfall of scale·Q_c(s, π̂(s))
    # below the prior's measured cost-to-go over the states of its real episodes, recomputed after each critic update
    shield_margin: float | None = None
    # recovery shield: decisions the prior is rolled out in each ensemble member after the learner's action, its
    # predicted pessimistic cost checked against scale·Q_c (0 = the critic at s' alone)
    shield_horizon: int = 100
    shield_terminal_reward: str = "prior_value"  # where the shield fires in imagination: Q_r^π̂(s, π̂(s)) | zero
    advantage_threshold: float = 0.2  # shield='advantage': threshold on Q_c(s,a) − Q_c(s,π̂(s)) (discounted units)
    budget: float | None = None  # d, episode cost budget; None = the env's
    shield_scale: float | None = None  # episode cost units per unit of Q_c; None = T·(1 − γ_c)/action_repeat
    planner_constraint: str = "feasibility"  # how the planner keeps predicted episode cost ≤ d (see table)
    dual: ConstraintConfig = dataclasses.field(default_factory=_dual)  # primal_dual's λ, c (episode units)
    critic_updates: int = 200  # pessimistic Q_c gradient steps on model data per episode (0 = frozen critic)
    critic_batch_size: int = 256  # (s, a) pairs from the buffer per critic step
    critic_learning_rate: float = 1e-4  # Adam step size of the cost-critic update
    model: EnsembleConfig = dataclasses.field(default_factory=_model)  # probabilistic ensemble of the real system
    planner: ICEMConfig = dataclasses.field(default_factory=_planner)  # iCEM over residuals δ around π̂
    particles: int = 4  # imagined trajectories per candidate (a member drawn per step and particle), ≥ 1
    sample_aleatoric: bool = False  # add the drawn member's aleatoric noise to imagined steps
    replan_every: int = 2  # decisions between re-plans (the plan's residuals run open-loop around π̂ between)
    prior_episodes: int = 1  # episodes of the prior alone first (its data seeds the model; J(π̂) is their mean)
    buffer_capacity: int = 30_000  # real transitions kept for model fitting and the critic update
    checkpoint_every_episodes: int = 1  # episodes between checkpoints (the last one is always saved)
    # mpc: iCEM around the prior every decision (planner.py) | mbpo: a SAC actor trained on imagined rollouts
    # after each real episode (mbpo.py, sized by `mbpo`), executed behind the same shield
    learner: str = "mpc"
    mbpo: MBPOConfig = dataclasses.field(default_factory=MBPOConfig)  # learner=mbpo's sizes (unused by mpc)

    def __post_init__(self) -> None:
        if not isinstance(self.prior, str):
            raise ValueError(f"prior must be a run directory path, got {self.prior!r}")
        for name in ("optimism", "pessimism", "advantage_threshold", "critic_learning_rate"):
            value = getattr(self, name)
            if not is_real(value) or not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.shield not in SHIELDS:
            raise ValueError(f"shield must be one of {'/'.join(SHIELDS)}, got {self.shield!r}")
        if self.shield_terminal_reward not in TERMINAL_REWARDS:
            raise ValueError(
                f"shield_terminal_reward must be one of {'/'.join(TERMINAL_REWARDS)}, "
                f"got {self.shield_terminal_reward!r}"
            )
        if self.planner_constraint not in PLANNER_CONSTRAINTS:
            raise ValueError(
                f"planner_constraint must be one of {'/'.join(PLANNER_CONSTRAINTS)}, got {self.planner_constraint!r}"
            )
        if self.shield_margin is not None and (
            not is_real(self.shield_margin) or not (math.isfinite(self.shield_margin) and self.shield_margin >= 0)
        ):
            raise ValueError(
                f"shield_margin must be a finite number >= 0 (or null: calibrated), got {self.shield_margin!r}"
            )
        for name in ("budget", "shield_scale"):
            value = getattr(self, name)
            if value is not None and (not is_real(value) or not (math.isfinite(value) and value > 0.0)):
                raise ValueError(f"{name} must be a finite number > 0 (or null for the default), got {value!r}")
        for name in (
            "critic_batch_size",
            "particles",
            "replan_every",
            "prior_episodes",
            "buffer_capacity",
            "checkpoint_every_episodes",
        ):
            value = getattr(self, name)
            if not is_integer(value) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not is_integer(self.shield_horizon) or self.shield_horizon < 0:
            raise ValueError(f"shield_horizon must be an integer >= 0, got {self.shield_horizon!r}")
        if not is_integer(self.critic_updates) or self.critic_updates < 0:
            raise ValueError(f"critic_updates must be an integer >= 0, got {self.critic_updates!r}")
        if self.replan_every > self.planner.horizon:
            raise ValueError(f"replan_every ({self.replan_every}) must be <= planner.horizon ({self.planner.horizon})")
        if self.planner_constraint == "augmented_lagrangian" and self.dual.kind != "augmented_lagrangian":
            raise ValueError("planner_constraint='augmented_lagrangian' needs dual.kind='augmented_lagrangian'")
        if self.learner not in LEARNERS:
            raise ValueError(f"learner must be one of {'/'.join(LEARNERS)}, got {self.learner!r}")
        if not isinstance(self.mbpo, MBPOConfig):
            raise ValueError(f"mbpo must be an MBPOConfig, got {type(self.mbpo).__name__}")


# The baselines: the same learner with the settings of the table above (`saferl train sailr ...`).
@dataclasses.dataclass(frozen=True)
class SailrConfig(SooperConfig):
    """SAILR-like: advantage-filter shield with terminal reward 0, pessimistic cost, no optimism."""

    method: str = "sailr"
    optimism: float = 0.0
    shield: str = "advantage"
    shield_terminal_reward: str = "zero"
    critic_updates: int = 0


@dataclasses.dataclass(frozen=True)
class CRPOConfig(SooperConfig):
    """CRPO-like: maximise return while the predicted episode cost fits the budget, else minimise the cost."""

    method: str = "crpo"
    optimism: float = 0.0
    pessimism: float = 0.0
    shield: str = "none"
    critic_updates: int = 0


@dataclasses.dataclass(frozen=True)
class PrimalDualConfig(SooperConfig):
    """Primal-dual: return − ψ(predicted cost − d; λ, c), λ and c stepped on each episode's measured cost."""

    method: str = "primal_dual"
    optimism: float = 0.0
    pessimism: float = 0.0
    shield: str = "none"
    planner_constraint: str = "augmented_lagrangian"
    critic_updates: int = 0


@dataclasses.dataclass(frozen=True)
class MBRLConfig(SooperConfig):
    """Unconstrained model-based RL: the planner maximises return only (the reference point)."""

    method: str = "mbrl"
    optimism: float = 0.0
    pessimism: float = 0.0
    shield: str = "none"
    planner_constraint: str = "none"
    critic_updates: int = 0


def episode_budget(config: SooperConfig, env_budget: float) -> float:
    """d: `config.budget`, or the env's cost budget when it is None (may be ≤ 0: callers refuse that)."""
    return float(env_budget) if config.budget is None else float(config.budget)


METHOD_CONFIGS = {
    "sooper": SooperConfig,
    "sailr": SailrConfig,
    "crpo": CRPOConfig,
    "primal_dual": PrimalDualConfig,
    "mbrl": MBRLConfig,
}
