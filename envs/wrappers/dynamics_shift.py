"""`dynamics_shift(name, **changes)`: a variant of an env with changed physics — the stand-in for the real
robot (train on the nominal env, deploy on the shifted one). Changes are applied to the native `MjModel`
(then `mj_setConst`), so the MJX env and its native twin both use them.

    real = dynamics_shift("safe_cartpole", body_mass_scale={"pole": 1.5}, damping_scale=3.0)
    real = dynamics_shift("safe_cartpole", pole_mass=0.15)   # config fields work too
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import mujoco

from envs.base import MjxEnv
from envs.registry import EnvError, make
from envs.wrappers.domain_randomization import actuator_gain_columns


def _body_ids(model: mujoco.MjModel, names: Mapping[str, float]) -> list[tuple[int, float]]:
    valid = [model.body(i).name for i in range(1, model.nbody)]
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise EnvError(f"unknown body name(s) {unknown}; bodies of this env: {', '.join(valid)}")
    return [(model.body(n).id, float(s)) for n, s in names.items()]


def shift_model(
    model: mujoco.MjModel,
    *,
    mass_scale: float = 1.0,
    body_mass_scale: Mapping[str, float] | None = None,
    friction_scale: float = 1.0,
    damping_scale: float = 1.0,
    actuator_gain_scale: float = 1.0,
    gravity_scale: float = 1.0,
    fluid_density_scale: float = 1.0,
    fluid_viscosity_scale: float = 1.0,
) -> mujoco.MjModel:
    """A copy of `model` with masses (and inertias), friction, joint damping, actuator gain (a muscle's peak
    force), gravity and the fluid's density and viscosity (`opt.density`, `opt.viscosity`) scaled."""
    scales = dict(
        mass_scale=mass_scale,
        friction_scale=friction_scale,
        damping_scale=damping_scale,
        actuator_gain_scale=actuator_gain_scale,
        gravity_scale=gravity_scale,
        fluid_density_scale=fluid_density_scale,
        fluid_viscosity_scale=fluid_viscosity_scale,
    )
    for name, value in scales.items():
        if not value > 0:
            raise EnvError(f"{name} must be > 0, got {value}")
    shifted = copy.deepcopy(model)
    per_body = [(i, mass_scale) for i in range(1, model.nbody)]
    per_body += _body_ids(model, body_mass_scale or {})
    for body, scale in per_body:
        if scale <= 0:
            raise EnvError(f"body mass scale must be > 0, got {scale} for body '{model.body(body).name}'")
        shifted.body_mass[body] *= scale
        shifted.body_inertia[body] *= scale
    shifted.geom_friction[:, 0] *= friction_scale
    shifted.dof_damping[:] *= damping_scale
    gain_columns, bias_columns = actuator_gain_columns(
        model.actuator_gaintype, model.actuator_gainprm.shape[1], model.actuator_biasprm.shape[1]
    )
    shifted.actuator_gainprm[gain_columns] *= actuator_gain_scale
    shifted.actuator_biasprm[bias_columns] *= actuator_gain_scale
    shifted.opt.gravity[:] *= gravity_scale
    shifted.opt.density *= fluid_density_scale
    shifted.opt.viscosity *= fluid_viscosity_scale
    mujoco.mj_setConst(shifted, mujoco.MjData(shifted))
    return shifted


_PHYSICAL_KEYS = (
    "mass_scale",
    "body_mass_scale",
    "friction_scale",
    "damping_scale",
    "actuator_gain_scale",
    "gravity_scale",
    "fluid_density_scale",
    "fluid_viscosity_scale",
)


def dynamics_shift(name: str | MjxEnv, **changes: Any) -> MjxEnv:
    """Env `name` (or a fresh copy of env instance `name`) with physical `changes` and config overrides.

    Physical keys: mass_scale, body_mass_scale={body: scale}, friction_scale, damping_scale,
    actuator_gain_scale, gravity_scale, fluid_density_scale, fluid_viscosity_scale; any other key must be a field
    of the env's config.
    """
    physical = {k: changes.pop(k) for k in list(changes) if k in _PHYSICAL_KEYS}
    if isinstance(name, MjxEnv):
        env = type(name)(name.config)
        if changes:
            env = make(_registered_name(name), config=name.config, **changes)
    else:
        env = make(name, **changes)
    env.set_mj_model(shift_model(env.mj_model, **physical))
    return env


def _registered_name(env: MjxEnv) -> str:
    from envs.registry import _REGISTRY  # local: only needed for instance + overrides

    for key, cls in _REGISTRY.items():
        if cls is type(env):
            return key
    raise EnvError(f"env class {type(env).__name__} is not registered; pass a registered env name")
