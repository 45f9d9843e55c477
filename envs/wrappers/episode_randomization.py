"""Per-episode domain randomisation: each reset draws new × factors (mass, friction, damping, actuator gain)
from its key, so under the auto-reset every episode of every env has its own physics.

The randomised `mjx.Model` fields live in `state.info["randomization"]` ({field: array shaped like the
model's}, a few hundred floats), so they are part of the env state (checkpointed and resumed with it) and
`step` runs the base env on the model they describe. Unbatched: it sits inside the `VmapWrapper`.
"""

from __future__ import annotations

import jax
from brax.envs.base import Env, State, Wrapper

from envs.wrappers.domain_randomization import DomainRandomizationConfig, randomized_fields, using_model

#: folded into the reset key to draw the factors, so the env's own reset (initial state, layout) gets the
#: same key with and without this wrapper
_RANDOMIZATION_STREAM = 0x0D0A1


class EpisodeRandomizationWrapper(Wrapper):
    """Draws the episode's physics at `reset(rng [2])`, keeps it in `info["randomization"]` for `step`."""

    def __init__(self, env: Env, config: DomainRandomizationConfig):
        super().__init__(env)
        self.config = config

    def reset(self, rng: jax.Array) -> State:
        nominal = self.env.unwrapped.sys
        fields = randomized_fields(nominal, jax.random.fold_in(rng, _RANDOMIZATION_STREAM), self.config)
        with using_model(self.env, nominal.tree_replace(fields)) as env:
            state = env.reset(rng)
        info = dict(state.info)
        info["randomization"] = fields
        return state.replace(info=info)

    def step(self, state: State, action: jax.Array) -> State:
        model = self.env.unwrapped.sys.tree_replace(state.info["randomization"])
        with using_model(self.env, model) as env:
            return env.step(state, action)
