"""Time limit + episode statistics (brax-compatible keys, so brax's trainers and logger read them).

info: "steps" (env steps so far), "truncation" (1 where the time limit, not a failure, ended the episode),
"episode_done", and "episode_metrics" = {"sum_reward": return, "length": env steps, "cost": episode cost, …}
(one running sum per entry of `state.metrics`), reset on the step after an episode ends. Works batched or not.
"""

from __future__ import annotations

import jax
import jax.numpy as jp
from brax.envs.base import Env, State, Wrapper


class EpisodeWrapper(Wrapper):
    """Ends episodes after `episode_length` env steps and accumulates return, cost and length.

    `steps_per_call` is how many env steps one `step` call advances (the action repeat of an inner
    `ActionRepeatWrapper`), so `episode_length` is always counted in env steps.
    """

    def __init__(self, env: Env, episode_length: int, steps_per_call: int = 1):
        super().__init__(env)
        if episode_length < 1 or steps_per_call < 1:
            raise ValueError(f"episode_length and steps_per_call must be >= 1, got {episode_length}, {steps_per_call}")
        self.episode_length = episode_length
        self.steps_per_call = steps_per_call

    def reset(self, rng: jax.Array) -> State:
        state = self.env.reset(rng)
        zeros = jp.zeros_like(state.reward)
        state.info["steps"] = zeros
        state.info["truncation"] = zeros
        state.info["episode_done"] = zeros
        state.info["episode_metrics"] = {
            "sum_reward": zeros,
            "length": zeros,
            **dict.fromkeys(state.metrics, zeros),
        }
        return state

    def step(self, state: State, action: jax.Array) -> State:
        prev_done = state.info["episode_done"]
        state = self.env.step(state, action)
        steps = state.info["steps"] + self.steps_per_call
        timed_out = steps >= self.episode_length
        done = jp.where(timed_out, 1.0, state.done)
        keep = 1.0 - prev_done  # running sums restart after an episode ended
        sums = dict(state.info["episode_metrics"])
        sums["sum_reward"] = sums["sum_reward"] * keep + state.reward
        sums["length"] = sums["length"] * keep + self.steps_per_call
        for name, value in state.metrics.items():
            if name in sums and name not in ("sum_reward", "length"):
                sums[name] = sums[name] * keep + value
        info = dict(state.info)
        info.update(
            steps=steps, truncation=jp.where(timed_out, 1.0 - state.done, 0.0), episode_done=done, episode_metrics=sums
        )
        return state.replace(done=done, info=info)
