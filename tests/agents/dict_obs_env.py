"""A test-only env with dict observations {"image": [8, 8, 1], "state": [2]} (registered by the tests that use
it, never in the library registry): a point mass on a plane must reach the origin, and only the image shows
where it is, so a policy that ignores the image cannot do it.

Physics: slide joints x, y (damping 2 N·s/m, 1 kg), motors ±2 N, no gravity or contacts. Image: a Gaussian
blob (σ = `blob_sigma` m) at the point on an 8×8 grid over the arena [-1, 1]² m; state: velocity (m/s).
Reward −‖position‖ (m) per step; cost 1 per step with x > `hazard_x` (budget `cost_budget`).
`observation="state"` gives the flat vector [x, y, vx, vy] instead (the same task, for comparisons).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jp
import mujoco
from brax.envs.base import State
from mujoco import mjx

from envs.base import EnvConfig, MjxEnv

GRID = 8  # image height and width, pixels

_XML = """
<mujoco model="pixel_point">
  <option gravity="0 0 0"><flag contact="disable"/></option>
  <worldbody>
    <body name="point">
      <joint name="x" type="slide" axis="1 0 0" damping="2"/>
      <joint name="y" type="slide" axis="0 1 0" damping="2"/>
      <geom name="point" type="sphere" size="0.05" mass="1"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="x" gear="2" ctrllimited="true" ctrlrange="-1 1"/>
    <motor joint="y" gear="2" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""


@dataclasses.dataclass(frozen=True)
class PixelPointConfig(EnvConfig):
    ctrl_dt: float = 0.1  # s
    sim_dt: float = 0.05  # s
    episode_length: int = 30  # steps
    cost_budget: float = 3.0  # steps in the hazard per episode
    observation: str = "pixels"  # pixels: {"image", "state"}; state: [x, y, vx, vy]
    blob_sigma: float = 0.3  # m
    hazard_x: float = 0.6  # m
    integrator: str = "euler"
    iterations: int = 1
    ls_iterations: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.observation not in ("pixels", "state"):
            raise ValueError(f"observation must be 'pixels' or 'state', got {self.observation!r}")


class PixelPoint(MjxEnv):
    cost_description = "1 per step with x > hazard_x"

    @classmethod
    def default_config(cls) -> PixelPointConfig:
        return PixelPointConfig()

    def _build_mj_model(self, config: EnvConfig) -> mujoco.MjModel:
        return mujoco.MjModel.from_xml_string(_XML)

    def _initial_qpos_qvel(self, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        return jax.random.uniform(rng, (2,), minval=-0.8, maxval=0.8), jp.zeros(2)

    def image(self, position: jax.Array) -> jax.Array:
        """[8, 8, 1] Gaussian blob at `position` [2] (m) on the arena [-1, 1]²; values in (0, 1]."""
        centres = jp.linspace(-1.0 + 1.0 / GRID, 1.0 - 1.0 / GRID, GRID)
        gy, gx = jp.meshgrid(centres, centres, indexing="ij")
        squared = (gx - position[0]) ** 2 + (gy - position[1]) ** 2
        return jp.exp(-squared / (2.0 * self.config.blob_sigma**2))[..., None]

    def _observe(self, data: mjx.Data, info: dict[str, Any]) -> Any:
        if self.config.observation == "state":
            return jp.concatenate([data.qpos, data.qvel])
        return {"image": self.image(data.qpos), "state": data.qvel}

    def _reward_and_cost(self, data: mjx.Data, action: jax.Array, info: dict[str, Any]) -> tuple[jax.Array, jax.Array]:
        return -jp.linalg.norm(data.qpos), (data.qpos[0] > self.config.hazard_x).astype(jp.float32)

    def step(self, state: State, action: jax.Array) -> State:
        """`MjxEnv.step`, with the blow-up check over every part of a dict observation."""
        action = jp.clip(action, -1.0, 1.0)
        data = self.pipeline_step(state.pipeline_state, action)
        obs, reward, cost, info = self.evaluate(data, action, dict(state.info))
        finite = jp.all(jp.stack([jp.isfinite(leaf).all() for leaf in jax.tree.leaves(obs)]))
        metrics = {**state.metrics, "cost": cost}
        return state.replace(
            pipeline_state=data, obs=obs, reward=reward, done=jp.where(finite, 0.0, 1.0), metrics=metrics, info=info
        )

    @property
    def observation_size(self) -> Any:
        if self.config.observation == "state":
            return 4
        return {"image": (GRID, GRID, 1), "state": (2,)}
