"""Gymnasium face of every env: `to_gymnasium(name, **config)` is a `gymnasium.Env` (with `num_envs`, a
`gymnasium.vector.VectorEnv`) that steps the jitted MJX env with numpy in and out and the step's safety cost in
`info["cost"]`, or, with `safety_gym_signature=True`, returns Safety-Gymnasium's
(obs, reward, cost, terminated, truncated, info).

Seeds map to JAX keys as the trainers' stack draws them: `reset(seed=s)` starts from
`env.reset(jax.random.PRNGKey(s))` (the vector env: env i from `jax.random.split(PRNGKey(s), num_envs)[i]`); a
`reset()` without a seed continues the chain with `jax.random.split(state.info["rng"])[1]`, the key
`envs.wrappers.AutoResetWrapper` draws (the vector env auto-resets with it); the very first unseeded `reset()`
draws its seed from Gymnasium's `np_random`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import gymnasium
import jax
import jax.numpy as jp
import numpy as np
from brax.envs.base import Env, State
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from envs.registry import EnvError, make
from envs.render import render_frames
from envs.training_env import physics_fingerprint
from envs.wrappers.auto_reset import AutoResetWrapper
from envs.wrappers.episode import EpisodeWrapper
from envs.wrappers.vmap import VmapWrapper

RENDER_MODES = ("rgb_array",)  # headless: frames [H, W, 3] uint8 through `envs.render.render_frames`
_SEED_LIMIT = 2**32  # seeds in [0, 2**32): `PRNGKey` keeps only a seed's low 32 bits without jax_enable_x64


class _Programs(NamedTuple):
    """The jitted reset and step of one env stack (one compile each, shared by every face of equal physics).

    reset(keys) -> (state, obs); step(state, action) -> (state, (obs, reward, cost, terminated, truncated,
    final_obs)). The single env takes a key [2] and action [act]; the vector env keys [B, 2], actions [B, act]
    and every output gains a leading [B] axis."""

    reset: Callable[[jax.Array], tuple[State, Any]]
    step: Callable[[State, jax.Array], tuple[State, tuple[Any, ...]]]


# (physics_fingerprint, num_envs or None) -> programs; only for unwrapped MJX envs, whose physics the
# fingerprint identifies (a brax wrapper around one would change the program but not the fingerprint)
_PROGRAMS: dict[tuple[str, int | None], _Programs] = {}


def _strong(state: State) -> State:
    """`state` with weakly typed leaves made strong (e.g. `done` of a `jp.where` of Python floats), so that reset
    and step return the same types and the step program is compiled once, not again for its own output."""
    return jax.tree.map(lambda x: x.astype(x.dtype) if jax.typeof(x).weak_type else x, state)


def _compile(stack: Env) -> _Programs:
    """Jitted reset/step of `stack` (a time-limited env, auto-reset where batched) with numpy-ready outputs."""

    def reset(key: jax.Array) -> tuple[State, Any]:
        state = _strong(stack.reset(key))
        return state, state.obs

    def step(state: State, action: jax.Array) -> tuple[State, tuple[Any, ...]]:
        state = _strong(stack.step(state, action))
        truncated = state.info["truncation"] > 0  # the time limit, not a failure, ended the episode
        terminated = (state.done > 0) & ~truncated  # a blown-up simulation (non-finite observation)
        final_obs = state.info.get("final_obs", state.obs)  # before an auto-reset (vector env)
        return state, (state.obs, state.reward, state.info["cost"], terminated, truncated, final_obs)

    return _Programs(jax.jit(reset), jax.jit(step))


def _programs(env: Env, num_envs: int | None) -> _Programs:
    """The compiled stack of `env`: time limit (`env.episode_length`), plus vmap and auto-reset when batched."""
    episode_length = env.unwrapped.episode_length
    if num_envs is None:
        build = lambda: EpisodeWrapper(env, episode_length)  # noqa: E731
    else:  # the order of `envs.wrap_training_env`: vmap -> time limit -> auto-reset
        build = lambda: AutoResetWrapper(EpisodeWrapper(VmapWrapper(env, num_envs), episode_length))  # noqa: E731
    if env is not env.unwrapped:
        return _compile(build())
    key = (physics_fingerprint(env), num_envs)
    if key not in _PROGRAMS:
        _PROGRAMS[key] = _compile(build())
    return _PROGRAMS[key]


def observation_space(observation_size: int | Mapping[str, tuple[int, ...]]) -> spaces.Space:
    """float32 Box [obs_dim] (unbounded) for vector observations, `spaces.Dict` of Boxes for dict ones."""
    if isinstance(observation_size, Mapping):
        return spaces.Dict(
            {name: spaces.Box(-np.inf, np.inf, tuple(shape), np.float32) for name, shape in observation_size.items()}
        )
    return spaces.Box(-np.inf, np.inf, (int(observation_size),), np.float32)


def _to_numpy(obs: Any) -> Any:
    """A fresh float32 numpy copy of an observation (array or dict of arrays)."""
    if isinstance(obs, Mapping):
        return {name: np.array(leaf, dtype=np.float32) for name, leaf in obs.items()}
    return np.array(obs, dtype=np.float32)


def _check_seed(seed: Any) -> None:
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < _SEED_LIMIT
    ):
        raise EnvError(f"seed must be an integer in [0, 2**32) or None, got {seed!r}")


def _check_render_mode(render_mode: str | None) -> None:
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise EnvError(f"render_mode must be one of {list(RENDER_MODES)} or None, got {render_mode!r}")


def _check_num_envs(num_envs: Any) -> None:
    if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise EnvError(f"num_envs must be an integer >= 1 (or None for one env), got {num_envs!r}")


def _check_options(options: dict[str, Any] | None) -> None:
    if options:
        raise EnvError(f"reset takes no options, got {options!r}")


class GymnasiumEnv(gymnasium.Env):
    """One MJX env as a `gymnasium.Env`: obs float32 [obs_dim] (or a dict of float32 arrays), actions float32
    [act] in [-1, 1] (clipped), reward float per step, `info["cost"]` float ≥ 0 per step; `truncated` after
    `env.episode_length` steps, `terminated` only where the simulation blew up.

    `reset`/`step` run programs jitted once per physics (shared by every face of an equal env); `state` is the
    current brax `State` (its `pipeline_state` the `mjx.Data`). `render()` draws the current state with
    `envs.render.render_frames` (a fresh `mujoco.Renderer` per call: ≈ 0.1–0.2 s a frame on a 2-core CPU).
    """

    # an instance variable with a class default, as gymnasium declares it (`__init__` sets the instance's own)
    metadata: dict[str, Any] = {"render_modes": list(RENDER_MODES)}  # noqa: RUF012

    def __init__(
        self,
        env: Env,
        safety_gym_signature: bool = False,
        render_mode: str | None = None,
        render_size: tuple[int, int] = (240, 320),
    ):
        """env: an MJX env (`envs.make(...)`, or one wrapped in brax wrappers); render_size: (height, width)
        of rendered frames, pixels."""
        _check_render_mode(render_mode)
        self._env = env
        self._programs = _programs(env, None)
        self._safety_gym_signature = bool(safety_gym_signature)
        self._state: State | None = None
        self.render_mode = render_mode
        self.render_size = render_size
        self.metadata = {**type(self).metadata, "render_fps": 1.0 / env.unwrapped.dt}
        self.observation_space = observation_space(env.observation_size)
        self.action_space = spaces.Box(-1.0, 1.0, (env.action_size,), np.float32)

    @property
    def mjx_env(self) -> Env:
        """The MJX env this face steps."""
        return self._env

    @property
    def state(self) -> State | None:
        """The current brax `State` (None before the first `reset`)."""
        return self._state

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Start an episode: from `PRNGKey(seed)`, else the next key of the chain (module docstring)."""
        _check_seed(seed)
        _check_options(options)
        super().reset(seed=seed)
        if seed is None and self._state is not None:  # the next key of the chain
            key = jax.random.split(self._state.info["rng"])[1]
        else:
            if seed is None:  # the first reset, unseeded
                seed = int(self.np_random.integers(_SEED_LIMIT))
            key = jax.random.PRNGKey(seed)
        self._state, obs = self._programs.reset(key)
        return _to_numpy(obs), {}

    def step(self, action: np.ndarray) -> tuple[Any, ...]:
        """(obs, reward, terminated, truncated, info), or with the Safety-Gymnasium signature
        (obs, reward, cost, terminated, truncated, info); `info["cost"]` is the step's cost either way."""
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self.action_space.shape:
            raise EnvError(f"action must have shape {self.action_space.shape}, got {action.shape}")
        self._state, outputs = self._programs.step(self._state, jp.asarray(action))
        obs, reward, cost, terminated, truncated, _ = jax.device_get(outputs)
        obs, reward, cost = _to_numpy(obs), float(reward), float(cost)
        terminated, truncated = bool(terminated), bool(truncated)
        if self._safety_gym_signature:
            return obs, reward, cost, terminated, truncated, {"cost": cost}
        return obs, reward, terminated, truncated, {"cost": cost}

    def render(self) -> np.ndarray | None:
        """RGB frame [height, width, 3] uint8 of the current state (`render_mode="rgb_array"`), else None."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode: pass render_mode='rgb_array'")
            return None
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset() before render()")
        return _render(self._env, self._state, None, self.render_size)


def _render(env: Env, state: State, index: int | None, render_size: tuple[int, int]) -> np.ndarray:
    """Frame [H, W, 3] uint8 of `state` (of its env `index` where batched), with the env's markers."""
    pick = (lambda x: np.asarray(x)) if index is None else (lambda x: np.asarray(x)[index])
    qpos = pick(state.pipeline_state.qpos)[None]
    info = jax.tree.map(pick, state.info)
    height, width = render_size
    return render_frames(env.unwrapped, qpos, height=height, width=width, info=info)[0]


class GymnasiumVectorEnv(gymnasium.vector.VectorEnv):
    """`num_envs` copies of an MJX env stepped as one jitted, vmapped program (same-step auto-reset).

    obs [B, obs_dim] float32 (or a dict of [B, ...]), actions [B, act] in [-1, 1], rewards [B] float32,
    `info["cost"]` [B] float32 (≥ 0; on a done step the finished transition's cost). Where an episode ends, the
    returned observation is already the next episode's first one and `info["final_obs"]` (an object array
    [B], None where not done; mask `info["_final_obs"]`) holds the observation the step reached, as in
    Gymnasium's `AutoresetMode.SAME_STEP`.
    """

    # an instance variable with a class default, as gymnasium declares it (`__init__` sets the instance's own)
    metadata: dict[str, Any] = {  # noqa: RUF012
        "render_modes": list(RENDER_MODES),
        "autoreset_mode": AutoresetMode.SAME_STEP,
    }

    def __init__(
        self,
        env: Env,
        num_envs: int,
        safety_gym_signature: bool = False,
        render_mode: str | None = None,
        render_size: tuple[int, int] = (240, 320),
    ):
        _check_num_envs(num_envs)
        _check_render_mode(render_mode)
        self._env = env
        self.num_envs = int(num_envs)
        self._programs = _programs(env, self.num_envs)
        self._safety_gym_signature = bool(safety_gym_signature)
        self._state: State | None = None
        self.render_mode = render_mode
        self.render_size = render_size
        self.metadata = {**type(self).metadata, "render_fps": 1.0 / env.unwrapped.dt}
        self.single_observation_space = observation_space(env.observation_size)
        self.single_action_space = spaces.Box(-1.0, 1.0, (env.action_size,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    @property
    def mjx_env(self) -> Env:
        return self._env

    @property
    def state(self) -> State | None:
        """The current batched brax `State` (leading axis [B]; None before the first `reset`)."""
        return self._state

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Reset every env: env i from `split(PRNGKey(seed), B)[i]`, else each from its own chain's next key."""
        _check_seed(seed)
        _check_options(options)
        super().reset(seed=seed)
        if seed is None and self._state is not None:  # each env's next key of its chain
            keys = jax.vmap(jax.random.split)(self._state.info["rng"])[:, 1]
        else:
            if seed is None:  # the first reset, unseeded
                seed = int(self.np_random.integers(_SEED_LIMIT))
            keys = jax.random.split(jax.random.PRNGKey(seed), self.num_envs)
        self._state, obs = self._programs.reset(keys)
        return _to_numpy(obs), {}

    def step(self, actions: np.ndarray) -> tuple[Any, ...]:
        """(obs, rewards, terminations, truncations, info), or (obs, rewards, costs, terminations,
        truncations, info) with the Safety-Gymnasium signature; every array has leading axis [B]."""
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != self.action_space.shape:
            raise EnvError(f"actions must have shape {self.action_space.shape}, got {actions.shape}")
        self._state, outputs = self._programs.step(self._state, jp.asarray(actions))
        obs, rewards, costs, terminated, truncated, final_obs = jax.device_get(outputs)
        obs, rewards, costs = _to_numpy(obs), np.array(rewards, np.float32), np.array(costs, np.float32)
        terminated, truncated = np.array(terminated, bool), np.array(truncated, bool)
        info: dict[str, Any] = {"cost": costs}
        done = terminated | truncated
        if done.any():
            info["final_obs"] = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(done):
                info["final_obs"][i] = _to_numpy(jax.tree.map(lambda x, i=i: x[i], final_obs))
            info["_final_obs"] = done
        if self._safety_gym_signature:
            return obs, rewards, costs.copy(), terminated, truncated, info
        return obs, rewards, terminated, truncated, info

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One RGB frame [height, width, 3] uint8 per env (`render_mode="rgb_array"`), else None."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode: pass render_mode='rgb_array'")
            return None
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset() before render()")
        return tuple(_render(self._env, self._state, i, self.render_size) for i in range(self.num_envs))


def to_gymnasium(
    name: str,
    num_envs: int | None = None,
    safety_gym_signature: bool = False,
    render_mode: str | None = None,
    **config: Any,
) -> GymnasiumEnv | GymnasiumVectorEnv:
    """Env `name` with `config` overrides (as `envs.make`) as a `gymnasium.Env`, or with `num_envs` a
    `gymnasium.vector.VectorEnv` of that many copies. `safety_gym_signature`: `step` returns
    (obs, reward, cost, terminated, truncated, info); `render_mode`: None or "rgb_array".
    Unknown names, config keys or values raise `envs.EnvError` (a ValueError) naming what is allowed."""
    _check_render_mode(render_mode)
    if num_envs is not None:
        _check_num_envs(num_envs)
    env = make(name, **config)
    if num_envs is None:
        return GymnasiumEnv(env, safety_gym_signature=safety_gym_signature, render_mode=render_mode)
    return GymnasiumVectorEnv(env, num_envs, safety_gym_signature=safety_gym_signature, render_mode=render_mode)
