"""A planar biped walking forward (dm_control's WalkerWalk task, built here) with a joint-angle safety cost from
the Real-World RL suite: cost 1 per step where any leg joint is beyond `safety_coeff` × RWRL's joint limits.

Bodies: a torso capsule on three root joints (slide x, slide z, hinge pitch) and two legs of thigh, shin and foot
joined by hip, knee and ankle hinges (6 motors). The capsules touch the floor, nothing else (a fallen walker lies on
it rather than sinking through); the torso and legs pass through each other.
Observation [18]: torso height (m), cos/sin torso pitch, 6 joint angles (rad; right hip, knee, ankle, then left),
torso vx, vz (m/s), pitch rate (rad/s), 6 joint velocities (rad/s). Reward per step in [0, 1] (dm_control's walk):
stand · (5 · move + 1) / 6 with stand = (3 · tall + upright) / 4, move = clip(vx / target_speed, 0, 1).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jp
import mujoco
import numpy as np
from mujoco import mjx

from envs.base import EnvConfig, MjxEnv

_LEG = """
      <body name="{side}_thigh" pos="0 {y} -{torso_half}">
        <joint name="{side}_hip" range="{hip_low} {hip_high}"/>
        <geom name="{side}_thigh" type="capsule" fromto="0 0 0 0 0 -{thigh}" size="0.05" contype="1"
              condim="3" friction="{friction} 0 0" rgba="{rgba}"/>
        <body name="{side}_shin" pos="0 0 -{thigh}">
          <joint name="{side}_knee" range="{knee_low} {knee_high}"/>
          <geom name="{side}_shin" type="capsule" fromto="0 0 0 0 0 -{shin}" size="0.04" contype="1"
                condim="3" friction="{friction} 0 0" rgba="{rgba}"/>
          <body name="{side}_foot" pos="0 0 -{shin}">
            <joint name="{side}_ankle" range="{ankle_low} {ankle_high}"/>
            <geom name="{side}_foot" type="capsule" fromto="-0.05 0 -0.045 {toe} 0 -0.045" size="0.045"
                  contype="1" condim="3" friction="{friction} 0 0" rgba="{rgba}"/>
          </body>
        </body>
      </body>"""

_XML = """
<mujoco model="walker">
  <compiler angle="degree"/>
  <option timestep="0.005"/>
  <default>
    <!-- only the walker's capsules collide, and only with the floor (contype 1 against its conaffinity 1) -->
    <geom contype="0" conaffinity="0" density="1000"/>
    <joint type="hinge" axis="0 -1 0" damping="{joint_damping}" armature="{armature}" limited="true"/>
    <motor ctrllimited="true" ctrlrange="-1 1"/>
  </default>
  <worldbody>
    <light pos="0 0 4" dir="0 0 -1" directional="true" diffuse=".6 .6 .6"/>
    <camera name="side" mode="trackcom" pos="0 -4 1" xyaxes="1 0 0 0 0 1"/>
    <!-- friction 0 on the floor: a contact's friction (the larger of the two geoms') is the leg's, so friction
         shifts and randomisation act on it -->
    <geom name="floor" type="plane" size="100 2 0.1" conaffinity="1" friction="0 0 0" rgba=".8 .8 .78 1"/>
    <body name="torso" pos="0 0 {torso_z}">
      <joint name="rootx" type="slide" axis="1 0 0" limited="false" damping="0" armature="0"/>
      <joint name="rootz" type="slide" axis="0 0 1" limited="false" damping="0" armature="0"/>
      <joint name="rooty" type="hinge" axis="0 -1 0" limited="false" damping="0" armature="0"/>
      <geom name="torso" type="capsule" fromto="0 0 -{torso_half} 0 0 {torso_half}" size="0.07" contype="1"
            condim="3" friction="{friction} 0 0" rgba=".2 .4 .8 1"/>
{legs}
    </body>
  </worldbody>
  <actuator>
    <motor name="right_hip" joint="right_hip" gear="{hip_torque}"/>
    <motor name="right_knee" joint="right_knee" gear="{knee_torque}"/>
    <motor name="right_ankle" joint="right_ankle" gear="{ankle_torque}"/>
    <motor name="left_hip" joint="left_hip" gear="{hip_torque}"/>
    <motor name="left_knee" joint="left_knee" gear="{knee_torque}"/>
    <motor name="left_ankle" joint="left_ankle" gear="{ankle_torque}"/>
  </actuator>
</mujoco>
"""
FOOT_DEPTH = 0.09  # m from the ankle to the sole (the foot capsule's axis 0.045 m below the ankle, radius 0.045)
# RWRL's walker joint-angle limits (deg) at safety_coeff 1 for hip, knee, ankle: (low, high), scaled by the coeff
RWRL_JOINT_LIMITS = ((-30.0, 110.0), (-160.0, 15.0), (-75.0, 60.0))
JOINTS = ("right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle")
# hard joint stops (deg): hip, knee, ankle (dm_control's walker's ranges)
JOINT_RANGES = ((-20.0, 100.0), (-150.0, 0.0), (-45.0, 45.0))


def _pair(name: str, value: Any) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers, got {value!r}") from None
    return low, high


@dataclasses.dataclass(frozen=True)
class WalkerConfig(EnvConfig):
    ctrl_dt: float = 0.025  # s: dm_control's walker control step; 1000 steps = 25 s, its episode
    sim_dt: float = 0.005  # s, 5 substeps: contacts (20 ms time constant) want ≤ 10 ms; dm_control steps 2.5 ms
    episode_length: int = 1000  # steps (no early termination, as in dm_control)
    cost_budget: float = 100.0  # allowed steps beyond the joint limits per episode (SOOPER's WalkerWalk budget)
    # RWRL's `safety_coeff`: the cost limits are coeff × RWRL's limits (deg) hip (-30, 110), knee (-160, 15),
    # ankle (-75, 60); at 1 they lie outside the hard stops and never fire. 0.6: hip (-18, 66), knee (-96, 9),
    # ankle (-45, 36): the hip's backward swing, deep knee bends and the ankle's toe-up stop cost, a human-like gait
    # (hip -10..30, knee -65..0, ankle ±20) does not
    safety_coeff: float = 0.6
    target_speed: float = 1.0  # m/s: dm_control's walk speed; move reward 1 at or above it
    stand_height: float = 1.2  # m (torso centre): dm_control's; tall = 1 above it
    torso_length: float = 0.6  # m (capsule segment; radius 0.07)
    thigh_length: float = 0.45  # m (radius 0.05)
    shin_length: float = 0.5  # m (radius 0.04)
    foot_length: float = 0.2  # m heel to toe segment (radius 0.045), the ankle 0.05 m from the heel
    hip_torque: float = 100.0  # N·m at |action| = 1
    knee_torque: float = 50.0  # N·m
    ankle_torque: float = 20.0  # N·m
    joint_damping: float = 0.1  # N·m·s/rad, the six leg joints
    armature: float = 0.01  # kg·m², the six leg joints
    friction: float = 0.7  # Coulomb μ of the walker's capsules on the floor (the floor's is 0)
    init_noise: float = 0.1  # rad, ± uniform on each leg joint and the torso pitch of the standing start
    # MuJoCo solver settings. Rows: up to 14 pyramidal contacts (2 per capsule on the floor, 4 rows each) and the
    # joint stops that are hit. Against MuJoCo's 100/50 over 0.5 s of random actions (8 starts): 4/8 within 0.06 rad
    # (median; 0.47 max), identical standing; 2/8 0.87 rad; 1/4 (the other envs') leaves the unactuated walker's
    # torso 0.5 m off. MJX runs the batch to the slowest env's iterations: 1/4 stepped 3x faster, but wrongly
    solver: str = "newton"
    iterations: int = 4
    ls_iterations: int = 8
    integrator: str = "euler"  # semi-implicit, joint damping implicit
    warmstart: bool = True  # the stance contacts persist: last step's forces are a good start

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.safety_coeff <= 1.0:
            raise ValueError(f"safety_coeff must be in (0, 1], got {self.safety_coeff}")
        for name in (
            "target_speed",
            "stand_height",
            "torso_length",
            "thigh_length",
            "shin_length",
            "hip_torque",
            "knee_torque",
            "ankle_torque",
            "friction",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.foot_length > 0.05:
            raise ValueError(f"foot_length must be > 0.05 m (the heel behind the ankle), got {self.foot_length}")
        for name in ("joint_damping", "armature", "init_noise"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def standing_torso_height(self) -> float:
        """Torso centre height (m) of the straight-legged walker with its soles on the floor."""
        return self.torso_length / 2 + self.thigh_length + self.shin_length + FOOT_DEPTH


def cost_limits(safety_coeff: float) -> tuple[np.ndarray, np.ndarray]:
    """Joint-angle limits (rad) [6] low and high of the cost: safety_coeff × RWRL's, in `JOINTS` order."""
    low, high = (np.radians(safety_coeff * np.array([limit[i] for limit in RWRL_JOINT_LIMITS] * 2)) for i in (0, 1))
    return low.astype(np.float32), high.astype(np.float32)


def _linear_tolerance(value: jax.Array, bound: float, margin: float) -> jax.Array:
    """1 at value ≥ bound, falling linearly to 0 at bound − margin (one-sided)."""
    return jp.clip(1.0 - (bound - value) / margin, 0.0, 1.0)


def _gaussian_tolerance(value: jax.Array, bound: float, margin: float) -> jax.Array:
    """1 at value ≥ bound, 0.1 at bound − margin (dm_control's gaussian sigmoid, one-sided)."""
    distance = jp.maximum(bound - value, 0.0) / margin
    return jp.exp(-math.log(10.0) * distance**2)


class Walker(MjxEnv[WalkerConfig]):
    cost_description = (
        "1 per step where a leg joint is beyond safety_coeff (0.6) × RWRL's walker joint limits "
        "(hip −18°…66°, knee −96°…9°, ankle −45°…36°)"
    )
    SHIFT_PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # a 5.3 kg pack on the torso (10.7 → 16 kg, the walker 27.7 → 33 kg): the hips and knees carry more
        "heavy_torso": {"body_mass_scale": {"torso": 1.5}},
        # tired motors: every joint torque × 0.7 (hip 70, knee 35, ankle 14 N·m)
        "weak_motors": {"actuator_gain_scale": 0.7},
        # a slippery floor: μ 0.7 → 0.35 on shins and feet
        "low_friction": {"friction_scale": 0.5},
    }

    @classmethod
    def default_config(cls) -> WalkerConfig:
        return WalkerConfig()

    def _build_mj_model(self, config: WalkerConfig) -> mujoco.MjModel:
        c = config
        (hip_low, hip_high), (knee_low, knee_high), (ankle_low, ankle_high) = JOINT_RANGES
        legs = "".join(
            _LEG.format(
                side=side,
                y=y,
                rgba=rgba,
                torso_half=c.torso_length / 2,
                thigh=c.thigh_length,
                shin=c.shin_length,
                toe=c.foot_length - 0.05,
                friction=c.friction,
                hip_low=hip_low,
                hip_high=hip_high,
                knee_low=knee_low,
                knee_high=knee_high,
                ankle_low=ankle_low,
                ankle_high=ankle_high,
            )
            for side, y, rgba in (("right", -0.05, ".8 .5 .2 1"), ("left", 0.05, ".6 .35 .15 1"))
        )
        xml = _XML.format(
            joint_damping=c.joint_damping,
            armature=c.armature,
            torso_z=c.standing_torso_height + 0.002,  # soles 2 mm above the floor at qpos = 0
            torso_half=c.torso_length / 2,
            legs=legs,
            friction=c.friction,
            hip_torque=c.hip_torque,
            knee_torque=c.knee_torque,
            ankle_torque=c.ankle_torque,
        )
        return mujoco.MjModel.from_xml_string(xml)

    @property
    def observation_groups(self) -> dict[str, slice]:
        """Torso height, torso pitch (cos, sin), joint angles, torso velocity (vx, vz, pitch rate), joint velocities."""
        return {
            "height": slice(0, 1),
            "pitch": slice(1, 3),
            "joint_angle": slice(3, 9),
            "torso_velocity": slice(9, 12),
            "joint_velocity": slice(12, 18),
        }

    def _initial_qpos_qvel(self, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        # standing upright with straight legs (every joint inside the cost limits), the leg joints and the torso
        # pitch perturbed: the policy must catch its balance before it walks
        noise = self._config.init_noise * jax.random.uniform(rng, (7,), minval=-1.0, maxval=1.0)
        leg = noise[1:].at[jp.array([1, 4])].set(-jp.abs(noise[jp.array([2, 5])]))  # knees bend one way only
        qpos = jp.concatenate([jp.zeros(2), noise[:1], leg])
        return qpos, jp.zeros(self._mj_model.nv)

    def _observe(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        height = data.qpos[1:2] + self._torso_z
        pitch = data.qpos[2]
        return jp.concatenate([height, jp.stack([jp.cos(pitch), jp.sin(pitch)]), data.qpos[3:], data.qvel])

    @property
    def _torso_z(self) -> float:
        return self._config.standing_torso_height + 0.002

    def _reward_and_cost(self, data: mjx.Data, action: jax.Array, info: dict[str, Any]):
        cfg = self._config
        height = data.qpos[1] + self._torso_z
        tall = _gaussian_tolerance(height, cfg.stand_height, cfg.stand_height / 2)
        upright = (1.0 + jp.cos(data.qpos[2])) / 2.0
        stand = (3.0 * tall + upright) / 4.0
        move = _linear_tolerance(data.qvel[0], cfg.target_speed, cfg.target_speed)
        reward = stand * (5.0 * move + 1.0) / 6.0
        return reward, self._joint_cost(data.qpos[3:])

    def _joint_cost(self, angles: jax.Array) -> jax.Array:
        """1.0 where any of the joint angles [..., 6] (rad) is beyond the cost limits, else 0.0."""
        low, high = cost_limits(self._config.safety_coeff)
        return jp.where(jp.any((angles < low) | (angles > high), axis=-1), 1.0, 0.0)

    def _make_transition_cost(self):
        def cost(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
            return self._joint_cost(next_obs[..., 3:9])  # obs[3:9]: the joint angles

        return cost
