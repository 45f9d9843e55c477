"""Evaluate a `Policy` on its env: `episodes` full episodes in parallel (vmap, policy carries included),
each on the one episode loop (`saferl.policies.episode.run`): a decision every `policy.action_repeat` env
steps, the action held in between and every step's cost fed back into the carry, exactly as
`hardware.runner` executes it on a robot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from envs.protocol import SafeEnv
from envs.tasks import Task
from saferl.policies import episode
from saferl.policies.policy import Policy


def _rollout(
    policy: Policy,
    env: SafeEnv,
    key: jax.Array,
    steps: int,
    emit: Callable[[episode.Step], Any],
    deterministic: bool = True,
) -> tuple[Any, Any]:
    """(reset state, `emit(step)` of each of `steps` env steps [steps, ...]) of one episode."""
    key_reset, key_act = jax.random.split(key)
    state = env.reset(key_reset)
    decisions = episode.decisions_for(steps, policy.action_repeat)
    _, record = episode.run(policy, env, state, key_act, decisions, deterministic=deterministic, emit_step=emit)
    return state, episode.per_step(record.steps, steps)


def _step_reward(task: Task | None) -> Callable[[episode.Step], jax.Array]:
    """The env's reward of a step, or `task`'s reward of its (obs, action, next obs)."""
    if task is None:
        return lambda step: step.next_state.reward
    return lambda step: task.reward(step.state.obs, step.action, step.next_state.obs)


def _success_of(state: Any) -> jax.Array | None:
    """The env's `metrics["success"]` of a state (1.0 where the task is achieved), or None if it has none."""
    metrics = getattr(state, "metrics", None)
    return metrics.get("success") if isinstance(metrics, dict) else None


def episode_outcomes(
    policy: Policy, env: SafeEnv, keys: jax.Array, deterministic: bool = True, task: Task | None = None
) -> dict[str, jax.Array]:
    """Traceable core of `rollout_outcomes`: one episode per key (keys [episodes, 2]), vmapped; each value
    [episodes]. Usable inside `jit` with a policy built there (e.g. a planner on a traced model)."""
    reward_of = _step_reward(task)

    def one_episode(key: jax.Array) -> dict[str, jax.Array]:
        def emit(step: episode.Step) -> tuple[Any, ...]:  # success None (an empty pytree) for envs without it
            return reward_of(step), step.next_state.info["cost"], step.next_state.done, _success_of(step.next_state)

        _, (reward, cost, done, success) = _rollout(policy, env, key, env.episode_length, emit, deterministic)
        alive = jnp.cumprod(jnp.concatenate([jnp.ones((1,)), 1.0 - done[:-1]]))  # 1 up to the first done
        out = {"return": (alive * reward).sum(), "cost": (alive * cost).sum()}
        if success is not None:
            last = jnp.maximum(alive.sum().astype(jnp.int32) - 1, 0)  # the last counted step
            out |= {"success_final": success[last], "success_any": (alive * success).max()}
        return out

    return jax.vmap(one_episode)(keys)


def episode_keys(episodes: int, seed: int = 0) -> jax.Array:
    """The per-episode keys [episodes, 2] of `rollout_outcomes(..., episodes, seed)`."""
    return jax.random.split(jax.random.PRNGKey(seed), episodes)


def rollout_outcomes(
    policy: Policy, env: SafeEnv, episodes: int, seed: int = 0, deterministic: bool = True, task: Task | None = None
) -> dict[str, np.ndarray]:
    """Per-episode outcomes over `env.episode_length` steps from fresh resets, each [episodes]: `return`
    (undiscounted, the env's reward per env step or `task`'s r(obs, action, next_obs)) and `cost`; for envs
    that report `metrics["success"]` (e.g. us_navigate) also `success_final` (1 where the last counted step is
    a success) and `success_any` (1 where any counted step is). An episode whose env reports `done` (e.g. a
    blown-up simulation) stops counting after that step."""
    outcomes = jax.jit(lambda keys: episode_outcomes(policy, env, keys, deterministic, task))(
        episode_keys(episodes, seed)
    )
    return {name: np.asarray(value) for name, value in outcomes.items()}


def rollout_returns(
    policy: Policy, env: SafeEnv, episodes: int, seed: int = 0, deterministic: bool = True, task: Task | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Undiscounted (return [episodes], cost [episodes]) of `rollout_outcomes`."""
    outcomes = rollout_outcomes(policy, env, episodes, seed, deterministic, task)
    return outcomes["return"], outcomes["cost"]


def evaluate(
    policy: Policy,
    env: SafeEnv,
    episodes: int = 10,
    seed: int = 0,
    deterministic: bool = True,
    task: Task | None = None,
) -> dict[str, Any]:
    """Mean/std episode return (the env's reward, or `task`'s) and cost, the budget, and the fraction of
    episodes within the budget; for envs with `metrics["success"]` also `success_rate` (fraction of episodes
    that end in success) and `success_any_rate` (fraction that succeed at some step)."""
    outcomes = rollout_outcomes(policy, env, episodes, seed, deterministic, task)
    returns, costs = outcomes["return"], outcomes["cost"]
    budget = float(env.cost_budget)
    result = {
        "episodes": int(episodes),
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "mean_cost": float(costs.mean()),
        "std_cost": float(costs.std()),
        "cost_budget": budget,
        "fraction_within_budget": float((costs <= budget).mean()) if budget > 0 else 1.0,
        "returns": returns.tolist(),
        "costs": costs.tolist(),
        "deterministic": bool(deterministic),
        "action_repeat": int(policy.action_repeat),
        "task": None if task is None else task.name,
    }
    if "success_final" in outcomes:
        result |= {
            "success_rate": float(outcomes["success_final"].mean()),
            "success_any_rate": float(outcomes["success_any"].mean()),
        }
    return result


def rollout_states(policy: Policy, env: SafeEnv, seed: int = 0, steps: int | None = None) -> Any:
    """One episode of `steps` (default: the env's episode length) env steps with `policy.act` (held for
    `policy.action_repeat` steps), as a brax State stacked over time (leading axis T), the reset state
    first: what `envs.render.render_rollout` draws."""
    steps = env.episode_length if steps is None else steps

    def one_episode(key: jax.Array) -> Any:
        first, states = _rollout(policy, env, key, steps, lambda step: step.next_state)
        return jax.tree.map(lambda x0, rest: jnp.concatenate([x0[None], rest]), first, states)

    return jax.jit(one_episode)(jax.random.PRNGKey(seed))
