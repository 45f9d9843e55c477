"""Native twin of an MJX env: the same model stepped with native `mujoco.mj_step` (float64, C), numpy in/out.

Used as the MuJoCo-simulated robot (hardware/) and to check MJX against native MuJoCo. Physics: the env's
`mj_model`, `n_substeps` `mj_step`s per env step with the same action→ctrl map. Observation, reward, cost
and info updates run the env's own jitted `evaluate` on a view of `MjData`, so they are the MJX env's
formulas by construction; the initial state comes from the env's jitted `reset` (same seed → same start).

    twin = NativeTwin(envs.make("safe_cartpole"), seed=0)
    obs = twin.reset()
    obs, reward, cost, done = twin.step(np.array([0.3]))
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import mujoco
import numpy as np

from envs.base import MjxEnv

#: a `NativeView` field: numpy as copied from `MjData`, a jax array inside the jitted `evaluate`
ViewArray = np.ndarray | jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NativeView:
    """The `mjx.Data` fields an env's observation/reward/cost may read, copied from native `MjData`."""

    qpos: ViewArray  # [nq]
    qvel: ViewArray  # [nv]
    ctrl: ViewArray  # [nu]
    act: ViewArray  # [na] actuator activations (e.g. muscles)
    time: ViewArray  # [] s
    xpos: ViewArray  # [nbody, 3] m
    xquat: ViewArray  # [nbody, 4]
    site_xpos: ViewArray  # [nsite, 3] m
    sensordata: ViewArray  # [nsensordata]

    @classmethod
    def from_mj_data(cls, data: mujoco.MjData) -> NativeView:
        f32 = np.float32
        return cls(
            qpos=data.qpos.astype(f32),
            qvel=data.qvel.astype(f32),
            ctrl=data.ctrl.astype(f32),
            act=data.act.astype(f32),
            time=np.asarray(data.time, f32),
            xpos=data.xpos.astype(f32),
            xquat=data.xquat.astype(f32),
            site_xpos=data.site_xpos.astype(f32),
            sensordata=data.sensordata.astype(f32),
        )


class NativeTwin:
    """numpy `reset() -> obs`, `step(action) -> (obs, reward, cost, done)` on native MuJoCo."""

    def __init__(self, env: MjxEnv, seed: int = 0):
        self.env = env
        self.mj_model: mujoco.MjModel = env.mj_model
        self.mj_data: mujoco.MjData = mujoco.MjData(self.mj_model)
        self.n_substeps = env.n_substeps
        self.episode_length = env.episode_length
        self._key = jax.random.PRNGKey(seed)
        self._reset = jax.jit(env.reset)
        self._evaluate = jax.jit(self._packed_evaluate)
        self._ctrl_low = np.asarray(env._ctrl_low, np.float64)
        self._ctrl_high = np.asarray(env._ctrl_high, np.float64)
        self._info: dict[str, Any] | None = None
        self.steps = 0

    def _packed_evaluate(self, view: NativeView, action: jax.Array, info: dict[str, Any]):
        """env.evaluate with obs, reward and cost packed in one array [obs + 2] (one device→host copy)."""
        obs, reward, cost, info = self.env.evaluate(view, action, info)
        return jax.numpy.concatenate([obs, reward[None], cost[None]]), info

    def reset(self, seed: int | None = None, key: jax.Array | None = None) -> np.ndarray:
        """Start an episode from the env's own random initial state; returns obs [observation_size].

        `seed` restarts the twin's key stream: the reset then equals the first reset of `NativeTwin(env, seed)`.
        `key` (a JAX PRNG key; the stream is left as it is) starts the episode `env.reset(key)` starts, e.g. to
        replay natively an episode an MJX rollout began with that key.
        """
        if seed is not None and key is not None:
            raise ValueError("give NativeTwin.reset a seed or a key, not both")
        if key is not None:
            reset_key = key
        else:
            if seed is not None:
                self._key = jax.random.PRNGKey(seed)
            self._key, reset_key = jax.random.split(self._key)
        state = self._reset(reset_key)
        mujoco.mj_resetData(self.mj_model, self.mj_data)
        self.mj_data.qpos[:] = np.asarray(state.pipeline_state.qpos, np.float64)
        self.mj_data.qvel[:] = np.asarray(state.pipeline_state.qvel, np.float64)
        mujoco.mj_forward(self.mj_model, self.mj_data)
        self._info = state.info
        self.steps = 0
        return np.asarray(state.obs)

    def action_to_ctrl(self, action: np.ndarray) -> np.ndarray:
        """Clip `action` [action_size] to [-1, 1] and map it onto the actuators' control range."""
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        return self._ctrl_low + (action + 1.0) * 0.5 * (self._ctrl_high - self._ctrl_low)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, float, bool]:
        """Apply `action` [action_size] in [-1, 1] for one env step (ctrl_dt); returns obs, reward, cost
        (≥ 0) and done (time limit reached or non-finite state)."""
        if self._info is None:
            raise RuntimeError("NativeTwin.step called before reset()")
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        self.mj_data.ctrl[:] = self.action_to_ctrl(action)
        mujoco.mj_step(self.mj_model, self.mj_data, nstep=self.n_substeps)
        packed, self._info = self._evaluate(NativeView.from_mj_data(self.mj_data), action, self._info)
        packed = np.asarray(packed)
        obs, reward, cost = packed[:-2], float(packed[-2]), float(packed[-1])
        self.steps += 1
        done = self.steps >= self.episode_length or not np.isfinite(packed).all()
        return obs, reward, cost, bool(done)

    def state_vector(self) -> np.ndarray:
        """[qpos, qvel] (float64) — the physical state."""
        return np.concatenate([self.mj_data.qpos, self.mj_data.qvel])

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Overwrite the physical state (info such as goals is kept)."""
        self.mj_data.qpos[:] = qpos
        self.mj_data.qvel[:] = qvel
        mujoco.mj_forward(self.mj_model, self.mj_data)

    @property
    def info(self) -> dict[str, Any]:
        """The env info of the current episode (e.g. point_goal's "goal" and "hazards")."""
        return {} if self._info is None else jax.tree.map(np.asarray, self._info)

    @property
    def observation_size(self) -> int:
        return self.env.observation_size

    @property
    def action_size(self) -> int:
        return self.env.action_size

    @property
    def dt(self) -> float:
        return self.env.dt


__all__ = ["NativeTwin", "NativeView"]
