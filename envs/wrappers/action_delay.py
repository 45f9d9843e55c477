"""Action delay of k env steps: the action applied at step t is the one chosen at step t − k (zeros before).

A FIFO of the last k actions lives in `info["action_queue"]` [k, action_size]; k = 0 is a pass-through.
"""

from __future__ import annotations

import jax
import jax.numpy as jp
from brax.envs.base import Env, State, Wrapper


class ActionDelayWrapper(Wrapper):
    def __init__(self, env: Env, delay: int):
        super().__init__(env)
        if delay < 0:
            raise ValueError(f"action delay must be >= 0 steps, got {delay}")
        self.delay = delay

    def reset(self, rng: jax.Array) -> State:
        state = self.env.reset(rng)
        if self.delay:
            state.info["action_queue"] = jp.zeros((self.delay, self.env.action_size))
        return state

    def step(self, state: State, action: jax.Array) -> State:
        if not self.delay:
            return self.env.step(state, action)
        queue = state.info["action_queue"]
        applied = queue[0]
        state = self.env.step(state, applied)
        info = dict(state.info)
        info["action_queue"] = jp.concatenate([queue[1:], action[None]], axis=0)
        return state.replace(info=info)
