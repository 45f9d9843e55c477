"""PPO with a cost value head and a constraint handler, as a resumable, chunked, purejaxrl-style loop on the
project's env stack (`envs.wrap_training_env`: fresh reset and randomisation per episode).

`make_train(config, env, training_env)` returns pure functions `init(key) -> PPOState` and
`train_chunk(state) -> (state, metrics)`; one chunk is `iterations_per_chunk` PPO iterations of
`env_steps_per_iteration` env steps, all under one `jit`. Each iteration collects on-policy segments, runs
`num_updates_per_batch` epochs of minibatch SGD on `saferl.agents.ppo.losses.loss`, then one step of the
constraint handler's multipliers on the batch's discounted cost level (mean V_c target) against
d_Q = d / (T·(1 − γ_c)). The env batch is split over all devices (`saferl.sharding`, GSPMD);
params and optimiser state are replicated. `PPOState` holds everything a resume needs. Dict observations
{"image", "state"} get CNN-encoder networks and a normaliser of the state part only (`pixel_networks`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from brax.training.acme import running_statistics

import saferl.agents.ppo.losses as losses
from saferl import constraints, registry, sharding
from saferl.agents.modelfree import common, pixel_networks
from saferl.agents.ppo.config import PPOConfig
from saferl.agents.ppo.networks import make_networks

if TYPE_CHECKING:
    from envs.protocol import SafeEnv
    from envs.training_env import TrainingEnvConfig
    from saferl.training.context import TrainContext

LOSS_KEYS = (
    "total_loss",
    "policy_loss",
    "v_loss",
    "cost_v_loss",
    "entropy_loss",
    "cost_estimate",
    "lagrange_multiplier",
    "penalty",
    "constraint_violation",
)


@flax.struct.dataclass
class PPOState:
    params: losses.PPOParams  # policy, value and cost value network params
    optimizer_state: Any  # optax state of the Adam chain
    constraint: constraints.ConstraintState  # λ, penalty
    normalizer: running_statistics.RunningStatisticsState  # observation statistics
    env_state: Any  # State of the num_envs training envs
    key: jax.Array  # PRNG key for the next iteration
    env_steps: jax.Array  # int32, env steps so far


def _optimizer(config: PPOConfig) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.learning_rate))


@common.cache_by_computation
def make_train(
    config: PPOConfig, env: SafeEnv, training_env: TrainingEnvConfig | None = None
) -> tuple[Callable[[jax.Array], PPOState], Callable[[PPOState], tuple[PPOState, dict]]]:
    """Pure `init(key) -> PPOState` and `train_chunk(state) -> (state, metrics)`, both jitted.

    metrics: see `make_parts`. States live where `state_shardings` says (`common.data_parallel`).
    """
    init, chunk, state_shardings = make_parts(config, env, training_env)
    return common.data_parallel(jax.jit(init), chunk, state_shardings)


@common.cache_by_computation
def make_parts(
    config: PPOConfig, env: SafeEnv, training_env: TrainingEnvConfig | None = None
) -> tuple[Callable, Callable, Callable]:
    """One seed's `(init(key), chunk(state) -> (state, metrics), state_shardings(state))`: `init` pure and
    unjitted, `chunk` jitted; `make_train` places and jits them, `saferl.training.seeds` vmaps them over seeds.

    metrics (scalars): `episode_return`/`episode_cost` (means over episodes ended in the chunk, 0 if none),
    `episodes`, and the last iteration's `LOSS_KEYS` (mean losses; `cost_estimate` = mean discounted cost
    target; `lagrange_multiplier`, `penalty`, `constraint_violation` of the handler).
    `num_envs` must be a multiple of the device count (`UserError` otherwise).
    """
    mesh = sharding.data_mesh()
    sharding.check_divisible(config.num_envs, "num_envs", mesh)
    state_shardings = functools.partial(sharding.state_shardings, batch_fields=("env_state",), mesh=mesh)
    train_env = common.wrap_for_training(env, training_env, config.num_envs)
    networks = make_networks(config, env.observation_size, env.action_size)
    optimizer = _optimizer(config)
    budget = common.cost_budget_q(config, env)
    grad_fn = jax.value_and_grad(
        functools.partial(losses.loss, networks=networks, config=config, cost_budget_q=budget), has_aux=True
    )
    distribution = networks.parametric_action_distribution

    def init(key: jax.Array) -> PPOState:
        key_params, key_env, key_next = jax.random.split(key, 3)
        params = losses.init_params(networks, key_params)
        normalizer = pixel_networks.init_normalizer(env.observation_size)
        return common.strong_types(
            PPOState(
                params=params,
                optimizer_state=optimizer.init(params),
                constraint=constraints.init(config.constraint),
                normalizer=normalizer,
                env_state=train_env.reset(jax.random.split(key_env, config.num_envs)),
                key=key_next,
                env_steps=jnp.zeros((), jnp.int32),
            )
        )

    def env_step(state: PPOState, carry: tuple[Any, jax.Array], _) -> tuple[tuple[Any, jax.Array], tuple]:
        env_state, key = carry
        key, key_sample = jax.random.split(key)
        logits = networks.policy_network.apply(state.normalizer, state.params.policy, env_state.obs)
        raw = distribution.sample_no_postprocessing(logits, key_sample)
        action = distribution.postprocess(raw)
        next_state = train_env.step(env_state, action)
        transition = common.env_transition(env_state, action, next_state)
        rollout = losses.Rollout(
            transition=transition,
            raw_action=raw,
            log_prob=distribution.log_prob(logits, raw),
            episode_end=next_state.done,
        )
        sums = common.episode_sums(next_state.info)
        return (sharding.constrain(next_state, 0, mesh), key), (sharding.constrain(rollout, 0, mesh), sums)

    def collect(state: PPOState, key: jax.Array) -> tuple[Any, losses.Rollout, dict]:
        """Segments [batch_size·num_minibatches, unroll_length, ...] with the current stochastic policy."""

        def segment(carry, _):
            carry, (rollout, sums) = jax.lax.scan(
                functools.partial(env_step, state), carry, None, length=config.unroll_length
            )
            segment_data = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), rollout)  # [envs, T, ...]
            return carry, (segment_data, jax.tree.map(jnp.sum, sums))

        segments = config.batch_size * config.num_minibatches // config.num_envs
        (env_state, _), (data, sums) = jax.lax.scan(segment, (state.env_state, key), None, length=segments)
        data = jax.tree.map(lambda x: x.reshape((-1, *x.shape[2:])), data)  # [segments·envs, T, ...]
        return env_state, data, jax.tree.map(jnp.sum, sums)

    def sgd_epoch(carry, _, data, normalizer, constraint_state):
        optimizer_state, params, key = carry
        key, key_perm, key_loss = jax.random.split(key, 3)
        order = jax.random.permutation(key_perm, data.log_prob.shape[0])
        batches = jax.tree.map(lambda x: x[order].reshape((config.num_minibatches, -1, *x.shape[1:])), data)
        batches = sharding.constrain(batches, 1, mesh)  # each minibatch's segments split over the devices

        def minibatch(inner, batch):
            opt_state, params, k = inner
            k, k_loss = jax.random.split(k)
            (_, metrics), grads = grad_fn(params, normalizer, batch, k_loss, constraint_state)
            updates, opt_state = optimizer.update(grads, opt_state)
            return (opt_state, optax.apply_updates(params, updates), k), metrics

        (optimizer_state, params, _), metrics = jax.lax.scan(minibatch, (optimizer_state, params, key_loss), batches)
        return (optimizer_state, params, key), metrics

    def iteration(state: PPOState, _) -> tuple[PPOState, dict]:
        key_collect, key_sgd, key_next = jax.random.split(state.key, 3)
        env_state, data, sums = collect(state, key_collect)
        normalizer = pixel_networks.update_normalizer(state.normalizer, data.transition.obs)
        (optimizer_state, params, _), metrics = jax.lax.scan(
            functools.partial(sgd_epoch, data=data, normalizer=normalizer, constraint_state=state.constraint),
            (state.optimizer_state, state.params, key_sgd),
            None,
            length=config.num_updates_per_batch,
        )
        metrics = jax.tree.map(jnp.mean, metrics)
        constraint, handler = constraints.update(config.constraint, state.constraint, metrics["cost_estimate"], budget)
        new_state = PPOState(
            params=params,
            optimizer_state=optimizer_state,
            constraint=constraint,
            normalizer=normalizer,
            env_state=env_state,
            key=key_next,
            env_steps=state.env_steps + config.env_steps_per_iteration,
        )
        return new_state, {
            **sums,
            **metrics,
            "lagrange_multiplier": handler["lagrange_multiplier"],
            "penalty": handler["penalty"],
        }

    chunk = common.make_chunk(iteration, config.iterations_per_chunk, state_shardings, LOSS_KEYS)
    return init, chunk, state_shardings


def _watched(state: PPOState) -> dict[str, Any]:
    """The trees checked for NaN/Inf after every chunk."""
    return {"params": state.params, "constraint": state.constraint}


def train(ctx: TrainContext) -> dict[str, float]:
    """`Algorithm.train`: run PPO for `ctx.total_steps` env steps with logging and checkpoints."""
    config: PPOConfig = ctx.algo_config
    return common.train_chunked(
        ctx,
        make_train,
        steps_per_chunk=config.env_steps_per_chunk,
        checkpoint_every=config.checkpoint_every,
        watched=_watched,
    )


registry.register_seed_batch(
    "ppo",
    registry.SeedBatch(
        make_parts=make_parts,
        steps_per_chunk=lambda config, env: config.env_steps_per_chunk,
        checkpoint_every=lambda config, env: config.checkpoint_every,
        watched=_watched,
    ),
)
