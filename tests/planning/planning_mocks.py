"""Analytic dynamics models with the ensemble's predict signature, for planner tests (no learning involved)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jp

from saferl.planning.rollout import ModelFns


def _ensemble(member_fn: Callable, member_params: jax.Array) -> ModelFns:
    """ModelFns from `member_fn(param, obs, action) -> (mean, var)`, member e using member_params[e]."""
    all_members = jax.vmap(member_fn, in_axes=(0, None, None))
    own_member = jax.vmap(member_fn, in_axes=(0, 0, 0))
    return ModelFns(
        lambda obs, action: all_members(member_params, obs, action),
        lambda obs, action: own_member(member_params, obs, action),
        int(member_params.shape[0]),
    )


def double_integrator(
    num_members: int = 5,
    dt: float = 0.1,
    member_spread: float = 0.0,
    noise_var: float = 0.0,
    action_weight: float = 0.1,
    cost_threshold: float | None = None,
) -> ModelFns:
    """Point mass obs [x, v], action [a] in [-1, 1]: x' = x + dt·v, v' = v + dt·a (+ member offset).

    reward = −(x'² + action_weight·a²); cost = 1 if x' > cost_threshold (else 0). Member e adds
    member_spread·(e − (E−1)/2) to Δv (epistemic spread); every member has variance noise_var on all outputs.
    """
    offsets = member_spread * (jp.arange(num_members) - (num_members - 1) / 2.0)

    def member(offset, obs, action):
        x, v, a = obs[..., 0], obs[..., 1], action[..., 0]
        dx, dv = dt * v, dt * a + offset
        x_next = x + dx
        reward = -(x_next**2 + action_weight * a**2)
        cost = jp.zeros_like(x) if cost_threshold is None else (x_next > cost_threshold).astype(jp.float32)
        mean = jp.stack([dx, dv, reward, cost], axis=-1)
        return mean, jp.full_like(mean, noise_var)

    return _ensemble(member, offsets)


def action_integrator(num_members: int = 5) -> ModelFns:
    """obs [s]: s' = s + a; reward = a and cost = a + 1 ≥ 0 per step: more action, more return and more cost."""

    def member(_, obs, action):
        a = action[..., 0]
        mean = jp.stack([a, a, a + 1.0], axis=-1)
        return mean, jp.zeros_like(mean)

    return _ensemble(member, jp.zeros(num_members))
