"""Base class of every saferl env: an MJX model stepped with the brax `Env` API plus a safety cost.

Contract (DESIGN.md): `reset(rng) -> State`, `step(state, action) -> State`, pure and jittable; actions in
[-1, 1] are mapped affinely onto the actuators' `ctrlrange`; every step writes `state.info["cost"]` (≥ 0).
Subclasses give the MJCF (`_build_mj_model`), the initial qpos/qvel, the observation and the reward/cost.
Observation, reward and cost are computed by `evaluate` from a few `mjx.Data` fields, so the native twin
(`envs.native`) reuses exactly the same code on native MuJoCo data.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from collections.abc import Callable
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

import jax
import jax.numpy as jp
import mujoco
from brax.envs.base import Env, State
from mujoco import mjx

from envs.tasks import Task

SOLVERS = {"cg": mujoco.mjtSolver.mjSOL_CG, "newton": mujoco.mjtSolver.mjSOL_NEWTON}
# the integrators MJX implements
INTEGRATORS = {
    "euler": mujoco.mjtIntegrator.mjINT_EULER,
    "rk4": mujoco.mjtIntegrator.mjINT_RK4,
    "implicitfast": mujoco.mjtIntegrator.mjINT_IMPLICITFAST,
}


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """Fields every env config has; env configs subclass this and add their own.

    The solver fields default to MuJoCo's own defaults; each env chooses its settings (with reasons) in its
    config. They are written into the env's `mj_model.opt`, so MJX and the native twin step the same model.
    """

    ctrl_dt: float = 0.02  # control period, s (one env step)
    sim_dt: float = 0.01  # physics time step, s (ctrl_dt must be a multiple; n_substeps = ctrl_dt / sim_dt)
    episode_length: int = 1000  # env steps per episode (applied by the time-limit wrapper)
    cost_budget: float = 0.0  # allowed cumulative safety cost per episode (0: no constraint)
    solver: str = "newton"  # constraint solver: newton | cg (MuJoCo's default: newton)
    iterations: int = 100  # max constraint-solver iterations per physics step (MuJoCo's default: 100)
    ls_iterations: int = 50  # max line-search iterations per solver iteration (MuJoCo's default: 50)
    integrator: str = "euler"  # euler (semi-implicit, joint damping implicit) | implicitfast | rk4
    warmstart: bool = True  # start the solver from the previous step's acceleration (MuJoCo's default: on)

    def __post_init__(self) -> None:
        if self.sim_dt <= 0 or self.ctrl_dt <= 0:
            raise ValueError(f"ctrl_dt and sim_dt must be > 0, got ctrl_dt={self.ctrl_dt}, sim_dt={self.sim_dt}")
        ratio = self.ctrl_dt / self.sim_dt
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ValueError(f"ctrl_dt ({self.ctrl_dt}) must be a positive multiple of sim_dt ({self.sim_dt})")
        if self.episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {self.episode_length}")
        if self.cost_budget < 0:
            raise ValueError(f"cost_budget must be >= 0, got {self.cost_budget}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {self.solver!r}")
        if self.integrator not in INTEGRATORS:
            raise ValueError(f"integrator must be one of {sorted(INTEGRATORS)}, got {self.integrator!r}")
        for name in ("iterations", "ls_iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.warmstart, bool):
            raise ValueError(f"warmstart must be true or false, got {self.warmstart!r}")


class RenderMarker(NamedTuple):
    """A decoration drawn into rendered frames but absent from the physics model (e.g. a goal disc)."""

    geom_type: str  # MuJoCo geom type name: "cylinder", "sphere", "box", ...
    size: tuple[float, float, float]  # MuJoCo geom size, m (cylinder: radius, half-height, unused)
    pos: tuple[float, float, float]  # world position of the centre, m
    rgba: tuple[float, float, float, float]  # colour, each in [0, 1]


def apply_solver_options(mj_model: mujoco.MjModel, config: EnvConfig) -> mujoco.MjModel:
    """Write `config`'s time step and solver/integrator options into `mj_model.opt` (in place; returned)."""
    opt = mj_model.opt
    opt.timestep = config.sim_dt
    opt.solver = SOLVERS[config.solver]
    opt.iterations = config.iterations
    opt.ls_iterations = config.ls_iterations
    opt.integrator = INTEGRATORS[config.integrator]
    warmstart_bit = int(mujoco.mjtDisableBit.mjDSBL_WARMSTART)
    opt.disableflags = (opt.disableflags & ~warmstart_bit) | (0 if config.warmstart else warmstart_bit)
    return mj_model


#: an env's config type (the parameter of `MjxEnv`)
ConfigT = TypeVar("ConfigT", bound=EnvConfig)

# MJX's physics as jitted functions of (model, data) with one identity for the whole process. Every program that
# steps an env (rollouts, trainers, planners, wrappers) calls these inside its own trace, and JAX traces a jitted
# callee once per model structure and argument shapes (and batches it once per vmap layout): the physics, most of
# an env program's jaxpr, is traced once per process rather than once per program. XLA inlines the call, so the
# compiled programs compute the same thing. (A program's lowered module may then depend on what the process traced
# before, e.g. an extra unused function, so its persistent-cache key can differ between processes with different
# histories: docs/testing.md.)
_physics_step = jax.jit(mjx.step)
_physics_forward = jax.jit(mjx.forward)

# (env class, config) -> observation size, filled by `MjxEnv.observation_size` (see there)
_OBSERVATION_SIZES: dict[tuple[type, Any], Any] = {}


class MjxEnv(Env, abc.ABC, Generic[ConfigT]):
    """An MJX env with the brax API. `State.pipeline_state` is the `mjx.Data`.

    Generic in its config type: `class PointGoal(MjxEnv[PointGoalConfig])` reads its own fields off `self.config`.

    `sys` is the `mjx.Model` the physics uses; wrappers (domain randomisation, brax's
    `DomainRandomizationVmapWrapper`) swap it for a per-env model inside `vmap`.
    """

    #: one line saying what the safety cost measures (shown by `saferl envs`)
    cost_description: str = "none (cost is always 0)"
    #: named dynamics shifts (stand-ins for the real robot): {name: `shift_model` keyword arguments and/or fields of
    #: the env's config}, e.g. {"heavy_pole": {"body_mass_scale": {"pole": 2.0}}}; read through
    #: `envs.shift_presets(name)`
    SHIFT_PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    _shapes_only: bool = False  # True only while `_traced_observation_size` traces an abstract reset

    def __init__(self, config: ConfigT):
        self._config: ConfigT = config
        mj_model = apply_solver_options(self._build_mj_model(config), config)
        self._n_substeps = int(round(config.ctrl_dt / config.sim_dt))
        self.set_mj_model(mj_model)

    def set_mj_model(self, mj_model: mujoco.MjModel) -> None:
        """Use `mj_model` (e.g. with changed physical parameters) for MJX and native stepping alike."""
        self._mj_model = mj_model
        # this process's first device: MJX's default is jax.devices()[0], process 0's in a multi-process run
        self.sys = mjx.put_model(mj_model, device=jax.local_devices()[0])
        ctrl_range = mj_model.actuator_ctrlrange.copy()
        limited = mj_model.actuator_ctrllimited.astype(bool)
        ctrl_range[~limited] = (-1.0, 1.0)
        self._ctrl_low = jp.asarray(ctrl_range[:, 0], dtype=jp.float32)
        self._ctrl_high = jp.asarray(ctrl_range[:, 1], dtype=jp.float32)

    # ---- what subclasses provide -------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def default_config(cls) -> ConfigT:
        """The env's frozen default config."""

    @abc.abstractmethod
    def _build_mj_model(self, config: ConfigT) -> mujoco.MjModel:
        """Compile the env's MJCF (generated in code, nothing downloaded)."""

    @abc.abstractmethod
    def _initial_qpos_qvel(self, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Random initial joint positions [nq] and velocities [nv]."""

    @abc.abstractmethod
    def _observe(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        """Observation vector [observation_size] of a state (use only qpos/qvel/x*/site_*/sensordata/time)."""

    @abc.abstractmethod
    def _reward_and_cost(self, data: mjx.Data, action: jax.Array, info: dict[str, Any]) -> tuple[jax.Array, jax.Array]:
        """Per-step reward (scalar) and safety cost (scalar, ≥ 0) after applying `action` [action_size].

        `info` is the info *before* this step's `_update_info` (e.g. the goal that was being pursued).
        """

    def _init_info(self, rng: jax.Array, data: mjx.Data) -> dict[str, Any]:
        """Extra per-episode info (e.g. goal positions); override to add entries.

        `rng` is the same key `_initial_qpos_qvel` got, so an env can draw one joint layout from it."""
        return {}

    def render_markers(self, info: dict[str, Any], task: Task | None = None) -> list[RenderMarker]:
        """Markers to draw for the episode in `info` (numpy or jax leaves, no batch axis); with `task` (a video
        of a zero-shot task) the task's markers replace the env's own episode goal. Default: the task's markers."""
        return list(task.markers) if task is not None else []

    def tasks(self) -> dict[str, Task]:
        """Named tasks of this env ({name: `envs.tasks.Task`}, rewards of (obs, action, next_obs)) for zero-shot
        planning and evaluation; build them once per instance. Default: none."""
        return {}

    @property
    def observation_groups(self) -> dict[str, slice]:
        """Named groups of observation features that measure one thing each (e.g. tip position, joint angles),
        contiguous slices in order; an uncertainty objective can weigh every group alike instead of every feature
        (`RolloutConfig.gain_weighting="groups"`). Default: {} (no grouping declared: every feature its own)."""
        return {}

    @functools.cached_property
    def transition_cost(self) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array] | None:
        """The safety cost as a pure function of a transition, `cost(obs [..., obs], action [..., act],
        next_obs [..., obs]) -> [...]`, reading only the documented observation layout (like a task's reward): for
        every env step it equals the `info["cost"]` of the step that went from obs to next_obs with action (the
        env contract tests it). None where the cost depends on state the observation does not show. Built once per
        instance (`_make_transition_cost`), so a planner compiled with it is reused.

        Planners can score imagined transitions with the cost the user defined instead of a learned cost head, which
        has nothing to learn from until a cost has been paid (`ObjectiveConfig.cost_source="env"`)."""
        return self._make_transition_cost()

    def _make_transition_cost(self) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array] | None:
        """Override to provide `transition_cost`; default: None."""
        return None

    def _update_info(self, data: mjx.Data, info: dict[str, Any]) -> dict[str, Any]:
        """Per-step info update after reward/cost (e.g. resample a reached goal, using and advancing
        `info["rng"]`); default: unchanged."""
        return info

    # ---- the brax API -------------------------------------------------------------------------
    def reset(self, rng: jax.Array) -> State:
        rng, init_rng = jax.random.split(rng)
        qpos, qvel = self._initial_qpos_qvel(init_rng)
        data = self.pipeline_init(qpos, qvel)
        info = {"rng": rng, "cost": jp.zeros(()), **self._init_info(init_rng, data)}
        obs = self._observe(data, info)
        zero = jp.zeros(())
        metrics = {"cost": zero}
        return State(data, obs, zero, zero, metrics, info)

    def step(self, state: State, action: jax.Array) -> State:
        action = jp.clip(action, -1.0, 1.0)
        data = self.pipeline_step(state.pipeline_state, action)
        obs, reward, cost, info = self.evaluate(data, action, dict(state.info))
        metrics = dict(state.metrics)
        metrics["cost"] = cost
        # a blown-up simulation ends the episode; strongly typed like reset's done (a weakly typed one made a
        # jitted step fed its own output compile a second program)
        done = jp.where(jp.isfinite(obs).all(), 0.0, 1.0).astype(jp.float32)
        return state.replace(pipeline_state=data, obs=obs, reward=reward, done=done, metrics=metrics, info=info)

    def evaluate(
        self, data: mjx.Data, action: jax.Array, info: dict[str, Any]
    ) -> tuple[jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        """Observation [obs], reward [], cost [] (≥ 0) and updated info after a step reached `data`.

        Pure; shared by `step` and the native twin (which passes a view of native `MjData`).
        """
        reward, cost = self._reward_and_cost(data, action, info)
        cost = jp.maximum(cost, 0.0).astype(jp.float32)
        info = self._update_info(data, dict(info))
        info["cost"] = cost
        obs = self._observe(data, info)
        return obs, jp.asarray(reward, jp.float32), cost, info

    # ---- physics helpers ----------------------------------------------------------------------
    def action_to_ctrl(self, action: jax.Array) -> jax.Array:
        """Map actions in [-1, 1] onto the actuators' control range."""
        return self._ctrl_low + (action + 1.0) * 0.5 * (self._ctrl_high - self._ctrl_low)

    def pipeline_init(self, qpos: jax.Array, qvel: jax.Array) -> mjx.Data:
        data = mjx.make_data(self.sys)
        data = data.replace(qpos=qpos, qvel=qvel, ctrl=jp.zeros(self._mj_model.nu))
        if self._shapes_only:  # an abstract reset for the observation size (see `_traced_observation_size`)
            return data
        return _physics_forward(self.sys, data)

    def pipeline_step(self, data: mjx.Data, action: jax.Array) -> mjx.Data:
        """Apply `action` [action_size] in [-1, 1] for `ctrl_dt` (n_substeps physics steps)."""
        data = data.replace(ctrl=self.action_to_ctrl(action))
        model = self.sys

        def substep(d, _):
            return _physics_step(model, d), None

        return jax.lax.scan(substep, data, None, length=self._n_substeps)[0]

    # ---- properties ---------------------------------------------------------------------------
    @property
    def config(self) -> ConfigT:
        return self._config

    @property
    def mj_model(self) -> mujoco.MjModel:
        """The native MuJoCo model (for native stepping, rendering and the simulated robot)."""
        return self._mj_model

    @property
    def mjx_model(self) -> mjx.Model:
        return self.sys

    @property
    def dt(self) -> float:
        return self._config.ctrl_dt

    @property
    def n_substeps(self) -> int:
        return self._n_substeps

    @property
    def episode_length(self) -> int:
        return self._config.episode_length

    @property
    def cost_budget(self) -> float:
        return self._config.cost_budget

    @property
    def observation_size(self) -> int:
        """Length of the observation vector; traced once per env class and config (an abstract `reset`, seconds
        for the soft robots) and then remembered for every instance of the process."""
        return self._traced_observation_size()

    def _traced_observation_size(self) -> Any:
        """The observation size read off an abstract `reset`: int for a vector, {key: shape} for a dict.

        Memoised per (env class, config) in the process: the size depends on nothing else (a changed
        `set_mj_model` changes physical values, not the model's structure)."""
        if getattr(self, "_observation_size", None) is None:
            key = (type(self), self._config)
            try:
                size = _OBSERVATION_SIZES.get(key)
                memoise = True
            except TypeError:  # an unhashable config: trace for this instance only
                size, memoise = None, False
            if size is None:
                self._shapes_only = True  # pipeline_init skips mjx.forward: it changes values, never shapes
                try:
                    obs = jax.eval_shape(self.reset, jax.random.PRNGKey(0)).obs
                finally:
                    self._shapes_only = False
                if isinstance(obs, dict):
                    size = {name: tuple(int(n) for n in leaf.shape) for name, leaf in obs.items()}
                else:
                    size = int(obs.shape[-1])
                if memoise:
                    _OBSERVATION_SIZES[key] = size
            self._observation_size = size
        return self._observation_size

    @property
    def action_size(self) -> int:
        return int(self._mj_model.nu)

    @property
    def backend(self) -> str:
        return "mjx"
