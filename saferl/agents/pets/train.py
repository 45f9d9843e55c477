"""The PETS outer loop against a `TrainContext`: per episode collect (random, then MPC) → buffer → refit,
log one metrics row, checkpoint; resume restores the full `PETSState` and continues bit for bit.
"""

from __future__ import annotations

import math
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jp

from saferl.agents.pets.agent import PETSAgent, PETSState, planned_action
from saferl.agents.pets.config import PETSConfig
from saferl.errors import NonFiniteError
from saferl.planning import icem


class _Runner:
    """Holds the agent and the AOT-compiled MPC episode (its compile time is reported once)."""

    def __init__(self, agent: PETSAgent):
        self.agent = agent
        self._mpc = None
        self.compile_s = math.nan

    def collect(self, state: PETSState, key: jax.Array) -> tuple[Any, Any, bool]:
        if int(state.episode) < self.agent.config.random_episodes:
            return (*self.agent.collect_random(key), True)
        if self._mpc is None:
            start = time.perf_counter()
            self._mpc = self.agent.collect_mpc.lower(state.model, key).compile()
            self.compile_s = time.perf_counter() - start
        return (*self._mpc(state.model, key), False)


def run_episode(runner: _Runner, state: PETSState) -> tuple[PETSState, dict[str, float]]:
    """Collect one episode, add it to the buffer, refit the model; returns the new state and a metrics row."""
    agent = runner.agent
    key, collect_key, fit_key = jax.random.split(state.key, 3)
    start = time.perf_counter()
    transitions, stats, random = runner.collect(state, collect_key)
    jax.block_until_ready(transitions)
    collect_s = time.perf_counter() - start
    buffer = agent.add(state.buffer, transitions)
    start = time.perf_counter()
    model, fit = agent.fit(fit_key, state.model, buffer)
    jax.block_until_ready(model.params)
    fit_s = time.perf_counter() - start
    new_state = PETSState(model=model, buffer=buffer, key=key, episode=state.episode + 1)
    row = {"episode_return": float(stats.episode_return), "episode_cost": float(stats.episode_cost),
           "episodes": 1.0, "episode": float(new_state.episode), "random_actions": float(random),
           "model_nll": float(fit.holdout_nll), "model_mse": float(fit.holdout_mse),
           "model_coverage_1sigma": float(fit.coverage_1sigma), "model_ece": float(fit.ece),
           "fit_epochs": float(fit.epochs), "fit_s": fit_s, "buffer_size": float(buffer.size),
           "plan_ms_per_step": math.nan if random else 1e3 * collect_s / agent.decisions_per_episode,
           "plan_value": math.nan if random else float(stats.plan_value),
           "feasible_fraction": float(stats.feasible_fraction), "compile_s": runner.compile_s}
    if not bool(fit.finite):
        raise NonFiniteError("model/fit_loss", int(new_state.episode) * agent.env_steps_per_episode)
    return new_state, row


def train(ctx: Any) -> dict[str, float]:
    """`Algorithm.train`: PETS for `ctx.total_steps` env steps (rounded up to whole episodes)."""
    config: PETSConfig = ctx.algo_config
    agent = PETSAgent(ctx.env, config)
    state = agent.init(jax.random.PRNGKey(ctx.seed))
    restored = ctx.resume(state)
    if restored is not None:
        state = restored[0]
    runner = _Runner(agent)
    total_episodes = math.ceil(ctx.total_steps / agent.env_steps_per_episode)
    row: dict[str, float] = {}
    last_saved = int(state.episode)
    try:
        while int(state.episode) < total_episodes:
            new_state, row = run_episode(runner, state)
            env_steps = int(new_state.episode) * agent.env_steps_per_episode
            ctx.check_finite("model", new_state.model.params, env_steps)
            state = new_state
            ctx.logger.log(env_steps, row)
            episode = int(state.episode)
            if episode - last_saved >= config.checkpoint_every_episodes or episode >= total_episodes:
                ctx.checkpoints.save(env_steps, state, {"episode": episode, "algo": "pets"})
                last_saved = episode
    except KeyboardInterrupt:
        if int(state.episode) > last_saved:
            ctx.checkpoints.save(int(state.episode) * agent.env_steps_per_episode, state,
                                 {"episode": int(state.episode), "algo": "pets"})
        raise
    return {"env_steps": float(int(state.episode) * agent.env_steps_per_episode), **row}


class MPCPolicy:
    """The MPC planner on a trained ensemble as a policy: `act(obs [obs_dim], key) -> action [act_dim]`.

    Each call plans from scratch (no warm start), with the env's full cost budget as the remaining budget.
    """

    def __init__(self, agent: PETSAgent, model: Any, env_name: str):
        self.algo = "pets"
        self.env_name = env_name
        self.observation_size, self.action_size = agent.obs_size, agent.action_size
        self.cost_budget = agent.cost_budget
        self.action_repeat = agent.config.action_repeat
        self.model = model
        config, budget = agent.config, (agent.cost_budget if agent.cost_budget > 0 else jp.inf)
        warm = icem.init_state(config.planner, agent.action_size)
        self._act = jax.jit(lambda model, obs, key: planned_action(config, model, key, obs, warm, budget)[0])

    def act(self, obs: jax.Array, key: jax.Array) -> jax.Array:
        """Planned first action in [-1, 1] (hold it for `action_repeat` env steps)."""
        return self._act(self.model, jp.asarray(obs, jp.float32), key)


def load_policy(run_dir: pathlib.Path | str) -> MPCPolicy:
    """`Algorithm.load_policy`: rebuild env and agent from the run's config and restore the latest model."""
    import envs
    from saferl.training import rundir
    from saferl.training.checkpoints import Checkpoints
    from saferl.training.run import algo_config_from_record, env_config_from_record

    record = rundir.read_run(pathlib.Path(run_dir))
    env = envs.make(record.env, config=env_config_from_record(record))
    agent = PETSAgent(env, algo_config_from_record(record))
    checkpoints = Checkpoints(record.path / "checkpoints")
    try:
        state, _ = checkpoints.restore(rundir.checkpoint_steps(record.path)[-1], agent.init(jax.random.PRNGKey(0)))
    finally:
        checkpoints.close()
    return MPCPolicy(agent, state.model, record.env)

