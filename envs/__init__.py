"""MJX environments with the brax API and a safety cost in `state.info["cost"]`.

import envs
env = envs.make("safe_cartpole", cost_bound=0.5)
envs.names()
world = envs.TrainingEnvConfig(obs_noise_std=0.01, shift=envs.ShiftConfig(preset="heavy_pole"))
env = envs.make_training_env("safe_cartpole", None, world)      # the shifted physics
train_env = envs.wrap_training_env(env, world, num_envs=64)     # fresh physics per episode
gym_env = envs.to_gymnasium("safe_cartpole", episode_length=200)  # a gymnasium.Env, cost in info["cost"]
"""

import os as _os

# XLA's new CPU fusion emitters run MJX's kinematics of a kinematic chain deeper than ~6 bodies orders of magnitude
# slower (soft_arm: 7 vs 7 500 env steps/s at batch 64 on 2 cores; pendulum/safe_cartpole/PETS unchanged or
# faster without them). XLA reads XLA_FLAGS when JAX first creates its CPU backend: import envs
# before running any JAX computation. Set SAFERL_XLA_FUSION_EMITTERS=1 to keep XLA's default.
_FLAG = "--xla_cpu_use_fusion_emitters"
if _os.environ.get("SAFERL_XLA_FUSION_EMITTERS") != "1" and _FLAG not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = f"{_os.environ.get('XLA_FLAGS', '')} {_FLAG}=false".strip()
    import sys as _sys

    if "jax" in _sys.modules and getattr(_sys.modules["jax"]._src.xla_bridge, "_backends", None):
        import warnings as _warnings

        _warnings.warn(
            "envs was imported after JAX created its backend, so XLA_FLAGS cannot take "
            f"{_FLAG}=false any more: MJX chains deeper than ~6 bodies (soft_arm) run very slowly. "
            "Import envs before the first JAX computation, or set XLA_FLAGS yourself.",
            stacklevel=2,
        )

if not _os.environ.get("DISPLAY") and not _os.environ.get("MUJOCO_GL"):
    import ctypes.util as _ctypes_util

    # Headless rendering through EGL; must be set before mujoco is first imported. Without libEGL, mujoco's
    # import itself would fail, so GL is disabled: physics works and rendering raises a clear RenderError.
    _os.environ["MUJOCO_GL"] = "egl" if _ctypes_util.find_library("EGL") else "disable"

import contextlib as _contextlib
import io as _io

with _contextlib.redirect_stdout(_io.StringIO()):
    # mujoco.mjx prints "Failed to import warp" on machines without NVIDIA Warp (harmless): keep the CLI clean.
    from mujoco import mjx as _mjx  # noqa: F401

from envs.base import EnvConfig, MjxEnv
from envs.classic.pendulum import Pendulum
from envs.locomotion import Walker
from envs.registry import EnvError, default_config, env_class, make, make_config, names, register
from envs.safety.point_goal import PointGoal
from envs.safety.safe_cartpole import SafeCartpole
from envs.soft.muscle_leg import MuscleLeg
from envs.soft.soft_arm import SoftArm
from envs.soft.soft_fish import SoftFish
from envs.tasks import Task, TaskError, get_task
from envs.ultrasound import UsCoverage, UsNavigate, UsSurgery

register("pendulum", Pendulum)
register("safe_cartpole", SafeCartpole)
register("point_goal", PointGoal)
register("soft_arm", SoftArm)
register("soft_fish", SoftFish)
register("muscle_leg", MuscleLeg)
register("us_navigate", UsNavigate)
register("us_coverage", UsCoverage)
register("us_surgery", UsSurgery)
register("walker", Walker)

from envs.gymnasium_env import GymnasiumEnv, GymnasiumVectorEnv, to_gymnasium
from envs.training_env import (
    ShiftConfig,
    TrainingEnvConfig,
    make_training_env,
    physics_fingerprint,
    shift_presets,
    wrap_evaluation_env,
    wrap_training_env,
)
from envs.wrappers import DomainRandomizationConfig, dynamics_shift

__all__ = [
    "DomainRandomizationConfig",
    "EnvConfig",
    "EnvError",
    "GymnasiumEnv",
    "GymnasiumVectorEnv",
    "MjxEnv",
    "ShiftConfig",
    "Task",
    "TaskError",
    "TrainingEnvConfig",
    "default_config",
    "dynamics_shift",
    "env_class",
    "get_task",
    "make",
    "make_config",
    "make_training_env",
    "names",
    "physics_fingerprint",
    "register",
    "shift_presets",
    "to_gymnasium",
    "wrap_evaluation_env",
    "wrap_training_env",
]
