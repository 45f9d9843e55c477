"""Soft fish swimming in a channel: a flexible body of capsule segments in water (issue #9).

MJX has no flex/composite bodies and ignores the ellipsoid fluid model, so the soft body is a chain of capsule
segments joined by stiff, damped hinges (yaw), and the water is MuJoCo's inertia-box fluid model
(`<option density viscosity>`: per body, linear viscous plus quadratic drag of the body's equivalent inertia box,
which MJX applies like native MuJoCo). The head moves freely in the horizontal plane (slide x, slide y, hinge
yaw); a motor bends each of the three body joints. A slender segment meets far more drag sideways than lengthwise,
so a travelling bending wave (tail beat) pushes the fish forward. Reward: forward speed of the head along +x
(m/s) minus a small control cost. Cost 1 per step where the head is outside the channel |y| ≤ half-width.
Observation [13] (see docs/envs.md): head x, y (m), cos/sin yaw, head velocity vx, vy (m/s, world), yaw rate
(rad/s), body joint angles [3] (rad) and velocities [3] (rad/s).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jp
import mujoco
from mujoco import mjx

from envs.base import EnvConfig, MjxEnv, RenderMarker
from envs.tasks import Task

_XML = """
<mujoco model="soft_fish">
  <option timestep="0.01" gravity="0 0 0" density="{density}" viscosity="{viscosity}">
    <flag contact="disable"/>
  </option>
  <default>
    <geom type="capsule" size="0.02" density="1000" rgba=".95 .55 .2 1"/>
    <joint type="hinge" axis="0 0 1" stiffness="{stiffness}" damping="{damping}"/>
  </default>
  <worldbody>
    <light pos="0 0 4" dir="0 0 -1"/>
    <camera name="top" pos="0 0 3" xyaxes="1 0 0 0 1 0"/>
    <camera name="swim" pos="0.5 0 1.3" xyaxes="1 0 0 0 1 0"/>
    <geom name="floor" type="plane" pos="0 0 -0.1" size="8 {floor_half_width} 0.1" rgba=".6 .75 .9 1"/>
    <body name="head" pos="0 0 0">
      <joint name="x" type="slide" axis="1 0 0" stiffness="0" damping="0"/>
      <joint name="y" type="slide" axis="0 1 0" stiffness="0" damping="0"/>
      <joint name="yaw" type="hinge" axis="0 0 1" stiffness="0" damping="0"/>
      <geom name="head" fromto="0.08 0 0 0 0 0" size="0.03"/>
      <body name="segment1" pos="0 0 0">
        <joint name="bend1"/>
        <geom name="segment1" fromto="0 0 0 -0.12 0 0"/>
        <body name="segment2" pos="-0.12 0 0">
          <joint name="bend2"/>
          <geom name="segment2" fromto="0 0 0 -0.12 0 0" size="0.015"/>
          <body name="tail" pos="-0.12 0 0">
            <joint name="bend3"/>
            <geom name="peduncle" fromto="0 0 0 -0.06 0 0" size="0.01"/>
            <geom name="fin" type="box" pos="-0.09 0 0" size="0.04 0.003 0.05"/>
          </body>
        </body>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor name="bend1" joint="bend1" gear="{max_torque}" ctrllimited="true" ctrlrange="-1 1"/>
    <motor name="bend2" joint="bend2" gear="{max_torque}" ctrllimited="true" ctrlrange="-1 1"/>
    <motor name="bend3" joint="bend3" gear="{max_torque}" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""
N_BEND = 3  # body joints, each driven by a motor
CHANNEL_RGBA = (0.9, 0.25, 0.25, 0.5)


@dataclasses.dataclass(frozen=True)
class SoftFishConfig(EnvConfig):
    ctrl_dt: float = 0.02  # s (2 substeps); 1000 steps = 20 s
    # s. Drag is explicit in Euler: the fin's quadratic drag (∂a/∂v ≈ 100 s⁻¹ at 1 m/s) and the stiff joints
    # (√(k/I) ≈ 100 rad/s for the tail) stay stable at 10 ms (20 × 1000 random-action steps: joint speeds
    # ≤ 37 rad/s)
    sim_dt: float = 0.01
    episode_length: int = 1000  # steps
    cost_budget: float = 25.0  # allowed steps with the head outside the channel per episode
    channel_half_width: float = 0.5  # m; cost 1 where |head y| > this
    fluid_density: float = 1000.0  # kg/m³ (water); quadratic drag
    fluid_viscosity: float = 0.0009  # Pa·s (water at 25 °C); linear drag
    body_stiffness: float = 1.0  # N·m/rad per body joint: full torque bends a joint ≈ 0.6 rad at rest
    body_damping: float = 0.02  # N·m·s/rad per body joint (implicit in Euler)
    max_torque: float = 0.6  # N·m per driven body joint at |action| = 1
    ctrl_cost_weight: float = 0.01  # reward −= weight · mean(action²)
    init_position_noise: float = 0.02  # m; start x, y uniform in ±this
    init_heading_noise: float = 0.2  # rad; start yaw uniform in ±this
    init_bend_noise: float = 0.1  # rad; start body joint angles uniform in ±this
    # MuJoCo solver settings: no contacts, no joint limits, no equality constraints, so there are no constraint
    # rows, MJX skips the solver and these settings cannot change the physics (tests/envs/test_soft_fish.py
    # checks the trajectory equals MuJoCo's default 100/50 settings); 1/4 keep a variant with constraints fast
    solver: str = "newton"
    iterations: int = 1
    ls_iterations: int = 4
    # semi-implicit Euler (joint damping implicit); implicitfast is not implemented for fluid forces in MJX
    integrator: str = "euler"
    warmstart: bool = False  # nothing to warm-start (no constraints)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("channel_half_width", "body_stiffness", "max_torque"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in (
            "fluid_density",
            "fluid_viscosity",
            "body_damping",
            "ctrl_cost_weight",
            "init_position_noise",
            "init_heading_noise",
            "init_bend_noise",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.integrator == "implicitfast":
            raise ValueError(
                "integrator must be euler or rk4 for soft_fish (MJX has no implicitfast fluid "
                "forces), got 'implicitfast'"
            )


# observation layout (indices into the last axis; docs/envs.md)
X, Y, COS_YAW, SIN_YAW, VX, VY, YAW_RATE = range(7)
BEND = slice(7, 7 + N_BEND)
BEND_VEL = slice(7 + N_BEND, 7 + 2 * N_BEND)


def _heading_change(obs: jax.Array, next_obs: jax.Array) -> jax.Array:
    """Signed yaw change (rad, in (−π, π]) between two observations [..., 13]."""
    cross = obs[..., COS_YAW] * next_obs[..., SIN_YAW] - obs[..., SIN_YAW] * next_obs[..., COS_YAW]
    dot = obs[..., COS_YAW] * next_obs[..., COS_YAW] + obs[..., SIN_YAW] * next_obs[..., SIN_YAW]
    return jp.arctan2(cross, dot)


def make_tasks(ctrl_dt: float) -> dict[str, Task]:
    """The fish's tasks on its observation layout (env step `ctrl_dt`, s)."""

    def swim_forward(obs, action, next_obs):
        return (next_obs[..., X] - obs[..., X]) / ctrl_dt

    def turn(obs, action, next_obs):
        return _heading_change(obs, next_obs) / ctrl_dt

    def hold_station(obs, action, next_obs):
        distance = jp.sqrt(next_obs[..., X] ** 2 + next_obs[..., Y] ** 2)
        speed = jp.sqrt(next_obs[..., VX] ** 2 + next_obs[..., VY] ** 2)
        return -distance - 0.5 * speed

    return {
        "swim_forward": Task(
            "swim_forward",
            "head displacement along +x per step / ctrl_dt (m/s; about [-0.5, 0.5]): swim forward down the channel",
            swim_forward,
        ),
        "turn": Task(
            "turn",
            "heading change per step / ctrl_dt (rad/s, counter-clockwise positive; about "
            "[-3, 3]): turn on the spot or in an arc to the left",
            turn,
        ),
        "hold_station": Task(
            "hold_station",
            "−(head distance from the start point, m) − 0.5 · head speed "
            "(m/s) after the step (≤ 0): stay at the origin and keep still",
            hold_station,
        ),
    }


class SoftFish(MjxEnv[SoftFishConfig]):
    cost_description = "1 per step where the head is outside the channel (|y| > 0.5 m)"
    SHIFT_PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # syrup-like water: 3× the drag (density and viscosity), the same tail beat swims ≈ 2× slower
        "viscous_water": {"fluid_density_scale": 3.0, "fluid_viscosity_scale": 3.0},
        # a tired fish: 60 % of the bending torque
        "weak_tail": {"actuator_gain_scale": 0.6},
    }

    def __init__(self, config: SoftFishConfig):
        super().__init__(config)
        self._tasks = make_tasks(config.ctrl_dt)

    @classmethod
    def default_config(cls) -> SoftFishConfig:
        return SoftFishConfig()

    def _build_mj_model(self, config: SoftFishConfig) -> mujoco.MjModel:
        xml = _XML.format(
            density=config.fluid_density,
            viscosity=config.fluid_viscosity,
            stiffness=config.body_stiffness,
            damping=config.body_damping,
            max_torque=config.max_torque,
            floor_half_width=config.channel_half_width,
        )
        return mujoco.MjModel.from_xml_string(xml)

    def tasks(self) -> dict[str, Task]:
        return self._tasks

    @property
    def observation_groups(self) -> dict[str, slice]:
        """Head position, heading (cos, sin), head velocity (vx, vy, yaw rate), bend angles, bend velocities."""
        return {
            "head_position": slice(0, 2),
            "heading": slice(2, 4),
            "head_velocity": slice(4, 7),
            "bend_angle": slice(7, 10),
            "bend_velocity": slice(10, 13),
        }

    def _initial_qpos_qvel(self, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        cfg = self._config
        xy_rng, yaw_rng, bend_rng = jax.random.split(rng, 3)
        xy = jax.random.uniform(xy_rng, (2,), minval=-1.0, maxval=1.0) * cfg.init_position_noise
        yaw = jax.random.uniform(yaw_rng, (1,), minval=-1.0, maxval=1.0) * cfg.init_heading_noise
        bend = jax.random.uniform(bend_rng, (N_BEND,), minval=-1.0, maxval=1.0) * cfg.init_bend_noise
        return jp.concatenate([xy, yaw, bend]), jp.zeros(3 + N_BEND)

    def _observe(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        yaw = data.qpos[2]
        return jp.concatenate(
            [data.qpos[:2], jp.stack([jp.cos(yaw), jp.sin(yaw)]), data.qvel[:3], data.qpos[3:], data.qvel[3:]]
        )

    def _make_transition_cost(self):
        half_width = self._config.channel_half_width

        def cost(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
            return jp.where(jp.abs(next_obs[..., 1]) > half_width, 1.0, 0.0)  # obs[1] is the head's y

        return cost

    def _reward_and_cost(self, data: mjx.Data, action: jax.Array, info: dict[str, Any]):
        cfg = self._config
        reward = data.qvel[0] - cfg.ctrl_cost_weight * jp.mean(action**2)
        outside = jp.abs(data.qpos[1]) > cfg.channel_half_width
        return reward, jp.where(outside, 1.0, 0.0)

    def render_markers(self, info: dict[str, Any], task: Task | None = None) -> list[RenderMarker]:
        """The channel walls (red strips at y = ±half-width), and `task`'s markers."""
        w = self._config.channel_half_width
        walls = [RenderMarker("box", (8.0, 0.01, 0.002), (0.0, side * w, -0.09), CHANNEL_RGBA) for side in (-1, 1)]
        return walls + super().render_markers(info, task)
