"""`wrap_for_training`: the standard composition, innermost first —
action delay → observation noise → action repeat → vmap (or domain randomisation) → episode (time limit +
statistics) → auto-reset. Its signature matches brax's `wrap_env_fn`, so it can also be passed to
`brax.training.agents.ppo.train(..., wrap_env_fn=wrap_for_training)`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
from brax.envs.base import Env, Wrapper

from envs.wrappers.action_delay import ActionDelayWrapper
from envs.wrappers.action_repeat import ActionRepeatWrapper
from envs.wrappers.auto_reset import AutoResetWrapper
from envs.wrappers.domain_randomization import DomainRandomizationWrapper
from envs.wrappers.episode import EpisodeWrapper
from envs.wrappers.observation_noise import ObservationNoiseWrapper
from envs.wrappers.vmap import VmapWrapper


def wrap_for_training(
    env: Env,
    episode_length: int | None = None,
    action_repeat: int = 1,
    randomization_fn: Callable[[Any], tuple[Any, Any]] | None = None,
    *,
    batch_size: int | None = None,
    obs_noise_std: float = 0.0,
    action_delay: int = 0,
    domain_randomization_rng: jax.Array | None = None,
) -> Wrapper:
    """Batched, auto-resetting env with episode statistics.

    episode_length: env steps per episode (default: the env's own); action_repeat: env steps per agent
    step; randomization_fn: `fn(model) -> (batched model, in_axes)` (brax convention, rng already bound) —
    or pass `domain_randomization_rng` [B, 2] and a `fn(model, rng)`; batch_size: envs when reset gets
    one key (without domain randomisation).
    """
    if episode_length is None:
        episode_length = env.unwrapped.episode_length
    if action_delay:
        env = ActionDelayWrapper(env, action_delay)
    if obs_noise_std:
        env = ObservationNoiseWrapper(env, obs_noise_std)
    if action_repeat > 1:
        env = ActionRepeatWrapper(env, action_repeat)
    if randomization_fn is not None and domain_randomization_rng is not None:
        randomization_fn = functools.partial(randomization_fn, rng=domain_randomization_rng)
    if randomization_fn is not None:
        env = DomainRandomizationWrapper(env, randomization_fn)
    else:
        env = VmapWrapper(env, batch_size)
    env = EpisodeWrapper(env, episode_length, steps_per_call=action_repeat)
    return AutoResetWrapper(env)
