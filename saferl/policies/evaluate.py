"""Evaluate a `Policy` on its env: `episodes` full episodes in parallel (vmap), each a `lax.scan` over time."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from saferl.policies.policy import Policy


def rollout_returns(policy: Policy, env: Any, episodes: int, seed: int = 0,
                    deterministic: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Undiscounted (return [episodes], cost [episodes]) over `env.episode_length` steps from fresh resets.

    An episode whose env reports `done` (e.g. a blown-up simulation) stops accumulating at that step.
    """
    act = policy.act if deterministic or policy.sample is None else policy.sample

    def one_episode(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        key_reset, key_act = jax.random.split(key)
        state = env.reset(key_reset)

        def step(carry, step_key):
            state, alive, ret, cost = carry
            next_state = env.step(state, act(state.obs, step_key))
            ret = ret + alive * next_state.reward
            cost = cost + alive * next_state.info["cost"]
            alive = alive * (1.0 - next_state.done)
            return (next_state, alive, ret, cost), None

        keys = jax.random.split(key_act, env.episode_length)
        init = (state, jnp.ones(()), jnp.zeros(()), jnp.zeros(()))
        (_, _, ret, cost), _ = jax.lax.scan(step, init, keys)
        return ret, cost

    keys = jax.random.split(jax.random.PRNGKey(seed), episodes)
    returns, costs = jax.jit(jax.vmap(one_episode))(keys)
    return np.asarray(returns), np.asarray(costs)


def evaluate(policy: Policy, env: Any, episodes: int = 10, seed: int = 0, deterministic: bool = True
             ) -> dict[str, Any]:
    """Mean/std episode return and cost, the budget, and the fraction of episodes within the budget."""
    returns, costs = rollout_returns(policy, env, episodes, seed, deterministic)
    budget = float(env.cost_budget)
    return {"episodes": int(episodes), "mean_return": float(returns.mean()), "std_return": float(returns.std()),
            "mean_cost": float(costs.mean()), "std_cost": float(costs.std()), "cost_budget": budget,
            "fraction_within_budget": float((costs <= budget).mean()) if budget > 0 else 1.0,
            "returns": returns.tolist(), "costs": costs.tolist(), "deterministic": bool(deterministic)}


def rollout_states(policy: Policy, env: Any, seed: int = 0, steps: int | None = None) -> Any:
    """One episode of `steps` (default: the env's episode length) env steps with `policy.act`, as a brax
    State stacked over time (leading axis T), the reset state first: what `envs.render.render_rollout` draws."""
    steps = env.episode_length if steps is None else steps

    def run(key: jax.Array) -> Any:
        key_reset, key_act = jax.random.split(key)
        state = env.reset(key_reset)

        def step(state, step_key):
            next_state = env.step(state, policy.act(state.obs, step_key))
            return next_state, next_state

        _, states = jax.lax.scan(step, state, jax.random.split(key_act, steps))
        return jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), state, states)

    return jax.jit(run)(jax.random.PRNGKey(seed))
