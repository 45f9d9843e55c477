"""Which world a trained policy is evaluated, rendered or deployed in: the run's training world
(`envs.TrainingEnvConfig`) without domain randomisation, or the same with another dynamics shift.

    world = evaluation_world(policy, ["heavy_pole"])          # a preset of the env
    world = evaluation_world(policy, ["mass_scale=1.3"])      # explicit shift fields
    env = evaluation_env(policy, world)                       # unbatched: shift, obs noise, action delay
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import envs
from saferl.config import apply_overrides, parse_overrides
from saferl.errors import UserError

NOMINAL = "nominal"  # `--shift nominal`: the env's own physics, whatever the run trained on


def parse_shift(env_name: str, args: Sequence[str]) -> Any:
    """An `envs.ShiftConfig` from CLI words: preset names of the env, `nominal`, or `key=value` fields."""
    fields: dict[str, Any] = {}
    for word in args:
        if word == NOMINAL:
            continue
        if "=" in word:
            fields.update(parse_overrides([word]))
        else:
            presets = envs.shift_presets(env_name)
            if word not in presets:
                raise UserError(
                    f"--shift {word!r}: env '{env_name}' has no such shift preset; presets: "
                    f"{', '.join(sorted(presets)) or 'none'} (or key=value of "
                    f"{', '.join(f.name for f in dataclasses.fields(envs.ShiftConfig))})"
                )
            if fields.get("preset", word) != word:
                raise UserError(
                    f"--shift {word!r}: only one preset at a time (already {fields['preset']!r}); "
                    f"add factors with key=value instead"
                )
            fields["preset"] = word
    return apply_overrides(envs.ShiftConfig(), fields, where="shift")


def shift_label(args: Sequence[str]) -> str:
    """A file-name-safe label of `--shift` words (e.g. `heavy_pole`, `mass_scale-1.5`)."""
    label = "_".join(args) or NOMINAL
    return re.sub(r"[^A-Za-z0-9._]+", "-", label).strip("-")[:80]


def evaluation_world(policy: Any, shift: Sequence[str] = ()) -> Any:
    """The policy's training world with randomisation off (and `shift` replacing its shift, if given)."""
    world = policy.training_env if policy.training_env is not None else envs.TrainingEnvConfig()
    world = dataclasses.replace(world, randomization=envs.TrainingEnvConfig().randomization)
    if shift:
        world = dataclasses.replace(world, shift=parse_shift(policy.env_name, shift))
    return world


def evaluation_env(policy: Any, world: Any) -> Any:
    """The unbatched env of `world` for `policy` (its env name and config): shift, obs noise, action delay."""
    try:
        env = envs.make_training_env(policy.env_name, policy.env_config, world)
    except ValueError as err:  # envs.EnvError: an unknown preset or body name
        raise UserError(str(err)) from None
    return envs.wrap_evaluation_env(env, world)
