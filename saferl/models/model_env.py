"""The learned ensemble in the env contract: imagined episodes for MBPO (Janner et al. 2019) and SOOPER.

One imagined step from s with action a (`ensemble_step`): the members predict [Δs, r, c] (`ensemble.predict`) and
`saferl.models.imagination.imagine_step` follows a member drawn per step (PETS TS1, with its aleatoric noise) or
the members' mean, with σ the members' spread of the predicted next state (mean over state dims):
    r̃ = r̄ + λ_opt·σ,        c̃ = max(0, c̄ + λ_pess·σ).
Episodes start at given real states and last `horizon` steps (the project's `EpisodeWrapper`, like every env);
`TerminationWrapper` ends them earlier where a predicate (SOOPER's shield) fires, with a terminal reward.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State, Wrapper

from envs.wrappers.episode import EpisodeWrapper
from saferl.config import is_integer, is_real
from saferl.models import ensemble
from saferl.models.ensemble import EnsembleState
from saferl.models.imagination import ImaginedStep, imagine_step

PROPAGATIONS = ("random_member", "mean")

# terminate_fn(obs [obs_dim], action [act_dim] in [-1, 1], cost_spent []) -> (fires bool [], terminal_reward []):
# evaluated on the state *before* the step; any leading batch axes [...] are passed through unchanged.
TerminateFn = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


@dataclasses.dataclass(frozen=True)
class ModelEnvConfig:
    """How the ensemble imagines a step and how long an imagined episode lasts."""

    optimism: float = 0.0  # λ_opt ≥ 0: reward bonus per unit of σ (reward units per obs unit)
    pessimism: float = 0.0  # λ_pess ≥ 0: cost penalty per unit of σ (cost units per obs unit)
    propagation: str = "random_member"  # "random_member" (one member drawn per step, PETS TS1) | "mean"
    sample_aleatoric: bool = True  # random_member: s' ~ N(μ_b, σ²_b) of the drawn member b (else μ_b)
    horizon: int = 5  # imagined steps per episode (then done with info["truncation"] = 1), ≥ 1

    def __post_init__(self) -> None:
        for name in ("optimism", "pessimism"):
            value = getattr(self, name)
            if not is_real(value) or not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"ModelEnvConfig.{name} must be a finite number >= 0, got {value!r}")
        if self.propagation not in PROPAGATIONS:
            raise ValueError(
                f"ModelEnvConfig.propagation must be one of {'/'.join(PROPAGATIONS)}, got {self.propagation!r}"
            )
        if not isinstance(self.sample_aleatoric, bool):
            raise ValueError(f"ModelEnvConfig.sample_aleatoric must be a bool, got {self.sample_aleatoric!r}")
        if not is_integer(self.horizon) or self.horizon < 1:
            raise ValueError(f"ModelEnvConfig.horizon must be an integer >= 1, got {self.horizon!r}")


def ensemble_step(
    model: EnsembleState, config: ModelEnvConfig, key: jax.Array, obs: jax.Array, action: jax.Array
) -> ImaginedStep:
    """The model env's step from obs [..., obs_dim] with action [..., act_dim]; pure and jittable.

    Every member predicts (`ensemble.predict`); "mean" follows the members' mean (no noise), "random_member" a
    member b drawn uniformly per batch element with `key`, with (if `sample_aleatoric`) its aleatoric noise;
    `imagination.imagine_step` makes the transition (σ from all members whichever is followed).
    """
    mean, var = ensemble.predict(model, obs, action)  # [E, ..., obs_dim + 2]
    member, noise_key = None, None
    if config.propagation == "random_member":
        member_key, noise_key = jax.random.split(key)
        member = jax.random.randint(member_key, obs.shape[:-1], 0, mean.shape[0])  # [...]
        noise_key = noise_key if config.sample_aleatoric else None
    return imagine_step(obs, mean, var, member, noise_key, optimism=config.optimism, pessimism=config.pessimism)


class ModelEnv(Env):
    """The ensemble as a brax `Env`: `reset` draws a start state, `step` is `ensemble_step`.

    `start_obs` [N, obs_dim]: real states to start from (e.g. `buffer.sample_recent(buf, key, N, window).obs`),
    drawn uniformly by `reset`; `start_cost_spent` [N] (default 0): the real episode's cost spent before each
    of them (env cost units), the start of `info["cost_spent"]`, which a shield predicate reads.
    State: `pipeline_state` None; `info` holds "rng" (the step's key: step stays pure), "cost" (c̃ ≥ 0),
    "epistemic_std" (σ) and "cost_spent" (start value + Σ c̃); `metrics` holds "cost" and "epistemic_std".
    `done` is 1 only where a prediction is not finite; the horizon is this env's `episode_length`, applied by
    the time-limit wrapper as for every env (`make_model_env`, or `envs.wrap_training_env` for a learner).
    The arrays may be tracers: build the env inside a jitted function that takes the ensemble and the start
    states as arguments, so a refitted model does not recompile it.
    """

    def __init__(
        self,
        model: EnsembleState,
        start_obs: jax.Array,
        config: ModelEnvConfig = ModelEnvConfig(),
        start_cost_spent: jax.Array | None = None,
    ):
        if not isinstance(model, EnsembleState):
            raise ValueError(f"model must be an EnsembleState, got {type(model).__name__}")
        if not isinstance(config, ModelEnvConfig):
            raise ValueError(f"config must be a ModelEnvConfig, got {type(config).__name__}")
        start_obs = jnp.asarray(start_obs, jnp.float32)
        if start_obs.ndim != 2 or start_obs.shape[0] < 1 or start_obs.shape[1] != model.obs_size:
            raise ValueError(f"start_obs must have shape [N >= 1, obs_dim={model.obs_size}], got {start_obs.shape}")
        if start_cost_spent is None:
            start_cost_spent = jnp.zeros(start_obs.shape[0], jnp.float32)
        start_cost_spent = jnp.asarray(start_cost_spent, jnp.float32)
        if start_cost_spent.shape != start_obs.shape[:1]:
            raise ValueError(
                f"start_cost_spent must have shape [N={start_obs.shape[0]}] like start_obs, "
                f"got {start_cost_spent.shape}"
            )
        self._model = model
        self._config = config
        self._start_obs = start_obs
        self._start_cost_spent = start_cost_spent

    def reset(self, rng: jax.Array) -> State:
        """rng: PRNG key [2]; the start state is `start_obs[i]`, i ~ U{0, …, N−1}."""
        rng, start_key = jax.random.split(rng)
        index = jax.random.randint(start_key, (), 0, self._start_obs.shape[0])
        zero = jnp.zeros((), jnp.float32)
        info = {"rng": rng, "cost": zero, "epistemic_std": zero, "cost_spent": self._start_cost_spent[index]}
        return State(None, self._start_obs[index], zero, zero, {"cost": zero, "epistemic_std": zero}, info)

    def step(self, state: State, action: jax.Array) -> State:
        """action: [act_dim], clipped to [-1, 1]."""
        action = jnp.clip(action, -1.0, 1.0)
        rng, step_key = jax.random.split(state.info["rng"])
        imagined = ensemble_step(self._model, self._config, step_key, state.obs, action)
        finite = (
            jnp.isfinite(imagined.next_obs).all(axis=-1) & jnp.isfinite(imagined.reward) & jnp.isfinite(imagined.cost)
        )
        info = dict(state.info)
        info.update(
            rng=rng,
            cost=imagined.cost,
            epistemic_std=imagined.epistemic_std,
            cost_spent=state.info["cost_spent"] + imagined.cost,
        )
        metrics = dict(state.metrics)
        metrics.update(cost=imagined.cost, epistemic_std=imagined.epistemic_std)
        return state.replace(
            obs=imagined.next_obs,
            reward=imagined.reward,
            done=(~finite).astype(jnp.float32),
            metrics=metrics,
            info=info,
        )

    @property
    def observation_size(self) -> int:
        return self._model.obs_size

    @property
    def action_size(self) -> int:
        return self._model.action_size

    @property
    def backend(self) -> str:
        return "ensemble"

    @property
    def episode_length(self) -> int:
        """Imagined steps per episode (`config.horizon`), read by the time-limit wrapper."""
        return self._config.horizon

    @property
    def config(self) -> ModelEnvConfig:
        return self._config

    @property
    def model(self) -> EnsembleState:
        return self._model

    @property
    def start_obs(self) -> jax.Array:
        return self._start_obs


class TerminationWrapper(Wrapper):
    """Ends an imagined trajectory where `terminate_fn(obs, action, cost_spent)` fires (SOOPER's shield).

    The predicate sees the state before the step (obs, the clipped action, `info["cost_spent"]`). Where it
    fires the learner's action is not imagined: the step is absorbing (obs and cost_spent unchanged, cost 0),
    its reward is the terminal reward (for SOOPER Q_r^π̂(s, π̂(s)), which already counts the prior's own
    step, so it replaces the model's reward of a), `done` = 1 and `info["terminated"]` = 1. Put it inside the
    time limit (`make_model_env` does), which then records the step as a termination (truncation 0), not a
    time-out. Generic: SOOPER passes e.g. `saferl.agents.sooper.shield.terminal_value` on its prior's critics.
    """

    def __init__(self, env: Env, terminate_fn: TerminateFn):
        if not callable(terminate_fn):
            raise ValueError(
                f"terminate_fn must be callable (obs, action, cost_spent) -> (fires, terminal_reward), "
                f"got {terminate_fn!r}"
            )
        super().__init__(env)
        self.terminate_fn = terminate_fn

    def reset(self, rng: jax.Array) -> State:
        state = self.env.reset(rng)
        info = dict(state.info)
        info["terminated"] = jnp.zeros_like(state.reward)
        return state.replace(info=info)

    def step(self, state: State, action: jax.Array) -> State:
        fires, terminal_reward = self.terminate_fn(state.obs, jnp.clip(action, -1.0, 1.0), state.info["cost_spent"])
        fires = jnp.broadcast_to(jnp.asarray(fires, bool), state.reward.shape)
        terminal_reward = jnp.broadcast_to(jnp.asarray(terminal_reward, state.reward.dtype), state.reward.shape)
        imagined = self.env.step(state, action)
        zero = jnp.zeros_like(imagined.reward)
        info = dict(imagined.info)
        info.update(
            cost=jnp.where(fires, zero, imagined.info["cost"]),
            cost_spent=jnp.where(fires, state.info["cost_spent"], imagined.info["cost_spent"]),
            terminated=fires.astype(imagined.reward.dtype),
        )
        metrics = dict(imagined.metrics)
        metrics["cost"] = info["cost"]
        obs = jnp.where(fires.reshape((*fires.shape, 1)), state.obs, imagined.obs)
        return imagined.replace(
            obs=obs,
            reward=jnp.where(fires, terminal_reward, imagined.reward),
            done=jnp.where(fires, 1.0, imagined.done).astype(imagined.done.dtype),
            metrics=metrics,
            info=info,
        )


def make_model_env(
    model: EnsembleState,
    start_obs: jax.Array,
    config: ModelEnvConfig = ModelEnvConfig(),
    *,
    start_cost_spent: jax.Array | None = None,
    terminate_fn: TerminateFn | None = None,
) -> Env:
    """One (unbatched) imagined env: `ModelEnv` → `TerminationWrapper` (if `terminate_fn`) → `EpisodeWrapper`.

    Episodes end after `config.horizon` steps (`info["truncation"]` = 1: learners bootstrap there) or where
    `terminate_fn` fires (truncation 0); `info["steps"]` counts the steps and `info["episode_metrics"]` sums
    reward, cost and σ. `jax.vmap` its `reset`/`step` over keys and states for a batch of imagined episodes.
    A learner with its own stack (`envs.wrap_training_env`) takes the `ModelEnv`/`TerminationWrapper` instead.
    """
    env: Env = ModelEnv(model, start_obs, config, start_cost_spent)
    if terminate_fn is not None:
        env = TerminationWrapper(env, terminate_fn)
    return EpisodeWrapper(env, config.horizon)
