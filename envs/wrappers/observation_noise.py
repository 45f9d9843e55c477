"""Additive Gaussian observation noise, obs + std · N(0, I), with the key drawn from `info["rng"]`."""

from __future__ import annotations

import jax
from brax.envs.base import Env, State, Wrapper


class ObservationNoiseWrapper(Wrapper):
    def __init__(self, env: Env, std: float):
        super().__init__(env)
        if std < 0:
            raise ValueError(f"observation noise std must be >= 0, got {std}")
        self.std = std

    def _noisy(self, state: State) -> State:
        rng, noise_key = jax.random.split(state.info["rng"])
        info = dict(state.info)
        info["rng"] = rng
        obs = state.obs + self.std * jax.random.normal(noise_key, state.obs.shape, state.obs.dtype)
        return state.replace(obs=obs, info=info)

    def reset(self, rng: jax.Array) -> State:
        return self._noisy(self.env.reset(rng))

    def step(self, state: State, action: jax.Array) -> State:
        return self._noisy(self.env.step(state, action))
