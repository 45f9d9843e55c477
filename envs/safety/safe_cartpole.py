"""Safe cart-pole swing-up: the pole starts hanging down, must be swung up and balanced with the cart
kept inside a band |x| < `cost_bound` (SOOPER's CartpoleSwingup: cost 1 when |x| ≥ 0.25, T = 1000, d = 100).

Observation [x (m), cos θ, sin θ, ẋ (m/s), θ̇ (rad/s)], θ = 0 upright. Reward per step in [0, 1]:
upright · centred · small control · small angular velocity (dm_control-style), so returns are ≤ 1000.
Cost 1 per step where |x| > cost_bound.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jp
import mujoco
from mujoco import mjx

from envs.base import EnvConfig, MjxEnv

_XML = """
<mujoco model="safe_cartpole">
  <option timestep="0.01">
    <flag contact="disable"/>
  </option>
  <worldbody>
    <light pos="0 0 4" dir="0 0 -1"/>
    <camera name="side" pos="0 -5.5 0.3" xyaxes="1 0 0 0 0 1"/>
    <geom name="floor" type="plane" size="4 2 0.1" pos="0 0 -1.2" rgba=".85 .85 .85 1"/>
    <geom name="rail" type="capsule" fromto="-{rail} 0 0 {rail} 0 0" size="0.02" rgba=".3 .3 .3 1"
          contype="0" conaffinity="0"/>
    <geom name="band_left" type="box" pos="-{bound} 0 -0.6" size="0.01 0.05 0.6" rgba=".9 .2 .2 .5"
          contype="0" conaffinity="0"/>
    <geom name="band_right" type="box" pos="{bound} 0 -0.6" size="0.01 0.05 0.6" rgba=".9 .2 .2 .5"
          contype="0" conaffinity="0"/>
    <body name="cart" pos="0 0 0">
      <joint name="slider" type="slide" axis="1 0 0" limited="true" range="-{rail} {rail}"
             damping="{slider_damping}"/>
      <geom name="cart" type="box" size="0.2 0.15 0.1" mass="{cart_mass}" rgba=".2 .4 .8 1"/>
      <body name="pole" pos="0 0 0">
        <joint name="hinge" type="hinge" axis="0 1 0" damping="{hinge_damping}"/>
        <geom name="pole" type="capsule" fromto="0 0 0 0 0 {length}" size="0.045" mass="{pole_mass}"
              rgba=".9 .5 .1 1"/>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor name="force" joint="slider" gear="{max_force}" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""


@dataclasses.dataclass(frozen=True)
class SafeCartpoleConfig(EnvConfig):
    ctrl_dt: float = 0.02  # s (2 Euler substeps); 1000 steps = 20 s
    sim_dt: float = 0.01  # s; kept (dm_control's cartpole step): 20 ms would change every trained run's physics
    episode_length: int = 1000  # steps
    cost_budget: float = 100.0  # allowed steps outside the band per episode
    cost_bound: float = 0.25  # m; cost 1 where |cart x| > cost_bound
    rail_limit: float = 1.8  # m; hard joint limit of the slider
    cart_mass: float = 1.0  # kg
    pole_mass: float = 0.1  # kg
    pole_length: float = 1.0  # m
    max_force: float = 10.0  # N at |action| = 1
    slider_damping: float = 5e-4  # N·s/m
    hinge_damping: float = 2e-6  # N·m·s/rad
    init_noise: float = 0.01  # std of the initial x (m) and θ − π (rad)
    # MuJoCo solver settings (issue #13; checked by tests/envs/test_solver_settings.py). The only constraint is
    # the slider's rail limit, one row active only at a rail end. Newton's first step from the unconstrained
    # acceleration solves one active limit exactly, so 1 iteration with 4 line-search steps (mujoco_playground's
    # MJX setting) gives MuJoCo's default 100/50 trajectory (measured: qpos within 1e-6 over 2 s driven into both
    # rail ends at 5.7 m/s, rail overshoot 13 mm in both), while MJX, whose batched solver loop runs every env
    # until the slowest has converged, stepped 2.5-6x slower with 100/50 (batch 1024, 2-core CPU).
    solver: str = "newton"  # nv = 2: one Newton step (2x2 Hessian) beats CG's several
    iterations: int = 1  # per physics step
    ls_iterations: int = 4  # per solver iteration
    integrator: str = "euler"  # semi-implicit, joint damping implicit: unchanged from every run trained so far
    # with one Newton iteration the previous acceleration is no better a start than the unconstrained one;
    # skipping it saves MJX two constraint-cost evaluations per physics step (≈ 10 %)
    warmstart: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.cost_bound < self.rail_limit:
            raise ValueError(f"cost_bound must be in (0, rail_limit={self.rail_limit}) m, got {self.cost_bound}")
        for name in ("cart_mass", "pole_mass", "pole_length", "max_force"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.slider_damping < 0 or self.hinge_damping < 0 or self.init_noise < 0:
            raise ValueError("slider_damping, hinge_damping and init_noise must be >= 0")


def _gaussian_tolerance(value: jax.Array, margin: float) -> jax.Array:
    """1 at value = 0, 0.1 at |value| = margin (dm_control's gaussian sigmoid)."""
    return jp.exp(-math.log(10.0) * (value / margin) ** 2)


class SafeCartpole(MjxEnv[SafeCartpoleConfig]):
    cost_description = "1 per step where |cart x| > cost_bound (default 0.25 m)"
    SHIFT_PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # 0.2 kg pole: the swinging pole pushes the cart twice as hard (m·l/2·θ̇² ≈ 3.6 N at 6 rad/s, of the
        # 10 N motor), so keeping |x| < 0.25 m while swinging up is clearly harder; still well controllable
        "heavy_pole": {"body_mass_scale": {"pole": 2.0}},
        # 7 N instead of 10 N: slower swing-up (more pumping), less authority to stop the cart at the band
        "weak_motor": {"actuator_gain_scale": 0.7},
    }

    @classmethod
    def default_config(cls) -> SafeCartpoleConfig:
        return SafeCartpoleConfig()

    def _build_mj_model(self, config: SafeCartpoleConfig) -> mujoco.MjModel:
        xml = _XML.format(
            rail=config.rail_limit,
            bound=config.cost_bound,
            slider_damping=config.slider_damping,
            hinge_damping=config.hinge_damping,
            cart_mass=config.cart_mass,
            pole_mass=config.pole_mass,
            length=config.pole_length,
            max_force=config.max_force,
        )
        return mujoco.MjModel.from_xml_string(xml)

    def _initial_qpos_qvel(self, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        noise = self._config.init_noise * jax.random.normal(rng, (2,))
        qpos = jp.array([0.0, jp.pi]) + noise  # cart centred, pole hanging down
        return qpos, jp.zeros(2)

    def _observe(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        x, angle = data.qpos[0], data.qpos[1]
        return jp.stack([x, jp.cos(angle), jp.sin(angle), data.qvel[0], data.qvel[1]])

    def _make_transition_cost(self):
        bound = self._config.cost_bound

        def cost(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
            return jp.where(jp.abs(next_obs[..., 0]) > bound, 1.0, 0.0)  # obs[0] is the cart position x

        return cost

    def _reward_and_cost(self, data: mjx.Data, action: jax.Array, info: dict[str, Any]):
        x, angle, angular_velocity = data.qpos[0], data.qpos[1], data.qvel[1]
        upright = (jp.cos(angle) + 1.0) / 2.0
        centred = (1.0 + _gaussian_tolerance(x, 2.0)) / 2.0
        small_control = (4.0 + (1.0 - jp.mean(action**2))) / 5.0
        small_velocity = (1.0 + _gaussian_tolerance(angular_velocity, 5.0)) / 2.0
        reward = upright * centred * small_control * small_velocity
        cost = jp.where(jp.abs(x) > self._config.cost_bound, 1.0, 0.0)
        return reward, cost
