"""`Policy`: what a trained run gives to evaluation, rendering, ONNX export and `hardware/`.

A policy is stateful across one episode: `init_carry()` gives a `PolicyCarry` and the pure
`act(carry, obs, key) -> (action, carry)` decides. The carry holds the episode's cost spent so far (the
executor feeds the observed cost back after every env step with `observe_cost`) and any policy memory
(an MPC planner's warm start; `()` for PPO/SAC), so a shield or a budget-aware planner behaves the same in
collection, `saferl eval`, rendering and on the robot. `apply(params, obs)` is the deterministic map as an
explicit function of `params` (MLP policies only: what ONNX export traces; None for planners). Whoever
executes a policy holds each action for `action_repeat` env steps (1 for PPO/SAC, the planning interval for
MPC policies). Policies of runs with critics also expose `reward_value(obs, action)` and
`cost_value(obs, action)` (Q_r, Q_c on the critics' discounted scales).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, Self

import jax
import jax.numpy as jnp
from flax import struct

if TYPE_CHECKING:
    from envs.training_env import TrainingEnvConfig


@struct.dataclass
class PolicyCarry:
    """Per-episode policy state; a pytree, so it rides in `lax.scan` carries and `vmap`s over episodes."""

    cost_spent: jax.Array  # scalar float32, Σ cost observed so far in the episode (≥ 0)
    memory: Any = ()  # policy-specific state (e.g. the planner's warm start); () when stateless

    if TYPE_CHECKING:  # flax's struct.dataclass adds `replace` at run time, unseen by mypy

        def replace(self, **changes: Any) -> Self: ...


def stateless_carry() -> PolicyCarry:
    """The carry of a policy without memory: only the episode's cost spent (0)."""
    return PolicyCarry(cost_spent=jnp.zeros((), jnp.float32), memory=())


def observe_cost(carry: PolicyCarry, cost: jax.Array) -> PolicyCarry:
    """`carry` after an env step that cost `cost` (≥ 0): what every executor calls after each env step."""
    return carry.replace(cost_spent=carry.cost_spent + jnp.asarray(cost, jnp.float32))


ActFn = Callable[[PolicyCarry, jax.Array, jax.Array], tuple[jax.Array, PolicyCarry]]
ValueFn = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Policy:
    # (carry, obs [..., obs_dim] or a dict of arrays, key) -> (action [..., act_dim] in [-1, 1], carry); deterministic
    act: ActFn
    init_carry: Callable[[], PolicyCarry]  # the carry at the start of an episode
    params: Any  # pytree the policy was built from (for PPO/SAC: (normalizer, policy network params))
    apply: Callable[[Any, jax.Array], jax.Array] | None  # (params, obs) -> deterministic action; None if no MLP
    observation_size: Any  # obs_dim, or {"image": (H, W, C), "state": (d,)} for dict observations
    action_size: int
    env_name: str
    env_config: Any  # the env's frozen config the policy was trained on
    cost_budget: float  # episode cost budget of that env config
    algo: str  # algorithm name
    sample: ActFn | None = None  # stochastic version of `act`, if any
    run_dir: Any = None  # pathlib.Path of the run it came from
    action_repeat: int = 1  # env steps each action is held for (≥ 1)
    reward_value: ValueFn | None = None  # Q_r(obs [..., obs_dim], action [..., act_dim]) -> [...]; None if none
    cost_value: ValueFn | None = None  # Q_c(obs, action) -> [...] (discounted cost-to-go, ≥ 0); None if none
    training_env: TrainingEnvConfig | None = (
        None  # the run's `envs.TrainingEnvConfig` (randomisation, noise, delay, shift)
    )

    def __post_init__(self) -> None:
        if self.action_repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {self.action_repeat}")


def stateless(action_fn: Callable[[jax.Array, jax.Array], jax.Array]) -> ActFn:
    """`act(carry, obs, key)` for a map `action_fn(obs, key) -> action` that needs no memory: the carry
    passes through unchanged (the executor adds the observed cost)."""

    def act(carry: PolicyCarry, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, PolicyCarry]:
        return action_fn(obs, key), carry

    return act


def uniform_random_policy(
    action_size: int,
    observation_size: Any,
    cost_budget: float,
    action_repeat: int = 1,
    env_name: str = "",
    env_config: Any = None,
) -> Policy:
    """Uniform random actions in [-1, 1]^action_size, held for `action_repeat` env steps (exploration episodes,
    the random baseline of studies)."""
    act = stateless(lambda obs, key: jax.random.uniform(key, (action_size,), minval=-1.0, maxval=1.0))
    return Policy(
        act=act,
        init_carry=stateless_carry,
        params=None,
        apply=None,
        observation_size=observation_size,
        action_size=action_size,
        env_name=env_name,
        env_config=env_config,
        cost_budget=cost_budget,
        algo="random",
        action_repeat=action_repeat,
    )


class PolicyLoader(Protocol):
    """An algorithm's `load_policy` (`saferl.registry.Algorithm.load_policy`): the executed `Policy` of a run
    directory, rebuilt from its config and checkpoint (UserError if the directory cannot give one)."""

    def __call__(self, run_dir: pathlib.Path, /) -> Policy: ...
