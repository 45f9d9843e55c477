"""Additive Gaussian observation noise, obs + std · N(0, I), with the key drawn from `info["rng"]`.

Dict observations (`{"image": [H, W, C], "state": [d]}`) get the noise on their `state` part only: `std` is in
the state's units, and an image carries its own sensor noise (e.g. the ultrasound renderer's speckle).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
from brax.envs.base import Env, State, Wrapper

#: the part of a dict observation that gets the noise
NOISY_KEY = "state"


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
        clean = state.obs[NOISY_KEY] if isinstance(state.obs, Mapping) else state.obs
        noisy = clean + self.std * jax.random.normal(noise_key, clean.shape, clean.dtype)
        obs = {**state.obs, NOISY_KEY: noisy} if isinstance(state.obs, Mapping) else noisy
        return state.replace(obs=obs, info=info)

    def reset(self, rng: jax.Array) -> State:
        return self._noisy(self.env.reset(rng))

    def step(self, state: State, action: jax.Array) -> State:
        return self._noisy(self.env.step(state, action))
