"""us_navigate: bring the probe from a random start to the organ's standard plane (issue #10).

The standard plane is the organ's long-axis view: the probe stands vertically on the skin above the organ's centre,
pressing lightly (`target_indentation`), with its image plane (local x-z) along the organ's long axis (the major
principal axis of its voxels in x-y). Reward per step = −‖Δp‖ / position_scale − angle / angle_scale, plus
`success_bonus` where successful: within 5 mm (face position) and 5° (orientation) of the target pose while in
contact. Cost: the probe's safety cost (force, tilt).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jp
import numpy as np
from mujoco import mjx

from envs.ultrasound import phantom as phantom_lib
from envs.ultrasound.probe import ProbeConfig, ProbeEnv, rotation_6d, rotation_angle


@dataclasses.dataclass(frozen=True)
class NavigateConfig(ProbeConfig):
    cost_budget: float = 10.0  # allowed unsafe steps per episode (5 % of 200)
    target_indentation: float = 0.003  # m; the target face position lies this far below the skin (≈ 8 N)
    position_tolerance: float = 0.005  # m; success radius of the face position
    angle_tolerance: float = math.radians(5.0)  # rad; success radius of the orientation
    position_scale: float = 0.05  # m; reward −1 per this much position error
    angle_scale: float = 0.5  # rad; reward −1 per this much orientation error
    success_bonus: float = 1.0  # reward per successful step

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("position_tolerance", "angle_tolerance", "position_scale", "angle_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= self.target_indentation < self.press_depth:
            raise ValueError(
                f"target_indentation must be in [0, press_depth = {self.press_depth}) m, got {self.target_indentation}"
            )
        if not self.success_bonus >= 0:
            raise ValueError(f"success_bonus must be >= 0, got {self.success_bonus!r}")


def long_axis_angle(organ: phantom_lib.Phantom) -> float:
    """Angle (rad, in (−π/2, π/2]) about +z of the organ's major principal axis in the x-y plane."""
    index = np.argwhere(np.asarray(organ.labels) == phantom_lib.ORGAN)
    if len(index) < 2:
        return 0.0
    xy = index[:, :2] - index[:, :2].mean(axis=0)
    _, vectors = np.linalg.eigh(xy.T @ xy)
    major = vectors[:, -1]
    angle = math.atan2(major[1], major[0])
    if angle <= -math.pi / 2:
        angle += math.pi
    elif angle > math.pi / 2:
        angle -= math.pi
    return angle


class UsNavigate(ProbeEnv[NavigateConfig]):
    """Observation [25] = the probe's [16] + target position − face position [3] m + relative orientation
    R_targetᵀ·R as 6-D [6] (identity: 1 0 0 0 1 0)."""

    def __init__(self, config: NavigateConfig):
        super().__init__(config)
        center = np.asarray(self.phantom.organ_center, np.float64)
        roll = long_axis_angle(self.phantom)
        self.target_position = np.array([center[0], center[1], -config.target_indentation])
        self.target_roll = roll
        reach = self._half_extent[:2] - config.scan_margin
        if (np.abs(self.target_position[:2]) > reach).any() or abs(roll) > config.max_roll_command:
            raise ValueError(
                f"the standard plane (face at {self.target_position[:2].round(3).tolist()} m, roll "
                f"{roll:.2f} rad) is outside the probe's reach (±{reach.round(3).tolist()} m, roll "
                f"±{config.max_roll_command} rad): enlarge phantom_shape or max_roll_command"
            )
        c, s = math.cos(roll), math.sin(roll)
        self.target_rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    @classmethod
    def default_config(cls) -> NavigateConfig:
        return NavigateConfig()

    def pose_error(self, data: mjx.Data) -> tuple[jax.Array, jax.Array]:
        """(face position error ‖p − p*‖ m, orientation error angle rad) to the standard plane's pose."""
        position, rotation = self.probe_pose(data)
        target = jp.asarray(self.target_rotation, jp.float32)
        distance = jp.linalg.norm(position - jp.asarray(self.target_position, jp.float32))
        return distance, rotation_angle(rotation, target)

    def success(self, data: mjx.Data) -> jax.Array:
        """1.0 within position_tolerance and angle_tolerance of the target pose while in contact, else 0."""
        distance, angle = self.pose_error(data)
        ok = (distance < self._config.position_tolerance) & (angle < self._config.angle_tolerance)
        return jp.where(ok & self.in_contact(data), 1.0, 0.0)

    def _task_observation(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        position, rotation = self.probe_pose(data)
        target = jp.asarray(self.target_rotation, jp.float32)
        return jp.concatenate(
            [jp.asarray(self.target_position, jp.float32) - position, rotation_6d(target.T @ rotation)]
        )

    def _task_reward_and_cost(self, data: mjx.Data, action: jax.Array, info: dict[str, Any]):
        cfg = self._config
        distance, angle = self.pose_error(data)
        reward = -distance / cfg.position_scale - angle / cfg.angle_scale + cfg.success_bonus * self.success(data)
        return reward, jp.zeros(())

    def _task_metrics(self, data: mjx.Data, info: dict[str, Any]) -> dict[str, jax.Array]:
        return {"success": self.success(data)}
