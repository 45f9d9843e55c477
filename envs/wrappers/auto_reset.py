"""Auto-reset: where `done`, the next state is a *fresh* reset (new random initial state and layout).

Unlike brax's `AutoResetWrapper` (which restores the first state of the env forever), each episode draws a
new start, so e.g. point_goal's hazard layout changes per episode. The reset key comes from `info["rng"]`.
The done step keeps its reward, cost, metrics and episode statistics; obs and pipeline state are the reset's.
`info["final_obs"]` is the observation the step reached before any reset (equal to `obs` except on done
steps), so an off-policy learner can store the true next observation of a time-limit step and bootstrap.
Observations may be arrays or dicts of arrays (`{"image": [B, H, W, C], "state": [B, d]}`): each leaf is reset.
"""

from __future__ import annotations

import jax
import jax.numpy as jp
from brax.envs.base import State, Wrapper

#: info entries of the finished transition that survive the reset (episode statistics, the step's cost)
PRESERVED_INFO = ("cost", "episode_metrics", "episode_done", "truncation")


def _select(done: jax.Array, if_done: jax.Array, otherwise: jax.Array) -> jax.Array:
    done = jp.reshape(done, done.shape + (1,) * (otherwise.ndim - done.ndim))
    return jp.where(done > 0, if_done, otherwise)


class AutoResetWrapper(Wrapper):
    def reset(self, rng: jax.Array) -> State:
        state = self.env.reset(rng)
        info = dict(state.info)
        info["final_obs"] = state.obs
        return state.replace(info=info)

    def step(self, state: State, action: jax.Array) -> State:
        state = self.env.step(state, action)
        keys = state.info["rng"]
        if keys.ndim == 1:
            _, reset_key = jax.random.split(keys)
        else:
            reset_key = jax.vmap(jax.random.split)(keys)[:, 1]
        fresh = self.env.reset(reset_key)
        info = {k: v for k, v in state.info.items() if k in PRESERVED_INFO}
        for key, value in fresh.info.items():
            if key not in PRESERVED_INFO:
                old = state.info.get(key, value)
                info[key] = jax.tree.map(lambda f, o: _select(state.done, f, o), value, old)
        pipeline_state = jax.tree.map(
            lambda f, o: _select(state.done, f, o), fresh.pipeline_state, state.pipeline_state
        )
        info["final_obs"] = state.obs  # [..., obs]: the observation the step reached, before the reset
        obs = jax.tree.map(lambda f, o: _select(state.done, f, o), fresh.obs, state.obs)  # array or dict
        return state.replace(pipeline_state=pipeline_state, obs=obs, info=info)
