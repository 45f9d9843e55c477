"""Evaluate a `Policy` on its env: `episodes` full episodes in parallel (vmap), each a `lax.scan` over time.

The policy decides every `policy.action_repeat` env steps and its action is held in between (an outer scan
over decisions, an inner scan over the held steps), exactly as `hardware.runner` executes it on a robot.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from saferl.policies.policy import Policy


def held_action_rollout(env: Any, act: Callable[[jax.Array, jax.Array], jax.Array], repeat: int, state: Any,
                        key: jax.Array, steps: int, emit: Callable[[Any], Any]) -> Any:
    """`emit(state)` after each of `steps` env steps from `state`, stacked on a leading time axis [steps].

    `act(obs, key)` is called once per decision (every `repeat` steps, key i of `split(key, decisions)`);
    the last decision may run past `steps`, and those extra steps are dropped.
    """
    decisions = -(-steps // repeat)

    def decide(state, step_key):
        action = act(state.obs, step_key)

        def hold(state, _):
            state = env.step(state, action)
            return state, emit(state)

        return jax.lax.scan(hold, state, None, length=repeat)

    _, emitted = jax.lax.scan(decide, state, jax.random.split(key, decisions))
    return jax.tree.map(lambda x: x.reshape((decisions * repeat,) + x.shape[2:])[:steps], emitted)


def rollout_returns(policy: Policy, env: Any, episodes: int, seed: int = 0,
                    deterministic: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Undiscounted (return [episodes], cost [episodes]) over `env.episode_length` steps from fresh resets.

    An episode whose env reports `done` (e.g. a blown-up simulation) stops accumulating after that step.
    """
    act = policy.act if deterministic or policy.sample is None else policy.sample

    def one_episode(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        key_reset, key_act = jax.random.split(key)
        reward, cost, done = held_action_rollout(
            env, act, policy.action_repeat, env.reset(key_reset), key_act, env.episode_length,
            lambda s: (s.reward, s.info["cost"], s.done))
        alive = jnp.cumprod(jnp.concatenate([jnp.ones((1,)), 1.0 - done[:-1]]))  # 1 up to the first done
        return (alive * reward).sum(), (alive * cost).sum()

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
            "returns": returns.tolist(), "costs": costs.tolist(), "deterministic": bool(deterministic),
            "action_repeat": int(policy.action_repeat)}


def rollout_states(policy: Policy, env: Any, seed: int = 0, steps: int | None = None) -> Any:
    """One episode of `steps` (default: the env's episode length) env steps with `policy.act` (held for
    `policy.action_repeat` steps), as a brax State stacked over time (leading axis T), the reset state
    first: what `envs.render.render_rollout` draws."""
    steps = env.episode_length if steps is None else steps

    def run(key: jax.Array) -> Any:
        key_reset, key_act = jax.random.split(key)
        state = env.reset(key_reset)
        states = held_action_rollout(env, policy.act, policy.action_repeat, state, key_act, steps, lambda s: s)
        return jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), state, states)

    return jax.jit(run)(jax.random.PRNGKey(seed))
