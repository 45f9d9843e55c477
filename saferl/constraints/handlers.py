"""Constraint handlers: turn a differentiable cost estimate J_c into an actor loss term and update multipliers.

Problem: min_π L_r(π) s.t. J_c(π) ≤ d_Q, with J_c on a discounted cost critic's scale (E[Σ γ^t c_t]) and the
violation g = J_c − budget_scale·d_Q (g ≤ 0 feasible). Handlers: fixed penalty, Lagrangian with projected dual
ascent, augmented Lagrangian (Nocedal & Wright 2006, eq. 17.65 / 17.68), CRPO (Xu et al. 2021). Pure, jittable
with the config static (closed over or a static argument); the state is a two-scalar pytree.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import flax.struct
import jax
import jax.numpy as jnp

from saferl.config import is_integer, is_real

Kind = Literal["none", "lagrangian", "augmented_lagrangian", "crpo", "penalty"]
KINDS: tuple[str, ...] = ("none", "lagrangian", "augmented_lagrangian", "crpo", "penalty")


def _check(name: str, value: object, ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"ConstraintConfig.{name} must be {allowed}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ConstraintConfig:
    """How the constraint J_c ≤ d_Q enters the actor objective (budgets/estimates in discounted cost units)."""

    kind: Kind = "none"  # which handler (see module docstring)
    # Lagrangian: dual ascent step size on λ (per λ step, see update_every), ≥ 0. λ must move slower than the policy
    # responds (≈ thousands of updates), or it swings between 0 and max_multiplier and the policy collapses
    multiplier_lr: float = 5e-4
    initial_multiplier: float = 0.0  # λ at the start, in [0, max_multiplier]
    # λ is clipped to [0, max_multiplier], > 0. 1: on safe_cartpole the multiplier settles at 0.1–0.3; a cap of 5
    # (SOOPER's reference) let early overshoots (high random-exploration cost) drive the policy to do nothing
    max_multiplier: float = 1.0
    # kind=penalty: the fixed weight w (default 1); kind=augmented_lagrangian: the initial c (default 0.05), both
    # the quadratic term's weight (the actor's immediate push-back, c·g) and the λ step per unit violation; > 0
    penalty: float | None = None
    penalty_growth: float = 0.0  # augmented Lagrangian: c ← min(c·(1+penalty_growth), max_penalty) per λ step, ≥ 0
    max_penalty: float = 1.0  # augmented Lagrangian: cap on c, > 0 (and ≥ penalty for that kind)
    crpo_tolerance: float = 0.0  # CRPO: minimise cost when estimate > budget + tolerance (discounted units), ≥ 0
    budget_scale: float = 1.0  # multiplies the budget (e.g. 0.8 to aim below d for a safety margin), > 0
    # λ/c step once per this many `update` calls, on the mean violation since the last step (≥ 1; 1 = every
    # call). > 1 gives the augmented Lagrangian its outer loop: the actor descends ψ(g, λ, c) for a while at fixed
    # λ, c (the quadratic term c·g pushes back at once, a proportional term), then λ integrates the mean violation
    update_every: int = 1

    def __post_init__(self) -> None:
        _check("kind", self.kind, self.kind in KINDS, f"one of {', '.join(KINDS)}")
        finite = {
            name: getattr(self, name)
            for name in (
                "multiplier_lr",
                "initial_multiplier",
                "max_multiplier",
                "penalty_growth",
                "max_penalty",
                "crpo_tolerance",
                "budget_scale",
            )
        }
        finite["penalty"] = self.initial_penalty
        for name, value in finite.items():
            _check(name, value, is_real(value) and math.isfinite(value), "a finite number")
        _check("multiplier_lr", self.multiplier_lr, self.multiplier_lr >= 0, "in [0, inf)")
        _check("max_multiplier", self.max_multiplier, self.max_multiplier > 0, "in (0, inf)")
        _check(
            "initial_multiplier",
            self.initial_multiplier,
            0 <= self.initial_multiplier <= self.max_multiplier,
            f"in [0, max_multiplier={self.max_multiplier}]",
        )
        _check("penalty", self.penalty, self.initial_penalty > 0, "in (0, inf)")
        _check("penalty_growth", self.penalty_growth, self.penalty_growth >= 0, "in [0, inf)")
        _check("max_penalty", self.max_penalty, self.max_penalty > 0, "in (0, inf)")
        if self.kind == "augmented_lagrangian":
            _check(
                "penalty",
                self.penalty,
                self.initial_penalty <= self.max_penalty,
                f"in (0, max_penalty={self.max_penalty}] for kind='augmented_lagrangian'",
            )
        _check("crpo_tolerance", self.crpo_tolerance, self.crpo_tolerance >= 0, "in [0, inf)")
        _check("budget_scale", self.budget_scale, self.budget_scale > 0, "in (0, inf)")
        _check(
            "update_every",
            self.update_every,
            is_integer(self.update_every) and self.update_every >= 1,
            "an integer >= 1",
        )

    @property
    def initial_penalty(self) -> float:
        """`penalty`, or its default for the kind when unset (augmented Lagrangian 0.05, otherwise 1)."""
        if self.penalty is not None:
            return self.penalty
        return 0.05 if self.kind == "augmented_lagrangian" else 1.0

    @property
    def enabled(self) -> bool:
        """Whether the constraint changes anything (kind != 'none')."""
        return self.kind != "none"


@flax.struct.dataclass
class ConstraintState:
    multiplier: jax.Array  # λ, scalar float32 ≥ 0 (Lagrangian kinds; otherwise it keeps its initial value)
    penalty: jax.Array  # c (augmented Lagrangian) or w (penalty), scalar float32 > 0
    violation_sum: jax.Array  # Σ g over the `update` calls since the last λ/c step, scalar float32
    pending: jax.Array  # number of those calls, scalar float32 in [0, update_every) (float: states are differentiable)


def init(config: ConstraintConfig) -> ConstraintState:
    """λ = initial_multiplier, c (or w) = penalty (float32 scalars), no pending violations."""
    return ConstraintState(
        multiplier=jnp.asarray(config.initial_multiplier, jnp.float32),
        penalty=jnp.asarray(config.initial_penalty, jnp.float32),
        violation_sum=jnp.zeros((), jnp.float32),
        pending=jnp.zeros((), jnp.float32),
    )


def discounted_budget(episode_budget: float, episode_length: int, discount: float) -> float:
    """Episode budget d (Σ_t c_t ≤ d over T steps) on a discounted cost critic's scale: d_Q = d / (T·(1−γ)).

    A cost spread evenly over the episode, c = d/T per step, has Q_c = Σ_t γ^t·d/T ≈ d/T · 1/(1−γ) (γ^T
    neglected), the same scale T·(1−γ_c) as SOOPER's shield. γ = 0 gives the per-step budget d/T.
    """
    if isinstance(episode_length, bool) or int(episode_length) != episode_length or episode_length < 1:
        raise ValueError(f"episode_length must be an integer >= 1, got {episode_length!r}")
    if not (math.isfinite(discount) and 0.0 <= discount < 1.0):
        raise ValueError(f"discount must be in [0, 1), got {discount!r}")
    if not (math.isfinite(episode_budget) and episode_budget >= 0.0):
        raise ValueError(f"episode_budget must be finite and >= 0, got {episode_budget!r}")
    return float(episode_budget) / (int(episode_length) * (1.0 - float(discount)))


def _violation(config: ConstraintConfig, cost_estimate: jax.Array, budget: jax.Array | float) -> jax.Array:
    """g = cost_estimate − budget_scale·budget (scalar, discounted cost units; ≤ 0 feasible)."""
    return cost_estimate - config.budget_scale * jnp.asarray(budget, jnp.result_type(cost_estimate))


def augmented_lagrangian_term(violation: jax.Array, multiplier: jax.Array, penalty: jax.Array) -> jax.Array:
    """ψ(g, λ, c) of Nocedal & Wright (17.65) for an inequality constraint g ≤ 0.

    ψ = λ·g + c/2·g²   if λ + c·g > 0,   else  −λ²/(2c).
    Continuous at λ + c·g = 0, with ∂ψ/∂g = max(0, λ + c·g) (the next multiplier estimate).
    """
    quadratic = multiplier * violation + 0.5 * penalty * violation**2
    flat = -(multiplier**2) / (2.0 * penalty)
    return jnp.where(multiplier + penalty * violation > 0, quadratic, flat)


def actor_objective(
    config: ConstraintConfig,
    state: ConstraintState,
    reward_loss: jax.Array,
    cost_estimate: jax.Array,
    budget: jax.Array | float,
) -> tuple[jax.Array, dict]:
    """Actor loss with the constraint folded in; λ, c, w are constants here (gradients stopped).

    reward_loss: scalar the actor minimises without a constraint (e.g. SAC: mean(α·logπ − Q_r)).
    cost_estimate: scalar, differentiable estimate of J_c on the critic's scale (e.g. mean Q_c(s, π(s))).
    budget: d_Q in the same discounted units (multiplied by budget_scale here).
    Loss by kind (g = cost_estimate − budget_scale·budget):
      none: L_r · penalty: L_r + w·J_c · lagrangian: L_r + λ·J_c · augmented_lagrangian: L_r + ψ(g, λ, c)
      crpo: J_c if J_c > budget_scale·budget + crpo_tolerance else L_r (the branch test is gradient-stopped).
    aux (scalars, gradients stopped): constraint_violation g; constraint_active 1.0 when the constraint term
    drives the gradient (penalty: w > 0, lagrangian: λ > 0, augmented: λ + c·g > 0, crpo: cost branch taken,
    none: never); constraint_term = loss − reward_loss.
    """
    violation = _violation(config, cost_estimate, budget)
    multiplier = jax.lax.stop_gradient(state.multiplier)
    penalty = jax.lax.stop_gradient(state.penalty)
    if config.kind == "none":
        loss, active = reward_loss, jnp.zeros((), bool)
    elif config.kind == "penalty":
        loss, active = reward_loss + penalty * cost_estimate, penalty > 0
    elif config.kind == "lagrangian":
        loss, active = reward_loss + multiplier * cost_estimate, multiplier > 0
    elif config.kind == "augmented_lagrangian":
        loss = reward_loss + augmented_lagrangian_term(violation, multiplier, penalty)
        active = multiplier + penalty * jax.lax.stop_gradient(violation) > 0
    elif config.kind == "crpo":
        threshold = config.budget_scale * jnp.asarray(budget, jnp.result_type(cost_estimate)) + config.crpo_tolerance
        active = jax.lax.stop_gradient(cost_estimate) > threshold
        loss = jnp.where(active, cost_estimate, reward_loss)
    else:  # unreachable: the config validates kind
        raise ValueError(f"ConstraintConfig.kind must be one of {', '.join(KINDS)}, got {config.kind!r}")
    aux = {
        "constraint_violation": violation,
        "constraint_active": jnp.asarray(active, jnp.float32),
        "constraint_term": loss - reward_loss,
    }
    return loss, jax.lax.stop_gradient(aux)


def update(
    config: ConstraintConfig, state: ConstraintState, cost_estimate: jax.Array, budget: jax.Array | float
) -> tuple[ConstraintState, dict]:
    """Record one (gradient-stopped) cost estimate; every `update_every`-th call, step λ/c on the mean ḡ of
    the calls' violations g = cost_estimate − b, each clipped to [−b, b] (b = budget_scale·budget):

    lagrangian: λ ← clip(λ + multiplier_lr·ḡ, 0, max_multiplier)   (projected dual ascent)
    augmented_lagrangian: λ ← clip(λ + c·ḡ, 0, max_multiplier) with the current c (N&W 17.68),
        then c ← min(c·(1 + penalty_growth), max_penalty)
    none / penalty / crpo: λ, c unchanged.
    metrics (scalars): lagrange_multiplier λ and penalty c after the call, constraint_violation g of this call.
    """
    violation = jax.lax.stop_gradient(_violation(config, cost_estimate, budget)).astype(jnp.float32)
    # the dual step sees g clipped to ± the target b = budget_scale·budget: a cost of 0 (g = −b) lowers λ as fast
    # as a cost of 2b raises it, so the large costs of early exploration cannot pin λ at its cap for long
    target = config.budget_scale * jnp.asarray(budget, jnp.float32)
    total, count = state.violation_sum + jnp.clip(violation, -target, target), state.pending + 1
    mean_violation = total / count
    multiplier, penalty = state.multiplier, state.penalty
    if config.kind == "lagrangian":
        multiplier = multiplier + config.multiplier_lr * mean_violation
    elif config.kind == "augmented_lagrangian":
        multiplier = multiplier + penalty * mean_violation
        penalty = jnp.minimum(penalty * (1.0 + config.penalty_growth), config.max_penalty)
    if config.kind in ("lagrangian", "augmented_lagrangian"):
        multiplier = jnp.clip(multiplier, 0.0, config.max_multiplier)
    step = count >= config.update_every
    new_state = ConstraintState(
        multiplier=jnp.where(step, multiplier, state.multiplier).astype(jnp.float32),
        penalty=jnp.where(step, penalty, state.penalty).astype(jnp.float32),
        violation_sum=jnp.where(step, 0.0, total).astype(jnp.float32),
        pending=jnp.where(step, 0.0, count).astype(jnp.float32),
    )
    metrics = {
        "lagrange_multiplier": new_state.multiplier,
        "penalty": new_state.penalty,
        "constraint_violation": violation,
    }
    return new_state, metrics
