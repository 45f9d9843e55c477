"""A 1:10 RC car on a 2-D arena (SOOPER's hardware task; ss2r `rccar`): drive to the goal at the origin past a
circular obstacle; cost = the car's kinetic energy ½·m·|v|² (J) per step inside it, budget 5 per 250 steps.

Physics is MuJoCo's, not tyre forces computed in JAX: the native twin (`envs.native`, `saferl-deploy sim`) steps
the `MjModel` with plain `mj_step`, which never sees forces applied from JAX, so the tyres are contacts. The car
is a dynamic bicycle: a chassis (slide x, y, z; hinge yaw, pitch; no roll, so statics split the load between the
axles and acceleration shifts it) on a front wheel (steering hinge with a position servo, free spin) and a rear
wheel (spin, driven by a DC motor: torque ∝ throttle, back-EMF as damping). Each wheel has one frictional contact
with an elliptic cone: the tyre force is MuJoCo's soft Coulomb friction, linear in the slip velocity at small slip
and saturated at μ·N (lateral and longitudinal together: the friction circle). Below the limit the car tracks
like a kinematic bicycle; beyond it, it slides wide, spins under power or spins its wheel. Shifts and domain
randomisation act on it unchanged: grip is geom friction, motor and steering servo are actuator gains.
Observation [7]: x, y (m), sin θ, cos θ, vx, vy (m/s, world), yaw rate (rad/s). Actions [2]: steering (±0.35 rad
+ `steering_offset`), throttle (±`motor_torque` at the rear wheel). Reward: progress towards the origin (m) + 1
per step within 0.35 m of it. The episode ends (done, `info["terminated"]`) when the car leaves the arena.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jp
import mujoco
import numpy as np
from brax.envs.base import State
from mujoco import mjx

from envs.base import EnvConfig, MjxEnv, RenderMarker
from envs.tasks import Task

_XML = """
<mujoco model="race_car">
  <compiler angle="radian" autolimits="true"/>
  <!-- elliptic cone: a friction circle the same for every heading; the pyramidal cone's capacity depends on the
       car's heading in the world (measured: turning radius at full throttle 0.49-0.83 m round one circle) -->
  <option timestep="0.005" cone="elliptic"/>
  <default>
    <geom contype="0" conaffinity="0"/>
    <joint damping="0"/>
  </default>
  <worldbody>
    <light pos="1.6 -0.4 6" dir="0 0 -1" directional="true" diffuse=".5 .5 .5"/>
    <camera name="top" pos="1.66 -0.39 6.5" xyaxes="1 0 0 0 1 0"/>
    <camera name="chase" mode="trackcom" pos="2.2 -1.6 1.2" xyaxes="0.6 0.8 0 -0.35 0.26 0.9"/>
    <!-- friction 0 and priority 1 on the tyres: a contact's friction is the tyres' (tyre_friction) -->
    <geom name="floor" type="plane" size="5 5 0.1" conaffinity="1" friction="0 0 0" rgba=".8 .8 .78 1"/>
    <body name="car" pos="0 0 {wheel_radius}">
      <joint name="x" type="slide" axis="1 0 0"/>
      <joint name="y" type="slide" axis="0 1 0"/>
      <joint name="z" type="slide" axis="0 0 1"/>
      <joint name="yaw" type="hinge" axis="0 0 1"/>
      <joint name="pitch" type="hinge" axis="0 1 0"/>
      <geom name="chassis" type="box" size="0.18 0.08 0.02" pos="0 0 0.015" mass="{chassis_mass}"
            rgba=".15 .35 .8 1"/>
      <geom name="nose" type="box" size="0.02 0.06 0.01" pos="0.17 0 0.04" mass="0" rgba=".9 .9 .9 1"/>
      <body name="steering" pos="{front_axle} 0 0">
        <joint name="steer" type="hinge" axis="0 0 1" armature="{steering_armature}"/>
        <inertial pos="0 0 0" mass="0.02" diaginertia="1e-5 1e-5 1e-5"/>
        <body name="front_wheel">
          <joint name="front_spin" type="hinge" axis="0 1 0" damping="{wheel_damping}"/>
          <geom name="front_tyre" type="sphere" size="{wheel_radius}" mass="{wheel_mass}" contype="1" condim="3"
                priority="1" friction="{tyre_friction} 0 0" rgba="0 0 0 0"/>
          <geom type="cylinder" size="{wheel_radius} 0.015" pos="0 {half_track} 0" zaxis="0 1 0" mass="0"
                rgba=".1 .1 .1 1"/>
          <geom type="cylinder" size="{wheel_radius} 0.015" pos="0 -{half_track} 0" zaxis="0 1 0" mass="0"
                rgba=".1 .1 .1 1"/>
        </body>
      </body>
      <body name="rear_wheel" pos="-{rear_axle} 0 0">
        <joint name="rear_spin" type="hinge" axis="0 1 0" damping="{motor_damping}" armature="{motor_armature}"/>
        <geom name="rear_tyre" type="sphere" size="{wheel_radius}" mass="{wheel_mass}" contype="1" condim="3"
              priority="1" friction="{tyre_friction} 0 0" rgba="0 0 0 0"/>
        <geom type="cylinder" size="{wheel_radius} 0.015" pos="0 {half_track} 0" zaxis="0 1 0" mass="0"
              rgba=".1 .1 .1 1"/>
        <geom type="cylinder" size="{wheel_radius} 0.015" pos="0 -{half_track} 0" zaxis="0 1 0" mass="0"
              rgba=".1 .1 .1 1"/>
      </body>
    </body>
  </worldbody>
  <actuator>
    <position name="steering" joint="steer" kp="{steering_kp}" kv="{steering_kv}"
              ctrlrange="{steer_low} {steer_high}"/>
    <motor name="throttle" joint="rear_spin" gear="{motor_torque}" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""
GOAL_RGBA = (0.2, 0.9, 0.2, 0.5)
OBSTACLE_RGBA = (0.9, 0.25, 0.25, 0.6)
ARENA_RGBA = (0.3, 0.3, 0.3, 0.8)
SETTLE_TIME = 1.0  # s of native simulation at construction to find the resting height and pitch


def _pair(name: str, value: Any) -> tuple[float, float]:
    """(a, b) of floats from any 2-sequence (lists from JSON or the CLI), or ValueError naming `name`."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers, got {value!r}") from None
    return a, b


@dataclasses.dataclass(frozen=True)
class RaceCarConfig(EnvConfig):
    ctrl_dt: float = 1.0 / 30.0  # s: the reference's 30 Hz
    # s, 8 substeps: contacts want sim_dt ≤ half their 20 ms time constant. Against a 1/960 s reference, 10 s of
    # random driving, full-throttle drifts and spins strayed 4.0 m at 1/120 s, 0.19 m at 1/240 s, 0.01 m at 1/480 s
    # (the spins amplify differences; after the first 100 random steps all were within 2 mm)
    sim_dt: float = 1.0 / 240.0
    episode_length: int = 250  # steps (8.3 s)
    cost_budget: float = 5.0  # allowed kinetic energy summed over the steps inside the obstacle, J
    goal_radius: float = 0.35  # m; bonus per step while the car is this close to the origin
    goal_bonus: float = 1.0  # reward per step within goal_radius
    obstacle_xy: tuple[float, float] = (0.75, -0.75)  # m, centre of the circular obstacle
    obstacle_radius: float = 0.2  # m
    arena_x: tuple[float, float] = (-0.45, 3.0)  # m, before arena_scale
    arena_y: tuple[float, float] = (-2.1, 1.5)  # m, before arena_scale
    arena_scale: float = 1.3  # the episode ends when the car leaves arena × arena_scale
    start_xy: tuple[float, float] = (1.42, -1.04)  # m; the obstacle lies on the straight line to the goal
    start_heading: float = math.pi  # rad (facing −x)
    start_position_noise: float = 0.1  # m, ± uniform per axis
    start_heading_noise: float = 0.1 * math.pi  # rad, ± uniform
    random_start: bool = False  # True: start uniform in random_start_x × random_start_y (clear of the obstacle
    random_start_x: tuple[float, float] = (1.0, 3.0)  # by 1.5 radii), heading start_heading ± π, as the
    random_start_y: tuple[float, float] = (-2.3, 1.5)  # reference samples it
    # --- the car (1:10 scale; total 1.82 kg, wheelbase 0.2 m, top speed 2.84 m/s) ---
    chassis_mass: float = 1.6  # kg (body, battery, motor, electronics)
    wheel_mass: float = 0.1  # kg per axle (two wheels and hubs)
    front_axle: float = 0.11  # m ahead of the chassis origin (≈ the centre of mass)
    rear_axle: float = 0.09  # m behind it: 55 % of the weight on the driven rear axle
    wheel_radius: float = 0.033  # m (66 mm wheels)
    half_track: float = 0.075  # m, drawn only (the bicycle model has one wheel per axle)
    tyre_friction: float = 0.8  # Coulomb μ of the tyres (rubber on a hard floor: a_lat ≤ 7.8 m/s²)
    max_steering: float = 0.35  # rad at |steering action| = 1 (20°: turning radius 0.55 m)
    steering_offset: float = 0.0  # rad, servo trim: the front wheel's angle at steering action 0
    steering_kp: float = 0.3  # N·m/rad, steering servo stiffness (≈ 0.1 s to full lock)
    steering_kv: float = 0.016  # N·m·s/rad, steering servo damping (≈ critical)
    steering_armature: float = 2e-4  # kg·m², servo and linkage inertia reflected to the steering axis
    motor_torque: float = 0.2  # N·m at the rear wheel at throttle 1 (6 N of thrust at stall)
    motor_damping: float = 0.0022  # N·m·s/rad at the rear wheel: back-EMF and drivetrain losses
    motor_armature: float = 1e-4  # kg·m², rotor inertia through the gearbox, reflected to the rear wheel
    wheel_damping: float = 1e-4  # N·m·s/rad, front wheel bearing and rolling losses
    # MuJoCo solver settings: 2 contacts (4 rows each with the elliptic cone). Newton converges in 1.5 iterations
    # on average (≤ 7 measured, full-throttle drifts included): 8/8 steps MuJoCo's 100/50 trajectory bit for bit
    solver: str = "newton"
    iterations: int = 8
    ls_iterations: int = 8
    integrator: str = "euler"  # implicitfast at 1/240 s strayed further from the reference above (7.8 m)
    warmstart: bool = True  # the contacts persist: last step's forces are a good start

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("obstacle_xy", "arena_x", "arena_y", "start_xy", "random_start_x", "random_start_y"):
            object.__setattr__(self, name, _pair(name, getattr(self, name)))
        for name in ("arena_x", "arena_y", "random_start_x", "random_start_y"):
            low, high = getattr(self, name)
            if not low < high:
                raise ValueError(f"{name} must be (low, high) with low < high, got {(low, high)}")
        for name in (
            "goal_radius",
            "obstacle_radius",
            "arena_scale",
            "chassis_mass",
            "wheel_mass",
            "front_axle",
            "rear_axle",
            "wheel_radius",
            "half_track",
            "tyre_friction",
            "max_steering",
            "steering_kp",
            "steering_kv",
            "steering_armature",
            "motor_torque",
            "motor_damping",
            "motor_armature",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("goal_bonus", "start_position_noise", "start_heading_noise", "wheel_damping"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not abs(self.steering_offset) < self.max_steering:
            raise ValueError(
                f"steering_offset must be within ±max_steering = ±{self.max_steering} rad, got {self.steering_offset}"
            )
        if not self.max_steering + abs(self.steering_offset) < 1.0:
            raise ValueError(
                f"max_steering + |steering_offset| must be < 1 rad, got {self.max_steering} + "
                f"{abs(self.steering_offset)}"
            )


class RaceCar(MjxEnv[RaceCarConfig]):
    cost_description = "the car's kinetic energy ½·m·|v|² (J) per step inside the obstacle (r = 0.2 m)"
    SHIFT_PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # a dusty or polished floor: μ 0.8 → 0.4; the grip limit (3.9 m/s² sideways) is reached at full lock from
        # 1.5 m/s: at 1.6 m/s the car turns on 0.66 m instead of 0.56 m, full throttle in a turn spins it
        "low_grip": {"friction_scale": 0.5},
        # a 0.8 kg payload on the chassis (2.62 kg in all): 0.90 m/s after 0.5 s of full throttle instead of 1.18;
        # each step inside the obstacle costs 1.44x as much at the same speed
        "heavy_car": {"body_mass_scale": {"car": 1.5}},
        # a tired battery: drive torque and steering servo × 0.6; top speed 2.84 → 1.71 m/s, slower steering
        "weak_motor": {"actuator_gain_scale": 0.6},
        # a knocked steering servo: the front wheel sits 0.05 rad off centre at action 0 (≈ 0.75 rad of yaw in 3 s
        # of straight-ahead driving); a config field, not a model scale (`make_training_env` applies both kinds)
        "steering_offset": {"steering_offset": 0.05},
    }
    # A steering offset (servo trim) is no scaling of the model, which is all a preset can express (presets are
    # `shift_model` arguments); it is the config field `steering_offset`: `dynamics_shift("race_car",
    # steering_offset=0.05)` or `--set-env steering_offset=0.05`.

    @classmethod
    def default_config(cls) -> RaceCarConfig:
        return RaceCarConfig()

    def _build_mj_model(self, config: RaceCarConfig) -> mujoco.MjModel:
        c = config
        xml = _XML.format(
            wheel_radius=c.wheel_radius,
            chassis_mass=c.chassis_mass,
            front_axle=c.front_axle,
            rear_axle=c.rear_axle,
            steering_armature=c.steering_armature,
            wheel_damping=c.wheel_damping,
            wheel_mass=c.wheel_mass,
            tyre_friction=c.tyre_friction,
            half_track=c.half_track,
            motor_damping=c.motor_damping,
            motor_armature=c.motor_armature,
            steering_kp=c.steering_kp,
            steering_kv=c.steering_kv,
            steer_low=c.steering_offset - c.max_steering,
            steer_high=c.steering_offset + c.max_steering,
            motor_torque=c.motor_torque,
        )
        return mujoco.MjModel.from_xml_string(xml)

    def set_mj_model(self, mj_model: mujoco.MjModel) -> None:
        """Use `mj_model`; also finds the car's resting height and pitch on it (the start of every episode)."""
        super().set_mj_model(mj_model)
        data = mujoco.MjData(mj_model)
        mujoco.mj_step(mj_model, data, nstep=int(round(SETTLE_TIME / mj_model.opt.timestep)))
        self._rest_height, self._rest_pitch = float(data.qpos[2]), float(data.qpos[4])

    # ---- MjxEnv hooks -------------------------------------------------------------------------
    def _start_pose(self, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Start position [2] (m) and heading [] (rad)."""
        cfg = self._config
        position_rng, heading_rng = jax.random.split(rng)
        if cfg.random_start:  # the first of 16 uniform candidates clear of the obstacle by 1.5 radii
            low = jp.array([cfg.random_start_x[0], cfg.random_start_y[0]])
            high = jp.array([cfg.random_start_x[1], cfg.random_start_y[1]])
            candidates = jax.random.uniform(position_rng, (16, 2), minval=low, maxval=high)
            clear = jp.linalg.norm(candidates - jp.array(cfg.obstacle_xy), axis=-1) > 1.5 * cfg.obstacle_radius
            xy = candidates[jp.argmax(clear)]
            spread = jp.pi
        else:
            noise = cfg.start_position_noise
            xy = jp.array(cfg.start_xy) + jax.random.uniform(position_rng, (2,), minval=-noise, maxval=noise)
            spread = cfg.start_heading_noise
        heading = cfg.start_heading + jax.random.uniform(heading_rng, (), minval=-spread, maxval=spread)
        return xy, heading

    def _initial_qpos_qvel(self, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        xy, heading = self._start_pose(rng)
        # qpos: x, y, z, yaw, pitch, steer, front spin, rear spin; at rest on its wheels
        qpos = jp.concatenate(
            [xy, jp.array([self._rest_height]), heading[None], jp.array([self._rest_pitch]), jp.zeros(3)]
        )
        return qpos, jp.zeros(self._mj_model.nv)

    def _init_info(self, rng: jax.Array, data: mjx.Data) -> dict[str, Any]:
        return {"goal_dist": jp.linalg.norm(data.qpos[:2]), "terminated": jp.zeros(())}

    def _observe(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        yaw = data.qpos[3]
        return jp.stack(
            [data.qpos[0], data.qpos[1], jp.sin(yaw), jp.cos(yaw), data.qvel[0], data.qvel[1], data.qvel[3]]
        )

    def car_mass(self) -> jax.Array:
        """Total mass of the car (kg) in the model being stepped (randomised or shifted ones included)."""
        return jp.sum(self.sys.body_mass[1:])

    def _reward_and_cost(self, data: mjx.Data, action: jax.Array, info: dict[str, Any]):
        cfg = self._config
        xy = data.qpos[:2]
        goal_dist = jp.linalg.norm(xy)
        reward = info["goal_dist"] - goal_dist + cfg.goal_bonus * (goal_dist <= cfg.goal_radius)
        inside = jp.linalg.norm(xy - jp.array(cfg.obstacle_xy)) < cfg.obstacle_radius
        kinetic_energy = 0.5 * self.car_mass() * (data.qvel[0] ** 2 + data.qvel[1] ** 2)
        return reward, jp.where(inside, kinetic_energy, 0.0)

    def _update_info(self, data: mjx.Data, info: dict[str, Any]) -> dict[str, Any]:
        info.update(goal_dist=jp.linalg.norm(data.qpos[:2]), terminated=self.outside_arena(data.qpos[:2]))
        return info

    def outside_arena(self, xy: jax.Array) -> jax.Array:
        """1.0 where position(s) `xy` [..., 2] (m) lie outside the arena × arena_scale, else 0.0."""
        cfg = self._config
        (x_low, x_high), (y_low, y_high) = cfg.arena_x, cfg.arena_y
        s = cfg.arena_scale
        inside = (
            (xy[..., 0] >= s * x_low)
            & (xy[..., 0] <= s * x_high)
            & (xy[..., 1] >= s * y_low)
            & (xy[..., 1] <= s * y_high)
        )
        return jp.where(inside, 0.0, 1.0)

    def step(self, state: State, action: jax.Array) -> State:
        """The base step; the episode also ends (done = 1) once the car has left the arena
        (`info["terminated"]`, which the simulated robot of `saferl-deploy sim` reads too)."""
        state = super().step(state, action)
        return state.replace(done=jp.maximum(state.done, state.info["terminated"]))

    def render_markers(self, info: dict[str, Any], task: Task | None = None) -> list[RenderMarker]:
        """The goal disc (green), the obstacle (red) and the arena's edge (grey), flat on the floor."""
        cfg = self._config
        markers = (
            super().render_markers(info, task)
            if task is not None
            else [RenderMarker("cylinder", (cfg.goal_radius, 0.002, 0.0), (0.0, 0.0, 0.002), GOAL_RGBA)]
        )
        ox, oy = cfg.obstacle_xy
        markers.append(RenderMarker("cylinder", (cfg.obstacle_radius, 0.003, 0.0), (ox, oy, 0.003), OBSTACLE_RGBA))
        (x_low, x_high), (y_low, y_high) = (
            np.multiply(cfg.arena_scale, cfg.arena_x),
            np.multiply(cfg.arena_scale, cfg.arena_y),
        )
        cx, cy, w = (x_low + x_high) / 2, (y_low + y_high) / 2, 0.01  # m; w: half-width of the edge lines
        hx, hy = (x_high - x_low) / 2, (y_high - y_low) / 2
        for pos, size in (
            ((cx, y_low), (hx, w)),
            ((cx, y_high), (hx, w)),
            ((x_low, cy), (w, hy)),
            ((x_high, cy), (w, hy)),
        ):
            markers.append(RenderMarker("box", (size[0], size[1], 0.002), (pos[0], pos[1], 0.002), ARENA_RGBA))
        return markers
