"""A pure-numpy example robot: the template for implementing `RobotInterface` on real hardware.

`PointMassRobot`: a 1-D point mass (x: m, v: m/s) pushed by a force in [-1, 1] N·(max_force); cost 1 while
|x| > 1 m. Its safe action is zero force. Used by tests and benchmarks that must run without JAX.
"""

from __future__ import annotations

import numpy as np

from hardware.robot.interface import RobotInterface, RobotSpec, RobotState


class PointMassRobot(RobotInterface):
    def __init__(
        self,
        dt: float = 0.01,
        mass: float = 1.0,
        max_force: float = 2.0,
        episode_length: int = 1000,
        rate_hz: float = 100.0,
    ):
        self.dt, self.mass, self.max_force, self.episode_length = dt, mass, max_force, episode_length
        self._spec = RobotSpec(
            name="point-mass",
            obs_shape=(2,),
            action_low=(-1.0,),
            action_high=(1.0,),
            rate_hz=rate_hz,
            params=(("max_force", max_force),),
            cost_budget=10.0,
        )
        self._x = np.zeros(2)
        self._steps = 0
        self._reward = self._cost = 0.0
        self.applied: list[float] = []  # every commanded force, for tests

    def spec(self) -> RobotSpec:
        return self._spec

    def read_state(self) -> RobotState:
        return RobotState(
            obs=self._x.astype(np.float32),
            reward=self._reward,
            cost=self._cost,
            done=self._steps >= self.episode_length,
        )

    def apply_action(self, action: np.ndarray) -> None:
        force = float(action[0]) * self.max_force
        self.applied.append(float(action[0]))
        x, v = self._x
        v = v + force / self.mass * self.dt
        self._x = np.array([x + v * self.dt, v])
        self._steps += 1
        self._reward = -float(self._x[0] ** 2)
        self._cost = float(abs(self._x[0]) > 1.0)

    def safe_action(self) -> np.ndarray:
        return np.zeros(1, np.float32)

    def idle(self) -> None:
        """A point mass at rest stays at rest: nothing to command while idle."""

    def reset(self, seed: int | None = None) -> RobotState:
        rng = np.random.default_rng(seed)
        self._x = np.array([rng.uniform(-0.5, 0.5), 0.0])
        self._steps, self._reward, self._cost = 0, 0.0, 0.0
        return self.read_state()

    def set_parameter(self, name: str, value: float) -> None:
        if name != "max_force":
            raise KeyError(name)
        if not 0 < value <= 100:
            raise ValueError(f"max_force must be in (0, 100], got {value}")
        self.max_force = value
