"""Ultrasound probe on an actuated mount pressing on a compliant body: the shared base of the us_* tasks (#10).

The probe body carries six joints on one mount (slide x, y, z in the world frame, then hinges tilting about x and
y and rolling about the probe axis, all pivoting at the centre of the probe face) driven by position servos: an
action in [-1, 1] per joint is the servo's target pose (docs/envs.md). The mount carries the probe's weight
(gravity compensation), so whatever presses on the body is the z servo. The patient's body is a box of the
phantom's size whose top face z = 0 is the skin; the probe (a capsule face) touches it through a soft contact
(solref/solimp: ≈ 2.8 kN/m, 20 N at ≈ 7 mm indentation), and the contact normal force is MuJoCo's constraint
force, read by a touch sensor on the probe (MJX computes it from `efc_force` of the contact rows).
Safety cost 1 per step where the force exceeds `force_limit` or the tilt from vertical exceeds `tilt_limit`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, TypeVar

import jax
import jax.numpy as jp
import mujoco
import numpy as np
from brax.envs.base import State
from mujoco import mjx

from envs.base import EnvConfig, MjxEnv
from envs.ultrasound import bmode, phantom

OBSERVATIONS = ("state", "pixels")
PROBE_MASS = 0.4  # kg: the probe (0.3) and its handle (0.1)

_XML = """
<mujoco model="ultrasound_probe">
  <option gravity="0 0 -9.81"/>
  <worldbody>
    <light pos="0 0 0.6" dir="0 0 -1"/>
    <camera name="side" pos="0 -0.45 0.2" xyaxes="1 0 0 0 0.4 1"/>
    <geom name="body" type="box" pos="0 0 {body_z}" size="{half_x} {half_y} {half_z}" rgba=".93 .76 .65 1"
          contype="0" conaffinity="0"/>
    <geom name="skin" type="plane" size="{half_x} {half_y} 0.01" rgba=".93 .76 .65 1" condim="1"
          solref="{timeconst} 1" solimp="{impedance} {impedance} 0.001 0.5 2"/>
    <body name="probe" pos="0 0 0" gravcomp="1">
      <joint name="x" type="slide" axis="1 0 0" armature="{mount_mass}"/>
      <joint name="y" type="slide" axis="0 1 0" armature="{mount_mass}"/>
      <joint name="z" type="slide" axis="0 0 1" armature="{mount_mass}"/>
      <joint name="tilt_x" type="hinge" axis="1 0 0" armature="{mount_inertia}"/>
      <joint name="tilt_y" type="hinge" axis="0 1 0" armature="{mount_inertia}"/>
      <joint name="roll" type="hinge" axis="0 0 1" armature="{mount_inertia}"/>
      <geom name="face" type="capsule" fromto="-0.02 0 0.01 0.02 0 0.01" size="0.01" mass="0.3" condim="1"
            rgba=".25 .3 .4 1"/>
      <geom name="handle" type="box" pos="0 0 0.06" size="0.012 0.006 0.04" mass="0.1" rgba=".3 .35 .45 1"
            contype="0" conaffinity="0"/>
      <site name="face" pos="0 0 0" size="0.002"/>
      <site name="touch" type="box" pos="0 0 0.01" size="0.04 0.02 0.025" rgba="0 0 0 0"/>
      {tool}
    </body>
  </worldbody>
  <actuator>
    <position name="x" joint="x" kp="{kp_t}" kv="{kv_t}" ctrlrange="{xy_x}"/>
    <position name="y" joint="y" kp="{kp_t}" kv="{kv_t}" ctrlrange="{xy_y}"/>
    <position name="z" joint="z" kp="{kp_t}" kv="{kv_t}" ctrlrange="{z_range}"/>
    <position name="tilt_x" joint="tilt_x" kp="{kp_r}" kv="{kv_r}" ctrlrange="{tilt_range}"/>
    <position name="tilt_y" joint="tilt_y" kp="{kp_r}" kv="{kv_r}" ctrlrange="{tilt_range}"/>
    <position name="roll" joint="roll" kp="{kp_r}" kv="{kv_r}" ctrlrange="{roll_range}"/>
    {tool_actuator}
  </actuator>
  <sensor>
    <touch name="contact_force" site="touch"/>
  </sensor>
</mujoco>
"""


@dataclasses.dataclass(frozen=True)
class ProbeConfig(EnvConfig):
    ctrl_dt: float = 0.1  # s (10 substeps): 10 Hz pose commands
    # s; the stiffest mode (z servo + skin, ≈ 45 rad/s) is well resolved (ω·dt ≈ 0.45)
    sim_dt: float = 0.01
    episode_length: int = 200  # steps (20 s)
    cost_budget: float = 10.0  # allowed unsafe steps per episode (tasks override)
    # one frictionless (condim 1) contact pair, 2 rows: Newton converges in 1-2 iterations
    solver: str = "newton"
    iterations: int = 4
    ls_iterations: int = 8
    integrator: str = "implicitfast"  # the servos' damping (kv) implicit
    phantom_seed: int = 0  # anatomy seed (envs.ultrasound.phantom)
    phantom_preset: str = "abdomen"  # abdomen | spine | thin
    phantom_shape: tuple[int, int, int] = (64, 64, 40)  # voxels x, y, z
    voxel_size: float = 0.0025  # m; the default body is 16 × 16 × 10 cm
    observation: str = "state"  # "state": flat vector; "pixels": {"image": [H, W, 1], "state": [d]}
    image_height: int = 64  # B-mode samples per beam (envs.ultrasound.bmode.BModeConfig.height)
    image_width: int = 64  # B-mode beams
    image_geometry: str = "linear"  # linear | fan
    image_depth: float = 0.08  # m, imaging depth
    force_limit: float = 20.0  # N; cost where the contact force exceeds it
    tilt_limit: float = 0.5  # rad; cost where the probe axis tilts further than this from vertical
    tissue_timeconst: float = 0.1  # s, skin contact solref time constant (≥ 2 sim_dt)
    tissue_impedance: float = 0.5  # skin contact solimp impedance in (0, 1): lower is softer
    press_depth: float = 0.04  # m; lowest z target below the skin (the servo then presses ≈ 29 N)
    lift_height: float = 0.05  # m; highest z target above the skin
    scan_margin: float = 0.01  # m; x/y targets stay this far inside the body's edges
    max_tilt_command: float = 0.6  # rad; tilt targets about x and about y in ±this
    max_roll_command: float = 2.0  # rad; roll target about the probe axis in ±this
    translation_stiffness: float = 1000.0  # N/m, x/y/z servo gain (damping critical)
    rotation_stiffness: float = 1.0  # N·m/rad, tilt/roll servo gain (damping critical)
    mount_mass: float = 1.0  # kg, moving mass of the mount per slide (armature)
    mount_inertia: float = 0.01  # kg·m², mount inertia per hinge (armature)
    start_height: tuple[float, float] = (0.005, 0.03)  # m; episode start: face height above the skin
    start_tilt: float = 0.2  # rad; episode start: tilts uniform in ±this

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.observation not in OBSERVATIONS:
            raise ValueError(f"observation must be one of {list(OBSERVATIONS)}, got {self.observation!r}")
        try:
            self.phantom_config()
        except ValueError as err:
            raise ValueError(f"phantom_seed/phantom_preset/phantom_shape/voxel_size: {err}") from None
        try:
            self.bmode_config()
        except ValueError as err:
            raise ValueError(f"image_height/image_width/image_geometry/image_depth: {err}") from None
        for name in (
            "force_limit",
            "tilt_limit",
            "tissue_timeconst",
            "press_depth",
            "lift_height",
            "max_tilt_command",
            "max_roll_command",
            "translation_stiffness",
            "rotation_stiffness",
            "mount_mass",
            "mount_inertia",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        for name in ("scan_margin", "start_tilt"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.tilt_limit >= math.pi / 2:
            raise ValueError(f"tilt_limit must be in (0, π/2) rad, got {self.tilt_limit}")
        if not 0 < self.tissue_impedance < 1:
            raise ValueError(f"tissue_impedance must be in (0, 1), got {self.tissue_impedance}")
        if self.tissue_timeconst < 2 * self.sim_dt - 1e-12:
            raise ValueError(
                f"tissue_timeconst must be >= 2 · sim_dt = {2 * self.sim_dt} s (MuJoCo's stable "
                f"minimum), got {self.tissue_timeconst}"
            )
        heights = tuple(self.start_height) if isinstance(self.start_height, (tuple, list)) else ()
        numeric = len(heights) == 2 and all(isinstance(h, (int, float)) and not isinstance(h, bool) for h in heights)
        low, high = heights if numeric else (math.nan, math.nan)
        if not 0 <= low <= high <= self.lift_height:
            raise ValueError(
                f"start_height must be (low, high) m with 0 <= low <= high <= lift_height "
                f"({self.lift_height}), got {self.start_height!r}"
            )
        if self.start_tilt > self.max_tilt_command:
            raise ValueError(f"start_tilt must be <= max_tilt_command ({self.max_tilt_command}), got {self.start_tilt}")
        object.__setattr__(self, "start_height", (float(low), float(high)))

    def phantom_config(self) -> phantom.PhantomConfig:
        return phantom.PhantomConfig(
            seed=self.phantom_seed,
            preset=self.phantom_preset,
            shape=self.phantom_shape,  # PhantomConfig checks it and makes it a tuple of 3 ints
            voxel_size=self.voxel_size,
        )

    def bmode_config(self) -> bmode.BModeConfig:
        return bmode.BModeConfig(
            height=self.image_height, width=self.image_width, geometry=self.image_geometry, depth=self.image_depth
        )


def quat_to_rotation(quat: jax.Array) -> jax.Array:
    """Unit quaternion [4] (w, x, y, z) → rotation matrix [3, 3] (columns: local axes in world coordinates)."""
    w, x, y, z = quat[0], quat[1], quat[2], quat[3]
    return jp.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotation_6d(rotation: jax.Array) -> jax.Array:
    """[3, 3] → [6]: the first two columns (a continuous orientation code, Zhou et al. 2019)."""
    return jp.concatenate([rotation[:, 0], rotation[:, 1]])


def tilt_angle(rotation: jax.Array) -> jax.Array:
    """Angle (rad, [0, π]) between the probe axis (local z) and the world vertical."""
    return jp.arccos(jp.clip(rotation[2, 2], -1.0, 1.0))


def rotation_angle(rotation_a: jax.Array, rotation_b: jax.Array) -> jax.Array:
    """Geodesic angle (rad, [0, π]) between two rotations [3, 3]."""
    cos = (jp.sum(rotation_a * rotation_b) - 1.0) / 2.0
    return jp.arccos(jp.clip(cos, -1.0, 1.0))


def _critical_damping(stiffness: float, inertia: float) -> float:
    return 2.0 * math.sqrt(stiffness * inertia)


#: a probe task's config type (the parameter of `ProbeEnv`)
ProbeConfigT = TypeVar("ProbeConfigT", bound=ProbeConfig)


class ProbeEnv(MjxEnv[ProbeConfigT]):
    """The probe-on-a-body physics, observation and safety cost; tasks add `_task_*` terms.

    Observation (state) [16 + task]: face position [3] m, orientation (6-D: local x and y axes in world) [6],
    joint velocities [6] (x, y, z m/s; tilt_x, tilt_y, roll rad/s), contact force / force_limit [1], task [k].
    """

    cost_description = "1 where the contact force > force_limit (20 N) or the tilt > tilt_limit (0.5 rad)"
    N_PROBE_JOINTS = 6
    SHIFT_PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # servo gains ×1.6: the same pose command presses ≈ 1.4× harder on the skin (1 cm below it: 10.1 vs 7.3 N)
        "stiff_mount": {"actuator_gain_scale": 1.6},
        # mount and probe masses and inertias ×2 under the same servo damping: slower, overshooting moves
        "heavy_mount": {"mass_scale": 2.0},
    }

    def __init__(self, config: ProbeConfigT):
        self.phantom = phantom.make_phantom(config.phantom_config())
        self.bmode = config.bmode_config()
        super().__init__(config)
        model = self.mj_model
        self._probe_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "probe")
        self._half_extent = np.asarray(self.phantom.extent) / 2.0

    # ---- model ---------------------------------------------------------------------------------
    def _tool_xml(self, config: ProbeConfigT) -> tuple[str, str]:
        """(bodies inside the probe body, actuators) a task adds; default none."""
        return "", ""

    def _build_mj_model(self, config: ProbeConfigT) -> mujoco.MjModel:
        extent = np.asarray(self.phantom.extent)
        half = extent / 2.0
        reach = half[:2] - config.scan_margin
        if (reach <= 0).any():
            raise ValueError(
                f"scan_margin ({config.scan_margin} m) must be smaller than half the body's width "
                f"({half[:2].min():.3f} m)"
            )
        inertia_t = config.mount_mass + PROBE_MASS
        inertia_r = config.mount_inertia + 1e-4  # the probe's own inertia about its face is ≈ 1e-4 kg·m²
        tool, tool_actuator = self._tool_xml(config)
        xml = _XML.format(
            body_z=-half[2],
            half_x=half[0],
            half_y=half[1],
            half_z=half[2],
            timeconst=config.tissue_timeconst,
            impedance=config.tissue_impedance,
            mount_mass=config.mount_mass,
            mount_inertia=config.mount_inertia,
            kp_t=config.translation_stiffness,
            kv_t=_critical_damping(config.translation_stiffness, inertia_t),
            kp_r=config.rotation_stiffness,
            kv_r=_critical_damping(config.rotation_stiffness, inertia_r),
            xy_x=f"{-reach[0]} {reach[0]}",
            xy_y=f"{-reach[1]} {reach[1]}",
            z_range=f"{-config.press_depth} {config.lift_height}",
            tilt_range=f"{-config.max_tilt_command} {config.max_tilt_command}",
            roll_range=f"{-config.max_roll_command} {config.max_roll_command}",
            tool=tool,
            tool_actuator=tool_actuator,
        )
        return mujoco.MjModel.from_xml_string(xml)

    # ---- state of the probe (from fields the native twin also has) ----------------------------
    def probe_pose(self, data: mjx.Data) -> tuple[jax.Array, jax.Array]:
        """Face centre position [3] m and rotation [3, 3] (columns: probe x, y, axis z) in the world."""
        return data.xpos[self._probe_id], quat_to_rotation(data.xquat[self._probe_id])

    def contact_force(self, data: mjx.Data) -> jax.Array:
        """Normal force of the skin on the probe (N, ≥ 0): MuJoCo's contact constraint force (touch sensor)."""
        return data.sensordata[0]

    def safety_cost(self, data: mjx.Data) -> jax.Array:
        """1 where the contact force > force_limit or the tilt > tilt_limit, else 0."""
        _, rotation = self.probe_pose(data)
        unsafe = (self.contact_force(data) > self._config.force_limit) | (
            tilt_angle(rotation) > self._config.tilt_limit
        )
        return jp.where(unsafe, 1.0, 0.0)

    def in_contact(self, data: mjx.Data) -> jax.Array:
        """True where the probe presses hard enough to image (force > the B-mode's min_contact_force)."""
        return self.contact_force(data) > self.bmode.min_contact_force

    def image(self, data: mjx.Data) -> jax.Array:
        """B-mode image [H, W] in [0, 1] of the probe's current view (all zero without contact)."""
        position, rotation = self.probe_pose(data)
        return bmode.render(self.phantom, position, rotation, self.contact_force(data), self.bmode)

    def image_plane_points(self, data: mjx.Data) -> jax.Array:
        """World points [H, W, 3] (m) of the image's pixels."""
        position, rotation = self.probe_pose(data)
        return bmode.image_plane_points(position, rotation, self.bmode)

    # ---- what tasks provide -------------------------------------------------------------------
    def _task_observation(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        """The task's part of the state vector [k]."""
        return jp.zeros((0,))

    def _task_reward_and_cost(self, data: mjx.Data, action: jax.Array, info: dict[str, Any]):
        """(reward [], task cost [] ≥ 0) of the step that reached `data`; `info` is from before the step."""
        return jp.zeros(()), jp.zeros(())

    def _task_metrics(self, data: mjx.Data, info: dict[str, Any]) -> dict[str, jax.Array]:
        """Per-step metrics (summed per episode by the episode wrapper); same keys at reset and step."""
        return {}

    # ---- MjxEnv hooks -------------------------------------------------------------------------
    def _initial_qpos_qvel(self, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        """A random pose above the skin (no contact): x, y anywhere over the scan area, tilts in ±start_tilt,
        roll in ±max_roll_command; at rest. Extra (tool) joints start at 0."""
        cfg = self._config
        xy_rng, z_rng, tilt_rng, roll_rng = jax.random.split(rng, 4)
        reach = jp.asarray(self._half_extent[:2] - cfg.scan_margin, jp.float32)
        xy = jax.random.uniform(xy_rng, (2,), minval=-1.0, maxval=1.0) * reach
        z = jax.random.uniform(z_rng, (1,), minval=cfg.start_height[0], maxval=cfg.start_height[1])
        tilt = jax.random.uniform(tilt_rng, (2,), minval=-1.0, maxval=1.0) * cfg.start_tilt
        roll = jax.random.uniform(roll_rng, (1,), minval=-1.0, maxval=1.0) * cfg.max_roll_command
        extra = jp.zeros(self.mj_model.nq - self.N_PROBE_JOINTS)
        return jp.concatenate([xy, z, tilt, roll, extra]), jp.zeros(self.mj_model.nv)

    def state_vector(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        """The flat state observation [16 + k] (class docstring)."""
        position, rotation = self.probe_pose(data)
        force = self.contact_force(data) / self._config.force_limit
        return jp.concatenate(
            [
                position,
                rotation_6d(rotation),
                data.qvel[: self.N_PROBE_JOINTS],
                force[None],
                self._task_observation(data, info),
            ]
        )

    def _observe(self, data: mjx.Data, info: dict[str, Any]):
        state = self.state_vector(data, info)
        if self._config.observation == "state":
            return state
        return {"image": self.image(data)[..., None], "state": state}

    def _reward_and_cost(self, data: mjx.Data, action: jax.Array, info: dict[str, Any]):
        reward, task_cost = self._task_reward_and_cost(data, action, info)
        return reward, self.safety_cost(data) + jp.maximum(task_cost, 0.0)

    # ---- the brax API (dict observations, task metrics) ---------------------------------------
    def reset(self, rng: jax.Array) -> State:
        state = super().reset(rng)
        metrics = {**state.metrics, **self._task_metrics(state.pipeline_state, state.info)}
        return state.replace(metrics={k: jp.zeros(()) for k in metrics})

    def step(self, state: State, action: jax.Array) -> State:
        action = jp.clip(action, -1.0, 1.0)
        data = self.pipeline_step(state.pipeline_state, action)
        obs, reward, cost, info = self.evaluate(data, action, dict(state.info))
        metrics = {**state.metrics, "cost": cost, **self._task_metrics(data, info)}
        finite = jp.stack([jp.isfinite(leaf).all() for leaf in jax.tree.leaves(obs)]).all()
        done = jp.where(finite, 0.0, 1.0).astype(jp.float32)  # a blown-up simulation ends it; strongly typed as reset's
        return state.replace(pipeline_state=data, obs=obs, reward=reward, done=done, metrics=metrics, info=info)

    @property
    def observation_size(self):
        """int (state) or {"image": (H, W, 1), "state": (d,)} (pixels)."""
        return self._traced_observation_size()
