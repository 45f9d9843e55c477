"""SOOPER's pessimistic update of the prior's cost critic on model data.

For (s, a) from the real buffer, the ensemble's mean prediction gives s' and the pessimistic cost
c̃ = max(0, c̄ + λ_pess·σ); with the critic of the start of this update phase as Q_c^old,

    target(s, a) = min( c̃ + γ_c·Q_c^old(s', π̂(s')),  Q_c^old(s, a) ),

and both twin critics regress on it. Both arguments of the min bound the prior's cost-to-go from above
(the first by the model's pessimism, the second by the sim-trained prior's conservatism), so the target is a
tighter upper bound: the critic can fall where the model is confident the real system costs less, never rise.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from saferl.agents.sooper.prior import Prior
from saferl.data import buffer as buffer_lib
from saferl.data.buffer import ReplayBuffer
from saferl.models.ensemble import EnsembleState
from saferl.models.model_env import ModelEnvConfig, ensemble_step


class CriticUpdateInfo(NamedTuple):
    loss: jax.Array  # scalar, mean squared TD error of the last step
    target_drop: jax.Array  # scalar, mean of Q_c^old(s, a) − target over the last batch (≥ 0)


def pessimistic_target(
    cost: jax.Array, next_value: jax.Array, old_value: jax.Array, cost_discounting: float
) -> jax.Array:
    """min(c̃ + γ_c·Q_c^old(s', π̂(s')), Q_c^old(s, a)), elementwise over [...] (discounted cost units)."""
    return jnp.minimum(cost + cost_discounting * next_value, old_value)


def make_optimizer(learning_rate: float) -> optax.GradientTransformation:
    return optax.adam(learning_rate)


def update_cost_critic(
    prior: Prior,
    model: EnsembleState,
    buffer: ReplayBuffer,
    cost_q_params: Any,
    optimizer_state: Any,
    key: jax.Array,
    *,
    steps: int,
    batch_size: int,
    pessimism: float,
    learning_rate: float,
) -> tuple[Any, Any, CriticUpdateInfo]:
    """`steps` Adam steps of the cost critic `cost_q_params` towards the pessimistic target (one `lax.scan`;
    Q_c^old = `cost_q_params` as given). Returns (params, optimiser state, info of the last step)."""
    optimizer = make_optimizer(learning_rate)
    old_params = cost_q_params
    model_config = ModelEnvConfig(pessimism=pessimism, propagation="mean")

    def loss_fn(params, obs, action, target):
        q = prior.networks.cost_q_network.apply(prior.normalizer, params, obs, action)  # [B, 2]
        return 0.5 * jnp.mean(jnp.square(q - target[:, None]))

    def one_step(carry, step_key):
        params, opt_state = carry
        sample_key, model_key = jax.random.split(step_key)
        batch = buffer_lib.sample(buffer, sample_key, batch_size)
        imagined = ensemble_step(model, model_config, model_key, batch.obs, batch.action)
        next_value = prior.cost_value(imagined.next_obs, prior.action(imagined.next_obs), old_params)
        old_value = prior.cost_value(batch.obs, batch.action, old_params)
        target = jax.lax.stop_gradient(pessimistic_target(imagined.cost, next_value, old_value, prior.cost_discounting))
        loss, grads = jax.value_and_grad(loss_fn)(params, batch.obs, batch.action, target)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        info = CriticUpdateInfo(loss=loss, target_drop=jnp.mean(old_value - target))
        return (optax.apply_updates(params, updates), opt_state), info

    (params, optimizer_state), infos = jax.lax.scan(
        one_step, (cost_q_params, optimizer_state), jax.random.split(key, steps)
    )
    return params, optimizer_state, jax.tree.map(lambda x: x[-1], infos)


def calibrated_margin(
    prior: Prior, cost_q_params: Any, obs: jax.Array, cost_to_go: jax.Array, valid: jax.Array, scale: float
) -> jax.Array:
    """The recovery margin m: the largest shortfall of the shield's estimate scale·Q_c(s, π̂(s)) below the prior's
    measured cost-to-go on the real system, over the states of its real episodes, max(0, max_t [C_rest(t) −
    scale·Q_c(s_t, π̂(s_t))]).

    `obs` [P, T, obs_dim] the prior-only episodes' observations, `cost_to_go` [P, T] the cost they incurred from
    each decision to the episode's end, `valid` [P] which of them were collected; `cost_q_params` the critic the
    shield uses (the margin grows where the pessimistic update lowered it below what was measured). Scalar.
    """
    estimate = scale * prior.cost_value(obs, prior.action(obs), cost_q_params)  # [P, T]
    shortfall = jnp.where(valid[:, None], cost_to_go - estimate, 0.0)
    return jnp.maximum(jnp.max(shortfall), 0.0)
