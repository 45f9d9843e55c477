"""Musculoskeletal leg on a vertical rail: hip, knee and ankle in the sagittal plane under the pelvis, driven by
five MuJoCo muscles on fixed tendons (hip flexor, gluteus, vasti, biarticular hamstrings, soleus; activation
dynamics, force-length-velocity curves) plus an ankle motor (hybrid actuation, issue #9).

The pelvis slides vertically (no tipping); the foot is the only geom that touches the ground. Passive joint
springs (stiffness, rest angles) stand for tendons and ligaments: with relaxed muscles the leg settles in a
slight crouch. Reward: height of the pelvis above standing (×10, per m) minus a small control cost, i.e. hop.
Cost 1 per step where a joint is within `limit_margin` of its limit or the ground-reaction force (touch
sensor under the sole) exceeds `overload_force`. Observation [16] (docs/envs.md): pelvis height, joint angles
[3], pelvis velocity, joint velocities [3], toe x, z, muscle activations [5], ground-reaction force / weight.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jp
import mujoco
import numpy as np
from mujoco import mjx

from envs.base import EnvConfig, MjxEnv
from envs.tasks import Task

_XML = """
<mujoco model="muscle_leg">
  <compiler angle="radian"/>
  <option timestep="0.005"/>
  <default>
    <geom contype="0" conaffinity="0" rgba=".8 .6 .5 1"/>
    <joint type="hinge" axis="0 -1 0" limited="true" damping="{joint_damping}" armature="0.01"
           stiffness="{joint_stiffness}"/>
    <muscle ctrllimited="true" ctrlrange="0 1" timeconst="{activation_time} {deactivation_time}"/>
    <site size="0.01" rgba=".2 .2 .8 1"/>
  </default>
  <worldbody>
    <light pos="0 -2 3" dir="0 1 -1.5"/>
    <camera name="side" pos="0.1 -2.2 0.6" xyaxes="1 0 0 0 0 1"/>
    <geom name="floor" type="plane" size="2 1 0.1" conaffinity="1" rgba=".85 .85 .85 1"/>
    <body name="pelvis">
      <joint name="height" type="slide" axis="0 0 1" limited="false" damping="0" stiffness="0" armature="0"/>
      <geom name="pelvis" type="box" size="0.08 0.1 0.05" mass="{pelvis_mass}"/>
      <body name="thigh">
        <joint name="hip" range="{hip_range}" springref="{hip_rest}"/>
        <geom name="thigh" type="capsule" fromto="0 0 0 0 0 -{thigh}" size="0.05" mass="1.5"/>
        <body name="shank" pos="0 0 -{thigh}">
          <joint name="knee" axis="0 1 0" range="{knee_range}" springref="{knee_rest}"/>
          <geom name="shank" type="capsule" fromto="0 0 0 0 0 -{shank}" size="0.04" mass="0.8"/>
          <body name="foot" pos="0 0 -{shank}">
            <joint name="ankle" range="{ankle_range}" springref="{ankle_rest}"/>
            <geom name="foot" type="capsule" fromto="-0.05 0 -0.05 0.15 0 -0.05" size="0.025" mass="0.3"
                  contype="1" condim="3" rgba=".5 .4 .35 1"/>
            <site name="sole" type="box" pos="0.05 0 -0.07" size="0.14 0.05 0.04" rgba="0 0 0 0"/>
            <site name="toe" pos="0.15 0 -0.05"/>
          </body>
        </body>
      </body>
    </body>
  </worldbody>
  <tendon>
{tendons}
  </tendon>
  <actuator>
{muscles}
    <motor name="ankle_motor" joint="ankle" gear="{ankle_motor_torque}" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
  <sensor>
    <touch name="sole" site="sole"/>
  </sensor>
</mujoco>
"""
# muscle → peak isometric force at full activation, N (× the `muscle_strength` factor)
MUSCLE_FORCES = {"hip_flexor": 600.0, "gluteus": 1000.0, "vasti": 1500.0, "hamstrings": 800.0, "soleus": 1200.0}
# muscle → its fixed tendon's moment arms {joint: m}; positive on a joint = the muscle pulls that angle down
# (hip +: flexion, knee +: flexion, ankle +: dorsiflexion), so gluteus extends the hip, vasti extend the knee,
# hamstrings extend the hip and flex the knee, soleus plantarflexes the ankle
MOMENT_ARMS = {
    "hip_flexor": {"hip": -0.05},
    "gluteus": {"hip": 0.05},
    "vasti": {"knee": 0.04},
    "hamstrings": {"hip": 0.05, "knee": -0.04},
    "soleus": {"ankle": 0.05},
}
N_MUSCLES = len(MUSCLE_FORCES)
JOINT_RANGES = {"hip": (-0.5, 1.8), "knee": (0.0, 2.3), "ankle": (-0.8, 0.8)}  # rad
SOLE_DROP = 0.075  # m; ankle height above the ground when the foot is flat (0.05 offset + 0.025 radius)

# observation layout (indices into the last axis; docs/envs.md)
HEIGHT, HIP, KNEE, ANKLE, HEIGHT_VEL, HIP_VEL, KNEE_VEL, ANKLE_VEL, TOE_X, TOE_Z = range(10)
ANGLES, ANGLE_VELS = slice(1, 4), slice(5, 8)
ACTIVATIONS = slice(10, 10 + N_MUSCLES)
GRF = 10 + N_MUSCLES


@dataclasses.dataclass(frozen=True)
class MuscleLegConfig(EnvConfig):
    ctrl_dt: float = 0.02  # s (4 substeps); 1000 steps = 20 s
    # s: resolves muscle activation (time constant 15 ms·(0.5 + 1.5·act) ≥ 7.5 ms; explicit Euler jumps to the
    # command at one step per time constant) and foot impacts (contact time constant 20 ms, MuJoCo asks ≤ half)
    sim_dt: float = 0.005
    episode_length: int = 1000  # steps
    cost_budget: float = 50.0  # allowed steps near a joint limit or overloaded per episode
    limit_margin: float = 0.05  # rad; cost 1 where a joint angle is within this of its range end
    overload_force: float = 250.0  # N; cost 1 where the sole's ground-reaction force exceeds this (≈ 4.5× weight)
    pelvis_mass: float = 3.0  # kg (the carried body); leg 2.6 kg, total weight 55 N
    thigh_length: float = 0.4  # m
    shank_length: float = 0.4  # m
    muscle_strength: float = 1.0  # × every muscle's peak isometric force (MUSCLE_FORCES)
    # s, muscle activation / deactivation time constants (Thelen 2003). MuJoCo's defaults 10 / 40 ms make the
    # rise at act = 0 (10 ms · 0.5 = 5 ms) one 5 ms Euler step: activation would jump to the command at once
    activation_time: float = 0.015
    deactivation_time: float = 0.05
    ankle_motor_torque: float = 15.0  # N·m at |action| = 1 (dorsiflexion positive)
    joint_stiffness: float = 30.0  # N·m/rad, passive spring of each leg joint toward its rest angle
    joint_damping: float = 0.5  # N·m·s/rad
    rest_posture: tuple[float, float, float] = (0.3, 0.5, 0.2)  # rad, spring rest angles (hip, knee, ankle)
    # rad, hip/knee of the initial stance (the relaxed equilibrium; ankle = knee − hip keeps the foot flat)
    stance: tuple[float, float] = (0.31, 0.61)
    init_noise: float = 0.02  # rad; hip and knee of the start drawn uniform in stance ± this
    ctrl_cost_weight: float = 0.01  # reward −= weight · mean(action²)
    # MuJoCo solver settings. Rows: 2 foot contacts (pyramidal, 4 each) and 3 joint limits. Newton converges
    # on so few rows in a couple of iterations; 4 iterations with 8 line-search steps follow MuJoCo's default
    # 100/50 (tests/envs/test_muscle_leg.py) while MJX's batched solver loop stays short
    solver: str = "newton"
    iterations: int = 4
    ls_iterations: int = 8
    integrator: str = "euler"  # semi-implicit, joint damping implicit
    warmstart: bool = True  # contacts persist while standing: the last acceleration is a good start

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in (
            "limit_margin",
            "overload_force",
            "pelvis_mass",
            "thigh_length",
            "shank_length",
            "muscle_strength",
            "activation_time",
            "deactivation_time",
            "ankle_motor_torque",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("joint_stiffness", "joint_damping", "init_noise", "ctrl_cost_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if len(self.rest_posture) != 3 or len(self.stance) != 2:
            raise ValueError(
                f"rest_posture needs 3 angles and stance 2 (hip, knee), got {self.rest_posture}, {self.stance}"
            )
        hip, knee = self.stance
        angles = dict(zip(JOINT_RANGES, (hip, knee, knee - hip), strict=False))
        if not all(JOINT_RANGES[j][0] < angle < JOINT_RANGES[j][1] for j, angle in angles.items()):
            raise ValueError(f"stance (hip, knee) must be inside the joint ranges, got {self.stance}")


def stance_height(hip: jax.Array | float, knee: jax.Array | float, thigh: float, shank: float) -> jax.Array:
    """Pelvis height (m) with the foot flat on the ground for hip/knee angles (rad)."""
    return thigh * jp.cos(hip) + shank * jp.cos(hip - knee) + SOLE_DROP


def make_tasks(config: MuscleLegConfig) -> dict[str, Task]:
    """The leg's tasks on its observation layout."""
    posture = jp.asarray([*config.stance, config.stance[1] - config.stance[0]], jp.float32)
    standing = float(stance_height(*config.stance, config.thigh_length, config.shank_length))
    # toe (x, z), m: 15 cm ahead of and 7.5 cm above the toe in stance; a hip-flexor + vasti kick gets within
    # 2.5 cm (a swing of the leg while it pushes off: the foot carries the body, so a kick is a little hop)
    kick_target = jp.asarray([0.3, 0.1], jp.float32)

    def hold_posture(obs, action, next_obs):
        return -jp.sum((next_obs[..., ANGLES] - posture) ** 2, axis=-1)

    def kick(obs, action, next_obs):
        return -jp.linalg.norm(next_obs[..., TOE_X : TOE_Z + 1] - kick_target, axis=-1)

    def hop(obs, action, next_obs):
        return 10.0 * jp.maximum(next_obs[..., HEIGHT] - standing, 0.0)

    return {
        "hold_posture": Task(
            "hold_posture",
            "−Σ (joint angle − stance angle)² after the step (rad², ≤ 0; "
            "stance hip/knee/ankle from the config): stand still in the stance posture",
            hold_posture,
        ),
        "kick": Task(
            "kick",
            "−(distance of the toe from the point 0.3 m ahead, 0.1 m high) after the step (m, "
            "≤ 0, about [−0.5, 0]): swing the foot forward and up",
            kick,
        ),
        "hop": Task("hop", "10 · (pelvis height above standing, m) after the step, ≥ 0 (about [0, 2]): jump", hop),
    }


class MuscleLeg(MjxEnv[MuscleLegConfig]):
    cost_description = (
        "1 per step where a joint is within 0.05 rad of its limit or the ground-reaction force exceeds 250 N"
    )
    SHIFT_PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # fatigued or atrophied muscles: 60 % of every muscle's peak force (and the ankle motor's torque)
        "weak_muscles": {"actuator_gain_scale": 0.6},
        # a heavier carried load: 1.5× the pelvis mass (weight 55 N → 70 N)
        "heavy_load": {"body_mass_scale": {"pelvis": 1.5}},
    }

    def __init__(self, config: MuscleLegConfig):
        super().__init__(config)
        self._tasks = make_tasks(config)
        model = self._mj_model
        self._joint_low = jp.asarray(model.jnt_range[1:, 0], jp.float32)
        self._joint_high = jp.asarray(model.jnt_range[1:, 1], jp.float32)
        self._toe = model.site("toe").id
        self._weight = float(np.sum(model.body_mass) * -model.opt.gravity[2])  # N, nominal

    @classmethod
    def default_config(cls) -> MuscleLegConfig:
        return MuscleLegConfig()

    def _build_mj_model(self, config: MuscleLegConfig) -> mujoco.MjModel:
        ranges, tendons, muscles = JOINT_RANGES, [], []
        for name, force in MUSCLE_FORCES.items():
            arms = MOMENT_ARMS[name]
            tendons.append(
                f'    <fixed name="{name}">'
                + "".join(f'<joint joint="{joint}" coef="{arm}"/>' for joint, arm in arms.items())
                + "</fixed>"
            )
            # tendon length range over the joint ranges (given, so MuJoCo does not simulate to find it)
            low = sum(min(c * ranges[j][0], c * ranges[j][1]) for j, c in arms.items())
            high = sum(max(c * ranges[j][0], c * ranges[j][1]) for j, c in arms.items())
            muscles.append(
                f'    <muscle name="{name}" tendon="{name}" force="{force * config.muscle_strength}" '
                f'lengthrange="{low:.6f} {high:.6f}"/>'
            )
        hip_rest, knee_rest, ankle_rest = config.rest_posture
        xml = _XML.format(
            joint_damping=config.joint_damping,
            joint_stiffness=config.joint_stiffness,
            activation_time=config.activation_time,
            deactivation_time=config.deactivation_time,
            pelvis_mass=config.pelvis_mass,
            thigh=config.thigh_length,
            shank=config.shank_length,
            hip_rest=hip_rest,
            knee_rest=knee_rest,
            ankle_rest=ankle_rest,
            ankle_motor_torque=config.ankle_motor_torque,
            muscles="\n".join(muscles),
            tendons="\n".join(tendons),
            **{f"{joint}_range": f"{low} {high}" for joint, (low, high) in ranges.items()},
        )
        return mujoco.MjModel.from_xml_string(xml)

    def tasks(self) -> dict[str, Task]:
        return self._tasks

    @property
    def observation_groups(self) -> dict[str, slice]:
        """Pelvis height, joint angles, velocities (pelvis + joints), toe position, muscle activations, GRF."""
        return {
            "pelvis_height": slice(0, 1),
            "joint_angle": slice(1, 4),
            "velocity": slice(4, 8),
            "toe_position": slice(8, 10),
            "activation": slice(10, 15),
            "ground_force": slice(15, 16),
        }

    def _initial_qpos_qvel(self, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        cfg = self._config
        hip, knee = jp.asarray(cfg.stance) + jax.random.uniform(rng, (2,), minval=-1.0, maxval=1.0) * cfg.init_noise
        height = stance_height(hip, knee, cfg.thigh_length, cfg.shank_length) + 0.002  # 2 mm above the ground
        return jp.stack([height, hip, knee, knee - hip]), jp.zeros(4)

    def _ground_reaction(self, data: mjx.Data) -> jax.Array:
        """Normal force under the sole (N, ≥ 0): the touch sensor."""
        return data.sensordata[0]

    def _observe(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        toe = data.site_xpos[self._toe]
        return jp.concatenate(
            [data.qpos, data.qvel, toe[jp.array([0, 2])], data.act, (self._ground_reaction(data) / self._weight)[None]]
        )

    def _make_transition_cost(self):
        cfg = self._config
        low, high = self._joint_low + cfg.limit_margin, self._joint_high - cfg.limit_margin
        weight = self._weight

        def cost(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
            angles = next_obs[..., 1:4]  # hip, knee, ankle (obs[0] is the pelvis height)
            near_limit = jp.any((angles < low) | (angles > high), axis=-1)
            overload = next_obs[..., -1] * weight > cfg.overload_force  # the last obs is GRF / weight
            return jp.where(near_limit | overload, 1.0, 0.0)

        return cost

    def _reward_and_cost(self, data: mjx.Data, action: jax.Array, info: dict[str, Any]):
        cfg = self._config
        standing = stance_height(*cfg.stance, cfg.thigh_length, cfg.shank_length)
        reward = 10.0 * jp.maximum(data.qpos[0] - standing, 0.0) - cfg.ctrl_cost_weight * jp.mean(action**2)
        angles = data.qpos[1:]
        near_limit = jp.any(
            (angles < self._joint_low + cfg.limit_margin) | (angles > self._joint_high - cfg.limit_margin)
        )
        overload = self._ground_reaction(data) > cfg.overload_force
        return reward, jp.where(near_limit | overload, 1.0, 0.0)
