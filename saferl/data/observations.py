"""Observations as a flat vector or as a dict (brax style) `{"image": [..., H, W, C], "state": [..., d]}`.

An env's `observation_size` is an int d (flat) or a dict of shapes `{"image": (H, W, C), "state": (d,)}`.
Everything that must tell them apart goes through these helpers: the model-free trainers encode the image
with a CNN and normalise only the state; buffers hold either pytree; model-based agents use only `state`.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from saferl.errors import UserError

IMAGE, STATE = "image", "state"
DICT_KEYS = (IMAGE, STATE)


def is_dict(observation_size: Any) -> bool:
    """Whether an env's `observation_size` describes dict observations (a mapping of shapes)."""
    return isinstance(observation_size, Mapping)


def shapes(observation_size: Any) -> dict[str, tuple[int, ...]]:
    """`{"image": (H, W, C), "state": (d,)}` of a dict `observation_size`, checked; `UserError` naming the
    offending key and value otherwise (the keys must be exactly image and state, image 3-D, state 1-D)."""
    if not is_dict(observation_size):
        raise UserError(f"observation_size {observation_size!r} is not a dict of shapes")
    if set(observation_size) != set(DICT_KEYS):
        raise UserError(
            f"dict observations must have exactly the keys {list(DICT_KEYS)}, got {sorted(observation_size)}"
        )
    out = {}
    for key, ndim in ((IMAGE, 3), (STATE, 1)):
        value = observation_size[key]
        shape = (value,) if isinstance(value, numbers.Integral) else tuple(value)
        if len(shape) != ndim or not all(isinstance(n, numbers.Integral) and int(n) >= 1 for n in shape):
            raise UserError(
                f"observation_size['{key}'] must be {ndim} sizes >= 1 "
                f"({'(H, W, C)' if key == IMAGE else '(d,)'}), got {value!r}"
            )
        out[key] = tuple(int(n) for n in shape)
    return out


def state_size(observation_size: Any) -> int:
    """Length of the state vector: d of a flat observation, or of the dict's `state` part."""
    return shapes(observation_size)[STATE][0] if is_dict(observation_size) else int(observation_size)


def state_part(obs: Any) -> jax.Array:
    """The state vector [..., d] of an observation: `obs["state"]` for a dict, the array itself otherwise."""
    return obs[STATE] if isinstance(obs, Mapping) else obs


def zeros(observation_size: Any, batch_shape: tuple[int, ...] = ()) -> Any:
    """A float32 observation of zeros with leading `batch_shape` (a dict of arrays for dict observations)."""
    if is_dict(observation_size):
        return {key: jnp.zeros(batch_shape + shape) for key, shape in shapes(observation_size).items()}
    return jnp.zeros((*batch_shape, int(observation_size)))


def as_float32(obs: Any) -> Any:
    """`obs` (array or dict of arrays) with every leaf a float32 array."""
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), obs)


def describe(observation_size: Any) -> str:
    """A short text of the sizes, for messages: `3` or `image 8x8x1 + state 3`."""
    if not is_dict(observation_size):
        return str(observation_size)
    image, state = shapes(observation_size)[IMAGE], shapes(observation_size)[STATE]
    return f"image {'x'.join(map(str, image))} + state {state[0]}"
