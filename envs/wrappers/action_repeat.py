"""Action repeat: apply one action for `repeat` env steps; reward and cost are summed, done if any step ended."""

from __future__ import annotations

import jax
import jax.numpy as jp
from brax.envs.base import Env, State, Wrapper


class ActionRepeatWrapper(Wrapper):
    def __init__(self, env: Env, repeat: int):
        super().__init__(env)
        if repeat < 1:
            raise ValueError(f"action repeat must be >= 1, got {repeat}")
        self.repeat = repeat

    def step(self, state: State, action: jax.Array) -> State:
        if self.repeat == 1:
            return self.env.step(state, action)

        def one_step(carry, _):
            inner, reward, cost, done = carry
            inner = self.env.step(inner, action)
            return (inner, reward + inner.reward, cost + inner.info["cost"], jp.maximum(done, inner.done)), None

        zero = jp.zeros_like(state.reward)
        (state, reward, cost, done), _ = jax.lax.scan(one_step, (state, zero, zero, zero), None, self.repeat)
        info = dict(state.info)
        info["cost"] = cost
        metrics = dict(state.metrics)
        metrics["cost"] = cost
        return state.replace(reward=reward, done=done, info=info, metrics=metrics)

    @property
    def dt(self) -> float:
        return self.env.dt * self.repeat
