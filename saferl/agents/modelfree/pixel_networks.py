"""Networks of PPO and SAC for dict observations `{"image": [..., H, W, C], "state": [..., d]}`: a small CNN
encodes the image, an MLP acts on concat(image features, normalised state) (brax's `FeedForwardNetwork`
interface, `apply(normalizer, params, obs)`, so the trainers use them like brax's flat-vector networks).

  features = relu(Dense_F(flatten(relu(Conv_cK(… relu(Conv_c1(image)) …)))))   each conv k×k, stride s, SAME
  output   = MLP(concat(features, normalize(state)))

The observation normaliser (running mean/std) covers the state part only (`normalizer_spec`); images are
used as the env gives them (e.g. B-mode intensities in [0, 1]). Each network has its own encoder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
from brax.training import networks as brax_networks
from brax.training.acme import running_statistics, specs
from flax import linen

from saferl.data import observations


@dataclasses.dataclass(frozen=True)
class PixelEncoderConfig:
    """The image encoder of dict observations (unused for flat-vector envs)."""

    channels: tuple[int, ...] = (8, 16)  # output channels of each conv layer (relu)
    kernel_size: int = 3  # k of every k×k conv kernel
    stride: int = 2  # stride of every conv layer (each halves H and W at 2, SAME padding)
    features: int = 32  # size of the dense image embedding concatenated with the state

    def __post_init__(self) -> None:
        channels = tuple(self.channels)
        if not channels or not all(isinstance(c, int) and c >= 1 for c in channels):
            raise ValueError(f"encoder.channels must be a non-empty list of integers >= 1, got {self.channels!r}")
        object.__setattr__(self, "channels", channels)
        for name in ("kernel_size", "stride", "features"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"encoder.{name} must be an integer >= 1, got {value!r}")


class ImageEncoder(linen.Module):
    """image [..., H, W, C] -> features [..., config.features]."""

    config: PixelEncoderConfig

    @linen.compact
    def __call__(self, image: jax.Array) -> jax.Array:
        batch_shape = image.shape[:-3]
        hidden = image.reshape((-1, *image.shape[-3:])).astype(jnp.float32)
        k, s = self.config.kernel_size, self.config.stride
        for channels in self.config.channels:
            hidden = linen.relu(linen.Conv(channels, (k, k), strides=(s, s), padding="SAME")(hidden))
        hidden = hidden.reshape((hidden.shape[0], -1))
        features = linen.relu(linen.Dense(self.config.features)(hidden))
        return features.reshape((*batch_shape, self.config.features))


class PixelStateMLP(linen.Module):
    """MLP on concat(ImageEncoder(image), state[, action]) -> [..., layer_sizes[-1]]."""

    encoder: PixelEncoderConfig
    layer_sizes: Sequence[int]
    activation: Callable[[jax.Array], jax.Array]

    @linen.compact
    def __call__(self, image: jax.Array, state: jax.Array, action: jax.Array | None = None) -> jax.Array:
        parts = [ImageEncoder(self.encoder)(image), state] + ([] if action is None else [action])
        return brax_networks.MLP(
            layer_sizes=list(self.layer_sizes),
            activation=self.activation,
            kernel_init=jax.nn.initializers.lecun_uniform(),
        )(jnp.concatenate(parts, axis=-1))


class TwinPixelStateMLP(linen.Module):
    """`n_critics` independent `PixelStateMLP`s with one output each -> [..., n_critics] (SAC's twin Q)."""

    encoder: PixelEncoderConfig
    hidden_sizes: Sequence[int]
    activation: Callable[[jax.Array], jax.Array]
    n_critics: int = 2

    @linen.compact
    def __call__(self, image: jax.Array, state: jax.Array, action: jax.Array) -> jax.Array:
        heads = [
            PixelStateMLP(self.encoder, (*tuple(self.hidden_sizes), 1), self.activation)(image, state, action)
            for _ in range(self.n_critics)
        ]
        return jnp.concatenate(heads, axis=-1)


def normalizer_spec(observation_size: Any) -> specs.Array:
    """What the running observation statistics cover: the whole vector, or a dict's state part [d]."""
    return specs.Array((observations.state_size(observation_size),), jnp.float32)


def init_normalizer(observation_size: Any) -> running_statistics.RunningStatisticsState:
    """Empty running statistics of the (state part of the) observation."""
    return running_statistics.init_state(normalizer_spec(observation_size))


def update_normalizer(normalizer: Any, obs: Any) -> Any:
    """`normalizer` updated with a batch of observations (their state part for dicts), any leading axes."""
    return running_statistics.update(normalizer, observations.state_part(obs))


def _network(
    module: linen.Module, observation_size: Any, normalize: Callable, extra_size: int | None = None
) -> brax_networks.FeedForwardNetwork:
    """`FeedForwardNetwork` of `module(image, normalize(state)[, action])` with dummy inputs for `init`."""
    dummy = observations.zeros(observation_size, (1,))
    dummy_extra = () if extra_size is None else (jnp.zeros((1, extra_size)),)

    def init(key: jax.Array) -> Any:
        return module.init(key, dummy[observations.IMAGE], dummy[observations.STATE], *dummy_extra)

    def apply(normalizer: Any, params: Any, obs: Any, *extra: jax.Array) -> jax.Array:
        state = normalize(obs[observations.STATE], normalizer)
        # flax types `apply` as `Any | (Any, variables)` (the pair with `mutable=`): here it is the module's output
        return cast(jax.Array, module.apply(params, obs[observations.IMAGE], state, *extra))

    return brax_networks.FeedForwardNetwork(init=init, apply=apply)


def make_policy_network(
    encoder: PixelEncoderConfig,
    observation_size: Any,
    param_size: int,
    hidden_sizes: Sequence[int],
    activation: Callable,
    normalize: Callable,
) -> brax_networks.FeedForwardNetwork:
    """(normalizer, params, obs dict) -> distribution parameters [..., param_size]."""
    module = PixelStateMLP(encoder, (*tuple(hidden_sizes), param_size), activation)
    return _network(module, observation_size, normalize)


def make_value_network(
    encoder: PixelEncoderConfig,
    observation_size: Any,
    hidden_sizes: Sequence[int],
    activation: Callable,
    normalize: Callable,
) -> brax_networks.FeedForwardNetwork:
    """(normalizer, params, obs dict) -> V [...]."""
    network = _network(PixelStateMLP(encoder, (*tuple(hidden_sizes), 1), activation), observation_size, normalize)
    return brax_networks.FeedForwardNetwork(
        init=network.init, apply=lambda normalizer, params, obs: network.apply(normalizer, params, obs)[..., 0]
    )


def make_q_network(
    encoder: PixelEncoderConfig,
    observation_size: Any,
    action_size: int,
    hidden_sizes: Sequence[int],
    activation: Callable,
    normalize: Callable,
    n_critics: int = 2,
) -> brax_networks.FeedForwardNetwork:
    """(normalizer, params, obs dict, action [..., act_dim]) -> Q [..., n_critics]."""
    module = TwinPixelStateMLP(encoder, tuple(hidden_sizes), activation, n_critics)
    return _network(module, observation_size, normalize, extra_size=action_size)
