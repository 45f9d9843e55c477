"""iCEM trajectory optimiser (Pinneri et al. 2020) for MPC over action sequences in [-1, 1]^{H×A}.

Per iteration i: sample N_i = max(N·decay^−i, 2K) coloured-noise sequences (power spectrum ∝ f^−β) around the
mean, add the kept elites of the last iteration and the mean itself, score them, refit mean/std to the K
elites with momentum. Between time steps the solution and kept elites are shifted by one step (warm start).
CEM = (β=0, keep 0, decay 1); random shooting = (1 iteration, β=0, keep 0).
The candidates of an iteration are scored split over the devices ("data" axis of `saferl.sharding`),
padded with copies of the mean up to a multiple of the device count (pads are scored, then dropped).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jp

from saferl import sharding
from saferl.planning.objectives import Scores, rank

RolloutFn = Callable[[jax.Array, jax.Array], Any]  # (key, actions [N, H, A]) -> trajectory pytree
ObjectiveFn = Callable[[Any], Scores]  # trajectory -> Scores(value [N], violation [N])


@dataclasses.dataclass(frozen=True)
class ICEMConfig:
    """iCEM hyper-parameters (mbrl-lib / iCEM paper defaults scaled down for CPU)."""

    horizon: int = 20  # H, planning steps
    population: int = 200  # N, candidates in the first iteration
    num_elites: int = 20  # K, candidates the sampling distribution is refit to
    iterations: int = 3  # optimisation iterations per time step
    noise_beta: float = 2.0  # β of the coloured noise (0 white, 1 pink, 2 brown), in [0, 5]
    keep_elites_fraction: float = 0.3  # share of K carried to the next iteration and time step, in [0, 1]
    population_decay: float = 1.3  # γ ≥ 1: N_i = max(N·γ^−i, 2K)
    init_std: float = 0.5  # std of the sampling distribution at each time step (actions in [-1, 1])
    momentum: float = 0.1  # α in mean ← α·mean + (1−α)·elite mean (same for std), in [0, 1)
    add_mean_candidate: bool = True  # also evaluate the current mean sequence every iteration
    execute: Literal["best", "mean"] = "best"  # return the best-scored sequence or the final mean

    def __post_init__(self) -> None:
        for name in ("horizon", "population", "num_elites", "iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_elites > self.population:
            raise ValueError(f"num_elites ({self.num_elites}) must be <= population ({self.population})")
        if not 0.0 <= self.noise_beta <= 5.0:
            raise ValueError(f"noise_beta must be in [0, 5], got {self.noise_beta}")
        if not 0.0 <= self.keep_elites_fraction <= 1.0:
            raise ValueError(f"keep_elites_fraction must be in [0, 1], got {self.keep_elites_fraction}")
        if self.population_decay < 1.0:
            raise ValueError(f"population_decay must be >= 1, got {self.population_decay}")
        if self.init_std <= 0:
            raise ValueError(f"init_std must be > 0, got {self.init_std}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.execute not in ("best", "mean"):
            raise ValueError(f"execute must be 'best' or 'mean', got {self.execute!r}")

    @property
    def num_kept(self) -> int:
        return int(self.keep_elites_fraction * self.num_elites)

    def population_sizes(self) -> tuple[int, ...]:
        """Fresh samples per iteration (static shapes, so each distinct size is traced once)."""
        return tuple(
            max(int(self.population * self.population_decay**-i), 2 * self.num_elites, 1)
            for i in range(self.iterations)
        )

    @classmethod
    def cem(cls, **kwargs: Any) -> ICEMConfig:
        """Plain CEM: white noise, nothing kept, constant population."""
        base = dict(noise_beta=0.0, keep_elites_fraction=0.0, population_decay=1.0, add_mean_candidate=False)
        return cls(**{**base, **kwargs})

    @classmethod
    def random_shooting(cls, **kwargs: Any) -> ICEMConfig:
        """Random shooting: one iteration of white-noise samples, execute the best."""
        base = dict(
            iterations=1,
            noise_beta=0.0,
            keep_elites_fraction=0.0,
            population_decay=1.0,
            add_mean_candidate=False,
            init_std=1.0,
            execute="best",
        )
        return cls(**{**base, **kwargs})


class PlannerState(NamedTuple):
    """Warm start carried between time steps (a pytree; batch it with vmap for many envs)."""

    mean: jax.Array  # [H, A] shifted previous solution
    kept: jax.Array  # [num_kept, H, A] shifted elites of the previous step


class PlanInfo(NamedTuple):
    next_init: PlannerState  # warm start for the next time step
    best_value: jax.Array  # scalar, value of the returned sequence (when execute='best')
    best_violation: jax.Array  # scalar, its constraint violation (≤ 0 feasible)
    elite_value: jax.Array  # scalar, mean value of the final elites
    feasible_fraction: jax.Array  # scalar in [0, 1], of the final iteration's candidates


def init_state(config: ICEMConfig, action_size: int) -> PlannerState:
    """Zero-mean warm start (actions in [-1, 1] centred on 0)."""
    mean = jp.zeros((config.horizon, action_size), jp.float32)
    return PlannerState(mean, jp.zeros((config.num_kept, config.horizon, action_size), jp.float32))


def colored_noise(key: jax.Array, beta: float, shape: tuple[int, ...]) -> jax.Array:
    """Gaussian noise with power spectrum ∝ f^−β along the last axis, unit variance per entry.

    Frequencies below 1/T are clipped to 1/T; random Fourier coefficients are scaled by f^−β/2 and
    transformed back with an inverse real FFT, then normalised by the exact expected std.
    """
    if beta == 0.0:
        return jax.random.normal(key, shape)
    length = shape[-1]
    freqs = jp.fft.rfftfreq(length)
    freqs = jp.maximum(freqs, 1.0 / length)
    amplitude = freqs ** (-beta / 2.0)  # [F]
    real_key, imag_key = jax.random.split(key)
    n_freq = amplitude.shape[0]
    real = jax.random.normal(real_key, (*shape[:-1], n_freq))
    imag = jax.random.normal(imag_key, (*shape[:-1], n_freq))
    # the DC term (and the Nyquist term for even T) of a real signal is real: give it all the power there
    real_only = jp.zeros(n_freq, bool).at[0].set(True)
    if length % 2 == 0:
        real_only = real_only.at[-1].set(True)
    real = jp.where(real_only, real * jp.sqrt(2.0), real)
    imag = jp.where(real_only, 0.0, imag)
    signal = jp.fft.irfft(amplitude * (real + 1j * imag), n=length, axis=-1)
    # Var[x_t] = (2/T²)·Σ_k w_k·a_k², w = 2 for paired frequencies, 1 for real-only ones after the √2 boost
    weight = jp.where(real_only, 1.0, 2.0)
    sigma = jp.sqrt(2.0 * jp.sum(weight * amplitude**2)) / length
    return (signal / sigma).astype(jp.float32)


class _Search(NamedTuple):
    mean: jax.Array  # [H, A]
    std: jax.Array  # [H, A]
    kept: jax.Array  # [num_kept, H, A]
    best: jax.Array  # [H, A]
    best_scores: Scores  # scalars
    elite_value: jax.Array
    feasible_fraction: jax.Array


def _score_over_devices(
    rollout_fn: RolloutFn, objective_fn: ObjectiveFn, key: jax.Array, candidates: jax.Array, pad_with: jax.Array
) -> Scores:
    """Scores [N'] of candidates [N', H, A], the candidate axis split over the devices of the data mesh.

    N' is padded with copies of `pad_with` [H, A] to a multiple of the device count (none on one device). The
    pads come last, and rollouts draw their randomness per row of a [N, ...] shape (partitionable threefry), so
    the real candidates' rollouts are the same as unpadded ones; their scores are dropped before ranking.
    """
    mesh = sharding.data_mesh()
    count, pad = candidates.shape[0], sharding.padding(candidates.shape[0], mesh)
    if pad:
        candidates = jp.concatenate([candidates, jp.broadcast_to(pad_with, (pad, *pad_with.shape))], axis=0)
    scores = objective_fn(rollout_fn(key, sharding.constrain(candidates, 0, mesh)))
    return Scores(scores.value[:count], scores.violation[:count])


def _iteration(config: ICEMConfig, rollout_fn: RolloutFn, objective_fn: ObjectiveFn, n_samples: int):
    """One CEM update of the search distribution with `n_samples` fresh coloured-noise candidates."""

    def update(search: _Search, key: jax.Array) -> tuple[_Search, None]:
        noise_key, rollout_key = jax.random.split(key)
        horizon, width = search.mean.shape
        noise = jp.swapaxes(colored_noise(noise_key, config.noise_beta, (n_samples, width, horizon)), 1, 2)
        samples = jp.clip(search.mean + search.std * noise, -1.0, 1.0)
        parts = [samples, search.kept] + ([search.mean[None]] if config.add_mean_candidate else [])
        candidates = jp.concatenate(parts, axis=0)  # [N', H, A]
        scores = _score_over_devices(rollout_fn, objective_fn, rollout_key, candidates, search.mean)
        order = rank(scores)
        elites = candidates[order[: config.num_elites]]
        mean = config.momentum * search.mean + (1 - config.momentum) * elites.mean(0)
        std = config.momentum * search.std + (1 - config.momentum) * elites.std(0)
        top = order[0]
        pair = Scores(
            jp.stack([search.best_scores.value, scores.value[top]]),
            jp.stack([search.best_scores.violation, scores.violation[top]]),
        )
        new_is_better = rank(pair)[0] == 1
        best = jp.where(new_is_better, candidates[top], search.best)
        best_scores = jax.tree.map(
            lambda a, b: jp.where(new_is_better, b, a),
            search.best_scores,
            Scores(scores.value[top], scores.violation[top]),
        )
        return _Search(
            mean,
            std,
            elites[: config.num_kept],
            best,
            best_scores,
            scores.value[order[: config.num_elites]].mean(),
            (scores.violation <= 0).mean(),
        ), None

    return update


def plan(
    config: ICEMConfig, key: jax.Array, rollout_fn: RolloutFn, objective_fn: ObjectiveFn, init: PlannerState
) -> tuple[jax.Array, PlanInfo]:
    """Optimise an action sequence; pure and traceable (jit the caller, vmap over envs).

    Args:
      config: static planner settings.
      key: PRNG key.
      rollout_fn: `(key, actions [N, H, A]) -> trajectory`; actions in [-1, 1].
      objective_fn: `trajectory -> Scores(value [N], violation [N])`, larger value better.
      init: warm start (`init_state` or the previous call's `info.next_init`).
    Returns:
      actions [H, A] (apply `actions[0]`), and `PlanInfo` (incl. the shifted warm start).
    """
    horizon, _width = init.mean.shape
    if horizon != config.horizon:
        raise ValueError(f"warm start has horizon {horizon}, config.horizon is {config.horizon}")
    worst = Scores(jp.array(-jp.inf, jp.float32), jp.array(jp.inf, jp.float32))
    search = _Search(
        init.mean, jp.full_like(init.mean, config.init_std), init.kept, init.mean, worst, jp.zeros(()), jp.zeros(())
    )
    sizes = config.population_sizes()
    keys = jax.random.split(key, len(sizes))
    if len(set(sizes)) == 1:  # one traced iteration, scanned
        search, _ = jax.lax.scan(_iteration(config, rollout_fn, objective_fn, sizes[0]), search, keys)
    else:  # decaying population: static shapes differ, unroll (iterations is small)
        for size, iteration_key in zip(sizes, keys, strict=False):
            search, _ = _iteration(config, rollout_fn, objective_fn, size)(search, iteration_key)
    actions = search.best if config.execute == "best" else search.mean
    shift = lambda x: jp.concatenate([x[..., 1:, :], jp.zeros_like(x[..., :1, :])], axis=-2)  # noqa: E731
    next_init = PlannerState(shift(search.mean), shift(search.kept))
    info = PlanInfo(
        next_init, search.best_scores.value, search.best_scores.violation, search.elite_value, search.feasible_fraction
    )
    return actions, info
