"""Model rollouts of action sequences through a probabilistic ensemble, vectorised over candidates and particles.

Propagation (PETS, Chua et al. 2018): `mean` (average of member means), `ts1` (member re-drawn every step),
`tsinf` (member fixed per particle); each step is `saferl.models.imagination.imagine_step`: optimism/pessimism
r̃ = r̄ + λ_opt·σ, c̃ = c̄ + λ_pess·σ with σ the members' spread of the next state, and hallucinated control
(H-UCRL/OPAX): s' = μ(s, a) + β·σ_epi(s, a)⊙η with η ∈ [−1, 1]^obs as extra action dims.
The candidates × particles states [N, P, ...] are kept split over the devices along N (`saferl.sharding`;
left to the compiler where N does not split evenly, e.g. unpadded direct calls).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jp

from saferl import sharding
from saferl.models.imagination import imagine_step, next_state_spread

# predict(obs [..., obs], action [..., act]) -> (mean [E, ..., out], var [E, ..., out]); out = [Δobs, reward, cost]
PredictFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
# predict_members(obs [E, ..., obs], action [E, ..., act]) -> (mean [E, ..., out], var [E, ..., out]),
# member e on slice e
PredictMembersFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]

_VAR_FLOOR = 1e-8  # keeps σ_ale² > 0 in the information gain


class ModelFns(NamedTuple):
    """A trained dynamics model as two pure functions (parameters closed over) and its ensemble size."""

    predict: PredictFn
    predict_members: PredictMembersFn
    num_members: int
    # [out] std of each output in the training data (raw units; 1 for outputs constant there, as the ensemble's
    # output normaliser keeps them), if known
    output_std: jax.Array | None = None
    # [obs] mean and std of each observation feature in the training data (raw units), if known
    obs_mean: jax.Array | None = None
    obs_std: jax.Array | None = None
    # [obs] int group id of each observation feature (the env's `observation_groups`), if known
    obs_groups: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    """How action sequences are pushed through the model."""

    propagation: Literal["mean", "ts1", "tsinf"] = "ts1"  # next-state selection among members
    num_particles: int = 5  # particles per candidate (multiple of the ensemble size for ts1/tsinf; 1 for mean)
    sample_aleatoric: bool = True  # ts1/tsinf: sample s' ~ N(μ_b, σ²_b) of the chosen member (else its mean)
    optimism: float = 0.0  # λ_opt ≥ 0: reward + λ_opt·σ (σ: members' spread of the next state, mean over dims)
    pessimism: float = 0.0  # λ_pess ≥ 0: cost + λ_pess·σ
    hallucination_scale: float = 0.0  # β ≥ 0: hallucinated control, actions carry obs_dim extra η dims
    track_uncertainty: bool = False  # also return σ_epi and information gain along the trajectory
    # information gain: σ_ale,j ≥ noise_floor · (output j's std in the training data), so outputs the model
    # fits without noise (σ_ale → 0) count by their epistemic σ relative to their own scale, not by log(1/σ_ale)
    noise_floor: float = 0.0
    # imagined observations are clipped to the model's training data, mean ± state_bound · std per feature
    # (ModelFns.obs_mean/obs_std; 0: unbounded). A learned model rolled out far from its data can diverge
    # (measured on soft_arm after 2 episodes: |obs| 4.6 -> 1e13 in 10 steps of mean propagation) and an
    # uncertainty objective then prefers exactly those runaway states; bounded inputs keep every imagined
    # quantity finite and within the region the model extrapolates from.
    state_bound: float = 0.0
    # how the information gain adds up over the Δobs outputs: "sum" (Σ_j), "mean" (Σ_j / obs_dim, the same plans,
    # a scale independent of the obs size) or "groups" (every group of the env's `observation_groups` counts
    # alike: feature j weighs 1 / (groups · size of its group), so 16 joint angles do not outweigh 3 tip coordinates;
    # the mean where the env declares no groups)
    gain_weighting: Literal["sum", "mean", "groups"] = "sum"

    def __post_init__(self) -> None:
        if self.propagation not in ("mean", "ts1", "tsinf"):
            raise ValueError(f"propagation must be one of mean/ts1/tsinf, got {self.propagation!r}")
        if self.gain_weighting not in ("sum", "mean", "groups"):
            raise ValueError(f"gain_weighting must be one of sum/mean/groups, got {self.gain_weighting!r}")
        if self.num_particles < 1:
            raise ValueError(f"num_particles must be >= 1, got {self.num_particles}")
        if self.propagation == "mean" and self.num_particles != 1:
            raise ValueError(f"num_particles must be 1 with propagation='mean', got {self.num_particles}")
        for name in ("optimism", "pessimism", "hallucination_scale", "noise_floor", "state_bound"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def needs_all_members(self) -> bool:
        """Whether every member is evaluated at every particle (σ_epi needed), not just the particle's own."""
        return (
            self.propagation == "mean"
            or self.track_uncertainty
            or self.optimism > 0
            or self.pessimism > 0
            or self.hallucination_scale > 0
        )


class Trajectory(NamedTuple):
    """Imagined trajectories of N candidates × P particles over H steps (raw units)."""

    obs: jax.Array  # [N, P, H + 1, obs_dim], obs[:, :, 0] is the start state
    actions: jax.Array  # [N, P, H, act_dim] the env actions the model was given (η dims of hallucination dropped)
    rewards: jax.Array  # [N, P, H] per-step reward (optimistic if optimism > 0)
    costs: jax.Array  # [N, P, H] per-step cost ≥ 0 (pessimistic if pessimism > 0)
    epistemic_std: jax.Array | None  # [N, P, H] ‖σ_epi‖₂ over the Δobs outputs (None unless tracked)
    info_gain: jax.Array | None  # [N, P, H] Σ_j ½·log(1 + σ²_epi,j / σ²_ale,j) over Δobs outputs (None unless tracked)


def hallucinated_action_size(config: RolloutConfig, action_size: int, obs_size: int) -> int:
    """Planner action dimension: the env's, plus obs_size η dims when hallucinated control is on."""
    return action_size + (obs_size if config.hallucination_scale > 0 else 0)


def _slot_permutation(key: jax.Array, config: RolloutConfig, n: int, p: int) -> jax.Array:
    """perm [N, P]: slot j is filled by particle perm[:, j]; slot j uses member j % E (random for ts1)."""
    if config.propagation == "ts1":
        return jp.argsort(jax.random.uniform(key, (n, p)), axis=-1)
    return jp.broadcast_to(jp.arange(p), (n, p))


def _own_member_prediction(model: ModelFns, obs: jax.Array, action: jax.Array):
    """Each slot j of obs [N, P, obs] predicted by member j % E only: -> (mean, var) [1, N, P, out], a one-member
    stack for `imagine_step` (no σ: nothing that needs one is on)."""
    n, p = obs.shape[:2]
    e = model.num_members

    def to_members(x):  # [N, P, d] -> [E, N, P/E, d]
        return jp.moveaxis(x.reshape(n, p // e, e, x.shape[-1]), 2, 0)

    def from_members(x):  # [E, N, P/E, d] -> [1, N, P, d]
        return jp.moveaxis(x, 0, 2).reshape(1, n, p, x.shape[-1])

    mean, var = model.predict_members(to_members(obs), to_members(action))
    return from_members(mean), from_members(var)


def _state_box(model: ModelFns, bound: float) -> tuple[jax.Array, jax.Array]:
    """[obs] low and high of the imagined observations: the data's mean ± bound · std per feature."""
    if model.obs_mean is None or model.obs_std is None:
        raise ValueError(
            "rollout state_bound > 0 needs the model's observation statistics (ModelFns.obs_mean, ModelFns.obs_std)"
        )
    return model.obs_mean - bound * model.obs_std, model.obs_mean + bound * model.obs_std


def _gain_weights(model: ModelFns, config: RolloutConfig, obs_size: int) -> jax.Array:
    """[obs] weight of each Δobs output in the information gain (`RolloutConfig.gain_weighting`)."""
    if config.gain_weighting == "sum":
        return jp.ones(obs_size)
    if config.gain_weighting == "mean" or model.obs_groups is None:  # no groups declared: each feature its own
        return jp.full(obs_size, 1.0 / obs_size)
    groups = jp.asarray(model.obs_groups)
    size = (groups[:, None] == groups[None, :]).sum(-1).astype(jp.float32)  # [obs] size of each feature's group
    return 1.0 / (size * (1.0 / size).sum())  # Σ_j 1/size_j is the number of groups


def _information_gain(model: ModelFns, config: RolloutConfig, mean: jax.Array, var: jax.Array, obs_size: int):
    """[N, P] Σ_j w_j·½·log(1 + σ²_epi,j / σ²_ale,j) over the Δobs outputs; mean, var [E, N, P, out] of every member."""
    epi_var = jp.var(mean, axis=0)  # [N, P, out]
    ale_var = jp.maximum(var.mean(0), _VAR_FLOOR)
    if config.noise_floor > 0:  # only the information gain reads σ_ale
        if model.output_std is None:
            raise ValueError("rollout noise_floor > 0 needs the model's output_std (ModelFns.output_std)")
        ale_var = jp.maximum(ale_var, jp.square(config.noise_floor * model.output_std))
    # ½·log(1 + σ²_epi/σ²_ale) as ½·logaddexp(0, log σ²_epi − log σ²_ale): the same values, finite wherever both
    # variances are (the ratio itself overflowed float32 where a calibrated σ_ale ≪ the member spread, issue #31)
    gain_j = 0.5 * jp.logaddexp(0.0, jp.log(epi_var[..., :obs_size]) - jp.log(ale_var[..., :obs_size]))
    return (gain_j * _gain_weights(model, config, obs_size)).sum(-1)


def _step(model: ModelFns, config: RolloutConfig, obs_size: int, action_size: int):
    """One imagined step for all candidates and particles: (obs [N, P, obs], key), action [N, A'] -> ...

    Slots are filled by particles in permuted order (TS1: a fresh member per particle and step), stepped by
    `imagine_step`, then the bookkeeping of planning: σ_epi and information gain if tracked, the state bound."""

    def step(carry, action_t):
        obs, key = carry
        key, perm_key, noise_key = jax.random.split(key, 3)
        n, p = obs.shape[:2]
        act = jp.broadcast_to(action_t[:, None, :action_size], (n, p, action_size))
        perm = _slot_permutation(perm_key, config, n, p)
        inv = jp.argsort(perm, axis=-1)
        gather = lambda x, idx: jp.take_along_axis(x, idx[..., None], axis=1)  # noqa: E731
        slot_obs = gather(obs, perm)
        if config.needs_all_members:
            mean, var = model.predict(slot_obs, act)  # [E, N, P, out]
        else:
            mean, var = _own_member_prediction(model, slot_obs, act)  # [1, N, P, out]
        member = None if config.propagation == "mean" else jp.broadcast_to(jp.arange(p) % mean.shape[0], (n, p))
        sampled = config.sample_aleatoric and config.propagation != "mean"
        imagined = imagine_step(
            slot_obs,
            mean,
            var,
            member,
            noise_key if sampled else None,
            optimism=config.optimism,
            pessimism=config.pessimism,
            hallucination_scale=config.hallucination_scale,
            eta=jp.clip(action_t[:, None, action_size:], -1.0, 1.0) if config.hallucination_scale > 0 else None,
        )
        unslot = lambda x: gather(x[..., None], inv)[..., 0]  # [N, P] slots -> particles  # noqa: E731
        out = {"reward": unslot(imagined.reward), "cost": unslot(imagined.cost)}
        if config.track_uncertainty:
            out["epistemic_std"] = unslot(jp.linalg.norm(next_state_spread(mean, obs_size), axis=-1))
            out["info_gain"] = unslot(_information_gain(model, config, mean, var, obs_size))
        next_obs = imagined.next_obs
        if config.state_bound > 0:
            next_obs = jp.clip(next_obs, *_state_box(model, config.state_bound))
        out["obs"] = next_obs = sharding.constrain(gather(next_obs, inv), 0)  # [N, P, obs], N over the devices
        return (next_obs, key), out

    return step


def rollout(key: jax.Array, model: ModelFns, config: RolloutConfig, obs0: jax.Array, actions: jax.Array) -> Trajectory:
    """Roll N action sequences from one start state through the model.

    Args:
      key: PRNG key (particle/member draws and aleatoric noise).
      model: the ensemble's `predict` / `predict_members` functions.
      obs0: [obs_dim] start observation (raw units).
      actions: [N, H, A'] in [-1, 1]; A' = action_size (+ obs_dim η dims with hallucinated control).
    Returns:
      `Trajectory` with leading axes [N, P].
    """
    n, _, width = actions.shape
    obs_size = obs0.shape[-1]
    action_size = width - (obs_size if config.hallucination_scale > 0 else 0)
    if action_size < 1:
        raise ValueError(f"actions have {width} dims, too few for hallucinated control with obs_dim={obs_size}")
    p = config.num_particles
    if config.propagation != "mean" and p % model.num_members:
        raise ValueError(f"num_particles ({p}) must be a multiple of the ensemble size ({model.num_members})")
    obs = sharding.constrain(jp.broadcast_to(obs0, (n, p, obs_size)), 0)
    step = _step(model, config, obs_size, action_size)
    _, out = jax.lax.scan(step, (obs, key), jp.swapaxes(actions, 0, 1))
    time_last = lambda x: jp.moveaxis(x, 0, 2)  # [H, N, P, ...] -> [N, P, H, ...]  # noqa: E731
    all_obs = jp.concatenate([obs[:, :, None], time_last(out["obs"])], axis=2)
    tracked = {k: time_last(out[k]) if k in out else None for k in ("epistemic_std", "info_gain")}
    env_actions = actions[:, :, :action_size]  # what the model was given
    env_actions = jp.broadcast_to(env_actions[:, None], (n, p, *env_actions.shape[1:]))
    return Trajectory(
        obs=all_obs, actions=env_actions, rewards=time_last(out["reward"]), costs=time_last(out["cost"]), **tracked
    )


def make_rollout_fn(model: ModelFns, config: RolloutConfig, obs0: jax.Array) -> Callable:
    """`rollout_fn(key, actions [N, H, A']) -> Trajectory` from `obs0`, the form `icem.plan` takes."""
    return lambda key, actions: rollout(key, model, config, obs0, actions)
