"""us_surgery: guide a needle tool along the planned corridor to a target in bone (issue #10).

The tool is a needle through a guide in the probe (kept simple): it leaves the centre of the probe face along the
probe axis (local −z), in the image plane, pushed by a 7th servo to an insertion depth (action → target depth in
[0, max_insertion] m); it has no collision. Its tip = face + insertion · (−probe axis). To reach the target the
agent places the face on the corridor's entry with the probe axis along the corridor, then inserts.
Reward = progress_scale × (tip distance to the target before − after the step, m) + success_bonus where the tip is
within success_radius of the target. Cost: the probe's safety cost (force, tilt) + 1 where the tip is in the
critical zone: out of its guide (inserted > 1 mm), inside the body, within critical_radius of the target and
farther than corridor_radius from the corridor line (entry → target).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jp
import mujoco
from mujoco import mjx

from envs.ultrasound.probe import ProbeConfig, ProbeEnv

_TOOL = """
      <body name="tool" pos="0 0 0" gravcomp="1">
        <joint name="insertion" type="slide" axis="0 0 -1" armature="{tool_mass}"/>
        <geom name="needle" type="cylinder" fromto="0 0 0 0 0 0.15" size="0.0012" mass="0.01" rgba=".8 .8 .85 1"
              contype="0" conaffinity="0"/>
        <site name="tool_tip" pos="0 0 0" size="0.002" rgba="1 .2 .2 1"/>
      </body>"""
_TOOL_ACTUATOR = '<position name="insertion" joint="insertion" kp="{kp}" kv="{kv}" ctrlrange="0 {max_insertion}"/>'


@dataclasses.dataclass(frozen=True)
class SurgeryConfig(ProbeConfig):
    cost_budget: float = 10.0  # allowed unsafe or critical-zone steps per episode (5 % of 200)
    max_insertion: float = 0.1  # m; deepest tool target below the face
    tool_stiffness: float = 200.0  # N/m, insertion servo gain (damping critical)
    tool_mass: float = 0.2  # kg, moving mass of the insertion drive (armature)
    critical_radius: float = 0.03  # m; the critical zone lies within this of the target (SonoGym: ~5 cm)
    corridor_radius: float = 0.004  # m; inside the zone, a tip farther than this from the corridor line costs 1
    success_radius: float = 0.003  # m; tip within this of the target: reached
    progress_scale: float = 100.0  # reward per m of progress of the tip toward the target
    success_bonus: float = 1.0  # reward per step with the target reached

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in (
            "max_insertion",
            "tool_stiffness",
            "tool_mass",
            "critical_radius",
            "corridor_radius",
            "success_radius",
            "progress_scale",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not self.corridor_radius < self.critical_radius:
            raise ValueError(
                f"corridor_radius ({self.corridor_radius} m) must be < critical_radius ({self.critical_radius} m)"
            )
        if not self.success_bonus >= 0:
            raise ValueError(f"success_bonus must be >= 0, got {self.success_bonus!r}")


class UsSurgery(ProbeEnv[SurgeryConfig]):
    """Action [7] = the probe's 6 + insertion depth. Observation [28] = the probe's [16] + entry − face position
    [3] m + target − tip [3] m + corridor axis [3] + tip distance to the corridor line [1] m + insertion [1] m +
    insertion rate [1] m/s."""

    cost_description = (
        "1 where the contact force > force_limit (20 N) or the tilt > tilt_limit (0.5 rad), "
        "+1 where the tool tip is in the critical zone (near the target, off the corridor)"
    )

    def __init__(self, config: SurgeryConfig):
        super().__init__(config)
        self._tip_id = mujoco.mj_name2id(self.mj_model, mujoco.mjtObj.mjOBJ_SITE, "tool_tip")

    @classmethod
    def default_config(cls) -> SurgeryConfig:
        return SurgeryConfig()

    def _tool_xml(self, config: SurgeryConfig) -> tuple[str, str]:
        kv = 2.0 * (config.tool_stiffness * (config.tool_mass + 0.01)) ** 0.5
        return (
            _TOOL.format(tool_mass=config.tool_mass),
            _TOOL_ACTUATOR.format(kp=config.tool_stiffness, kv=kv, max_insertion=config.max_insertion),
        )

    def tool_tip(self, data: mjx.Data) -> jax.Array:
        """World position [3] m of the tool tip."""
        return data.site_xpos[self._tip_id]

    def corridor_distance(self, point: jax.Array) -> jax.Array:
        """Distance (m) of `point` [3] from the corridor line through entry along corridor_axis."""
        relative = point - self.phantom.entry
        along = jp.dot(relative, self.phantom.corridor_axis)
        return jp.linalg.norm(relative - along * self.phantom.corridor_axis)

    def target_distance(self, data: mjx.Data) -> jax.Array:
        return jp.linalg.norm(self.tool_tip(data) - self.phantom.target)

    def in_critical_zone(self, data: mjx.Data) -> jax.Array:
        """True where the tool is out of its guide (insertion > 1 mm) with the tip inside the body, within
        critical_radius of the target and off the corridor."""
        cfg = self._config
        tip = self.tool_tip(data)
        inserted = data.qpos[self.N_PROBE_JOINTS] > 0.001
        return (
            inserted
            & (tip[2] < 0.0)
            & (self.target_distance(data) < cfg.critical_radius)
            & (self.corridor_distance(tip) > cfg.corridor_radius)
        )

    def _init_info(self, rng: jax.Array, data: mjx.Data) -> dict[str, Any]:
        return {"tip_distance": self.target_distance(data)}

    def _task_observation(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        position, _ = self.probe_pose(data)
        tip = self.tool_tip(data)
        n = self.N_PROBE_JOINTS
        return jp.concatenate(
            [
                self.phantom.entry - position,
                self.phantom.target - tip,
                self.phantom.corridor_axis,
                self.corridor_distance(tip)[None],
                data.qpos[n : n + 1],
                data.qvel[n : n + 1],
            ]
        )

    def _task_reward_and_cost(self, data: mjx.Data, action: jax.Array, info: dict[str, Any]):
        cfg = self._config
        distance = self.target_distance(data)
        reached = jp.where(distance < cfg.success_radius, 1.0, 0.0)
        reward = cfg.progress_scale * (info["tip_distance"] - distance) + cfg.success_bonus * reached
        return reward, jp.where(self.in_critical_zone(data), 1.0, 0.0)

    def _update_info(self, data: mjx.Data, info: dict[str, Any]) -> dict[str, Any]:
        info["tip_distance"] = self.target_distance(data)
        return info

    def _task_metrics(self, data: mjx.Data, info: dict[str, Any]) -> dict[str, jax.Array]:
        return {
            "success": jp.where(self.target_distance(data) < self._config.success_radius, 1.0, 0.0),
            "critical": jp.where(self.in_critical_zone(data), 1.0, 0.0),
        }
