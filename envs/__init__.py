"""MJX environments with the brax API and a safety cost in `state.info["cost"]`.

    import envs
    env = envs.make("safe_cartpole", cost_bound=0.5)
    envs.names()
"""

from envs.base import EnvConfig, MjxEnv
from envs.classic.pendulum import Pendulum
from envs.registry import EnvError, default_config, env_class, make, make_config, names, register

register("pendulum", Pendulum)

__all__ = ["EnvConfig", "EnvError", "MjxEnv", "default_config", "env_class", "make", "make_config", "names",
           "register"]
