"""Pendulum swing-up (no constraint): a motor-driven pole starts hanging down and must be held upright.

Observation [cos θ, sin θ, θ̇ (rad/s)], θ = 0 upright. Semi-implicit Euler, 5 × 10 ms substeps per step,
no contacts (the floor is only drawn). Reward = cos-based uprightness minus a small action
cost, in [-0.1, 1] per step. Cost is always 0 (the env exists for fast tests).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jp
import mujoco
from mujoco import mjx

from envs.base import EnvConfig, MjxEnv
from envs.tasks import Task


def _swing_up(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    return (next_obs[..., 0] + 1.0) / 2.0  # uprightness (cos θ + 1) / 2 in [0, 1]


def _spin(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    return jp.tanh(next_obs[..., 2] / 5.0)  # counter-rotation (θ̇ > 0), saturating at ≈ 5 rad/s, in (-1, 1)


def _hold_horizontal(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    return 1.0 - jp.abs(next_obs[..., 0]) - 0.1 * jp.abs(next_obs[..., 2])  # cos θ = 0, still; ≤ 1


_TASKS = {
    "swing_up": Task("swing_up", "(cos θ' + 1) / 2: the pole upright after the step, in [0, 1]", _swing_up),
    "spin": Task("spin", "tanh(θ̇' / 5 rad/s): spin in the positive direction, in (-1, 1)", _spin),
    "hold_horizontal": Task(
        "hold_horizontal", "1 − |cos θ'| − 0.1·|θ̇'|: the pole held horizontal, ≤ 1", _hold_horizontal
    ),
}

_XML = """
<mujoco model="pendulum">
  <option timestep="0.01">
    <flag contact="disable"/>
  </option>
  <worldbody>
    <light pos="0 0 3" dir="0 0 -1"/>
    <geom name="floor" type="plane" size="2 2 0.1" pos="0 0 -1.2" rgba=".8 .8 .8 1"/>
    <body name="pole" pos="0 0 0">
      <joint name="hinge" type="hinge" axis="0 1 0" damping="{damping}"/>
      <geom name="pole" type="capsule" fromto="0 0 0 0 0 {length}" size="0.045" mass="{mass}" rgba=".9 .5 .1 1"/>
    </body>
  </worldbody>
  <actuator>
    <motor name="torque" joint="hinge" gear="1" ctrllimited="true" ctrlrange="-{max_torque} {max_torque}"/>
  </actuator>
</mujoco>
"""


@dataclasses.dataclass(frozen=True)
class PendulumConfig(EnvConfig):
    ctrl_dt: float = 0.05  # s
    sim_dt: float = 0.01  # s
    episode_length: int = 200  # steps (10 s)
    cost_budget: float = 0.0  # no constraint
    pole_length: float = 0.6  # m
    pole_mass: float = 1.0  # kg
    joint_damping: float = 0.05  # N·m·s/rad
    max_torque: float = 2.0  # N·m (too weak to lift directly: the pole must be swung up)
    action_cost: float = 0.1  # weight of ‖a‖² in the reward
    # MuJoCo solver settings: a free hinge without contacts has no constraint, MJX skips the solver; 1 / 4
    # (mujoco_playground's MJX setting) would only matter for a variant with a joint limit
    solver: str = "newton"
    iterations: int = 1
    ls_iterations: int = 4
    # semi-implicit Euler, damping implicit, 5 substeps of 10 ms: unchanged from every run trained so far (MJX
    # is > 3x mujoco.rollout with them, so nothing to gain from fewer substeps)
    integrator: str = "euler"
    warmstart: bool = False  # nothing to warm-start (no constraints)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("pole_length", "pole_mass", "max_torque"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.joint_damping < 0 or self.action_cost < 0:
            raise ValueError(
                f"joint_damping and action_cost must be >= 0, got {self.joint_damping}, {self.action_cost}"
            )


class Pendulum(MjxEnv[PendulumConfig]):
    cost_description = "none (cost is always 0)"
    SHIFT_PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # 1.5 kg pole: peak gravity torque 4.4 N·m vs the 2 N·m motor (nominal 2.9): more swings to get up,
        # and the motor holds it only within ±27° of upright (nominal ±43°)
        "heavy_pole": {"body_mass_scale": {"pole": 1.5}},
    }

    @classmethod
    def default_config(cls) -> PendulumConfig:
        return PendulumConfig()

    def tasks(self) -> dict[str, Task]:
        """swing_up, spin, hold_horizontal (rewards of the next observation; the same objects for every instance)."""
        return dict(_TASKS)

    def _build_mj_model(self, config: PendulumConfig) -> mujoco.MjModel:
        xml = _XML.format(
            damping=config.joint_damping, length=config.pole_length, mass=config.pole_mass, max_torque=config.max_torque
        )
        return mujoco.MjModel.from_xml_string(xml)

    def _initial_qpos_qvel(self, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        angle_rng, vel_rng = jax.random.split(rng)
        qpos = jp.pi + 0.1 * jax.random.normal(angle_rng, (1,))  # hanging down
        qvel = 0.1 * jax.random.normal(vel_rng, (1,))
        return qpos, qvel

    def _observe(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        angle = data.qpos[0]
        return jp.stack([jp.cos(angle), jp.sin(angle), data.qvel[0]])

    def _reward_and_cost(self, data: mjx.Data, action: jax.Array, info: dict[str, Any]):
        upright = (jp.cos(data.qpos[0]) + 1.0) / 2.0
        slow = 1.0 / (1.0 + 0.1 * data.qvel[0] ** 2)
        reward = upright * (0.5 + 0.5 * slow) - self._config.action_cost * jp.sum(action**2)
        return reward, jp.zeros(())
