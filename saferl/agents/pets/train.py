"""The PETS job against a `TrainContext`, on the shared outer loop (`saferl.training.loop.run_chunks`): one
episode is one chunk — collect (random, then MPC) → buffer → refit — so NaN checks, logging, checkpoints and
save-on-interrupt are the loop's. Recorded transitions (`--data`) join the buffer before the first fit.
Resume restores the full `PETSState` and continues bit for bit. `saferl train pets --seeds ...` runs the same
episode for many seeds at once (`SeedEpisodes`: collect, buffer add and refit each vmapped over a seed axis).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saferl import registry, sharding
from saferl.agents.modelfree.common import cache_by_computation
from saferl.agents.pets.agent import PETSAgent, PETSState, make_agent
from saferl.agents.pets.config import PETSConfig
from saferl.data.buffer import Transition
from saferl.errors import NonFiniteError

if TYPE_CHECKING:
    from envs.protocol import SafeEnv
    from envs.training_env import TrainingEnvConfig
    from saferl.training.context import TrainContext


class EpisodeRunner:
    """`runner(state) -> (state, metrics row)`: one PETS episode, the loop's `train_chunk`."""

    def __init__(self, agent: PETSAgent):
        self.agent = agent

    def _collect(self, state: PETSState, key: jax.Array) -> tuple[Any, Any, bool, float]:
        """(transitions, stats, random?, seconds spent collecting, compilation excluded)."""
        random = self.agent.random_episode(int(state.episode))
        collect = self.agent.compiled_collect(state.model, key)
        start = time.perf_counter()
        transitions, stats = jax.block_until_ready(collect(state.model, key, jnp.array(random)))
        return transitions, stats, random, time.perf_counter() - start

    def __call__(self, state: PETSState) -> tuple[PETSState, dict[str, float]]:
        """Collect one episode, add it to the buffer, refit; `NonFiniteError` if the fit went non-finite.

        Rows of random episodes have no planning columns (they stay empty in metrics.csv).
        """
        agent = self.agent
        key, collect_key, fit_key = jax.random.split(state.key, 3)
        transitions, stats, random, collect_s = self._collect(state, collect_key)
        buffer = agent.add(state.buffer, transitions)
        start = time.perf_counter()
        model, fit = agent.fit(fit_key, state.model, buffer)
        jax.block_until_ready(model.params)
        fit_s = time.perf_counter() - start
        new_state = PETSState(model=model, buffer=buffer, key=key, episode=state.episode + 1)
        if not bool(fit.finite):
            raise NonFiniteError(
                "model/fit_loss",
                int(new_state.episode) * agent.env_steps_per_episode,
                "the ensemble's training loss went NaN/Inf",
            )
        row = {
            "episode_return": float(stats.episode_return),
            "episode_cost": float(stats.episode_cost),
            "episodes": 1.0,
            "episode": float(new_state.episode),
            "random_actions": float(random),
            "model_nll": float(fit.holdout_nll),
            "model_mse": float(fit.holdout_mse),
            "model_coverage_1sigma": float(fit.coverage_1sigma),
            "model_ece": float(fit.ece),
            "model_calibrated_coverage_1sigma": float(fit.calibrated_coverage_1sigma),
            "model_calibrated_ece": float(fit.calibrated_ece),
            "fit_epochs": float(fit.epochs),
            "fit_s": fit_s,
            "buffer_size": float(buffer.size),
            "feasible_fraction": float(stats.feasible_fraction),
            "compile_s": agent.collect_compile_s,
        }
        if not random:
            row.update(
                plan_ms_per_step=1e3 * collect_s / agent.decisions_per_episode, plan_value=float(stats.plan_value)
            )
        return new_state, row


def add_recorded_data(agent: PETSAgent, state: PETSState, batch: dict[str, np.ndarray]) -> PETSState:
    """`state` with recorded transitions (float32 arrays [N, ...], decision level) appended to its buffer."""
    # numpy arrays where Transition's fields say jax.Array: the jitted `agent.add` takes either
    transitions = Transition(**batch)  # type: ignore[arg-type]
    return state.replace(buffer=agent.add(state.buffer, transitions))


def train(ctx: TrainContext) -> dict[str, float]:
    """`Algorithm.train`: PETS for `ctx.total_steps` env steps (rounded up to whole episodes)."""
    config: PETSConfig = ctx.algo_config
    return train_episodes(ctx, make_agent(config, ctx.env, ctx.training_env), "pets")


def train_episodes(ctx: TrainContext, agent: PETSAgent, algo: str) -> dict[str, float]:
    """The episodic model-based job (PETS, SoftAE) of `agent` for `ctx.total_steps` env steps (whole episodes):
    fresh or resumed state, recorded data before the first fit, one `EpisodeRunner` chunk per episode."""
    from saferl.training.loop import run_chunks

    config = agent.config
    state = agent.init(jax.random.PRNGKey(ctx.seed))
    restored = ctx.resume(state)
    if restored is not None:
        state = restored[0]  # recorded data, if any, is already in the restored buffer
    elif ctx.data_dir is not None:
        state = add_recorded_data(agent, state, ctx.recorded_transitions(config.action_repeat))
    # one layout from the first episode on: the jitted fit returns mesh-placed (replicated) arrays, so an
    # unplaced initial or restored state would trace and compile it a second time
    state = sharding.place_replicated(state)
    per_episode = agent.env_steps_per_episode
    state, env_steps, row = run_chunks(
        ctx,
        state,
        EpisodeRunner(agent),
        steps_per_chunk=per_episode,
        start_steps=int(state.episode) * per_episode,
        checkpoint_every=config.checkpoint_every_episodes * per_episode,
        watched=lambda s: {"model": s.model.params},
        extra=lambda steps: {"episode": steps // per_episode, "algo": algo},
    )
    return {"env_steps": float(env_steps), **row}


# ---------------------------------------------------------------------------------------------- --seeds (vmap)


class SeedEpisodes:
    """`chunk_seeds(state [S, ...]) -> (state, metrics [S])`: one PETS episode of S seeds at once, as the same
    three programs a single run uses (collect, buffer add, refit), each vmapped over the seed axis and
    compiled once. All seeds are at the same episode, so random-vs-MPC collection is one shared flag. Timing
    columns (`fit_s`, `plan_ms_per_step`, `compile_s`) measure the whole batch of seeds."""

    def __init__(self, agent: PETSAgent):
        self.agent = agent
        self.collect = jax.jit(jax.vmap(agent._collect, in_axes=(0, 0, None)))  # explore: one flag for all seeds
        self.add = jax.jit(jax.vmap(agent.add))
        self.fit = jax.jit(jax.vmap(agent.fit))
        self._compiled_collect: dict[int, Any] = {}  # number of seeds -> compiled collect
        self.collect_compile_s = float("nan")

    def _collect(self, model: Any, keys: jax.Array, explore: jax.Array) -> tuple[Any, Any]:
        seeds = int(keys.shape[0])
        if seeds not in self._compiled_collect:  # compiled ahead of time so that its compile time can be reported
            start = time.perf_counter()
            self._compiled_collect[seeds] = self.collect.lower(model, keys, explore).compile()
            self.collect_compile_s = time.perf_counter() - start
        return self._compiled_collect[seeds](model, keys, explore)

    def __call__(self, state: PETSState) -> tuple[PETSState, dict[str, np.ndarray]]:
        agent = self.agent
        # one layout for every call (a restored or freshly initialised state may sit elsewhere): one compile each
        state = sharding.place_replicated(state)
        keys = jax.vmap(lambda k: jax.random.split(k, 3))(state.key)  # [S, 3, ...]
        random = agent.random_episode(int(np.asarray(state.episode)[0]))
        start = time.perf_counter()
        transitions, stats = jax.block_until_ready(self._collect(state.model, keys[:, 1], jnp.array(random)))
        collect_s = time.perf_counter() - start
        buffer = self.add(state.buffer, transitions)
        start = time.perf_counter()
        model, fit = self.fit(keys[:, 2], state.model, buffer)
        jax.block_until_ready(model.params)
        fit_s = time.perf_counter() - start
        new_state = PETSState(model=model, buffer=buffer, key=keys[:, 0], episode=state.episode + 1)
        seeds = np.ones(np.shape(state.episode))
        metrics = {
            "episode_return": stats.episode_return,
            "episode_cost": stats.episode_cost,
            "episodes": seeds,
            "episode": new_state.episode,
            "random_actions": seeds * random,
            "model_nll": fit.holdout_nll,
            "model_mse": fit.holdout_mse,
            "model_coverage_1sigma": fit.coverage_1sigma,
            "model_ece": fit.ece,
            "model_calibrated_coverage_1sigma": fit.calibrated_coverage_1sigma,
            "model_calibrated_ece": fit.calibrated_ece,
            "fit_epochs": fit.epochs,
            "fit_s": seeds * fit_s,
            "buffer_size": buffer.size,
            "feasible_fraction": stats.feasible_fraction,
            "compile_s": seeds * self.collect_compile_s,
            "model_fit": jnp.where(fit.finite, 0.0, jnp.nan),
        }  # NaN: the fit went non-finite (checked)
        if not random:
            metrics.update(
                plan_ms_per_step=seeds * 1e3 * collect_s / agent.decisions_per_episode, plan_value=stats.plan_value
            )
        return new_state, jax.device_get(metrics)


def _seed_row(metrics: dict[str, Any]) -> dict[str, float]:
    """One seed's metrics.csv row: the single run's columns (the finiteness flag was checked and is dropped)."""
    return {k: float(v) for k, v in metrics.items() if k != "model_fit"}


def _steps_per_episode(config: PETSConfig, env: SafeEnv) -> int:
    return math.ceil(env.episode_length / config.action_repeat) * config.action_repeat


class EpisodicSeedBatch(NamedTuple):
    """`--seeds` under vmap for an episodic model-based agent (PETS, SoftAE): its `registry.SeedBatch` and the
    memoised builders behind it (`make_seed_episodes(config, env, world)` -> the `SeedEpisodes` a run uses)."""

    seed_batch: registry.SeedBatch
    make_seed_parts: Callable[..., tuple[Any, Any, Any]]
    make_seed_episodes: Callable[..., SeedEpisodes]


def episodic_seed_batch(make_agent_of: Callable[..., PETSAgent]) -> EpisodicSeedBatch:
    """The seed batch of the agents `make_agent_of(config, env, training_env)` builds: one episode of S seeds
    per chunk (`SeedEpisodes`), states fully replicated, `--data` recordings in every seed's buffer."""

    @cache_by_computation
    def make_seed_parts(
        config: Any, env: SafeEnv, training_env: TrainingEnvConfig | None = None
    ) -> tuple[Any, Any, Any]:
        agent = make_agent_of(config, env, training_env)
        return agent._init, None, lambda state: sharding.replicated_shardings(state)

    @cache_by_computation
    def make_seed_episodes(config: Any, env: SafeEnv, training_env: TrainingEnvConfig | None = None) -> SeedEpisodes:
        return SeedEpisodes(make_agent_of(config, env, training_env))

    def prefill(ctx: TrainContext, state: PETSState) -> PETSState:
        agent = make_agent_of(ctx.algo_config, ctx.env, ctx.training_env)
        return add_recorded_data(agent, state, ctx.recorded_transitions(ctx.algo_config.action_repeat))

    batch = registry.SeedBatch(
        make_parts=make_seed_parts,
        make_seed_chunk=make_seed_episodes,
        steps_per_chunk=_steps_per_episode,
        checkpoint_every=lambda config, env: config.checkpoint_every_episodes * _steps_per_episode(config, env),
        watched=lambda state: {"model": state.model.params},
        prefill=prefill,
        row=_seed_row,
        steps_done=lambda config, env, state: int(state.episode) * _steps_per_episode(config, env),
        extra=lambda config, env, steps: {"episode": steps // _steps_per_episode(config, env)},
    )
    return EpisodicSeedBatch(batch, make_seed_parts, make_seed_episodes)


_PETS_SEEDS = episodic_seed_batch(make_agent)
make_seed_parts, make_seed_episodes = _PETS_SEEDS.make_seed_parts, _PETS_SEEDS.make_seed_episodes
registry.register_seed_batch("pets", _PETS_SEEDS.seed_batch)
