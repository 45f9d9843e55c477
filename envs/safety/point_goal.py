"""Point robot reaching goals among circular hazards (Safety-Gym PointGoal style, random layout per episode).

The robot slides on a plane (joints x, y, yaw; no contacts) driven by a forward force along its heading and
a turning torque. Layout (robot start, goal, hazards) is drawn per episode on a jittered grid, so objects
never overlap; it lives in `state.info` ("goal" [2], "hazards" [n_hazards, 2]). Observation (egocentric):
goal lidar [n_bins], hazard lidar [n_bins] (exp(-gain·distance), gains `goal_lidar_gain` 1/m and
`hazard_lidar_gain` 3/m, linearly aliased between adjacent bins,
computed analytically), body-frame velocity [2] (m/s) and yaw rate [1] (rad/s). Reward = progress toward
the goal (m) + `goal_bonus` on reaching it, after which a new goal is drawn. Cost 1 per step inside a hazard.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jp
import mujoco
import numpy as np
from mujoco import mjx

from envs.base import EnvConfig, MjxEnv, RenderMarker
from envs.tasks import Task

_XML = """
<mujoco model="point_goal">
  <option timestep="0.01" gravity="0 0 0">
    <flag contact="disable"/>
  </option>
  <worldbody>
    <light pos="0 0 5" dir="0 0 -1"/>
    <camera name="top" pos="0 0 5.5" xyaxes="1 0 0 0 1 0"/>
    <geom name="floor" type="plane" size="{floor} {floor} 0.1" rgba=".85 .85 .85 1"/>
    <body name="robot" pos="0 0 0.1">
      <joint name="x" type="slide" axis="1 0 0" damping="{lin_damping}"/>
      <joint name="y" type="slide" axis="0 1 0" damping="{lin_damping}"/>
      <joint name="yaw" type="hinge" axis="0 0 1" damping="{rot_damping}"/>
      <geom name="robot" type="sphere" size="0.1" mass="{mass}" rgba=".2 .4 .8 1"/>
      <geom name="nose" type="box" pos="0.1 0 0" size="0.05 0.02 0.02" mass="0.001" rgba=".1 .1 .1 1"/>
      <site name="robot" pos="0 0 0"/>
    </body>
  </worldbody>
  <actuator>
    <motor name="forward" site="robot" gear="{max_force} 0 0 0 0 0" ctrllimited="true" ctrlrange="-1 1"/>
    <motor name="turn" joint="yaw" gear="{max_torque}" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""
# The goal and hazards are not in the MJCF: they do not act on the robot, and as mocap bodies (one per marker)
# they made MJX's step 3x slower (MJX computes every body's and geom's pose each physics step). Rendering draws
# them from `state.info` as scene markers (`render_markers`).
GOAL_RGBA = (0.2, 0.9, 0.2, 0.6)
HAZARD_RGBA = (0.9, 0.25, 0.25, 0.6)


@dataclasses.dataclass(frozen=True)
class PointGoalConfig(EnvConfig):
    ctrl_dt: float = 0.02  # s (2 substeps); 1000 steps = 20 s
    sim_dt: float = 0.01  # s; kept: 20 ms would change every trained run's physics
    episode_length: int = 1000  # steps
    cost_budget: float = 25.0  # allowed steps inside hazards per episode
    arena_half_size: float = 1.5  # m; layout drawn in [-a, a]²
    layout_grid: int = 4  # layout cells per side (robot, goal and each hazard take distinct cells)
    n_hazards: int = 8
    hazard_radius: float = 0.2  # m
    goal_radius: float = 0.3  # m; the goal is reached when the robot centre is this close
    goal_bonus: float = 1.0  # reward on reaching a goal
    # m between the edge of a goal's reach disc (goal_radius) and every hazard's edge, for every goal drawn (the
    # first one included): > 0 places goals as Safety Gym does (keep-out zones), so that no goal can be reached only
    # through a hazard. 0 (default, every run so far): goal centres only > 2·hazard_radius from hazard centres, so
    # 29 % of goals overlap a hazard's disc and reaching them means crossing or grazing it
    goal_clearance: float = 0.0
    n_lidar_bins: int = 16
    goal_lidar_gain: float = 1.0  # 1/m; goal lidar value = exp(-gain · distance) (Safety Gym's default gain)
    # 1/m; hazard lidar value = exp(-gain · distance). 3 resolves a hazard's edge: 0.55 at 0.2 m, 0.22 at 0.5 m
    # (at 1/m, 0.82 vs 0.61, SAC's cost critic underestimated the cost ≈ 5× and constrained SAC drove through
    # hazards at a cost of 80–90 per episode after 100k steps; with 3 it kept to ≈ 10, budget 25)
    hazard_lidar_gain: float = 3.0
    mass: float = 1.0  # kg
    max_force: float = 2.0  # N forward force at action 1
    max_torque: float = 0.1  # N·m yaw torque at action 1
    lin_damping: float = 2.0  # N·s/m (terminal speed max_force / lin_damping)
    rot_damping: float = 0.025  # N·m·s/rad
    # MuJoCo solver settings: no contacts and no joint limits, so there is no constraint to solve and MJX skips
    # the solver; 1 iteration / 4 line-search steps (mujoco_playground's MJX setting) only matter if a variant
    # adds contacts, and keep such a variant fast
    solver: str = "newton"
    iterations: int = 1
    ls_iterations: int = 4
    # semi-implicit Euler, damping implicit: unchanged from every run trained so far; the damped point mass
    # (time constant mass / lin_damping = 0.5 s ≫ 10 ms) needs nothing costlier
    integrator: str = "euler"
    warmstart: bool = False  # nothing to warm-start (no constraints)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_hazards < 0 or self.n_hazards + 2 > self.layout_grid**2:
            raise ValueError(
                f"n_hazards must be in [0, layout_grid² - 2 = {self.layout_grid**2 - 2}], got {self.n_hazards}"
            )
        cell = 2 * self.arena_half_size / self.layout_grid
        if not 0 < self.hazard_radius < cell / 2:
            raise ValueError(f"hazard_radius must be in (0, cell/2 = {cell / 2:.3f}) m, got {self.hazard_radius}")
        for name in (
            "goal_radius",
            "arena_half_size",
            "mass",
            "max_force",
            "max_torque",
            "goal_lidar_gain",
            "hazard_lidar_gain",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.goal_clearance <= self.arena_half_size:
            raise ValueError(f"goal_clearance must be in [0, arena_half_size] m, got {self.goal_clearance}")
        if self.n_lidar_bins < 4:
            raise ValueError(f"n_lidar_bins must be >= 4, got {self.n_lidar_bins}")


def lidar(robot_xy: jax.Array, heading: jax.Array, objects_xy: jax.Array, n_bins: int, gain: float) -> jax.Array:
    """Egocentric pseudo-lidar [n_bins] in [0, 1]: per bin the max over objects [n, 2] of exp(-gain·dist),
    split linearly between the two bins adjacent to each object's bearing (bin k is centred at 2πk/n_bins)."""
    if objects_xy.shape[0] == 0:
        return jp.zeros(n_bins)
    rel = objects_xy - robot_xy
    dist = jp.linalg.norm(rel, axis=-1)
    bearing = jp.mod(jp.arctan2(rel[:, 1], rel[:, 0]) - heading, 2 * jp.pi)
    position = bearing / (2 * jp.pi) * n_bins
    lower = jp.floor(position)
    frac = position - lower
    lower = lower.astype(jp.int32) % n_bins
    upper = (lower + 1) % n_bins
    value = jp.exp(-gain * dist)
    contributions = (
        jax.nn.one_hot(lower, n_bins) * ((1 - frac) * value)[:, None]
        + jax.nn.one_hot(upper, n_bins) * (frac * value)[:, None]
    )
    return contributions.max(axis=0)


class PointGoal(MjxEnv[PointGoalConfig]):
    cost_description = "1 per step where the robot centre is inside a hazard (radius 0.2 m)"
    SHIFT_PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # 1.5 kg robot: 1.5× slower to speed up and to stop (time constant m / lin_damping 0.5 s → 0.75 s)
        "heavy_robot": {"body_mass_scale": {"robot": 1.5}},
        # the floor's resistance is the joints' damping (no contacts): halved, the robot coasts twice as far
        # and reaches 2 m/s at full force (friction_scale is set too, for envs variants with contacts)
        "low_friction": {"damping_scale": 0.5, "friction_scale": 0.5},
    }

    @classmethod
    def default_config(cls) -> PointGoalConfig:
        return PointGoalConfig()

    def _build_mj_model(self, config: PointGoalConfig) -> mujoco.MjModel:
        xml = _XML.format(
            floor=config.arena_half_size + 1.0,
            lin_damping=config.lin_damping,
            rot_damping=config.rot_damping,
            mass=config.mass,
            max_force=config.max_force,
            max_torque=config.max_torque,
        )
        return mujoco.MjModel.from_xml_string(xml)

    # ---- layout -------------------------------------------------------------------------------
    def _layout(self, rng: jax.Array) -> jax.Array:
        """Positions [n_hazards + 2, 2]: robot, goal, hazards, each in its own jittered grid cell."""
        cfg = self._config
        n_cells, n_objects = cfg.layout_grid**2, cfg.n_hazards + 2
        cell_rng, jitter_rng = jax.random.split(rng)
        cells = jax.random.permutation(cell_rng, n_cells)[:n_objects]
        size = 2 * cfg.arena_half_size / cfg.layout_grid
        centres = jp.stack([cells % cfg.layout_grid, cells // cfg.layout_grid], -1) * size + size / 2
        margin = size / 2 - cfg.hazard_radius  # objects in distinct cells are ≥ 2·hazard_radius apart
        jitter = jax.random.uniform(jitter_rng, (n_objects, 2), minval=-margin, maxval=margin)
        return centres - cfg.arena_half_size + jitter

    def _new_goal(self, rng: jax.Array, robot_xy: jax.Array, hazards: jax.Array) -> jax.Array:
        """A goal [2] clear of hazards (centre > 2 hazard radii from theirs, or with `goal_clearance` > 0 its reach
        disc that far from their edges) and ≥ 2 goal radii from the robot (first valid of 32 candidates, 256 with
        clearance)."""
        cfg = self._config
        half = cfg.arena_half_size - cfg.goal_radius
        # with clearance the valid area is ≈ 40 % of the arena, so more candidates (an invalid goal: < 1e-4 of draws)
        candidates = jax.random.uniform(rng, (32 if cfg.goal_clearance == 0 else 256, 2), minval=-half, maxval=half)
        clearance = jp.linalg.norm(candidates[:, None] - hazards[None], axis=-1).min(axis=1, initial=jp.inf)
        keep_out = 2 * cfg.hazard_radius
        if cfg.goal_clearance > 0:
            keep_out = cfg.hazard_radius + cfg.goal_radius + cfg.goal_clearance
        valid = (clearance > keep_out) & (jp.linalg.norm(candidates - robot_xy, axis=-1) > 2 * cfg.goal_radius)
        return candidates[jp.argmax(valid)]

    # ---- MjxEnv hooks -------------------------------------------------------------------------
    def _initial_qpos_qvel(self, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        layout_rng, heading_rng = jax.random.split(rng)
        robot_xy = self._layout(layout_rng)[0]
        heading = jax.random.uniform(heading_rng, (1,), minval=-jp.pi, maxval=jp.pi)
        return jp.concatenate([robot_xy, heading]), jp.zeros(3)

    def _init_info(self, rng: jax.Array, data: mjx.Data) -> dict[str, Any]:
        layout_rng, _ = jax.random.split(rng)  # the key _initial_qpos_qvel drew the robot's start from
        layout = self._layout(layout_rng)
        goal, hazards = layout[1], layout[2:]
        if self._config.goal_clearance > 0:  # the layout's goal cell may border a hazard: draw the goal with clearance
            goal = self._new_goal(jax.random.fold_in(rng, 1), data.qpos[:2], hazards)
        return {"goal": goal, "hazards": hazards, "goal_dist": jp.linalg.norm(data.qpos[:2] - goal)}

    def _observe(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        cfg = self._config
        xy, heading = data.qpos[:2], data.qpos[2]
        goal_lidar = lidar(xy, heading, info["goal"][None], cfg.n_lidar_bins, cfg.goal_lidar_gain)
        hazard_lidar = lidar(xy, heading, info["hazards"], cfg.n_lidar_bins, cfg.hazard_lidar_gain)
        cos, sin = jp.cos(heading), jp.sin(heading)
        vx, vy = data.qvel[0], data.qvel[1]
        body_velocity = jp.stack([cos * vx + sin * vy, -sin * vx + cos * vy])
        return jp.concatenate([goal_lidar, hazard_lidar, body_velocity, data.qvel[2:3]])

    def _reward_and_cost(self, data: mjx.Data, action: jax.Array, info: dict[str, Any]):
        cfg = self._config
        xy = data.qpos[:2]
        dist = jp.linalg.norm(xy - info["goal"])
        reached = dist < cfg.goal_radius
        reward = (info["goal_dist"] - dist) + cfg.goal_bonus * reached
        hazard_dist = jp.linalg.norm(info["hazards"] - xy, axis=-1)
        inside = jp.any(hazard_dist < cfg.hazard_radius) if cfg.n_hazards else jp.array(False)
        return reward, jp.where(inside, 1.0, 0.0)

    def _update_info(self, data: mjx.Data, info: dict[str, Any]) -> dict[str, Any]:
        rng, goal_rng = jax.random.split(info["rng"])
        xy = data.qpos[:2]
        reached = jp.linalg.norm(xy - info["goal"]) < self._config.goal_radius
        goal = jp.where(reached, self._new_goal(goal_rng, xy, info["hazards"]), info["goal"])
        info.update(rng=rng, goal=goal, goal_dist=jp.linalg.norm(xy - goal))
        return info

    def render_markers(self, info: dict[str, Any], task: Task | None = None) -> list[RenderMarker]:
        """The goal (green; or `task`'s markers in its place) and hazard (red) discs of the episode in `info`,
        drawn flat on the floor."""
        cfg = self._config
        goal = np.asarray(info["goal"], np.float64)
        markers = (
            super().render_markers(info, task)
            if task is not None
            else [RenderMarker("cylinder", (cfg.goal_radius, 0.005, 0.0), (goal[0], goal[1], 0.01), GOAL_RGBA)]
        )
        markers += [
            RenderMarker("cylinder", (cfg.hazard_radius, 0.004, 0.0), (x, y, 0.005), HAZARD_RGBA)
            for x, y in np.asarray(info["hazards"], np.float64).reshape(-1, 2)
        ]
        return markers
