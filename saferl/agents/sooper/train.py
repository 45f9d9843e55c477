"""The SOOPER job (and its baselines') against a `TrainContext`, on the shared outer loop: one real episode is
one chunk — collect → buffer → refit the ensemble → pessimistic cost-critic update → dual step (→ with
`learner=mbpo`, SAC on imagined rollouts, `mbpo.py`) — so NaN checks,
logging, checkpoints and save-on-interrupt are the loop's. At the end `summary.json` in the run directory holds
the paper's metrics, computed from every episode in `metrics.csv`:

- safety_margin = d − max_n J_c(π_n) over every real episode n (≥ 0 ⇔ the budget was never exceeded),
- normalized_return = J(π_N)/J(π̂): the last episode's return over the mean return of the prior-only episodes,
- cumulative_cost, interventions per episode, episodes used.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from saferl import sharding
from saferl.agents.sooper.agent import Ledger, SooperAgent, SooperState, make_agent
from saferl.agents.sooper.config import SooperConfig, episode_budget
from saferl.agents.sooper.prior import check_prior_fits, load_prior, read_prior_run
from saferl.errors import NonFiniteError, UserError
from saferl.training.logger import read_metrics

if TYPE_CHECKING:
    from saferl.training.context import TrainContext

SUMMARY_FILE = "summary.json"


class EpisodeRunner:
    """`runner(state) -> (state, metrics row)`: one real episode, the loop's `train_chunk`."""

    def __init__(self, agent: SooperAgent):
        self.agent = agent

    def __call__(self, state: SooperState) -> tuple[SooperState, dict[str, float]]:
        agent, config = self.agent, self.agent.config
        if agent.mbpo:  # one more key; mpc keeps its streams
            key, collect_key, fit_key, critic_key, improve_key = jax.random.split(state.key, 5)
        else:
            key, collect_key, fit_key, critic_key = jax.random.split(state.key, 4)
        prior_episode = int(state.episode) < config.prior_episodes
        start = time.perf_counter()
        transitions, stats = self.collect(state, prior_episode, collect_key)
        stats = jax.device_get(stats)
        collect_s = time.perf_counter() - start
        if agent.mbpo:  # the cost spent before each decision, where the imagined rollouts branch from
            state = state.replace(learner=agent.record_cost_spent(state.learner, state.buffer, transitions.cost))
        buffer = agent.add(state.buffer, transitions)
        if prior_episode:
            state = agent.record_prior_episode(state, transitions)
        start = time.perf_counter()
        model, fit = agent.fit(fit_key, state.model, buffer)
        jax.block_until_ready(model.params)
        fit_s = time.perf_counter() - start
        episode_cost, episode_return = float(stats.episode_cost), float(stats.episode_return)
        ledger = state.ledger
        ledger = Ledger(
            prior_return_sum=ledger.prior_return_sum + (episode_return if prior_episode else 0.0),
            max_episode_cost=jnp.maximum(ledger.max_episode_cost, episode_cost),
            cumulative_cost=ledger.cumulative_cost + episode_cost,
        )
        new_state = state.replace(
            model=model,
            buffer=buffer,
            key=key,
            episode=state.episode + 1,
            ledger=ledger,
            dual=agent.step_dual(state.dual, episode_cost),
        )
        if not bool(fit.finite):
            raise NonFiniteError(
                "model/fit_loss",
                int(new_state.episode) * agent.episode_length,
                "the ensemble's training loss went NaN/Inf",
            )
        row: dict[str, float] = {}
        if config.critic_updates > 0 and config.shield != "none":
            params, optimizer_state, info = agent.update_critic(new_state, critic_key)
            new_state = new_state.replace(cost_q_params=params, critic_optimizer_state=optimizer_state)
            row.update(critic_loss=float(info.loss), critic_target_drop=float(info.target_drop))
        if config.shield == "recovery":  # m with this episode's data and the critic the next episode's shield uses
            new_state = new_state.replace(shield_margin=agent.calibrate(new_state))
            row["shield_margin"] = float(new_state.shield_margin)
        if agent.mbpo:  # the actor for the next episode, in imagination behind the shield it will run behind
            new_state = self.improve(new_state, improve_key, row)
        prior_return = float(ledger.prior_return_sum) / min(int(new_state.episode), config.prior_episodes)
        row.update(
            {
                "episode_return": episode_return,
                "episode_cost": episode_cost,
                "episodes": 1.0,
                "episode": float(new_state.episode),
                "prior_episode": float(prior_episode),
                "interventions": float(stats.interventions),
                "intervention_rate": float(stats.interventions) / agent.episode_length,
                "plan_value": float(stats.plan_value),
                "feasible_fraction": float(stats.feasible_fraction),
                "prior_return": prior_return,
                "max_episode_cost": float(ledger.max_episode_cost),
                "cumulative_cost": float(ledger.cumulative_cost),
                "safety_margin": agent.budget - float(ledger.max_episode_cost),
                "multiplier": float(new_state.dual.multiplier),
                "model_nll": float(fit.holdout_nll),
                "model_mse": float(fit.holdout_mse),
                "collect_s": collect_s,
                "fit_s": fit_s,
            }
        )
        if prior_return != 0.0:  # undefined otherwise: the column stays empty (the loop rejects NaN metrics)
            row["normalized_return"] = episode_return / prior_return
        return new_state, row

    def collect(self, state: SooperState, prior_episode: bool, key: jax.Array) -> tuple[Any, Any]:
        """(transitions, `EpisodeStats`) of one real episode: the prior alone, or the executed learner."""
        agent = self.agent
        if prior_episode:
            return agent.collect_prior(state.cost_q_params, key)
        if agent.mbpo:
            return agent.collect_learner(
                state.model, state.cost_q_params, state.dual, state.shield_margin, key, state.learner.policy_params
            )
        return agent.collect_learner(state.model, state.cost_q_params, state.dual, state.shield_margin, key)

    def improve(self, state: SooperState, key: jax.Array, row: dict[str, float]) -> SooperState:
        """learner=mbpo: `state` with its actor improved on imagined rollouts; the phase's scalars into `row`."""
        start = time.perf_counter()
        learner, improvement = self.agent.improve(state, key)
        improvement = jax.device_get(improvement)
        row.update(
            learner_critic_loss=float(improvement.critic_loss),
            learner_actor_loss=float(improvement.actor_loss),
            learner_alpha=float(improvement.alpha),
            imagined_reward=float(improvement.imagined_reward),
            imagined_termination=float(improvement.imagined_termination),
            improve_s=time.perf_counter() - start,
        )
        return state.replace(learner=learner)


def check_config(config: SooperConfig, env: Any, env_name: str) -> None:
    """`Algorithm.check_config`: UserError unless `config.prior` names a SAC run on `env_name` with the env's
    sizes and the env (or `config.budget`) gives a cost budget > 0 — before any run directory exists."""
    if not config.prior:
        raise UserError(
            f"{config.method} needs a prior: train one with `saferl train sac --env {env_name} "
            "--constraint crpo` and pass --set prior=RUN_DIR"
        )
    record = read_prior_run(config.prior)
    if record.env != env_name:
        raise UserError(f"prior {config.prior!r} was trained on env '{record.env}', not '{env_name}'")
    if not episode_budget(config, env.cost_budget) > 0:
        raise UserError(
            f"{config.method} needs a cost budget > 0: env '{env_name}' has {env.cost_budget:g}; "
            "give one with --set budget=... or --set-env cost_budget=..."
        )


def resolve_prior_path(ctx: TrainContext, config: SooperConfig) -> SooperConfig:
    """The config with `prior` as an absolute path (rewritten into the run's config.json so the run can be
    evaluated and resumed from another directory)."""
    from saferl.training import rundir

    path = pathlib.Path(config.prior).expanduser()
    if path.is_absolute():
        return config
    config = dataclasses.replace(config, prior=str(path.resolve()))
    record = rundir.read_run(ctx.run_dir, need_checkpoint=False)  # a new run has none yet
    rundir.write_config(dataclasses.replace(record, algo_config={**record.algo_config, "prior": config.prior}))
    return config


def build_agent(config: SooperConfig, env: Any, world: Any, env_name: str) -> SooperAgent:
    """Load the prior named in `config` and bind the agent to the real env."""
    prior, template = load_prior(config.prior)
    check_prior_fits(template, env, env_name)
    return make_agent(config, env, world, prior, template)


def restore_agent(run_dir: pathlib.Path | str) -> tuple[SooperAgent, Any]:
    """The agent of a SOOPER-family run (its prior reloaded) and the run restored at its last checkpoint
    (`saferl.training.restore.RestoredRun`, whose `state` is the `SooperState`)."""
    from saferl.training import rundir
    from saferl.training.restore import restore_run_state

    record, agents = rundir.read_run(run_dir), []

    def make_init(config: SooperConfig, env: Any, world: Any) -> Any:
        agents.append(build_agent(config, env, world, record.env))
        return agents[-1].init

    run = restore_run_state(run_dir, make_init)
    return agents[-1], run


def train(ctx: TrainContext) -> dict[str, float]:
    """`Algorithm.train`: `ctx.total_steps` real env steps, rounded up to whole episodes."""
    from saferl.training.loop import run_chunks

    config = resolve_prior_path(ctx, ctx.algo_config)
    agent = build_agent(config, ctx.env, ctx.training_env, ctx.env_name)
    state = agent.init(jax.random.PRNGKey(ctx.seed))
    restored = ctx.resume(state)
    if restored is not None:
        state = restored[0]
    # one layout from the first episode on: the jitted fit and critic update return mesh-placed (replicated)
    # arrays, so an unplaced initial or restored state would trace and compile each of them a second time
    state = sharding.place_replicated(state)
    per_episode = agent.episode_length
    try:
        state, env_steps, row = run_chunks(
            ctx,
            state,
            EpisodeRunner(agent),
            steps_per_chunk=per_episode,
            start_steps=int(state.episode) * per_episode,
            checkpoint_every=config.checkpoint_every_episodes * per_episode,
            watched=lambda s: {
                "model": s.model.params,
                "cost_critic": s.cost_q_params,
                **({"learner": (s.learner.policy_params, s.learner.q_params)} if agent.mbpo else {}),
            },
            extra=lambda steps: {"episode": steps // per_episode, "algo": config.method},
        )
    finally:
        summary = write_summary(ctx.run_dir, config, agent.budget, ctx.env_name)
    return {
        "env_steps": float(env_steps),
        **row,
        **{k: v for k, v in summary.items() if not isinstance(v, list) and not isinstance(v, str)},
    }


def summarize(rows: list[dict[str, float]], budget: float, prior_episodes: int) -> dict[str, Any]:
    """The paper's metrics from the per-episode rows of `metrics.csv` (see the module docstring)."""
    costs = [r["episode_cost"] for r in rows]
    returns = [r["episode_return"] for r in rows]
    prior_returns = returns[:prior_episodes]
    prior_return = sum(prior_returns) / len(prior_returns) if prior_returns else math.nan
    final = returns[-1] if len(returns) > prior_episodes else math.nan
    return {
        "episodes": len(rows),
        "budget": budget,
        "safety_margin": budget - max(costs) if costs else math.nan,
        "learner_safety_margin": budget - max(costs[prior_episodes:]) if len(costs) > prior_episodes else math.nan,
        "prior_return": prior_return,
        "final_return": final,
        "normalized_return": final / prior_return if prior_return and not math.isnan(final) else math.nan,
        "cumulative_cost": sum(costs),
        "violations": sum(c > budget for c in costs),
        "episode_returns": returns,
        "episode_costs": costs,
        "interventions": [r.get("interventions", 0.0) for r in rows],
    }


def write_summary(run_dir: pathlib.Path, config: SooperConfig, budget: float, env_name: str) -> dict[str, Any]:
    """`summary.json` from the run's metrics.csv; returns it (empty metrics → zero episodes)."""
    path = pathlib.Path(run_dir) / "metrics.csv"
    rows = read_metrics(path)[0] if path.is_file() else []
    summary = {"method": config.method, "env": env_name, **summarize(rows, budget, config.prior_episodes)}
    (pathlib.Path(run_dir) / SUMMARY_FILE).write_text(json.dumps(summary, indent=1, allow_nan=True) + "\n")
    return summary
