"""PPO (Schulman et al. 2017) from brax's building blocks, as a resumable, chunked, purejaxrl-style loop.

`make_train(config, env)` returns pure functions `init(key) -> PPOState` and `train_chunk(state) ->
(state, metrics)`; one chunk is `iterations_per_chunk` PPO iterations of `env_steps_per_iteration` env
steps, all under one `jit`. The env batch (env states, rollouts, minibatches) is split over all devices
(`saferl.training.sharding`, GSPMD); params and optimiser state are replicated. `PPOState` holds everything
a resume needs (params, optimiser state, observation normaliser, env states, RNG key, counters). Networks,
the tanh-normal action distribution (actions in [-1, 1]), GAE and the clipped loss are brax's
(`brax.training.agents.ppo`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from brax.training import acting, gradients
from brax.training.acme import running_statistics, specs
from brax.training.agents.ppo import losses as ppo_losses
from brax.training.agents.ppo import networks as ppo_networks

from saferl.agents import registry
from saferl.agents.modelfree import common
from saferl.training import sharding


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    num_envs: int = 32  # parallel envs
    unroll_length: int = 20  # env steps per rollout segment
    batch_size: int = 32  # segments per minibatch
    num_minibatches: int = 4  # minibatches per iteration (batch_size·num_minibatches segments collected)
    num_updates_per_batch: int = 4  # passes (epochs) over the collected data per iteration
    learning_rate: float = 1e-3  # Adam step size
    max_grad_norm: float = 1.0  # global gradient-norm clip (> 0)
    discounting: float = 0.97  # γ
    gae_lambda: float = 0.95  # GAE λ
    clipping_epsilon: float = 0.3  # PPO ratio clip
    entropy_cost: float = 1e-3  # weight of the entropy bonus
    reward_scaling: float = 1.0  # rewards are multiplied by this in the loss
    normalize_observations: bool = True  # running mean/std observation normaliser
    policy_hidden_sizes: tuple[int, ...] = (64, 64)  # policy MLP (swish)
    value_hidden_sizes: tuple[int, ...] = (64, 64)  # value MLP (swish)
    iterations_per_chunk: int = 4  # PPO iterations per jitted chunk (one log row per chunk)
    checkpoint_every: int = 50_000  # env steps between checkpoints (the last state is always saved)

    def __post_init__(self) -> None:
        for name in ("num_envs", "unroll_length", "batch_size", "num_minibatches", "num_updates_per_batch",
                     "iterations_per_chunk", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if (self.batch_size * self.num_minibatches) % self.num_envs:
            raise ValueError(f"batch_size·num_minibatches ({self.batch_size}·{self.num_minibatches}) must be a "
                             f"multiple of num_envs ({self.num_envs})")
        for name in ("learning_rate", "max_grad_norm", "clipping_epsilon", "reward_scaling"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("discounting", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.entropy_cost < 0:
            raise ValueError(f"entropy_cost must be >= 0, got {self.entropy_cost}")
        if not self.policy_hidden_sizes or not self.value_hidden_sizes or min(
                self.policy_hidden_sizes + self.value_hidden_sizes) < 1:
            raise ValueError("policy_hidden_sizes and value_hidden_sizes must be non-empty lists of sizes >= 1")

    @property
    def env_steps_per_iteration(self) -> int:
        return self.batch_size * self.num_minibatches * self.unroll_length

    @property
    def env_steps_per_chunk(self) -> int:
        return self.env_steps_per_iteration * self.iterations_per_chunk


@flax.struct.dataclass
class PPOState:
    params: ppo_losses.PPONetworkParams  # policy and value network params
    optimizer_state: Any  # optax state of the Adam chain
    normalizer: running_statistics.RunningStatisticsState  # observation statistics
    env_state: Any  # brax State of the num_envs training envs
    key: jax.Array  # PRNG key for the next iteration
    env_steps: jax.Array  # int32, env steps so far


def make_networks(config: PPOConfig, observation_size: int, action_size: int) -> ppo_networks.PPONetworks:
    """brax PPO networks: tanh-normal policy (actions in [-1, 1]) and value MLP, optional normaliser."""
    normalize = running_statistics.normalize if config.normalize_observations else (lambda x, _: x)
    return ppo_networks.make_ppo_networks(
        observation_size, action_size, preprocess_observations_fn=normalize,
        policy_hidden_layer_sizes=config.policy_hidden_sizes, value_hidden_layer_sizes=config.value_hidden_sizes)


def _optimizer(config: PPOConfig) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.learning_rate))


@common.cache_by_env_config
def make_train(config: PPOConfig, env: Any) -> tuple[Callable[[jax.Array], PPOState],
                                                     Callable[[PPOState], tuple[PPOState, dict]]]:
    """Pure `init(key) -> PPOState` and `train_chunk(state) -> (state, metrics)`, both jitted.

    Both return states with `env_state` split over the devices' "data" axis and the rest replicated; the
    chunk accepts a state placed anywhere (e.g. restored) and moves it there first. `num_envs` must be a
    multiple of the device count (`UserError` otherwise).

    metrics (scalars): `episode_return`/`episode_cost` (means over episodes ended in the chunk, 0 if none),
    `episodes`, and the last iteration's mean `total_loss`, `policy_loss`, `v_loss`, `entropy_loss`.
    """
    mesh = sharding.data_mesh()
    sharding.check_divisible(config.num_envs, "num_envs", mesh)
    state_shardings = functools.partial(sharding.state_shardings, batch_fields=("env_state",), mesh=mesh)
    train_env = common.wrap_for_training(env)
    networks = make_networks(config, env.observation_size, env.action_size)
    optimizer = _optimizer(config)
    make_policy = ppo_networks.make_inference_fn(networks)
    loss_fn = functools.partial(
        ppo_losses.compute_ppo_loss, ppo_network=networks, entropy_cost=config.entropy_cost,
        discounting=config.discounting, reward_scaling=config.reward_scaling, gae_lambda=config.gae_lambda,
        clipping_epsilon=config.clipping_epsilon, normalize_advantage=True)
    update = gradients.gradient_update_fn(loss_fn, optimizer, pmap_axis_name=None, has_aux=True)

    def init(key: jax.Array) -> PPOState:
        key_policy, key_value, key_env, key_next = jax.random.split(key, 4)
        params = ppo_losses.PPONetworkParams(policy=networks.policy_network.init(key_policy),
                                             value=networks.value_network.init(key_value))
        normalizer = running_statistics.init_state(specs.Array((env.observation_size,), jnp.float32))
        env_state = train_env.reset(jax.random.split(key_env, config.num_envs))
        return common.strong_types(PPOState(
            params=params, optimizer_state=optimizer.init(params), normalizer=normalizer, env_state=env_state,
            key=key_next, env_steps=jnp.zeros((), jnp.int32)))

    def collect(state: PPOState, key: jax.Array) -> tuple[Any, Any]:
        """Rollouts [batch_size·num_minibatches, unroll_length, ...] with the current stochastic policy."""
        policy = make_policy((state.normalizer, state.params.policy))

        def segment(carry, _):
            env_state, seg_key = carry
            seg_key, unroll_key = jax.random.split(seg_key)
            env_state, data = acting.generate_unroll(train_env, env_state, policy, unroll_key,
                                                     config.unroll_length, extra_fields=common.EPISODE_FIELDS)
            # env states [envs, ...] and the unroll [T, envs, ...] stay split over the devices by env
            return (sharding.constrain(env_state, 0, mesh), seg_key), sharding.constrain(data, 1, mesh)

        segments = config.batch_size * config.num_minibatches // config.num_envs
        (env_state, _), data = jax.lax.scan(segment, (state.env_state, key), None, length=segments)
        data = jax.tree.map(lambda x: jnp.swapaxes(x, 1, 2), data)  # [segments, envs, T, ...]
        return env_state, jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), data)

    def sgd_epoch(carry, _, data, normalizer):
        optimizer_state, params, key = carry
        key, key_perm, key_loss = jax.random.split(key, 3)
        order = jax.random.permutation(key_perm, data.observation.shape[0])
        batches = jax.tree.map(lambda x: x[order].reshape((config.num_minibatches, -1) + x.shape[1:]), data)
        batches = sharding.constrain(batches, 1, mesh)  # each minibatch's segments split over the devices

        def minibatch(inner, batch):
            opt_state, params, k = inner
            k, k_loss = jax.random.split(k)
            (_, metrics), params, opt_state = update(params, normalizer, batch, k_loss, optimizer_state=opt_state)
            return (opt_state, params, k), metrics

        (optimizer_state, params, _), metrics = jax.lax.scan(minibatch, (optimizer_state, params, key_loss),
                                                             batches)
        return (optimizer_state, params, key), metrics

    def iteration(state: PPOState, _) -> tuple[PPOState, dict]:
        key_collect, key_sgd, key_next = jax.random.split(state.key, 3)
        env_state, data = collect(state, key_collect)
        sums = common.episode_sums(data.extras["state_extras"])
        data = data._replace(extras={"policy_extras": data.extras["policy_extras"],
                                     "state_extras": {"truncation": data.extras["state_extras"]["truncation"]}})
        normalizer = running_statistics.update(state.normalizer, data.observation)
        (optimizer_state, params, _), losses = jax.lax.scan(
            functools.partial(sgd_epoch, data=data, normalizer=normalizer),
            (state.optimizer_state, state.params, key_sgd), None, length=config.num_updates_per_batch)
        new_state = PPOState(params=params, optimizer_state=optimizer_state, normalizer=normalizer,
                             env_state=env_state, key=key_next,
                             env_steps=state.env_steps + config.env_steps_per_iteration)
        losses = {k: losses[k].mean() for k in ("total_loss", "policy_loss", "v_loss", "entropy_loss")}
        return new_state, {**sums, **losses}

    @jax.jit
    def chunk(state: PPOState) -> tuple[PPOState, dict]:
        state, per_iteration = jax.lax.scan(iteration, state, None, length=config.iterations_per_chunk)
        sums = {k: per_iteration[k].sum() for k in ("episodes", "return_sum", "cost_sum")}
        losses = {k: v[-1] for k, v in per_iteration.items() if k.endswith("loss")}
        state = common.strong_types(state)
        return sharding.constrain_to(state, state_shardings(state)), {**common.episode_means(sums), **losses}

    return common.data_parallel(jax.jit(init), chunk, state_shardings)


def train(ctx: Any) -> dict[str, float]:
    """`Algorithm.train`: run PPO for `ctx.total_steps` env steps with logging and checkpoints."""
    from saferl.training.loop import run_chunks

    config: PPOConfig = ctx.algo_config
    init, train_chunk = make_train(config, ctx.env)
    state = init(jax.random.PRNGKey(ctx.seed))
    restored = ctx.resume(state)
    if restored is not None:
        state = restored[0]
    start = int(state.env_steps)
    state, env_steps, row = run_chunks(
        ctx, state, train_chunk, steps_per_chunk=config.env_steps_per_chunk, start_steps=start,
        checkpoint_every=config.checkpoint_every, watched=lambda s: {"params": s.params},
        extra=lambda steps: {"env_steps": steps, "algo": "ppo"})
    return {"env_steps": env_steps, **row}


def load_policy(run_dir: Any) -> Any:
    """`Algorithm.load_policy`: the deterministic/stochastic tanh-normal policy of a PPO run."""
    from saferl.policies.modelfree import load_ppo_policy

    return load_ppo_policy(run_dir)


registry.register(registry.Algorithm(
    name="ppo", config_cls=PPOConfig, train=train, load_policy=load_policy,
    description="PPO (brax networks/losses), chunked and resumable",
    recorded_data_refusal="it is on-policy: it learns only from rollouts of its current policy"))
