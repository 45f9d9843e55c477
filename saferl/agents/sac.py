"""SAC (Haarnoja et al. 2018, learned temperature) from brax's building blocks, chunked and resumable.

`make_train(config, env)` returns pure jitted `init(key) -> SACState` and `train_chunk(state) -> (state,
metrics)`. One iteration steps `num_envs` envs once, inserts the transitions into brax's uniform replay
buffer (part of the state, so a resume continues with the same data) and, once `min_replay_size`
transitions are stored (recorded ones given with `--data` count: `prefill`), does `grad_updates_per_step`
updates of temperature, twin critics and actor (brax's SAC losses), then a Polyak update of the target
critics. Before that, actions are uniform in [-1, 1]. The env batch and each gradient step's batch are
split over all devices (`saferl.training.sharding`, GSPMD); params, optimiser states and the replay buffer
are replicated.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from brax.training import acting, gradients, replay_buffers
from brax.training.acme import running_statistics, specs
from brax.training.agents.sac import losses as sac_losses
from brax.training.agents.sac import networks as sac_networks
from brax.training.types import Transition

from saferl.agents import registry
from saferl.agents.modelfree import common
from saferl.training import sharding


@dataclasses.dataclass(frozen=True)
class SACConfig:
    num_envs: int = 16  # parallel envs (env steps per iteration)
    learning_rate: float = 1e-3  # Adam step size (actor, critics, temperature)
    discounting: float = 0.97  # γ
    tau: float = 0.005  # Polyak factor of the target critics
    batch_size: int = 128  # transitions per gradient update
    grad_updates_per_step: int = 4  # gradient updates per iteration (per num_envs env steps)
    max_replay_size: int = 100_000  # replay capacity, transitions
    min_replay_size: int = 1_024  # transitions collected with random actions before learning starts
    reward_scaling: float = 1.0  # rewards are multiplied by this in the critic target
    normalize_observations: bool = True  # running mean/std observation normaliser
    hidden_sizes: tuple[int, ...] = (64, 64)  # actor and critic MLPs (relu)
    iterations_per_chunk: int = 64  # iterations per jitted chunk (one log row per chunk)
    checkpoint_every: int = 20_000  # env steps between checkpoints (the last state is always saved)

    def __post_init__(self) -> None:
        for name in ("num_envs", "batch_size", "grad_updates_per_step", "max_replay_size",
                     "iterations_per_chunk", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.min_replay_size <= self.max_replay_size:
            raise ValueError(f"min_replay_size must be in [0, max_replay_size={self.max_replay_size}], "
                             f"got {self.min_replay_size}")
        if self.max_replay_size < self.num_envs:
            raise ValueError(f"max_replay_size must be >= num_envs ({self.num_envs}), got {self.max_replay_size}")
        for name in ("learning_rate", "reward_scaling"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("discounting", "tau"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"hidden_sizes must be a non-empty list of sizes >= 1, got {self.hidden_sizes}")

    @property
    def env_steps_per_chunk(self) -> int:
        return self.num_envs * self.iterations_per_chunk


@flax.struct.dataclass
class SACState:
    policy_params: Any
    policy_optimizer_state: Any
    q_params: Any  # twin critics
    q_optimizer_state: Any
    target_q_params: Any
    log_alpha: jax.Array  # log temperature, scalar
    alpha_optimizer_state: Any
    normalizer: running_statistics.RunningStatisticsState
    buffer: replay_buffers.ReplayBufferState  # replay data, insert position and sampling key
    env_state: Any  # brax State of the num_envs training envs
    key: jax.Array
    env_steps: jax.Array  # int32


def make_networks(config: SACConfig, observation_size: int, action_size: int) -> sac_networks.SACNetworks:
    """brax SAC networks: tanh-normal actor (actions in [-1, 1]) and twin Q critics."""
    normalize = running_statistics.normalize if config.normalize_observations else (lambda x, _: x)
    return sac_networks.make_sac_networks(observation_size, action_size, preprocess_observations_fn=normalize,
                                          hidden_layer_sizes=config.hidden_sizes)


def _dummy_transition(observation_size: int, action_size: int) -> Transition:
    obs = jnp.zeros((observation_size,))
    return Transition(observation=obs, action=jnp.zeros((action_size,)), reward=jnp.zeros(()),
                      discount=jnp.zeros(()), next_observation=obs,
                      extras={"state_extras": {"truncation": jnp.zeros(())}, "policy_extras": {}})


def _replay_buffer(config: SACConfig, observation_size: int, action_size: int) -> replay_buffers.ReplayBuffer:
    """brax's uniform FIFO replay of `config.max_replay_size` transitions (sampled in one batch per iteration)."""
    return replay_buffers.UniformSamplingQueue(
        max_replay_size=config.max_replay_size, dummy_data_sample=_dummy_transition(observation_size, action_size),
        sample_batch_size=config.batch_size * config.grad_updates_per_step)


def prefill(config: SACConfig, env: Any, state: SACState, batch: dict[str, Any]) -> SACState:
    """`state` with recorded transitions (arrays [N, ...]: obs, action, next_obs, reward, done) in its replay
    buffer (the last `max_replay_size` if N is larger) and its observation normaliser updated with them.

    A recorded `done` cannot be told apart from a time limit, so those transitions are treated as brax treats
    time limits: discount 0 and masked out of the critic loss (`truncation` 1).
    """
    kept = {k: jnp.asarray(v[-config.max_replay_size:], jnp.float32) for k, v in batch.items()}
    transitions = Transition(
        observation=kept["obs"], action=kept["action"], reward=kept["reward"], discount=1.0 - kept["done"],
        next_observation=kept["next_obs"], extras={"state_extras": {"truncation": kept["done"]}, "policy_extras": {}})
    buffer = _replay_buffer(config, env.observation_size, env.action_size)
    return common.strong_types(state.replace(buffer=buffer.insert_internal(state.buffer, transitions),
                                             normalizer=running_statistics.update(state.normalizer, kept["obs"])))


def _make_update(config: SACConfig, networks: Any, action_size: int, optimizer: optax.GradientTransformation):
    """One SAC gradient step on a batch: temperature, critics, actor, Polyak target update."""
    alpha_loss, critic_loss, actor_loss = sac_losses.make_losses(networks, config.reward_scaling,
                                                                 config.discounting, action_size)
    alpha_update = gradients.gradient_update_fn(alpha_loss, optimizer, pmap_axis_name=None)
    critic_update = gradients.gradient_update_fn(critic_loss, optimizer, pmap_axis_name=None)
    actor_update = gradients.gradient_update_fn(actor_loss, optimizer, pmap_axis_name=None)

    def update(state: SACState, batch: Transition, key: jax.Array) -> tuple[SACState, dict]:
        key_alpha, key_critic, key_actor = jax.random.split(key, 3)
        a_loss, log_alpha, alpha_opt = alpha_update(state.log_alpha, state.policy_params, state.normalizer, batch,
                                                    key_alpha, optimizer_state=state.alpha_optimizer_state)
        alpha = jnp.exp(log_alpha)
        c_loss, q_params, q_opt = critic_update(state.q_params, state.policy_params, state.normalizer,
                                                state.target_q_params, alpha, batch, key_critic,
                                                optimizer_state=state.q_optimizer_state)
        p_loss, policy_params, policy_opt = actor_update(state.policy_params, state.normalizer, q_params, alpha,
                                                         batch, key_actor,
                                                         optimizer_state=state.policy_optimizer_state)
        target = jax.tree.map(lambda t, q: (1 - config.tau) * t + config.tau * q, state.target_q_params, q_params)
        state = state.replace(policy_params=policy_params, policy_optimizer_state=policy_opt, q_params=q_params,
                              q_optimizer_state=q_opt, target_q_params=target, log_alpha=log_alpha,
                              alpha_optimizer_state=alpha_opt)
        return state, {"critic_loss": c_loss, "actor_loss": p_loss, "alpha_loss": a_loss, "alpha": alpha}

    return update


@common.cache_by_env_config
def make_train(config: SACConfig, env: Any) -> tuple[Callable[[jax.Array], SACState],
                                                     Callable[[SACState], tuple[SACState, dict]]]:
    """Pure `init(key) -> SACState` and `train_chunk(state) -> (state, metrics)`, both jitted.

    metrics: `episode_return`/`episode_cost`/`episodes` over the chunk and the last iteration's
    `critic_loss`, `actor_loss`, `alpha_loss`, `alpha` (0 before learning starts).
    States come back with `env_state` split over the devices and the rest replicated; the chunk moves any
    input state (restored, `prefill`ed) there first. `num_envs` must be a multiple of the device count
    (`UserError` otherwise).
    """
    mesh = sharding.data_mesh()
    sharding.check_divisible(config.num_envs, "num_envs", mesh)
    state_shardings = functools.partial(sharding.state_shardings, batch_fields=("env_state",), mesh=mesh)
    train_env = common.wrap_for_training(env)
    obs_size, action_size = env.observation_size, env.action_size
    networks = make_networks(config, obs_size, action_size)
    optimizer = optax.adam(config.learning_rate)
    buffer = _replay_buffer(config, obs_size, action_size)
    update = _make_update(config, networks, action_size, optimizer)
    distribution = networks.parametric_action_distribution

    def init(key: jax.Array) -> SACState:
        key_policy, key_q, key_env, key_buffer, key_next = jax.random.split(key, 5)
        policy_params = networks.policy_network.init(key_policy)
        q_params = networks.q_network.init(key_q)
        log_alpha = jnp.zeros(())
        return common.strong_types(SACState(
            policy_params=policy_params, policy_optimizer_state=optimizer.init(policy_params), q_params=q_params,
            q_optimizer_state=optimizer.init(q_params), target_q_params=q_params, log_alpha=log_alpha,
            alpha_optimizer_state=optimizer.init(log_alpha),
            normalizer=running_statistics.init_state(specs.Array((obs_size,), jnp.float32)),
            buffer=buffer.init(key_buffer), env_state=train_env.reset(jax.random.split(key_env, config.num_envs)),
            key=key_next, env_steps=jnp.zeros((), jnp.int32)))

    def act(state: SACState, key: jax.Array) -> tuple[Any, Transition]:
        warmup = buffer.size(state.buffer) < config.min_replay_size

        def behaviour(obs: jax.Array, k: jax.Array) -> tuple[jax.Array, dict]:
            k_policy, k_random = jax.random.split(k)
            logits = networks.policy_network.apply(state.normalizer, state.policy_params, obs)
            random = jax.random.uniform(k_random, (obs.shape[0], action_size), minval=-1.0, maxval=1.0)
            return jnp.where(warmup, random, distribution.sample(logits, k_policy)), {}

        env_state, transition = acting.actor_step(train_env, state.env_state, behaviour, key,
                                                  extra_fields=common.EPISODE_FIELDS)
        return sharding.constrain(env_state, 0, mesh), sharding.constrain(transition, 0, mesh)  # [envs, ...]

    def learn(state: SACState, key: jax.Array) -> tuple[SACState, dict]:
        buffer_state, batch = buffer.sample(state.buffer)
        batch = jax.tree.map(lambda x: x.reshape((config.grad_updates_per_step, -1) + x.shape[1:]), batch)
        batch = sharding.constrain(batch, 1, mesh)  # each gradient step's transitions split over the devices
        keys = jax.random.split(key, config.grad_updates_per_step)
        state, losses = jax.lax.scan(lambda s, xs: update(s, *xs), state.replace(buffer=buffer_state),
                                     (batch, keys))
        return state, jax.tree.map(lambda x: x[-1], losses)

    def skip(state: SACState, key: jax.Array) -> tuple[SACState, dict]:
        return state, {k: jnp.zeros(()) for k in ("critic_loss", "actor_loss", "alpha_loss", "alpha")}

    def iteration(state: SACState, _) -> tuple[SACState, dict]:
        key_act, key_learn, key_next = jax.random.split(state.key, 3)
        env_state, transition = act(state, key_act)
        sums = common.episode_sums(transition.extras["state_extras"])
        transition = transition._replace(extras={
            "state_extras": {"truncation": transition.extras["state_extras"]["truncation"]}, "policy_extras": {}})
        state = state.replace(env_state=env_state, key=key_next, env_steps=state.env_steps + config.num_envs,
                              normalizer=running_statistics.update(state.normalizer, transition.observation),
                              buffer=buffer.insert_internal(state.buffer, transition))
        state, losses = jax.lax.cond(buffer.size(state.buffer) >= config.min_replay_size, learn, skip, state,
                                     key_learn)
        return state, {**sums, **losses}

    @jax.jit
    def chunk(state: SACState) -> tuple[SACState, dict]:
        state, per_iteration = jax.lax.scan(iteration, state, None, length=config.iterations_per_chunk)
        sums = {k: per_iteration[k].sum() for k in ("episodes", "return_sum", "cost_sum")}
        losses = {k: per_iteration[k][-1] for k in ("critic_loss", "actor_loss", "alpha_loss", "alpha")}
        state = common.strong_types(state)
        return sharding.constrain_to(state, state_shardings(state)), {**common.episode_means(sums), **losses}

    return common.data_parallel(jax.jit(init), chunk, state_shardings)


def train(ctx: Any) -> dict[str, float]:
    """`Algorithm.train`: run SAC for `ctx.total_steps` env steps with logging and checkpoints."""
    from saferl.training.loop import run_chunks

    config: SACConfig = ctx.algo_config
    init, train_chunk = make_train(config, ctx.env)
    state = init(jax.random.PRNGKey(ctx.seed))
    restored = ctx.resume(state)
    if restored is not None:
        state = restored[0]  # recorded data, if any, is already in the restored replay buffer
    elif ctx.data_dir is not None:
        state = prefill(config, ctx.env, state, ctx.recorded_transitions())
    watched = lambda s: {"policy_params": s.policy_params, "q_params": s.q_params, "log_alpha": s.log_alpha}  # noqa: E731
    state, env_steps, row = run_chunks(
        ctx, state, train_chunk, steps_per_chunk=config.env_steps_per_chunk, start_steps=int(state.env_steps),
        checkpoint_every=config.checkpoint_every, watched=watched,
        extra=lambda steps: {"env_steps": steps, "algo": "sac"})
    return {"env_steps": env_steps, **row}


def load_policy(run_dir: Any) -> Any:
    """`Algorithm.load_policy`: the deterministic (tanh of the mean) / stochastic actor of a SAC run."""
    from saferl.policies.modelfree import load_sac_policy

    return load_sac_policy(run_dir)


registry.register(registry.Algorithm(
    name="sac", config_cls=SACConfig, train=train, load_policy=load_policy,
    description="SAC (brax networks/losses/replay buffer), chunked and resumable", uses_recorded_data=True))
