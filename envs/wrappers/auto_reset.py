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
        pipeline_state, fresh_obs, fresh_info = self._fresh(state, reset_key)
        info = {k: v for k, v in state.info.items() if k in PRESERVED_INFO}
        for key, value in fresh_info.items():
            old = state.info.get(key, value)
            info[key] = jax.tree.map(lambda f, o: _select(state.done, f, o), value, old)
        pipeline_state = jax.tree.map(lambda f, o: _select(state.done, f, o), pipeline_state, state.pipeline_state)
        info["final_obs"] = state.obs  # [..., obs]: the observation the step reached, before the reset
        obs = jax.tree.map(lambda f, o: _select(state.done, f, o), fresh_obs, state.obs)  # array or dict
        return state.replace(pipeline_state=pipeline_state, obs=obs, info=info)

    def _fresh(self, state: State, reset_key: jax.Array) -> tuple:
        """(pipeline state, obs, info without PRESERVED_INFO) of a fresh reset, only where it is used.

        The reset (for the ultrasound envs with pixels: an image render; for every env an MJX forward) runs
        under `lax.cond` on "any env done", so a step where no episode ends skips it; the other branch passes
        the stepped state's values through (they are then selected anyway). Under an outer `vmap` (seeds) the
        cond becomes a select and both run, as before. Falls back to always resetting when the stepped state
        lacks a reset info entry or holds it with another shape/dtype."""
        def reset() -> tuple:
            fresh = self.env.reset(reset_key)
            return (fresh.pipeline_state, fresh.obs,
                    {k: v for k, v in fresh.info.items() if k not in PRESERVED_INFO})

        shapes = jax.eval_shape(reset)
        keep = (state.pipeline_state, state.obs, {k: state.info.get(k) for k in shapes[2]})
        same = lambda a, b: (jax.tree.structure(a) == jax.tree.structure(b) and all(  # noqa: E731
            x.shape == y.shape and x.dtype == y.dtype for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))))
        if not same(shapes, jax.eval_shape(lambda: keep)):
            return reset()
        return jax.lax.cond(jp.any(state.done > 0), reset, lambda: keep)
