"""The one episode loop: PETS collection, `saferl eval`, `saferl render` and `hardware.runner` all execute a
`Policy` through the same decision step, so a budget-aware or shielded policy behaves the same everywhere.

Decision i of an episode with key k: `(action, carry) = act(carry, obs, fold_in(k, i))`; the action is then
held for `policy.action_repeat` env steps, each followed by `carry = observe_cost(carry, info["cost"])`.
`run` is that as a pure, jittable `lax.scan` over decisions (an inner scan over the held steps; vmap it over
episodes, carries included); `hardware.runner.Actor` drives `decide` and `observe_cost` one robot step at a
time in Python.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from saferl.data import observations
from saferl.data.buffer import Transition
from saferl.policies.policy import ActFn, Policy, PolicyCarry, observe_cost

if TYPE_CHECKING:  # the env seam's Protocol; importing envs would load MuJoCo for the robot-side actor
    from envs.protocol import SafeEnv


class Step(NamedTuple):
    """One env step under a held action: what an `emit_step` function is given."""

    state: Any  # env state before the step
    action: jax.Array  # [act_dim], the held action
    next_state: Any  # env state after the step
    carry: PolicyCarry  # policy carry after the step's cost was observed


class Decision(NamedTuple):
    """One decision and its hold; `run` stacks them on a leading axis [decisions]."""

    transition: Transition  # obs at the decision, action, next_obs after the hold, Σ reward/cost, max done
    carry: PolicyCarry  # policy carry after the hold (memory: what the decision left, e.g. a warm start)
    steps: Any  # emit_step(Step) of each held step, [repeat, ...]; () without emit_step


def acting(policy: Policy, deterministic: bool = True) -> ActFn:
    """`policy.act`, or `policy.sample` for stochastic execution (when the policy has one)."""
    return policy.act if deterministic or policy.sample is None else policy.sample


def decision_key(episode_key: jax.Array, index: jax.Array | int) -> jax.Array:
    """The key of decision `index` (0, 1, …) of the episode whose key is `episode_key`."""
    return jax.random.fold_in(episode_key, index)


def decide(
    act: ActFn, carry: PolicyCarry, obs: jax.Array, episode_key: jax.Array, index: jax.Array | int
) -> tuple[jax.Array, PolicyCarry]:
    """Decision `index` of an episode: (action [act_dim], carry) from obs [obs_dim] (or a dict of arrays); the
    step every executor shares (the scan below and the robot-side `Actor`)."""
    return act(carry, observations.as_float32(obs), decision_key(episode_key, index))


def hold(
    env: SafeEnv,
    state: Any,
    carry: PolicyCarry,
    action: jax.Array,
    repeat: int,
    emit_step: Callable[[Step], Any] | None = None,
) -> tuple[Any, PolicyCarry, Transition, Any]:
    """`repeat` env steps of `action` from `state`, the cost of each fed back into `carry`.

    Returns (state after the hold, carry, its decision-level `Transition` (reward and cost summed, done = any
    step done), emit_step of each step [repeat, ...] or ()).
    """

    def one_step(loop, _):
        state, carry, reward, cost, done = loop
        next_state = env.step(state, action)
        step_cost = next_state.info["cost"]
        carry = observe_cost(carry, step_cost)
        emitted = () if emit_step is None else emit_step(Step(state, action, next_state, carry))
        loop = (next_state, carry, reward + next_state.reward, cost + step_cost, jnp.maximum(done, next_state.done))
        return loop, emitted

    zero = jnp.zeros_like(state.reward)
    (end, carry, reward, cost, done), emitted = jax.lax.scan(
        one_step, (state, carry, zero, zero, zero), None, length=repeat
    )
    transition = Transition(obs=state.obs, action=action, next_obs=end.obs, reward=reward, cost=cost, done=done)
    return end, carry, transition, emitted


def run(
    policy: Policy,
    env: SafeEnv,
    state: Any,
    episode_key: jax.Array,
    decisions: int,
    *,
    carry: PolicyCarry | None = None,
    deterministic: bool = True,
    emit_step: Callable[[Step], Any] | None = None,
) -> tuple[tuple[Any, PolicyCarry], Decision]:
    """`decisions` decisions of `policy` on `env` from `state` (each held `policy.action_repeat` steps).

    `carry` defaults to `policy.init_carry()` (a fresh episode). Returns ((final env state, final carry),
    `Decision` stacked over decisions). Pure and jittable; env steps past a `done` still run (callers mask).
    """
    act, repeat = acting(policy, deterministic), policy.action_repeat
    carry = policy.init_carry() if carry is None else carry

    def one_decision(loop, index):
        state, carry = loop
        action, carry = decide(act, carry, state.obs, episode_key, index)
        state, carry, transition, emitted = hold(env, state, carry, action, repeat, emit_step)
        return (state, carry), Decision(transition, carry, emitted)

    return jax.lax.scan(one_decision, (state, carry), jnp.arange(decisions))


def decisions_for(steps: int, repeat: int) -> int:
    """Decisions needed to cover `steps` env steps when each is held `repeat` steps (⌈steps / repeat⌉)."""
    return -(-steps // repeat)


def per_step(emitted: Any, steps: int) -> Any:
    """`Decision.steps` [decisions, repeat, ...] as one time axis cut to the first `steps`: [steps, ...]."""
    return jax.tree.map(lambda x: x.reshape((x.shape[0] * x.shape[1], *x.shape[2:]))[:steps], emitted)
