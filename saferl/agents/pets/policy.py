"""The policy of a PETS run: MPC with iCEM on the trained ensemble, as a stateful `saferl.policies.Policy`.

The carry's memory is the planner's warm start (the previous plan shifted by one decision) plus the last
plan's diagnostics; each decision plans against the remaining budget `budget − carry.cost_spent` (∞ when the
env has no budget) and returns the first planned action, which the executor holds for `policy.action_repeat`
env steps (the repeat the model was trained on). Training collection runs this same policy on the episode
loop. A planner has no fixed MLP map, so `apply` is None: PETS policies cannot be exported to ONNX. A run's
policy is rebuilt from its config and the ensemble of its last checkpoint alone (no trainer is built).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jp

from envs.tasks import Task
from saferl.data import observations
from saferl.models import ensemble
from saferl.models.ensemble import EnsembleState
from saferl.planning import ModelFns, icem, make_objective, make_rollout_fn, reward_objective
from saferl.planning.objectives import with_transition_costs
from saferl.planning.rollout import hallucinated_action_size
from saferl.policies.policy import Policy, PolicyCarry

if TYPE_CHECKING:
    from envs.protocol import SafeEnv


class MPCMemory(NamedTuple):
    """The MPC policy's carry memory."""

    warm_start: icem.PlannerState  # previous plan shifted by one decision (mean [H, A], kept elites)
    plan_value: jax.Array  # scalar, the last plan's predicted return over its horizon (diagnostics)
    feasible_fraction: jax.Array  # scalar in [0, 1], share of feasible candidates in the last plan


def model_fns(model: EnsembleState, obs_groups: tuple[int, ...] | None = None) -> ModelFns:
    """The ensemble as the planner's model functions (all members; raw units); `obs_groups` the group id of each
    observation feature (`observation_group_ids`)."""
    norm = model.normalizer
    return ModelFns(
        functools.partial(ensemble.predict, model),
        functools.partial(ensemble.predict_per_member, model),
        model.config.num_members,
        norm.output_std,
        norm.input_mean[: model.obs_size],
        norm.input_std[: model.obs_size],
        None if obs_groups is None else jp.asarray(obs_groups),
    )


def observation_group_ids(env: SafeEnv, obs_size: int) -> tuple[int, ...] | None:
    """The group id of each observation feature from `env.observation_groups` (features in no group get groups of
    their own), or None where the env declares none."""
    groups = getattr(env, "observation_groups", {}) or {}
    if not groups:
        return None
    ids = list(range(len(groups), len(groups) + obs_size))  # ungrouped features: one group each
    for index, part in enumerate(groups.values()):
        for j in range(*part.indices(obs_size)):
            ids[j] = index
    return tuple(ids)


def planned_action(
    config: Any,
    model: EnsembleState,
    key: jax.Array,
    obs: jax.Array,
    warm_start: icem.PlannerState,
    remaining_budget: jax.Array,
    task: Task | None = None,
    transition_cost: Callable | None = None,
    obs_groups: tuple[int, ...] | None = None,
) -> tuple[jax.Array, icem.PlanInfo]:
    """MPC: plan from obs [obs_dim] and return the first action [act_dim] in [-1, 1] and the planner info.

    `config` is any config with `planner`, `rollout`, `objective` and `action_repeat` (PETSConfig, SoftAE's
    planning configs). With a `task`, the planner maximises the task's reward r(obs, action, next_obs) on the
    model's trajectories instead of `config.objective.kind` (zero-shot planning; the cost budget is handled as
    `config.objective.constraint` says). With a `transition_cost` (the env's, for `objective.cost_source="env"`)
    imagined transitions are charged that cost instead of the model's cost head's. Hallucinated-control dims, if
    any, are dropped from the action.
    """
    rollout_fn = make_rollout_fn(model_fns(model, obs_groups), config.rollout, obs)
    if task is None:
        objective_fn = make_objective(config.objective, remaining_budget)
    else:
        objective = config.objective
        objective_fn = reward_objective(
            task.reward, objective.discount, objective.constraint, objective.penalty, remaining_budget
        )
    if transition_cost is not None:
        objective_fn = with_transition_costs(objective_fn, transition_cost, config.action_repeat)
    actions, info = icem.plan(config.planner, key, rollout_fn, objective_fn, warm_start)
    return actions[0, : model.action_size], info


def mpc_init_carry(config: Any, action_size: int, obs_size: int = 0) -> PolicyCarry:
    """A fresh episode: nothing spent, zero-mean warm start (wider by obs_size η dims with hallucination)."""
    zero = jp.zeros((), jp.float32)
    width = hallucinated_action_size(config.rollout, action_size, obs_size)
    return PolicyCarry(cost_spent=zero, memory=MPCMemory(icem.init_state(config.planner, width), zero, zero + 1.0))


def mpc_decide(
    config: Any,
    budget: float,
    task: Task | None,
    transition_cost: Callable | None,
    obs_groups: tuple[int, ...] | None,
    model: EnsembleState,
    carry: PolicyCarry,
    obs: jax.Array,
    key: jax.Array,
) -> tuple[jax.Array, PolicyCarry]:
    """One MPC decision from obs [obs_dim]: plan with the carried warm start against `budget − cost spent`."""
    remaining_budget = budget - carry.cost_spent
    action, info = planned_action(
        config, model, key, obs, carry.memory.warm_start, remaining_budget, task, transition_cost, obs_groups
    )
    memory = MPCMemory(info.next_init, info.best_value.astype(jp.float32), info.feasible_fraction.astype(jp.float32))
    return action, carry.replace(memory=memory)


# one compiled planner per (config, budget, task, cost function, observation groups) for every policy built from a
# model of that config
_jitted_decide = jax.jit(mpc_decide, static_argnums=(0, 1, 2, 3, 4))


def planning_cost(config: Any, env: SafeEnv) -> Callable | None:
    """The env's `transition_cost` when `config.objective.cost_source` is "env" and the env has one, else None
    (the model's cost head)."""
    if getattr(config.objective, "cost_source", "model") != "env":
        return None
    return getattr(env, "transition_cost", None)


def mpc_policy(
    config: Any,
    model: EnsembleState,
    env: SafeEnv,
    env_name: str = "",
    run_dir: pathlib.Path | None = None,
    task: Task | None = None,
    algo: str = "pets",
) -> Policy:
    """`Policy` whose `act(carry, obs [obs_dim], key) -> (action [act_dim], carry)` plans on `model` for `env`
    (its sizes and episode cost budget), maximising `config.objective` or, given, a `task`'s reward. Usable
    inside `jit` (e.g. with a traced `model`). Dict observations {"image", "state"}: it plans on (and
    `observation_size` is) the state part."""
    obs_size, action_size = observations.state_size(env.observation_size), int(env.action_size)
    cost_budget = float(env.cost_budget)
    budget = cost_budget if cost_budget > 0 else math.inf

    cost_fn = planning_cost(config, env)
    groups = observation_group_ids(env, obs_size) if config.rollout.gain_weighting == "groups" else None
    decide: Callable[..., tuple[jax.Array, PolicyCarry]]  # (model, carry, obs, key) -> (action, carry)
    try:
        decide = functools.partial(_jitted_decide, config, budget, task, cost_fn, groups)
        hash((config, task, cost_fn))
    except TypeError:  # an unhashable config (e.g. lists from a hand-made dict): plan without the shared cache
        decide = jax.jit(functools.partial(mpc_decide, config, budget, task, cost_fn, groups))

    def act(carry: PolicyCarry, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, PolicyCarry]:
        return decide(model, carry, jp.asarray(observations.state_part(obs), jp.float32), key)

    return Policy(
        act=act,
        init_carry=functools.partial(mpc_init_carry, config, action_size, obs_size),
        params=model,
        apply=None,
        observation_size=obs_size,
        action_size=action_size,
        env_name=env_name,
        env_config=getattr(env, "config", None),
        cost_budget=cost_budget,
        algo=algo,
        sample=None,
        run_dir=run_dir,
        action_repeat=config.action_repeat,
    )


MODEL = ".model"  # key path of the ensemble in the checkpointed training state (PETS's, SoftAE's, SOOPER's)


def model_shapes(config: ensemble.EnsembleConfig, env: SafeEnv) -> EnsembleState:
    """What a policy restores of a run's ensemble (at key path MODEL): the ensemble of `config` on the state part
    of `env`'s observations, as shapes, without optimiser state (a model that only predicts)."""
    obs_size = observations.state_size(env.observation_size)
    return ensemble.shapes(config, obs_size, int(env.action_size), trainable=False)


def load_policy(run_dir: pathlib.Path | str, task: str | None = None) -> Policy:
    """`Algorithm.load_policy`: the run's ensemble (its last checkpoint) and the MPC policy planning on it.

    With `task` (a name from `env.tasks()`), the policy plans for that task's reward instead of the run's
    objective: zero-shot, on the model the run learned (`Algorithm.load_task_policy`)."""
    from envs.tasks import get_task
    from saferl.training import restore

    run = restore.load_run(run_dir)
    run = restore.restore_subtrees(run, {MODEL: model_shapes(run.algo_config.model, run.env)})
    chosen = None if task is None else get_task(run.env, task)
    policy = mpc_policy(run.algo_config, run.state[MODEL], run.env, run.record.env, run.record.path, task=chosen)
    return dataclasses.replace(policy, env_config=run.env_config, training_env=run.training_env)
