"""SAC with a cost critic and a constraint handler, chunked and resumable, on the project's env stack.

`make_train(config, env, training_env)` returns pure jitted `init(key) -> SACState` and
`train_chunk(state) -> (state, metrics)`. One iteration steps `num_envs` envs of the training world once
(`envs.wrap_training_env`: fresh reset and randomisation per episode), adds the `Transition`s (with cost) to
the project's ring replay buffer (part of the state, so a resume continues with the same data) and, once
`min_replay_size` transitions are stored (recorded ones given with `--data` count: `prefill`), does
`grad_updates_per_step` updates of temperature, reward and cost critics, actor (with the constraint
handler's objective) and the handler's multipliers, then Polyak updates of the target critics. Before
that, actions are uniform in [-1, 1]. The env batch and each gradient step's batch are split over all
devices (`saferl.sharding`); params, optimiser states and the replay buffer are replicated.

The constraint is the env's episode budget d translated to the cost critic's discounted scale,
d_Q = d / (T·(1 − γ_c)) (`saferl.constraints.discounted_budget`). The actor's objective compares it with
mean Q_c(s, π(s)) over the `cost_estimate_window` most recent transitions' states (the current policy's
state distribution); the handler's multipliers integrate `constraint_signal`: by default the same window's
measured cost per step / (1 − γ_c), or that critic estimate.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

import flax.struct
import jax
import jax.numpy as jnp
import optax
from brax.training.acme import running_statistics

import saferl.agents.sac.losses as losses
from saferl import constraints, registry, sharding
from saferl.agents.modelfree import common, pixel_networks
from saferl.agents.sac.config import SACConfig
from saferl.agents.sac.networks import SACNetworks, make_networks
from saferl.data import buffer as buffer_lib
from saferl.data.buffer import Transition
from saferl.errors import UserError

if TYPE_CHECKING:
    from envs.protocol import SafeEnv
    from envs.training_env import TrainingEnvConfig
    from saferl.training.context import TrainContext

LOSS_KEYS = (
    "critic_loss",
    "cost_critic_loss",
    "actor_loss",
    "alpha_loss",
    "alpha",
    "cost_estimate",
    "measured_cost",
    "lagrange_multiplier",
    "penalty",
    "constraint_violation",
)


@flax.struct.dataclass
class SACState:
    policy_params: Any
    policy_optimizer_state: Any
    q_params: Any  # twin reward critics
    q_optimizer_state: Any
    target_q_params: Any
    cost_q_params: Any  # twin cost critics
    cost_q_optimizer_state: Any
    target_cost_q_params: Any
    log_alpha: jax.Array  # log temperature, scalar
    alpha_optimizer_state: Any
    constraint: constraints.ConstraintState  # λ, penalty
    normalizer: running_statistics.RunningStatisticsState
    buffer: buffer_lib.ReplayBuffer  # replay data [max_replay_size] and insert position
    env_state: Any  # State of the num_envs training envs
    key: jax.Array
    env_steps: jax.Array  # int32

    if TYPE_CHECKING:  # flax's struct.dataclass adds `replace` at run time, unseen by mypy

        def replace(self, **changes: Any) -> Self: ...


def prefill(config: SACConfig, state: SACState, batch: dict[str, Any]) -> SACState:
    """`state` with recorded transitions (arrays [N, ...]: obs, action, next_obs, reward, cost, done) in its
    replay buffer (the last `max_replay_size` if N is larger) and its observation normaliser updated.

    A recorded `done` cannot be told apart from a time limit; recorded `next_obs` is the true next
    observation, so those transitions are stored as time limits (done 0: the critics bootstrap from them).
    """
    if isinstance(state.buffer.data.obs, dict):
        raise UserError(
            "sac --data: recordings hold flat observation vectors, but this env's observations are "
            "dicts (image + state); record and train SAC on observation=state, or use pets/softae/"
            "sooper, which model the state part of the recordings"
        )
    kept = {k: jnp.asarray(v[-config.max_replay_size :], jnp.float32) for k, v in batch.items()}
    cost = kept.get("cost", jnp.zeros_like(kept["reward"]))
    transitions = Transition(
        obs=kept["obs"],
        action=kept["action"],
        next_obs=kept["next_obs"],
        reward=kept["reward"],
        cost=cost,
        done=jnp.zeros_like(kept["reward"]),
    )
    return common.strong_types(
        state.replace(
            buffer=buffer_lib.add(state.buffer, transitions),
            normalizer=running_statistics.update(state.normalizer, kept["obs"]),
        )
    )


def gradient_step(loss_fn: Callable, optimizer: optax.GradientTransformation, has_aux: bool = False) -> Callable:
    """`step(params, *args, optimizer_state, **kwargs) -> (loss value, params, optimizer_state)`: one optax
    step on `loss_fn(params, *args, **kwargs)` (value is `(loss, aux)` with `has_aux`)."""
    value_and_grad = jax.value_and_grad(loss_fn, has_aux=has_aux)

    def step(params: Any, *args: Any, optimizer_state: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
        value, grads = value_and_grad(params, *args, **kwargs)
        updates, optimizer_state = optimizer.update(grads, optimizer_state)
        return value, optax.apply_updates(params, updates), optimizer_state

    return step


class SACParams(Protocol):
    """Where `make_sac_step` reads and writes the actor, the twin critics, their targets, the temperature and
    their optimiser states: fields of `SACState` and of SOOPER's `mbpo.LearnerState`."""

    policy_params: Any
    policy_optimizer_state: Any
    q_params: Any
    q_optimizer_state: Any
    target_q_params: Any
    cost_q_params: Any
    cost_q_optimizer_state: Any
    target_cost_q_params: Any
    log_alpha: jax.Array
    alpha_optimizer_state: Any

    def replace(self, **changes: Any) -> Self: ...


Params = TypeVar("Params", bound=SACParams)


def make_sac_step(
    config: SACConfig,
    networks: SACNetworks,
    optimizer: optax.GradientTransformation,
    budget_q: float,
    cost_critic: bool = True,
) -> Callable:
    """`step(params, normalizer, constraint_state, batch, recent_obs, key) -> (params, metrics)`: one SAC step
    on `batch` [B] — temperature, twin reward critics (rewards × `reward_scaling`, γ `discounting`), twin cost
    critics (γ_c `cost_discounting`; skipped without `cost_critic`), actor with `config.constraint`'s objective
    at `constraint_state` against d_Q = `budget_q` (its cost estimate over `recent_obs`), then the Polyak step
    of the trained critics' targets. metrics: `critic_loss`, `cost_critic_loss`, `actor_loss`, `alpha_loss`,
    `alpha`, `cost_estimate`. The constraint handler's own update is the caller's."""
    alpha_update = gradient_step(functools.partial(losses.alpha_loss, networks=networks), optimizer)
    critic_update = gradient_step(losses.critic_loss, optimizer)
    actor_update = gradient_step(
        functools.partial(losses.actor_loss, networks=networks, config=config, cost_budget_q=budget_q),
        optimizer,
        has_aux=True,
    )
    polyak = lambda t, q: (1 - config.tau) * t + config.tau * q  # noqa: E731

    def step(
        params: Params, normalizer: Any, constraint_state: Any, batch: Transition, recent_obs: Any, key: jax.Array
    ) -> tuple[Params, dict]:
        key_alpha, key_next, key_actor = jax.random.split(key, 3)
        a_loss, log_alpha, alpha_opt = alpha_update(
            params.log_alpha,
            policy_params=params.policy_params,
            normalizer=normalizer,
            batch=batch,
            key=key_alpha,
            optimizer_state=params.alpha_optimizer_state,
        )
        alpha = jnp.exp(log_alpha)
        next_action, next_log_prob = losses.sample_action(
            networks, normalizer, params.policy_params, batch.next_obs, key_next
        )
        c_loss, q_params, q_opt = critic_update(
            params.q_params,
            networks.q_network,
            normalizer,
            params.target_q_params,
            batch,
            batch.reward * config.reward_scaling,
            next_action,
            -alpha * next_log_prob,
            config.discounting,
            False,
            optimizer_state=params.q_optimizer_state,
        )
        cc_loss, cost_q_params, cost_q_opt = jnp.zeros(()), params.cost_q_params, params.cost_q_optimizer_state
        if cost_critic:
            cc_loss, cost_q_params, cost_q_opt = critic_update(
                params.cost_q_params,
                networks.cost_q_network,
                normalizer,
                params.target_cost_q_params,
                batch,
                batch.cost,
                next_action,
                jnp.zeros_like(batch.cost),
                config.cost_discounting,
                True,
                optimizer_state=params.cost_q_optimizer_state,
            )
        (p_loss, aux), policy_params, policy_opt = actor_update(
            params.policy_params,
            normalizer=normalizer,
            q_params=q_params,
            cost_q_params=cost_q_params,
            alpha=alpha,
            constraint_state=constraint_state,
            batch=batch,
            recent_obs=recent_obs,
            key=key_actor,
            optimizer_state=params.policy_optimizer_state,
        )
        params = params.replace(
            policy_params=policy_params,
            policy_optimizer_state=policy_opt,
            q_params=q_params,
            q_optimizer_state=q_opt,
            target_q_params=jax.tree.map(polyak, params.target_q_params, q_params),
            cost_q_params=cost_q_params,
            cost_q_optimizer_state=cost_q_opt,
            target_cost_q_params=(
                jax.tree.map(polyak, params.target_cost_q_params, cost_q_params)
                if cost_critic
                else params.target_cost_q_params
            ),
            log_alpha=log_alpha,
            alpha_optimizer_state=alpha_opt,
        )
        return params, {
            "critic_loss": c_loss,
            "cost_critic_loss": cc_loss,
            "actor_loss": p_loss,
            "alpha_loss": a_loss,
            "alpha": alpha,
            "cost_estimate": aux["cost_estimate"],
        }

    return step


def _make_update(
    config: SACConfig, networks: SACNetworks, optimizer: optax.GradientTransformation, budget: float
) -> Callable:
    """One gradient step on a batch: `make_sac_step` (the constraint's estimate over `recent`'s states), then
    the constraint handler's multipliers."""
    sac_step = make_sac_step(config, networks, optimizer, budget)

    def update(state: SACState, batch: Transition, recent: Transition, key: jax.Array) -> tuple[SACState, dict]:
        state, metrics = sac_step(state, state.normalizer, state.constraint, batch, recent.obs, key)
        measured_cost = jnp.mean(recent.cost) / (1.0 - config.cost_discounting)
        signal = metrics["cost_estimate"] if config.constraint_signal == "critic" else measured_cost
        constraint, handler = constraints.update(config.constraint, state.constraint, signal, budget)
        handled = {k: handler[k] for k in ("lagrange_multiplier", "penalty", "constraint_violation")}
        return state.replace(constraint=constraint), {**metrics, "measured_cost": measured_cost, **handled}

    return update


@common.cache_by_computation
def make_train(
    config: SACConfig, env: SafeEnv, training_env: TrainingEnvConfig | None = None
) -> tuple[Callable[[jax.Array], SACState], Callable[[SACState], tuple[SACState, dict]]]:
    """Pure `init(key) -> SACState` and `train_chunk(state) -> (state, metrics)`, both jitted; metrics and
    layout: see `make_parts`."""
    init, chunk, state_shardings = make_parts(config, env, training_env)
    return common.data_parallel(jax.jit(init), chunk, state_shardings)


def make_train_init(
    config: SACConfig, env: SafeEnv, training_env: TrainingEnvConfig | None
) -> Callable[[jax.Array], SACState]:
    """`make_train`'s `init`: the structure a whole training state is restored into
    (`saferl.training.restore.restore_run_state`)."""
    return make_train(config, env, training_env)[0]


@common.cache_by_computation
def make_parts(
    config: SACConfig, env: SafeEnv, training_env: TrainingEnvConfig | None = None
) -> tuple[Callable, Callable, Callable]:
    """One seed's `(init(key), chunk(state) -> (state, metrics), state_shardings(state))`: `init` pure and
    unjitted, `chunk` jitted; `make_train` places and jits them, `saferl.training.seeds` vmaps them over seeds.

    metrics: `episode_return`/`episode_cost`/`episodes` over the chunk and the last iteration's
    `LOSS_KEYS` (`critic_loss`, `cost_critic_loss`, `actor_loss`, `alpha_loss`, `alpha`, `cost_estimate`
    = mean Q_c(s, π(s)), `measured_cost` = the recent window's mean cost / (1 − γ_c), `lagrange_multiplier`,
    `penalty`, `constraint_violation` = the `constraint_signal` − budget_scale·d_Q;
    0 before learning starts). States come back with `env_state` split over the devices and the rest
    replicated; `num_envs` must be a multiple of the device count (`UserError` otherwise).
    """
    mesh = sharding.data_mesh()
    sharding.check_divisible(config.num_envs, "num_envs", mesh)
    state_shardings = functools.partial(sharding.state_shardings, batch_fields=("env_state",), mesh=mesh)
    train_env = common.wrap_for_training(env, training_env, config.num_envs)
    obs_size, action_size = env.observation_size, env.action_size
    networks = make_networks(config, obs_size, action_size)
    optimizer = optax.adam(config.learning_rate)
    update = _make_update(config, networks, optimizer, common.cost_budget_q(config, env))
    distribution = networks.parametric_action_distribution

    def init(key: jax.Array) -> SACState:
        key_policy, key_q, key_cost_q, key_env, key_next = jax.random.split(key, 5)
        policy_params = networks.policy_network.init(key_policy)
        q_params = networks.q_network.init(key_q)
        cost_q_params = networks.cost_q_network.init(key_cost_q)
        log_alpha = jnp.zeros(())
        return common.strong_types(
            SACState(
                policy_params=policy_params,
                policy_optimizer_state=optimizer.init(policy_params),
                q_params=q_params,
                q_optimizer_state=optimizer.init(q_params),
                target_q_params=q_params,
                cost_q_params=cost_q_params,
                cost_q_optimizer_state=optimizer.init(cost_q_params),
                target_cost_q_params=cost_q_params,
                log_alpha=log_alpha,
                alpha_optimizer_state=optimizer.init(log_alpha),
                constraint=constraints.init(config.constraint),
                normalizer=pixel_networks.init_normalizer(obs_size),
                buffer=buffer_lib.init(config.max_replay_size, buffer_lib.example_transition(obs_size, action_size)),
                env_state=train_env.reset(jax.random.split(key_env, config.num_envs)),
                key=key_next,
                env_steps=jnp.zeros((), jnp.int32),
            )
        )

    def act(state: SACState, key: jax.Array) -> tuple[Any, Transition]:
        """One step of every env with the behaviour policy (uniform random while warming up)."""
        key_policy, key_random = jax.random.split(key)
        obs = state.env_state.obs
        logits = networks.policy_network.apply(state.normalizer, state.policy_params, obs)
        random = jax.random.uniform(key_random, (config.num_envs, action_size), minval=-1.0, maxval=1.0)
        action = jnp.where(state.buffer.size < config.min_replay_size, random, distribution.sample(logits, key_policy))
        next_state = train_env.step(state.env_state, action)
        transition = common.env_transition(state.env_state, action, next_state)
        return sharding.constrain(next_state, 0, mesh), sharding.constrain(transition, 0, mesh)  # [envs, ...]

    def learn(state: SACState, key: jax.Array) -> tuple[SACState, dict]:
        key_sample, key_recent, key_update = jax.random.split(key, 3)
        size = config.batch_size * config.grad_updates_per_step
        per_step = lambda x: x.reshape((config.grad_updates_per_step, -1, *x.shape[1:]))  # noqa: E731
        batch = jax.tree.map(per_step, buffer_lib.sample(state.buffer, key_sample, size))
        recent = jax.tree.map(
            per_step, buffer_lib.sample_recent(state.buffer, key_recent, size, config.cost_estimate_window)
        )
        # each gradient step's transitions split over the devices
        batch, recent = sharding.constrain(batch, 1, mesh), sharding.constrain(recent, 1, mesh)
        keys = jax.random.split(key_update, config.grad_updates_per_step)
        state, per_update = jax.lax.scan(lambda s, xs: update(s, *xs), state, (batch, recent, keys))
        return state, jax.tree.map(lambda x: x[-1], per_update)

    def skip(state: SACState, key: jax.Array) -> tuple[SACState, dict]:
        metrics = {k: jnp.zeros(()) for k in LOSS_KEYS}
        metrics.update(lagrange_multiplier=state.constraint.multiplier, penalty=state.constraint.penalty)
        return state, metrics

    def iteration(state: SACState, _) -> tuple[SACState, dict]:
        key_act, key_learn, key_next = jax.random.split(state.key, 3)
        env_state, transition = act(state, key_act)
        sums = common.episode_sums(env_state.info)
        state = state.replace(
            env_state=env_state,
            key=key_next,
            env_steps=state.env_steps + config.num_envs,
            normalizer=pixel_networks.update_normalizer(state.normalizer, transition.obs),
            buffer=buffer_lib.add(state.buffer, transition),
        )
        state, learned = jax.lax.cond(state.buffer.size >= config.min_replay_size, learn, skip, state, key_learn)
        return state, {**sums, **learned}

    chunk = common.make_chunk(iteration, config.iterations_per_chunk, state_shardings, LOSS_KEYS)
    return init, chunk, state_shardings


def _watched(state: SACState) -> dict[str, Any]:
    """The trees checked for NaN/Inf after every chunk."""
    return {
        "policy_params": state.policy_params,
        "q_params": state.q_params,
        "cost_q_params": state.cost_q_params,
        "log_alpha": state.log_alpha,
        "constraint": state.constraint,
    }


def train(ctx: TrainContext) -> dict[str, float]:
    """`Algorithm.train`: run SAC for `ctx.total_steps` env steps with logging and checkpoints."""
    config: SACConfig = ctx.algo_config
    return common.train_chunked(
        ctx,
        make_train,
        steps_per_chunk=config.env_steps_per_chunk,
        checkpoint_every=config.checkpoint_every,
        watched=_watched,
        prefill=lambda state: prefill(config, state, ctx.recorded_transitions()),
    )


registry.register_seed_batch(
    "sac",
    registry.SeedBatch(
        make_parts=make_parts,
        steps_per_chunk=lambda config, env: config.env_steps_per_chunk,
        checkpoint_every=lambda config, env: config.checkpoint_every,
        watched=_watched,
        prefill=lambda ctx, state: prefill(ctx.algo_config, state, ctx.recorded_transitions()),
    ),
)
