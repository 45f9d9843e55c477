"""The training world: one frozen config of everything that makes the training env another world than the
nominal one (per-episode domain randomisation, observation noise, action delay, a dynamics shift), and the
env stacks built from it — `make_training_env` (the shifted physics), `wrap_training_env` (what a trainer
steps) and `wrap_evaluation_env` (what a deployed policy sees). `physics_fingerprint` identifies physics
for compiled-function caches (a `dynamics_shift` variant has the class and config of the nominal env).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
from collections.abc import Mapping
from typing import Any

import mujoco
import numpy as np
from brax.envs.base import Env, Wrapper

from envs.base import EnvConfig, MjxEnv
from envs.registry import EnvError, env_class, make
from envs.wrappers.action_delay import ActionDelayWrapper
from envs.wrappers.auto_reset import AutoResetWrapper
from envs.wrappers.domain_randomization import DomainRandomizationConfig
from envs.wrappers.dynamics_shift import _PHYSICAL_KEYS, shift_model
from envs.wrappers.episode import EpisodeWrapper
from envs.wrappers.episode_randomization import EpisodeRandomizationWrapper
from envs.wrappers.observation_noise import ObservationNoiseWrapper
from envs.wrappers.vmap import VmapWrapper

_SCALES = ("mass_scale", "friction_scale", "damping_scale", "actuator_gain_scale", "gravity_scale")


def _positive(name: str, value: Any) -> float:
    """`value` as a float, or EnvError naming `name` unless it is finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise EnvError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _body_scales(value: Any) -> tuple[tuple[str, float], ...]:
    """{body: scale} or pairs [(body, scale), ...] (e.g. from JSON) -> sorted ((body, scale), ...)."""
    try:
        pairs = list(value.items()) if isinstance(value, Mapping) else [tuple(pair) for pair in value]
        pairs = [(name, scale) for name, scale in pairs]
    except (TypeError, ValueError):
        raise EnvError(
            f"shift.body_mass_scale must be a {{body: scale}} mapping or (body, scale) pairs, got {value!r}"
        ) from None
    for name, _ in pairs:
        if not isinstance(name, str) or not name:
            raise EnvError(f"shift.body_mass_scale: body names must be non-empty strings, got {name!r}")
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise EnvError(f"shift.body_mass_scale names a body twice: {names}")
    return tuple(sorted((name, _positive(f"shift.body_mass_scale['{name}']", scale)) for name, scale in pairs))


@dataclasses.dataclass(frozen=True)
class ShiftConfig:
    """A dynamics shift, the stand-in for the real robot: a named preset of the env and/or × factors.

    Explicit factors multiply the preset's (preset pole ×2 with body_mass_scale pole ×1.1 gives ×2.2)."""

    preset: str = ""  # a name from `shift_presets(env)` ("" = none), e.g. safe_cartpole "heavy_pole"
    mass_scale: float = 1.0  # × every body's mass and inertia
    friction_scale: float = 1.0  # × geom sliding friction
    damping_scale: float = 1.0  # × joint damping
    actuator_gain_scale: float = 1.0  # × actuator gain
    gravity_scale: float = 1.0  # × gravity
    body_mass_scale: tuple[tuple[str, float], ...] = ()  # ((body, × mass and inertia), ...); a dict is accepted

    def __post_init__(self) -> None:
        if not isinstance(self.preset, str):
            raise EnvError(f"shift.preset must be a preset name (a string, '' for none), got {self.preset!r}")
        for name in _SCALES:
            object.__setattr__(self, name, _positive(f"shift.{name}", getattr(self, name)))
        object.__setattr__(self, "body_mass_scale", _body_scales(self.body_mass_scale))

    @property
    def is_identity(self) -> bool:
        """True when the shift changes nothing (no preset, every factor 1)."""
        return (
            not self.preset
            and all(getattr(self, name) == 1.0 for name in _SCALES)
            and all(scale == 1.0 for _, scale in self.body_mass_scale)
        )


def _build(config_cls: type, fields: Mapping[str, Any], where: str) -> Any:
    """`config_cls(**fields)`, with unknown keys reported as an EnvError listing the valid ones."""
    valid = [field.name for field in dataclasses.fields(config_cls)]
    unknown = sorted(set(fields) - set(valid))
    if unknown:
        raise EnvError(f"unknown {where} key(s) {unknown}; valid keys: {', '.join(valid)}")
    return config_cls(**fields)


@dataclasses.dataclass(frozen=True)
class TrainingEnvConfig:
    """The training world, saved with each run; trainers build their env stack from it alone."""

    # per-episode × factors (drawn at every reset); all ranges (1, 1) = no randomisation
    randomization: DomainRandomizationConfig = dataclasses.field(default_factory=DomainRandomizationConfig.off)
    obs_noise_std: float = 0.0  # std of Gaussian noise added to observations (obs units), ≥ 0
    action_delay: int = 0  # env steps between choosing an action and its taking effect, ≥ 0
    shift: ShiftConfig = dataclasses.field(default_factory=ShiftConfig)  # the dynamics shift (stand-in robot)

    def __post_init__(self) -> None:
        if isinstance(self.randomization, Mapping):  # e.g. from JSON; unset ranges stay off
            ranges = {**dataclasses.asdict(DomainRandomizationConfig.off()), **self.randomization}
            object.__setattr__(self, "randomization", _build(DomainRandomizationConfig, ranges, "randomization"))
        if not isinstance(self.randomization, DomainRandomizationConfig):
            raise EnvError(f"randomization must be a DomainRandomizationConfig, got {self.randomization!r}")
        if isinstance(self.shift, Mapping):
            object.__setattr__(self, "shift", _build(ShiftConfig, self.shift, "shift"))
        if not isinstance(self.shift, ShiftConfig):
            raise EnvError(f"shift must be a ShiftConfig, got {self.shift!r}")
        noise = self.obs_noise_std
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (math.isfinite(noise) and noise >= 0):
            raise EnvError(f"obs_noise_std must be a finite number >= 0 (obs units), got {noise!r}")
        object.__setattr__(self, "obs_noise_std", float(noise))
        delay: object = self.action_delay  # what was given (may be a float or anything else from a --set)
        if isinstance(delay, float) and delay.is_integer():
            delay = int(delay)
        if isinstance(delay, bool) or not isinstance(delay, (int, np.integer)) or delay < 0:
            raise EnvError(f"action_delay must be an integer >= 0 (env steps), got {self.action_delay!r}")
        object.__setattr__(self, "action_delay", int(delay))

    @property
    def randomized(self) -> bool:
        """True when any randomisation range is not (1, 1)."""
        return not self.randomization.is_off


def shift_presets(env_name: str) -> dict[str, dict]:
    """Named dynamics shifts of env `env_name`: {preset: `shift_model` keyword arguments} (a copy)."""
    return copy.deepcopy(dict(env_class(env_name).SHIFT_PRESETS))


def _shift_arguments(env_name: str, shift: ShiftConfig) -> dict[str, Any]:
    """`shift_model` keyword arguments of `shift`: the preset's, with the explicit factors multiplied in."""
    presets = shift_presets(env_name)
    if shift.preset and shift.preset not in presets:
        valid = ", ".join(sorted(presets)) or "none"
        raise EnvError(f"unknown shift preset '{shift.preset}' for env '{env_name}'; presets: {valid}")
    arguments = dict(presets.get(shift.preset, {}))
    for name in _SCALES:
        arguments[name] = arguments.get(name, 1.0) * getattr(shift, name)
    bodies = dict(arguments.get("body_mass_scale", {}))
    for body, scale in shift.body_mass_scale:
        bodies[body] = bodies.get(body, 1.0) * scale
    arguments["body_mass_scale"] = bodies
    return arguments


def make_training_env(name: str, env_config: EnvConfig | Mapping[str, Any] | None, config: TrainingEnvConfig) -> MjxEnv:
    """Env `name` (from `env_config`: a config, overrides or None for the default) with the world's
    dynamics shift applied; no wrappers. EnvError for an unknown preset or body name."""
    arguments = {} if config.shift.is_identity else _shift_arguments(name, config.shift)
    # a preset may also set fields of the env's config (e.g. race_car's steering trim), applied over env_config
    fields = {key: arguments.pop(key) for key in list(arguments) if key not in _PHYSICAL_KEYS}
    if env_config is None or isinstance(env_config, Mapping):
        env = make(name, **{**dict(env_config or {}), **fields})
    else:
        env = make(name, config=env_config, **fields)
    if arguments:
        env.set_mj_model(shift_model(env.mj_model, **arguments))
    return env


def _observation_channel(env: Env, config: TrainingEnvConfig) -> Env:
    """`env` with the world's action delay (innermost) and observation noise."""
    if config.action_delay:
        env = ActionDelayWrapper(env, config.action_delay)
    if config.obs_noise_std:
        env = ObservationNoiseWrapper(env, config.obs_noise_std)
    return env


def wrap_training_env(env: Env, config: TrainingEnvConfig, num_envs: int) -> Wrapper:
    """[num_envs] batched, time-limited (`env.episode_length`), fresh-reset-per-episode env of the world.

    Innermost first: action delay → obs noise → per-episode randomisation (when `config.randomized`) →
    vmap → `EpisodeWrapper` (time limit, statistics) → `AutoResetWrapper` (`info["final_obs"]`).
    `reset` takes one key (split into num_envs) or keys [num_envs, 2]."""
    if num_envs < 1:
        raise EnvError(f"num_envs must be >= 1, got {num_envs}")
    episode_length = env.unwrapped.episode_length
    env = _observation_channel(env, config)
    if config.randomized:
        env = EpisodeRandomizationWrapper(env, config.randomization)
    env = VmapWrapper(env, num_envs)
    env = EpisodeWrapper(env, episode_length)
    return AutoResetWrapper(env)


def wrap_evaluation_env(env: Env, config: TrainingEnvConfig) -> Env:
    """Unbatched env as a deployed policy sees it: action delay → obs noise; no randomisation, no auto-reset."""
    return _observation_channel(env, config)


def physics_fingerprint(env: Env) -> str:
    """sha1 of the env's class, config and compiled MuJoCo model (`mj_saveModel` bytes): equal physics give
    equal fingerprints; a `dynamics_shift` variant differs. Cached on the env per `mj_model` object (change
    physics through `set_mj_model`, never by editing `mj_model` in place)."""
    base = env.unwrapped
    model = base.mj_model
    cached = getattr(base, "_physics_fingerprint", None)
    if cached is not None and cached[0] is model:
        return cached[1]
    buffer = np.zeros(mujoco.mj_sizeModel(model), dtype=np.uint8)
    mujoco.mj_saveModel(model, None, buffer)
    digest = hashlib.sha1()
    digest.update(f"{type(base).__module__}.{type(base).__qualname__}|{base.config!r}|".encode())
    digest.update(buffer.tobytes())
    fingerprint = digest.hexdigest()
    base._physics_fingerprint = (model, fingerprint)
    return fingerprint
