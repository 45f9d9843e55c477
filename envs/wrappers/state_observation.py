"""Keep only the `state` part of dict observations (`{"image": [H, W, C], "state": [d]}` -> [d]).

What model-based agents (PETS, SoftAE, SOOPER) see: their ensemble predicts the next state vector, not images.
Flat-vector envs pass through unchanged; `observation_size` becomes d.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
from brax.envs.base import Env, State, Wrapper

#: the part of a dict observation that is kept
STATE_KEY = "state"


def has_dict_observations(env: Env) -> bool:
    """Whether `env.observation_size` is a dict of shapes (dict observations)."""
    return isinstance(env.observation_size, Mapping)


class StateObservationWrapper(Wrapper):
    """obs -> obs["state"] (also `info["final_obs"]` where an auto-reset put one) for dict observations; the
    inner env's own observation rides in `info["full_obs"]` and is handed back to it at the next step."""

    def __init__(self, env: Env):
        super().__init__(env)
        if has_dict_observations(env) and STATE_KEY not in env.observation_size:
            raise ValueError(f"dict observations without a '{STATE_KEY}' part: {dict(env.observation_size)}")

    @staticmethod
    def _state_only(state: State) -> State:
        if not isinstance(state.obs, Mapping):
            return state
        info = dict(state.info)
        info["full_obs"] = state.obs
        if isinstance(info.get("final_obs"), Mapping):
            info["final_obs"] = info["final_obs"][STATE_KEY]
        return state.replace(obs=state.obs[STATE_KEY], info=info)

    def reset(self, rng: jax.Array) -> State:
        return self._state_only(self.env.reset(rng))

    def step(self, state: State, action: jax.Array) -> State:
        if "full_obs" in state.info:
            info = {k: v for k, v in state.info.items() if k != "full_obs"}
            state = state.replace(obs=state.info["full_obs"], info=info)
        return self._state_only(self.env.step(state, action))

    @property
    def observation_size(self) -> Any:
        size = self.env.observation_size
        if not isinstance(size, Mapping):
            return size
        shape = size[STATE_KEY]
        return int(shape if isinstance(shape, int) else tuple(shape)[-1])
