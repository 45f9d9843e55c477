"""Pieces PPO and SAC share: the training env built from the run's training world, episode statistics,
one env step as a `Transition`, strong types, the memoised `make_train` (keyed on everything that changes
the computation), the chunk around a scanned iteration, placing states on the devices, and the
`train(ctx)` wiring (init or resume, run the chunks).

Envs are the project's own stack (`envs.wrap_training_env`: fresh reset and fresh domain randomisation per
episode, obs noise, action delay, a dynamics shift), never brax's `training.wrap`, whose auto-reset
restores each env's first state forever. Episode statistics come from `envs.wrappers.EpisodeWrapper`
(per-env sums of reward and of every `state.metrics` entry, among them the safety cost).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

import envs
from saferl import constraints, sharding
from saferl.data.buffer import Transition
from saferl.errors import UserError

if TYPE_CHECKING:
    from envs.protocol import SafeEnv
    from envs.training_env import TrainingEnvConfig
    from saferl.training.context import TrainContext


def training_world(training_env: TrainingEnvConfig | None) -> Any:
    """`training_env` or the default (nominal) world when None."""
    return envs.TrainingEnvConfig() if training_env is None else training_env


def wrap_for_training(env: SafeEnv, training_env: TrainingEnvConfig | None, num_envs: int) -> Any:
    """[num_envs] batched, time-limited (`env.episode_length`), fresh-reset-per-episode env of the world.

    `env` must already carry the world's dynamics shift (`envs.make_training_env(name, env_config, world)`,
    as `saferl train` builds it): the wrappers add randomisation, noise and delay, not the shift."""
    return envs.wrap_training_env(env, training_world(training_env), num_envs)


def cost_budget_q(config: Any, env: SafeEnv) -> float:
    """The env's episode budget on the cost critic's discounted scale, d / (T·(1 − γ_c)) with γ_c =
    `config.cost_discounting` (`saferl.constraints.discounted_budget`).

    An env without a budget (`cost_budget` 0, e.g. pendulum) gives 0 (logged violations are then the cost
    estimate itself) and cannot be trained with a constraint (`UserError`)."""
    if not env.cost_budget > 0:
        if config.constraint.enabled:
            raise UserError(
                f"constraint.kind={config.constraint.kind} needs an env with a cost budget; this env's "
                f"cost_budget is {env.cost_budget} (set one with --set-env cost_budget=... if the env has it)"
            )
        return 0.0
    return constraints.discounted_budget(float(env.cost_budget), int(env.episode_length), config.cost_discounting)


def env_transition(state: Any, action: jax.Array, next_state: Any) -> Transition:
    """The transition of one step of the wrapped training env, in the project's one `Transition` type.

    `next_obs` is the observation the step reached (`info["final_obs"]`: before the auto-reset on the step
    an episode ends), `done` is 1 only where the episode *terminated* (a time limit is not a termination:
    learners bootstrap from `next_obs` there), `cost` is the step's safety cost.
    """
    info = next_state.info
    terminated = next_state.done * (1.0 - info["truncation"])
    return Transition(
        obs=state.obs,
        action=action,
        next_obs=info["final_obs"],
        reward=next_state.reward,
        cost=info["cost"],
        done=terminated,
    )


def episode_sums(info: dict[str, Any]) -> dict[str, jax.Array]:
    """Totals over episodes that ended in a step (or rollout): `episodes`, `return_sum`, `cost_sum` (scalars).

    `info`: the wrapped env state's info (`episode_done`, `episode_metrics`), any leading axes.
    """
    done = info["episode_done"].astype(jnp.float32)
    metrics = info["episode_metrics"]
    cost = metrics.get("cost", jnp.zeros_like(done))
    return {"episodes": done.sum(), "return_sum": (metrics["sum_reward"] * done).sum(), "cost_sum": (cost * done).sum()}


def episode_means(sums: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Mean episode return and cost from `episode_sums` totals (0 where no episode ended; see `episodes`)."""
    count = jnp.maximum(sums["episodes"], 1.0)
    return {
        "episodes": sums["episodes"],
        "episode_return": sums["return_sum"] / count,
        "episode_cost": sums["cost_sum"] / count,
    }


def strong_types(tree: Any) -> Any:
    """`tree` with every array strongly typed, so a jitted chunk's output state has the same avals as its
    input (wrappers produce weakly typed flags; a mismatch would recompile the chunk once)."""

    def strong(leaf: Any) -> jax.Array:
        array = jnp.asarray(leaf)
        return array.astype(array.dtype)

    return jax.tree.map(strong, tree)


def computation_key(config: Any, env: SafeEnv, training_env: TrainingEnvConfig | None) -> tuple:
    """Everything a trainer's compiled functions depend on: the algorithm config, the env class and config,
    the env's physics (a `dynamics_shift` variant has the same class and config but other physics), the
    training world (randomisation, noise, delay, shift) and the devices of the mesh the trainer is built on
    (`sharding.use_devices` changes them; closures built for the old mesh must not be reused)."""
    return (
        config,
        type(env),
        getattr(env, "config", None),
        envs.physics_fingerprint(env),
        training_world(training_env),
        tuple((d.platform, d.id) for d in sharding.devices()),
    )


def cache_by_computation(make_train: Callable) -> Callable:
    """Memoise `make_train(config, env, training_env=None)` (PPO/SAC `make_train`, PETS `make_agent`; called
    with the world resolved, never None) on `computation_key`: a resumed run, a policy
    loader or a test reuses the already traced and compiled functions (tracing an MJX training step costs
    seconds), and an env with other physics or another world never gets closures built for the nominal one."""
    cache: dict[tuple, Any] = {}

    @functools.wraps(make_train)
    def cached(config: Any, env: SafeEnv, training_env: TrainingEnvConfig | None = None) -> Any:
        training_env = training_world(training_env)
        key = computation_key(config, env, training_env)
        try:
            hash(key)
        except TypeError:  # an unhashable config: no memoising
            return make_train(config, env, training_env)
        if key not in cache:
            if len(cache) >= 8:
                cache.pop(next(iter(cache)))
            cache[key] = make_train(config, env, training_env)
        return cache[key]

    return cached


def make_chunk(
    iteration: Callable[[Any, Any], tuple[Any, dict]],
    iterations: int,
    state_shardings: Callable[[Any], Any],
    last_keys: Sequence[str],
) -> Callable:
    """Jitted `chunk(state) -> (state, metrics)`: `iterations` scanned calls of `iteration(state, _) ->
    (state, metrics)` whose metrics hold `episodes`/`return_sum`/`cost_sum` (summed over the chunk into
    episode means) and `last_keys` (losses, multipliers: the last iteration's value)."""

    @jax.jit
    def chunk(state: Any) -> tuple[Any, dict]:
        state, per_iteration = jax.lax.scan(iteration, state, None, length=iterations)
        sums = {k: per_iteration[k].sum() for k in ("episodes", "return_sum", "cost_sum")}
        last = {k: per_iteration[k][-1] for k in last_keys}
        state = strong_types(state)
        return sharding.constrain_to(state, state_shardings(state)), {**episode_means(sums), **last}

    return chunk


def data_parallel(
    init: Callable[[jax.Array], Any], chunk: Callable[[Any], tuple[Any, Any]], state_shardings: Callable[[Any], Any]
) -> tuple[Callable, Callable]:
    """`(init, train_chunk)` around jitted ones so that states live where `state_shardings(state)` says
    (see `saferl.sharding`): `init`'s state is moved there, and `train_chunk` first moves its input
    there (a no-op for the previous chunk's output; restored or `prefill`ed states may sit elsewhere), so
    the jitted chunk always sees the same input shardings and compiles once."""

    def placed_init(key: jax.Array) -> Any:
        state = init(key)
        return sharding.place(state, state_shardings(state))

    def train_chunk(state: Any) -> tuple[Any, Any]:
        return chunk(sharding.place(state, state_shardings(state)))

    return placed_init, train_chunk


def train_chunked(
    ctx: TrainContext,
    make_train: Callable,
    *,
    steps_per_chunk: int,
    checkpoint_every: int,
    watched: Callable[[Any], dict],
    prefill: Callable[[Any], Any] | None = None,
) -> dict[str, float]:
    """`Algorithm.train` of a chunked trainer: build (cached) `init`/`train_chunk` for the run's config, env
    and training world, start fresh or resume from the last checkpoint, optionally `prefill(state)` a fresh
    state with `--data` recordings, then run chunks to `ctx.total_steps` with logging and checkpoints."""
    from saferl.training.loop import run_chunks

    init, train_chunk = make_train(ctx.algo_config, ctx.env, ctx.training_env)
    state = init(jax.random.PRNGKey(ctx.seed))
    restored = ctx.resume(state)
    if restored is not None:
        state = restored[0]  # recorded data, if any, is already in the restored state
    elif prefill is not None and ctx.data_dir is not None:
        state = prefill(state)
    state, env_steps, row = run_chunks(
        ctx,
        state,
        train_chunk,
        steps_per_chunk=steps_per_chunk,
        start_steps=int(state.env_steps),
        checkpoint_every=checkpoint_every,
        watched=watched,
        extra=lambda steps: {"env_steps": steps, "algo": ctx.algo},
    )
    return {"env_steps": env_steps, **row}
