"""Env registry: `make(name, **overrides)` builds an env from its frozen default config; `names()` lists them."""

from __future__ import annotations

import dataclasses
from typing import Any

from envs.base import EnvConfig, MjxEnv


class EnvError(ValueError):
    """Unknown env name or config key (message lists the valid ones)."""


_REGISTRY: dict[str, type[MjxEnv]] = {}


def register(name: str, env_cls: type[MjxEnv]) -> None:
    """Add an env class under `name` (also usable for user envs outside this repo)."""
    _REGISTRY[name] = env_cls


def names() -> list[str]:
    return sorted(_REGISTRY)


def env_class(name: str) -> type[MjxEnv]:
    if name not in _REGISTRY:
        raise EnvError(f"unknown env '{name}'; available envs: {', '.join(names())}")
    return _REGISTRY[name]


def default_config(name: str) -> EnvConfig:
    return env_class(name).default_config()


def make_config(name: str, **overrides: Any) -> EnvConfig:
    """The default config of env `name` with `overrides` applied (unknown keys raise `EnvError`)."""
    config = default_config(name)
    valid = [f.name for f in dataclasses.fields(config)]
    unknown = [k for k in overrides if k not in valid]
    if unknown:
        raise EnvError(f"unknown config key(s) {unknown} for env '{name}'; valid keys: {', '.join(valid)}")
    try:
        return dataclasses.replace(config, **overrides)
    except (TypeError, ValueError) as err:
        raise EnvError(f"invalid config for env '{name}': {err}") from None


def make(name: str, config: EnvConfig | None = None, **overrides: Any) -> MjxEnv:
    """Build env `name`, from `config` if given else from its default config with `overrides`."""
    cls = env_class(name)
    if config is None:
        config = make_config(name, **overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    return cls(config)
