"""us_coverage: image as much of the organ as possible (anatomy reconstruction, issue #10).

An occupancy grid of `coverage_grid`³ cells spans the organ's bounding box; a cell is an organ cell where it holds
the centre of at least one organ voxel. A cell becomes covered when a pixel of the image plane falls in it while
the probe is in contact (an image exists). The covered cells live in `state.info["covered"]` [G, G, G] bool, so
the reward = coverage_reward × (organ cells newly covered by this step's image) − path_penalty × (distance the face
moved in the step, m; previous position in `info["face_position"]`) is a marginal gain, Markov in the env state.
Cost: the probe's safety cost (force, tilt).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jp
import numpy as np
from mujoco import mjx

from envs.ultrasound import bmode
from envs.ultrasound import phantom as phantom_lib
from envs.ultrasound.probe import ProbeConfig, ProbeEnv


@dataclasses.dataclass(frozen=True)
class CoverageConfig(ProbeConfig):
    cost_budget: float = 10.0  # allowed unsafe steps per episode (5 % of 200)
    coverage_grid: int = 16  # cells per axis of the occupancy grid over the organ's bounding box, in [2, 64]
    coverage_reward: float = 0.01  # reward per newly covered organ cell (SonoGym's scale)
    path_penalty: float = 1.0  # reward −= this × distance the probe face moved (m) in the step
    # image-plane samples per axis that mark cells (the plane of the B-mode image, sampled coarser than its
    # pixels: 32 over the default 4 × 8 cm is 1.25 × 2.5 mm, finer than a cell of 16³ over an organ, ≥ 3 mm)
    coverage_resolution: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        grid = self.coverage_grid
        if isinstance(grid, bool) or not isinstance(grid, int) or not 2 <= grid <= 64:
            raise ValueError(f"coverage_grid must be an integer in [2, 64], got {grid!r}")
        res = self.coverage_resolution
        if isinstance(res, bool) or not isinstance(res, int) or not 8 <= res <= 512:
            raise ValueError(f"coverage_resolution must be an integer in [8, 512], got {res!r}")
        if not self.coverage_reward > 0:
            raise ValueError(f"coverage_reward must be > 0, got {self.coverage_reward!r}")
        if not self.path_penalty >= 0:
            raise ValueError(f"path_penalty must be >= 0, got {self.path_penalty!r}")


def organ_grid(organ: phantom_lib.Phantom, cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid corner [3] m, cell size [3] m, organ cells [cells, cells, cells] bool) over the organ's bounding box."""
    index = np.argwhere(np.asarray(organ.labels) == phantom_lib.ORGAN)
    if len(index) == 0:
        raise ValueError("the phantom has no organ voxels: choose another phantom_seed or a larger phantom_shape")
    voxel = organ.voxel_size
    origin = np.asarray(organ.origin, np.float64)
    low = origin + index.min(axis=0) * voxel
    high = origin + (index.max(axis=0) + 1) * voxel
    size = (high - low) / cells
    centers = origin + (index + 0.5) * voxel
    cell = np.clip(np.floor((centers - low) / size).astype(int), 0, cells - 1)
    mask = np.zeros((cells,) * 3, bool)
    mask[cell[:, 0], cell[:, 1], cell[:, 2]] = True
    return low, size, mask


class UsCoverage(ProbeEnv[CoverageConfig]):
    """Observation [20] = the probe's [16] + organ centre − face position [3] m + covered fraction of the organ
    cells [1]."""

    def __init__(self, config: CoverageConfig):
        super().__init__(config)
        low, size, mask = organ_grid(self.phantom, config.coverage_grid)
        self._grid_low = jp.asarray(low, jp.float32)
        self._cell_size = jp.asarray(size, jp.float32)
        self.organ_cells = jp.asarray(mask)
        self.num_organ_cells = int(mask.sum())
        self._sampling = dataclasses.replace(
            self.bmode, height=config.coverage_resolution, width=config.coverage_resolution
        )

    @classmethod
    def default_config(cls) -> CoverageConfig:
        return CoverageConfig()

    def imaged_cells(self, data: mjx.Data) -> jax.Array:
        """[G, G, G] bool: organ cells holding a pixel of the current image (none without contact)."""
        grid = self._config.coverage_grid
        position, rotation = self.probe_pose(data)
        points = bmode.image_plane_points(position, rotation, self._sampling).reshape(-1, 3)
        index = jp.floor((points - self._grid_low) / self._cell_size).astype(jp.int32)  # [P, 3]
        inside = jp.all((index >= 0) & (index < grid), axis=-1) & self.in_contact(data)
        index = jp.clip(index, 0, grid - 1)
        flat = (index[:, 0] * grid + index[:, 1]) * grid + index[:, 2]
        hit = jp.zeros(grid**3, jp.int32).at[flat].max(inside.astype(jp.int32))  # max: order-independent
        return (hit > 0).reshape((grid,) * 3) & self.organ_cells

    def _init_info(self, rng: jax.Array, data: mjx.Data) -> dict[str, Any]:
        position, _ = self.probe_pose(data)
        return {
            "covered": jp.zeros((self._config.coverage_grid,) * 3, bool),
            "new_cells": jp.zeros(()),
            "face_position": position,
        }

    def evaluate(self, data: mjx.Data, action: jax.Array, info: dict[str, Any]):
        """The probe's `evaluate`, with this step's newly imaged organ cells computed once (a transient
        info entry read by the reward and the info update)."""
        info = dict(info, step_new_cells=self.imaged_cells(data) & ~info["covered"])
        obs, reward, cost, info = super().evaluate(data, action, info)
        info.pop("step_new_cells")
        return obs, reward, cost, info

    def _task_observation(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        position, _ = self.probe_pose(data)
        fraction = jp.sum(info["covered"]) / self.num_organ_cells
        return jp.concatenate([self.phantom.organ_center - position, fraction[None]])

    def _task_reward_and_cost(self, data: mjx.Data, action: jax.Array, info: dict[str, Any]):
        cfg = self._config
        new = jp.sum(info["step_new_cells"])
        position, _ = self.probe_pose(data)
        path = jp.linalg.norm(position - info["face_position"])  # m the face moved in the step
        return cfg.coverage_reward * new - cfg.path_penalty * path, jp.zeros(())

    def _update_info(self, data: mjx.Data, info: dict[str, Any]) -> dict[str, Any]:
        info["new_cells"] = jp.sum(info["step_new_cells"]).astype(jp.float32)
        info["covered"] = info["covered"] | info["step_new_cells"]
        info["face_position"] = self.probe_pose(data)[0]
        return info

    def _task_metrics(self, data: mjx.Data, info: dict[str, Any]) -> dict[str, jax.Array]:
        """new_cells: organ cells first covered in this step (the episode sum is the covered count)."""
        return {"new_cells": info["new_cells"]}
