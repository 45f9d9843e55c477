"""Evaluate a `Policy` on its env: `episodes` full episodes in parallel (vmap, policy carries included),
each on the one episode loop (`saferl.policies.episode.run`): a decision every `policy.action_repeat` env
steps, the action held in between and every step's cost fed back into the carry, exactly as
`hardware.runner` executes it on a robot.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from envs.tasks import Task
from saferl.policies import episode
from saferl.policies.policy import Policy


def _rollout(policy: Policy, env: Any, key: jax.Array, steps: int, emit: Callable[[episode.Step], Any],
             deterministic: bool = True) -> tuple[Any, Any]:
    """(reset state, `emit(step)` of each of `steps` env steps [steps, ...]) of one episode."""
    key_reset, key_act = jax.random.split(key)
    state = env.reset(key_reset)
    decisions = episode.decisions_for(steps, policy.action_repeat)
    _, record = episode.run(policy, env, state, key_act, decisions, deterministic=deterministic,
                            emit_step=emit)
    return state, episode.per_step(record.steps, steps)


def _step_reward(task: Task | None) -> Callable[[episode.Step], jax.Array]:
    """The env's reward of a step, or `task`'s reward of its (obs, action, next obs)."""
    if task is None:
        return lambda step: step.next_state.reward
    return lambda step: task.reward(step.state.obs, step.action, step.next_state.obs)


def rollout_returns(policy: Policy, env: Any, episodes: int, seed: int = 0, deterministic: bool = True,
                    task: Task | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Undiscounted (return [episodes], cost [episodes]) over `env.episode_length` steps from fresh resets.

    The return sums the env's reward per env step, or with `task` the task's reward r(obs, action, next_obs)
    of every env step. An episode whose env reports `done` (e.g. a blown-up simulation) stops accumulating
    after that step.
    """
    reward_of = _step_reward(task)

    def one_episode(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        emit = lambda step: (reward_of(step), step.next_state.info["cost"], step.next_state.done)  # noqa: E731
        _, (reward, cost, done) = _rollout(policy, env, key, env.episode_length, emit, deterministic)
        alive = jnp.cumprod(jnp.concatenate([jnp.ones((1,)), 1.0 - done[:-1]]))  # 1 up to the first done
        return (alive * reward).sum(), (alive * cost).sum()

    keys = jax.random.split(jax.random.PRNGKey(seed), episodes)
    returns, costs = jax.jit(jax.vmap(one_episode))(keys)
    return np.asarray(returns), np.asarray(costs)


def evaluate(policy: Policy, env: Any, episodes: int = 10, seed: int = 0, deterministic: bool = True,
             task: Task | None = None) -> dict[str, Any]:
    """Mean/std episode return (the env's reward, or `task`'s) and cost, the budget, and the fraction of
    episodes within the budget."""
    returns, costs = rollout_returns(policy, env, episodes, seed, deterministic, task)
    budget = float(env.cost_budget)
    return {"episodes": int(episodes), "mean_return": float(returns.mean()), "std_return": float(returns.std()),
            "mean_cost": float(costs.mean()), "std_cost": float(costs.std()), "cost_budget": budget,
            "fraction_within_budget": float((costs <= budget).mean()) if budget > 0 else 1.0,
            "returns": returns.tolist(), "costs": costs.tolist(), "deterministic": bool(deterministic),
            "action_repeat": int(policy.action_repeat), "task": None if task is None else task.name}


def rollout_states(policy: Policy, env: Any, seed: int = 0, steps: int | None = None) -> Any:
    """One episode of `steps` (default: the env's episode length) env steps with `policy.act` (held for
    `policy.action_repeat` steps), as a brax State stacked over time (leading axis T), the reset state
    first: what `envs.render.render_rollout` draws."""
    steps = env.episode_length if steps is None else steps

    def one_episode(key: jax.Array) -> Any:
        first, states = _rollout(policy, env, key, steps, lambda step: step.next_state)
        return jax.tree.map(lambda x0, rest: jnp.concatenate([x0[None], rest]), first, states)

    return jax.jit(one_episode)(jax.random.PRNGKey(seed))
