"""Simulated robot: one of our envs stepped by MuJoCo behind `RobotInterface`, with optional faults
(`saferl-deploy sim`).
It lives outside `hardware/robot/`, which must run on a robot without JAX or the envs.

Uses `envs.native.NativeTwin` (native `mujoco.mj_step`; the same obs/reward/cost formulas as the MJX env).
Runs as fast as the server's rate asks (real time at 1/ctrl_dt). Episode with seed s starts where
`NativeTwin(env, s).reset()` does.
Injection: actuation latency (whole periods), Gaussian observation noise, ±uniform timing jitter.
An episode ends at the env's episode length, on a non-finite state, or where the env ends it early by setting
`info["terminated"]` (race_car: the car left the arena), as the MJX env's `done` does.
"""

from __future__ import annotations

import collections
import dataclasses
import time

import numpy as np

from hardware.robot.interface import RobotInterface, RobotSpec, RobotState


@dataclasses.dataclass(frozen=True)
class SimConfig:
    env: str = "pendulum"  # registered env name
    latency_periods: int = 0  # actions take effect this many periods late
    obs_noise_std: float = 0.0  # std of Gaussian noise added to observations (obs units)
    jitter_s: float = 0.0  # each apply_action sleeps uniform [0, jitter_s] s (simulated bus delays)

    def __post_init__(self) -> None:
        if not 0 <= self.latency_periods <= 100:
            raise ValueError(f"latency_periods must be in [0, 100], got {self.latency_periods}")
        if not self.obs_noise_std >= 0:
            raise ValueError(f"obs_noise_std must be >= 0, got {self.obs_noise_std}")
        if not 0 <= self.jitter_s <= 1:
            raise ValueError(f"jitter_s must be in [0, 1], got {self.jitter_s}")


class SimRobot(RobotInterface):
    def __init__(self, config: SimConfig = SimConfig(), seed: int = 0):
        import envs
        from envs.native import NativeTwin

        self.config = config
        self.env = envs.make(config.env)
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        obs_dim, act_dim = self.env.observation_size, self.env.action_size
        self._spec = RobotSpec(
            name=f"{config.env}-sim",
            obs_shape=(obs_dim,),
            action_low=(-1.0,) * act_dim,
            action_high=(1.0,) * act_dim,
            rate_hz=1.0 / self.env.dt,
            cost_budget=float(self.env.cost_budget),
            params=(("obs_noise_std", config.obs_noise_std),),
        )
        self._twin = NativeTwin(self.env, seed)
        self._terminates = False  # whether the env's info says when it ends an episode early (set by reset)
        self._reading = RobotState(obs=np.zeros(obs_dim, np.float32))
        self._queue: collections.deque = collections.deque()
        self._steps = 0
        self.reset(seed)
        self._twin.step(self.safe_action())  # compile the step now, not in the first control period
        self.reset(seed)

    def spec(self) -> RobotSpec:
        return self._spec

    def reset(self, seed: int | None = None) -> RobotState:
        seed = self._seed if seed is None else int(seed)
        obs = np.asarray(self._twin.reset(seed), np.float32)
        self._terminates = "terminated" in self._twin.info
        self._queue = collections.deque([self.safe_action()] * self.config.latency_periods)
        self._steps = 0
        self._reading = RobotState(obs=obs)
        return self.read_state()

    def apply_action(self, action: np.ndarray) -> None:
        if self.config.jitter_s:
            time.sleep(self._rng.uniform(0.0, self.config.jitter_s))
        self._queue.append(np.asarray(action, np.float32))
        obs, reward, cost, done = self._twin.step(self._queue.popleft())
        self._steps += 1
        done = bool(done) or self._steps >= self.env.episode_length
        if self._terminates:
            done = done or bool(self._twin.info["terminated"])
        self._reading = RobotState(obs=np.asarray(obs, np.float32), reward=float(reward), cost=float(cost), done=done)

    def read_state(self) -> RobotState:
        reading = self._reading
        if self.config.obs_noise_std:
            noise = self._rng.normal(0.0, self.config.obs_noise_std, reading.obs.shape).astype(np.float32)
            reading = dataclasses.replace(reading, obs=reading.obs + noise)
        return reading

    def safe_action(self) -> np.ndarray:
        return np.zeros(self._spec.action_shape, np.float32)

    def idle(self) -> None:
        """A simulation pauses while idle (the reset state stays the episode's first state)."""

    def set_parameter(self, name: str, value: float) -> None:
        if name != "obs_noise_std":
            raise KeyError(name)
        if not value >= 0:
            raise ValueError(f"obs_noise_std must be >= 0, got {value}")
        self.config = dataclasses.replace(self.config, obs_noise_std=float(value))
