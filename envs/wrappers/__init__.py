"""Composable, jittable brax `Wrapper`s, one concept per file; `envs.wrap_training_env` composes them into the
stack every trainer steps."""

from envs.wrappers.action_delay import ActionDelayWrapper
from envs.wrappers.action_repeat import ActionRepeatWrapper
from envs.wrappers.auto_reset import AutoResetWrapper
from envs.wrappers.domain_randomization import (
    DomainRandomizationConfig,
    DomainRandomizationWrapper,
    make_randomization_fn,
    randomize,
    randomized_fields,
)
from envs.wrappers.dynamics_shift import dynamics_shift, shift_model
from envs.wrappers.episode import EpisodeWrapper
from envs.wrappers.episode_randomization import EpisodeRandomizationWrapper
from envs.wrappers.observation_noise import ObservationNoiseWrapper
from envs.wrappers.state_observation import StateObservationWrapper, has_dict_observations
from envs.wrappers.vmap import VmapWrapper

__all__ = [
    "ActionDelayWrapper",
    "ActionRepeatWrapper",
    "AutoResetWrapper",
    "DomainRandomizationConfig",
    "DomainRandomizationWrapper",
    "EpisodeRandomizationWrapper",
    "EpisodeWrapper",
    "ObservationNoiseWrapper",
    "StateObservationWrapper",
    "VmapWrapper",
    "dynamics_shift",
    "has_dict_observations",
    "make_randomization_fn",
    "randomize",
    "randomized_fields",
    "shift_model",
]
