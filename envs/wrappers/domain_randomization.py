"""Domain randomisation (mujoco_playground style): `randomize(model, rng, config)` returns a batched
`mjx.Model` with per-env physical parameters plus its `in_axes`; `DomainRandomizationWrapper` vmaps
reset/step over those models (fixed per env). `make_randomization_fn(config)` gives the
`randomization_fn(sys, rng)` that brax's `ppo.train`/`sac.train` accept. `randomized_fields` is the one
sampling function, shared with the per-episode `EpisodeRandomizationWrapper`.

Each parameter is multiplied by a factor drawn uniformly from its range, independently per env and per
element: body mass (and inertia, i.e. a density change), geom sliding friction, joint damping, actuator
gain (`gainprm[0]`, with `biasprm[1:3]` so position/velocity servos keep their set-points; for a muscle its peak
force `gainprm[2]` = `biasprm[2]`, see `actuator_gain_columns`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jp
import mujoco
import numpy as np
from brax.envs.base import Env, State, Wrapper
from mujoco import mjx

Range = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class DomainRandomizationConfig:
    """Ranges (low, high) of the × factors; (1.0, 1.0) leaves a parameter unchanged."""

    mass_scale: Range = (0.8, 1.2)  # × body mass and inertia
    friction_scale: Range = (0.7, 1.3)  # × geom sliding friction
    damping_scale: Range = (0.8, 1.2)  # × joint damping
    actuator_gain_scale: Range = (0.9, 1.1)  # × actuator gain

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            try:
                low, high = (float(v) for v in value)
            except (TypeError, ValueError):
                raise ValueError(f"{field.name} must be a range (low, high), got {value!r}") from None
            if not (math.isfinite(high) and 0 < low <= high):
                raise ValueError(f"{field.name} must satisfy 0 < low <= high (finite), got ({low}, {high})")
            object.__setattr__(self, field.name, (low, high))  # lists (from JSON) become hashable tuples

    @classmethod
    def off(cls) -> DomainRandomizationConfig:
        """No randomisation: every range (1.0, 1.0)."""
        return cls(**{field.name: (1.0, 1.0) for field in dataclasses.fields(cls)})

    @property
    def is_off(self) -> bool:
        return all(getattr(self, field.name) == (1.0, 1.0) for field in dataclasses.fields(self))


def _scale(rng: jax.Array, shape: tuple[int, ...], bounds: Range) -> jax.Array:
    return jax.random.uniform(rng, shape, minval=bounds[0], maxval=bounds[1])


def actuator_gain_columns(gaintype: np.ndarray, ngain: int, nbias: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks [nu, ngain], [nu, nbias] of the `gainprm` / `biasprm` entries an actuator-gain factor
    multiplies: `gainprm[0]` and `biasprm[1:3]` (motors, position/velocity servos), but a muscle's peak force
    `gainprm[2]` and `biasprm[2]` (its other entries are lengths and curve shapes)."""
    muscle = np.asarray(gaintype) == int(mujoco.mjtGain.mjGAIN_MUSCLE)
    gain = np.zeros((muscle.size, ngain), bool)
    bias = np.zeros((muscle.size, nbias), bool)
    gain[~muscle, 0] = True
    bias[~muscle, 1:3] = True
    gain[muscle, 2] = bias[muscle, 2] = True
    return gain, bias


def randomized_fields(model: mjx.Model, rng: jax.Array, config: DomainRandomizationConfig) -> dict[str, jax.Array]:
    """One draw of the randomised `mjx.Model` fields (unbatched): {field name: new value, shaped like `model`'s}.

    Factors are uniform in their ranges, independent per element (body, geom, dof, actuator)."""
    mass_rng, friction_rng, damping_rng, gain_rng = jax.random.split(rng, 4)
    mass = _scale(mass_rng, model.body_mass.shape, config.mass_scale)
    friction = _scale(friction_rng, model.geom_friction.shape[:1], config.friction_scale)
    damping = _scale(damping_rng, model.dof_damping.shape, config.damping_scale)
    gain = _scale(gain_rng, model.actuator_gainprm.shape[:1], config.actuator_gain_scale)
    gain_columns, bias_columns = actuator_gain_columns(
        model.actuator_gaintype, model.actuator_gainprm.shape[1], model.actuator_biasprm.shape[1]
    )
    return {
        "body_mass": model.body_mass * mass,
        "body_inertia": model.body_inertia * mass[:, None],
        "geom_friction": model.geom_friction.at[:, 0].multiply(friction),
        "dof_damping": model.dof_damping * damping,
        "actuator_gainprm": model.actuator_gainprm * jp.where(gain_columns, gain[:, None], 1.0),
        "actuator_biasprm": model.actuator_biasprm * jp.where(bias_columns, gain[:, None], 1.0),
    }


def randomize(
    model: mjx.Model, rng: jax.Array, config: DomainRandomizationConfig | None = None
) -> tuple[mjx.Model, mjx.Model]:
    """Per-env models for keys `rng` [B, 2]: returns (model with batched fields [B, ...], in_axes)."""
    config = config or DomainRandomizationConfig()
    fields = jax.vmap(lambda key: randomized_fields(model, key, config))(rng)
    in_axes = jax.tree.map(lambda _: None, model).tree_replace(dict.fromkeys(fields, 0))
    return model.tree_replace(fields), in_axes


def make_randomization_fn(
    config: DomainRandomizationConfig | None = None,
) -> Callable[[mjx.Model, jax.Array], tuple[mjx.Model, mjx.Model]]:
    """`fn(sys, rng [B, 2]) -> (batched sys, in_axes)`, as brax's trainers' `randomization_fn` expects."""
    return lambda sys, rng: randomize(sys, rng, config)


@contextlib.contextmanager
def using_model(env: Env, model: mjx.Model) -> Iterator[Env]:
    """While tracing inside the block, `env`'s base env steps `model` (its `sys` is swapped and restored)."""
    base = env.unwrapped
    original = base.sys
    base.sys = model
    try:
        yield env
    finally:
        base.sys = original


class DomainRandomizationWrapper(Wrapper):
    """Vmaps reset/step over a batch of models; replaces `VmapWrapper` (batch size = number of models).

    `randomization_fn(model) -> (batched model, in_axes)`, e.g. `functools.partial(randomize, rng=keys)`.
    """

    def __init__(self, env: Env, randomization_fn: Callable[[mjx.Model], tuple[mjx.Model, Any]]):
        super().__init__(env)
        self.batched_model, self.in_axes = randomization_fn(self.env.unwrapped.sys)
        self.batch_size = int(self.batched_model.body_mass.shape[0])

    def reset(self, rng: jax.Array) -> State:
        """rng: [B, 2] (or one key split into B)."""
        if rng.ndim == 1:
            rng = jax.random.split(rng, self.batch_size)

        def reset_one(model, key):
            with using_model(self.env, model) as env:
                return env.reset(key)

        return jax.vmap(reset_one, in_axes=(self.in_axes, 0))(self.batched_model, rng)

    def step(self, state: State, action: jax.Array) -> State:
        def step_one(model, one_state, one_action):
            with using_model(self.env, model) as env:
                return env.step(one_state, one_action)

        return jax.vmap(step_one, in_axes=(self.in_axes, 0, 0))(self.batched_model, state, action)
