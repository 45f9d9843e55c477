"""How good is an explored model everywhere? Held-out prediction error on a broad test distribution and
zero-shot return on tasks never used while exploring (what `experiments/softae_study.py` reports).

Test trajectories come from the true env (the agent's world) under a mix of behaviours no strategy is tuned to:
uniform random actions and coloured noise (β = 1, 2) at several amplitudes, `action_repeat` as in training.
Prediction error: open-loop rollouts of the model's mean (average of member means) from each test start state
with the recorded actions, compared with the real observations after 1, 10 and 50 decisions; the error is the
RMS over observation dims of the error divided by each dim's std on the test data (so all dims count alike).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jp
import numpy as np

from saferl.agents.pets.policy import model_fns
from saferl.agents.softae.agent import SoftAEAgent
from saferl.models.ensemble import EnsembleState
from saferl.planning import RolloutConfig, rollout
from saferl.planning.icem import colored_noise
from saferl.policies.evaluate import episode_keys, episode_outcomes

HORIZONS = (1, 10, 50)  # decisions ahead
_BEHAVIOURS = ((0.0, 1.0), (1.0, 0.4), (1.0, 0.8), (2.0, 0.5), (2.0, 1.0))  # (β, amplitude); β 0: uniform


def held_out_trajectories(agent: SoftAEAgent, key: jax.Array, episodes: int) -> tuple[jax.Array, jax.Array]:
    """(obs [episodes, D + 1, obs_dim], actions [episodes, D, act_dim]) of `episodes` real episodes, D decisions,
    behaviours cycling through uniform random and coloured noise of several amplitudes."""
    decisions, size = agent.decisions_per_episode, agent.action_size
    betas = jp.array([b for b, _ in _BEHAVIOURS] * (-(-episodes // len(_BEHAVIOURS))))[:episodes]
    scales = jp.array([s for _, s in _BEHAVIOURS] * (-(-episodes // len(_BEHAVIOURS))))[:episodes]

    def actions_of(key, beta, scale):
        uniform = jax.random.uniform(key, (decisions, size), minval=-1.0, maxval=1.0)
        pink = jp.clip(scale * colored_noise(key, 1.0, (size, decisions)).T, -1.0, 1.0)
        brown = jp.clip(scale * colored_noise(key, 2.0, (size, decisions)).T, -1.0, 1.0)
        return jp.where(beta == 0.0, uniform, jp.where(beta == 1.0, pink, brown))

    def one(key, beta, scale):
        reset_key, act_key = jax.random.split(key)
        actions = actions_of(act_key, beta, scale)
        state = agent.env.reset(reset_key)

        def step(state, action):
            def inner(s, _):
                return agent.env.step(s, action), None

            next_state = jax.lax.scan(inner, state, None, length=agent.config.action_repeat)[0]
            return next_state, next_state.obs

        _, next_obs = jax.lax.scan(step, state, actions)
        return jp.concatenate([state.obs[None], next_obs]), actions

    return jax.jit(jax.vmap(one))(jax.random.split(key, episodes), betas, scales)


@functools.partial(jax.jit, static_argnames="k")
def _errors_k_ahead(
    model: EnsembleState, obs: jax.Array, actions: jax.Array, starts: jax.Array, scale: jax.Array, k: int
) -> jax.Array:
    """Normalised RMS error [B, starts] of the model's mean `k` decisions ahead from each start of each episode
    (one compiled program per k and data shape; the model is an argument)."""
    fns, config = model_fns(model), RolloutConfig("mean", 1, sample_aleatoric=False)

    def error(o, a, start):
        window = jax.lax.dynamic_slice_in_dim(a, start, k)[None]  # [1, k, act]
        traj = rollout(jax.random.PRNGKey(0), fns, config, o[start], window)
        predicted, actual = traj.obs[0, 0, -1], o[start + k]
        return jp.sqrt(jp.mean(jp.square((predicted - actual) / scale)))

    return jax.vmap(jax.vmap(error, (None, None, 0)), (0, 0, None))(obs, actions, starts)


def prediction_errors(
    model: EnsembleState,
    obs: jax.Array,
    actions: jax.Array,
    horizons: tuple[int, ...] = HORIZONS,
    starts_per_episode: int = 8,
) -> dict[int, float]:
    """{k: normalised RMS error of the model's mean k decisions ahead} over test trajectories (obs [B, D + 1, d],
    actions [B, D, a]); starts spread evenly over each episode where k decisions remain."""
    scale = jp.maximum(obs.reshape(-1, obs.shape[-1]).std(0), 1e-6)
    decisions = actions.shape[1]
    errors = {}
    for k in horizons:  # a handful of static horizons: one compiled program each
        if k > decisions:
            continue
        starts = jp.asarray(np.linspace(0, decisions - k, starts_per_episode).astype(int))
        errors[k] = float(jp.mean(_errors_k_ahead(model, obs, actions, starts, scale, k)))
    return errors


@functools.lru_cache(maxsize=32)
def _zero_shot_program(agent: SoftAEAgent, task_name: str) -> Callable[[EnsembleState, jax.Array], dict]:
    """Jitted `(model, keys [episodes, 2]) -> outcomes` of `task_name`'s zero-shot planner: the model is an
    argument, so every model (seed, budget) of one agent reuses one compiled program."""
    task = agent.env.tasks()[task_name]

    def outcomes(model: EnsembleState, keys: jax.Array) -> dict:
        return episode_outcomes(agent.task_policy(model, task), agent.env, keys, task=task)

    return jax.jit(outcomes)


def zero_shot_returns(
    agent: SoftAEAgent, model: EnsembleState, task_names: list[str], episodes: int, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """{task: {mean_return, mean_cost, returns}} of the zero-shot planner of each task on the true env (task
    reward summed per env step over `episodes` episodes, `saferl eval --task`'s figure and episode keys)."""
    results = {}
    for name in task_names:
        outcomes = _zero_shot_program(agent, name)(model, episode_keys(episodes, seed))
        returns, costs = np.asarray(outcomes["return"]), np.asarray(outcomes["cost"])
        results[name] = {
            "mean_return": float(returns.mean()),
            "mean_cost": float(costs.mean()),
            "returns": returns.tolist(),
        }
    return results
