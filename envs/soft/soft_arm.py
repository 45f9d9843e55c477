"""Tendon-driven continuum ("soft") arm hanging from a fixed base, reaching a target with its tip.

MJX has no flex or composite bodies, so the arm is a chain of `segments` capsules joined by pairs of stiff,
damped hinges (bending about x and y, springs to the straight pose), bent by `actuators` cables evenly spaced
around it at radius `tendon_offset`. A cable is a fixed tendon with a constant moment arm at every hinge (the
standard constant-curvature model of a tendon-driven continuum arm); it only pulls: action a ∈ [-1, 1] gives
tension (a + 1)/2 · max_tension, so a = -1 is a slack cable. No contacts.

`material` (native MuJoCo features only, so MJX and the native twin agree):
  * "linear": linear bending springs; no constraint rows, so MJX skips the constraint solver.
  * "stiffening": plus a stiff spring beyond ±stiffening_angle per hinge (a one-joint tendon with a dead-band
    spring length): strain stiffening, still constraint-free.
  * "hysteretic": plus dry friction (`frictionloss`) per hinge: loading and unloading paths differ.

Obs, reward and cost are documented in docs/envs.md (layout: `obs_layout`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jp
import mujoco
import numpy as np
from mujoco import mjx

from envs.base import EnvConfig, MjxEnv, RenderMarker
from envs.soft.soft_arm_tasks import make_tasks, target_marker
from envs.tasks import Task

MATERIALS = ("linear", "stiffening", "hysteretic")
FORBIDDEN_RGBA = (0.9, 0.2, 0.2, 0.35)


@dataclasses.dataclass(frozen=True)
class SoftArmConfig(EnvConfig):
    ctrl_dt: float = 0.04  # s (10 substeps); 200 steps = 8 s
    sim_dt: float = 0.004  # s; the stiffest bending mode is resolved (see `integrator`)
    episode_length: int = 200  # steps
    cost_budget: float = 20.0  # allowed cost steps per episode (10 %)
    segments: int = 8  # capsules in the chain (>= 8 keeps the arm continuum-like; compile time grows with it)
    segment_length: float = 0.05  # m (arm length = segments · segment_length)
    segment_radius: float = 0.012  # m
    segment_mass: float = 0.015  # kg
    stiffness: float = 0.4  # N·m/rad, bending spring per hinge (to the straight pose)
    damping: float = 0.05  # N·m·s/rad per hinge; a step in tension settles within 5 mm in ≈ 1.7 s (0.01: ≈ 10 s)
    armature: float = 2e-5  # kg·m², added inertia per hinge (the material's distributed inertia)
    actuators: int = 4  # cables around the arm (3 or 4); cable k sits at angle 2πk/actuators from +x
    tendon_offset: float = 0.015  # m, cable distance from the arm's axis (moment arm at every hinge)
    max_tension: float = 10.0  # N at action +1
    material: str = "linear"  # linear | stiffening | hysteretic
    stiffening_angle: float = 0.15  # rad; "stiffening": the extra spring acts beyond ±this per hinge
    stiffening_stiffness: float = 1.2  # N·m/rad; "stiffening": the extra spring (4 × stiffness by default)
    # N·m; "hysteretic": dry friction per hinge (± 0.075 rad of stick band against the 0.4 N·m/rad spring); a
    # quasi-static load/unload (10 s each) of one cable to 80 % opens a loop 2.7 cm wide at the tip; right after
    # unloading the tip is still 1.4 cm out (the nearly-hard friction rows still creep back within ≈ 2 s)
    hysteresis_torque: float = 0.03
    forbidden_center: tuple[float, float, float] = (0.0, -0.19, -0.32)  # m; on the reachable cap toward −y
    forbidden_radius: float = 0.05  # m
    overload_fraction: float = 0.9  # a cable commanded above this fraction of max_tension is overloaded
    # episode targets: where the arm settles with a bending moment of up to this fraction of one cable's maximum,
    # in a random direction (reachable without overload, and to < 5 mm of the table they are drawn from)
    target_tension: float = 0.8
    target_table_size: int = 9  # equilibria computed at construction (native MuJoCo, ≈ 20 ms each)
    init_noise: float = 0.02  # rad, std of the initial joint angles
    # no contacts, no joint limits: the "linear" and "stiffening" arms have no constraint rows and MJX skips the
    # solver (so these settings cost them nothing). The "hysteretic" arm's friction rows are nearly hard and
    # need the line search: measured max |Δq| to MuJoCo's 100/50 over a 3 s load/hold/release from straight
    # (native): 2/4 → 0.07 rad, 8/8 → 0.14, 10/10 → 5e-4, 16/16 → 1e-16; from a noisy start 16/16 → 1.5e-3
    # natively and 3.6e-4 in MJX (tests/envs/test_soft_arm_solver.py). The
    # iterations stop early once converged; the loop's length does not change compile time
    solver: str = "newton"
    iterations: int = 16
    ls_iterations: int = 16
    # semi-implicit Euler with the hinge damping implicit: the stiffest chain mode (≈ 140 rad/s, ≈ 270 rad/s
    # with the stiffening springs) is stable at 4 ms (ω·dt ≤ 1.1 < 2); implicitfast compiled ≈ 20 % slower
    integrator: str = "euler"
    warmstart: bool = True  # MuJoCo's default; without it the hysteretic arm creeps through its stick phase

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.segments, bool) or not isinstance(self.segments, int) or self.segments < 2:
            raise ValueError(f"segments must be an integer >= 2, got {self.segments!r}")
        if self.actuators not in (3, 4):
            raise ValueError(f"actuators must be 3 or 4, got {self.actuators!r}")
        if self.material not in MATERIALS:
            raise ValueError(f"material must be one of {MATERIALS}, got {self.material!r}")
        for name in (
            "segment_length",
            "segment_radius",
            "segment_mass",
            "stiffness",
            "tendon_offset",
            "max_tension",
            "stiffening_angle",
            "stiffening_stiffness",
            "forbidden_radius",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("damping", "armature", "hysteresis_torque", "init_noise"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.overload_fraction <= 1:
            raise ValueError(f"overload_fraction must be in (0, 1], got {self.overload_fraction}")
        if not 0 < self.target_tension <= self.overload_fraction:
            raise ValueError(
                f"target_tension must be in (0, overload_fraction = {self.overload_fraction}], "
                f"got {self.target_tension}"
            )
        if (
            isinstance(self.target_table_size, bool)
            or not isinstance(self.target_table_size, int)
            or self.target_table_size < 2
        ):
            raise ValueError(f"target_table_size must be an integer >= 2, got {self.target_table_size!r}")
        if len(self.forbidden_center) != 3:
            raise ValueError(f"forbidden_center must be (x, y, z) in m, got {self.forbidden_center!r}")
        object.__setattr__(self, "forbidden_center", tuple(float(v) for v in self.forbidden_center))


def obs_layout(segments: int) -> dict[str, slice]:
    """Slices of the observation vector: tip position/velocity, joint angles/velocities, episode target."""
    n = 2 * segments
    return {
        "tip_pos": slice(0, 3),
        "tip_vel": slice(3, 6),
        "joint_angle": slice(6, 6 + n),
        "joint_vel": slice(6 + n, 6 + 2 * n),
        "target": slice(6 + 2 * n, 9 + 2 * n),
    }


def _cable_angles(count: int) -> list[float]:
    return [2 * math.pi * k / count for k in range(count)]


def _body(c: SoftArmConfig, i: int) -> str:
    name = "tip_segment" if i == c.segments - 1 else f"segment{i}"
    shade = 0.35 + 0.4 * i / max(c.segments - 1, 1)
    return (
        f'<body name="{name}" pos="0 0 {-c.segment_length if i else 0:.6f}">'
        f'<joint name="bend_x{i}" axis="1 0 0"/><joint name="bend_y{i}" axis="0 1 0"/>'
        f'<geom type="capsule" fromto="0 0 0 0 0 {-c.segment_length:.6f}" size="{c.segment_radius}" '
        f'mass="{c.segment_mass}" rgba="{shade:.2f} 0.55 0.75 1"/>'
    )


def _look_at(eye: tuple[float, float, float], target: tuple[float, float, float]) -> str:
    """MJCF camera attributes for a camera at `eye` looking at `target` (m), horizon level."""
    forward = np.subtract(target, eye) / np.linalg.norm(np.subtract(target, eye))
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    axes = " ".join(f"{v:.4f}" for v in (*right, *up))
    return f'pos="{eye[0]:.3f} {eye[1]:.3f} {eye[2]:.3f}" xyaxes="{axes}"'


def soft_arm_xml(config: SoftArmConfig) -> str:
    """The arm's MJCF, generated from the config."""
    c = config
    # friction rows nearly hard (impedance 0.99–0.999, MuJoCo's default 0.9–0.95): with the default the soft
    # friction constraint lets the arm creep under a slowly changing load and the loop nearly closes
    friction = (
        f'frictionloss="{c.hysteresis_torque}" solimpfriction="0.99 0.999 0.001"' if c.material == "hysteretic" else ""
    )
    joint_defaults = (
        f'<joint type="hinge" stiffness="{c.stiffness}" damping="{c.damping}" '
        f'armature="{c.armature}" limited="false" {friction}/>'
    )
    tip = f'<site name="tip" pos="0 0 {-c.segment_length:.6f}" size="0.008" rgba="1 0.3 0.2 1"/>'
    chain = "".join(_body(c, i) for i in range(c.segments)) + tip + "</body>" * c.segments
    # a hinge pair bent by small (θx, θy) turns the hanging arm toward (−θy, θx); the cable at angle φ (at
    # offset·(cos φ, sin φ)) is on the inside of that bend and shortens by offset·(cos φ·(−θy) + sin φ·θx):
    # length coefficients (−offset·sin φ, +offset·cos φ) on (θx, θy), a constant moment arm per hinge
    cables = "".join(
        f'<fixed name="cable{k}">'
        + "".join(
            f'<joint joint="bend_x{i}" coef="{-c.tendon_offset * math.sin(a):.6f}"/>'
            f'<joint joint="bend_y{i}" coef="{c.tendon_offset * math.cos(a):.6f}"/>'
            for i in range(c.segments)
        )
        + "</fixed>"
        for k, a in enumerate(_cable_angles(c.actuators))
    )
    stiffening = ""
    if c.material == "stiffening":  # dead-band springs: no force within ±stiffening_angle, stiff beyond it
        a = c.stiffening_angle
        stiffening = "".join(
            f'<fixed name="stiffen_{axis}{i}" stiffness="{c.stiffening_stiffness}" '
            f'springlength="{-a} {a}"><joint joint="bend_{axis}{i}" coef="1"/></fixed>'
            for i in range(c.segments)
            for axis in "xy"
        )
    # gainprm < 0: a positive command pulls (shortens) the cable
    actuators = "".join(
        f'<general name="pull{k}" tendon="cable{k}" ctrllimited="true" ctrlrange="0 1" gainprm="{-c.max_tension}"/>'
        for k in range(c.actuators)
    )
    arm = c.segments * c.segment_length
    return f"""
<mujoco model="soft_arm">
  <option timestep="{c.sim_dt}"><flag contact="disable"/></option>
  <default>{joint_defaults}</default>
  <visual><global offwidth="640" offheight="480"/></visual>
  <worldbody>
    <light pos="0.3 -0.6 0.6" dir="-0.3 0.6 -1" directional="true"/>
    <camera name="side" {_look_at((1.2 * arm, -1.6 * arm, 0.1 * arm), (0.0, 0.0, -0.65 * arm))}/>
    <geom name="mount" type="box" pos="0 0 0.015" size="0.05 0.05 0.015" rgba=".3 .3 .3 1"/>
    <geom name="floor" type="plane" pos="0 0 {-1.3 * arm:.3f}" size="{2 * arm} {2 * arm} 0.01" rgba=".8 .8 .8 1"/>
    {chain}
  </worldbody>
  <tendon>{cables}{stiffening}</tendon>
  <actuator>{actuators}</actuator>
  <sensor><framelinvel name="tip_velocity" objtype="site" objname="tip"/></sensor>
</mujoco>
"""


class SoftArm(MjxEnv[SoftArmConfig]):
    cost_description = (
        "1 per step where the tip is inside the forbidden sphere (default r = 5 cm) or a cable is "
        "commanded above 90 % of its maximal tension (overload)"
    )
    SHIFT_PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # a heavier arm (e.g. a wet or filled sleeve): 1.5 × mass; it sags more and bends slower
        "heavy_arm": {"mass_scale": 1.5},
        # a 45 g payload on the last segment (4 × its 15 g): the load of the "hold_pose" task
        "tip_payload": {"body_mass_scale": {"tip_segment": 4.0}},
        # fatigued cables: 75 % of the tension per unit command
        "weak_cables": {"actuator_gain_scale": 0.75},
    }

    @classmethod
    def default_config(cls) -> SoftArmConfig:
        return SoftArmConfig()

    def __init__(self, config: SoftArmConfig):
        super().__init__(config)
        self._tip_site = mujoco.mj_name2id(self.mj_model, mujoco.mjtObj.mjOBJ_SITE, "tip")
        self._n_hinges = 2 * config.segments
        self._layout = obs_layout(config.segments)
        self._targets = self._target_table()  # [target_table_size, 3] m, on the nominal model
        self._tasks = make_tasks(self)

    def _build_mj_model(self, config: SoftArmConfig) -> mujoco.MjModel:
        return mujoco.MjModel.from_xml_string(soft_arm_xml(config))

    @property
    def layout(self) -> dict[str, slice]:
        """Slices of the observation vector (see `obs_layout`)."""
        return dict(self._layout)

    @property
    def observation_groups(self) -> dict[str, slice]:
        """The observation layout's parts (tip position, tip velocity, joint angles, joint velocities, target)."""
        return dict(self._layout)

    def tasks(self):
        return dict(self._tasks)

    # ---- reachable points (targets, tasks, tests) -----------------------------------------------
    def tip_of_bend(self, bend: np.ndarray) -> np.ndarray:
        """Tip position [3] (m) with every hinge pair at `bend` [2] (rad): a constant-curvature pose (no
        gravity; for drawing and tests, native kinematics)."""
        data = mujoco.MjData(self.mj_model)
        data.qpos[:] = np.tile(np.asarray(bend, np.float64), self._config.segments)
        mujoco.mj_kinematics(self.mj_model, data)
        return data.site_xpos[self._tip_site].copy()

    def bending_action(self, direction: float, tension: float) -> np.ndarray:
        """Action [action_size] whose cables bend the arm toward azimuth `direction` (rad from +x) with the
        moment of one cable at `tension` (fraction of max_tension): the two cables around `direction` share it
        (each at most `tension`), the others are slack."""
        spacing = 2 * math.pi / self.action_size
        k = int(math.floor((direction % (2 * math.pi)) / spacing)) % self.action_size
        j = (k + 1) % self.action_size
        cables = np.array([[math.cos(a), math.sin(a)] for a in (k * spacing, j * spacing)]).T
        tensions = np.linalg.solve(cables, tension * np.array([math.cos(direction), math.sin(direction)]))
        fraction = np.zeros(self.action_size)
        fraction[[k, j]] = np.clip(tensions, 0.0, 1.0)
        return 2.0 * fraction - 1.0

    def equilibrium_tip(self, action: np.ndarray, seconds: float = 3.0) -> np.ndarray:
        """Tip position [3] (m) where the arm settles (native MuJoCo, from straight) under a constant `action`
        [action_size]: a point the arm can hold, i.e. reachable. The hinges are damped to ≥ 0.1 N·m·s/rad for
        this (an elastic arm's equilibrium does not depend on its damping): 3 s settle it to < 1 mm."""
        model = copy.deepcopy(self.mj_model)
        model.dof_damping[:] = np.maximum(model.dof_damping, 0.1)
        data = mujoco.MjData(model)
        low, high = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
        data.ctrl[:] = low + (np.clip(action, -1, 1) + 1) / 2 * (high - low)
        mujoco.mj_step(model, data, nstep=int(round(seconds / model.opt.timestep)))
        return data.site_xpos[self._tip_site].copy()

    def _target_table(self) -> np.ndarray:
        """Equilibrium tips [target_table_size, 3] (m) bending toward +x with moments 0 … target_tension."""
        cfg = self._config
        tensions = np.linspace(0.0, cfg.target_tension, cfg.target_table_size)
        return np.stack([self.equilibrium_tip(self.bending_action(0.0, t)) for t in tensions])

    def target_of(self, direction: jax.Array, tension: jax.Array) -> jax.Array:
        """Episode target [3] (m): the equilibrium tip for a moment of `tension` ∈ [0, target_tension] toward
        azimuth `direction` (rad) — the +x table rotated about the arm's axis (the arm is symmetric about it
        to < 5 mm) and interpolated linearly in tension."""
        table = jp.asarray(self._targets, jp.float32)
        tensions = jp.linspace(0.0, self._config.target_tension, table.shape[0])
        radial = jp.interp(tension, tensions, table[:, 0])
        height = jp.interp(tension, tensions, table[:, 2])
        return jp.stack([radial * jp.cos(direction), radial * jp.sin(direction), height])

    # ---- MjxEnv hooks -------------------------------------------------------------------------
    def _initial_qpos_qvel(self, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        qpos = self._config.init_noise * jax.random.normal(rng, (self._n_hinges,))
        return qpos, jp.zeros(self._n_hinges)

    def _init_info(self, rng: jax.Array, data: mjx.Data) -> dict[str, Any]:
        direction_rng, size_rng = jax.random.split(jax.random.fold_in(rng, 1))
        direction = jax.random.uniform(direction_rng, (), minval=0.0, maxval=2 * jp.pi)
        # sqrt: targets spread evenly over the reachable cap rather than crowding at the rest position
        tension = self._config.target_tension * jp.sqrt(jax.random.uniform(size_rng, ()))
        return {"target": self.target_of(direction, tension)}

    def render_markers(self, info: dict[str, Any], task: Task | None = None) -> list[RenderMarker]:
        """The forbidden sphere (red) and the episode's target (green), or `task`'s markers in its place."""
        cfg = self._config
        markers = [RenderMarker("sphere", (cfg.forbidden_radius, 0.0, 0.0), cfg.forbidden_center, FORBIDDEN_RGBA)]
        if task is not None:
            return markers + super().render_markers(info, task)
        if info is not None and "target" in info:
            markers.append(target_marker(np.asarray(info["target"]).reshape(3)))
        return markers

    def tip_position(self, data: mjx.Data) -> jax.Array:
        """Tip position [3] (m)."""
        return data.site_xpos[self._tip_site]

    def _observe(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        return jp.concatenate([self.tip_position(data), data.sensordata[:3], data.qpos, data.qvel, info["target"]])

    def _make_transition_cost(self):
        cfg = self._config
        # a NumPy constant: the cost is built (and cached on the env) inside whichever trace first asks for it, and a
        # jnp array made there would be that trace's tracer, leaked into every later one (UnexpectedTracerError)
        center = np.asarray(cfg.forbidden_center, np.float32)

        def cost(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
            inside = jp.linalg.norm(next_obs[..., :3] - center, axis=-1) < cfg.forbidden_radius  # obs[:3]: tip
            overloaded = jp.any((action + 1.0) / 2.0 > cfg.overload_fraction, axis=-1)
            return jp.where(inside | overloaded, 1.0, 0.0)

        return cost

    def _reward_and_cost(self, data: mjx.Data, action: jax.Array, info: dict[str, Any]):
        cfg = self._config
        tip = self.tip_position(data)
        reward = 1.0 - jp.tanh(jp.linalg.norm(tip - info["target"]) / 0.1)
        inside = jp.linalg.norm(tip - jp.asarray(cfg.forbidden_center)) < cfg.forbidden_radius
        overloaded = jp.any((action + 1.0) / 2.0 > cfg.overload_fraction)
        return reward, jp.where(inside | overloaded, 1.0, 0.0)
