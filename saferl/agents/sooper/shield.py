"""SOOPER's shield ("Safe Exploration via Policy Priors", ICLR 2026): fall back to the prior where the learner
could break the episode's cost budget.

At every decision, with C_spent the cost spent so far in the episode, a the learner's action and π̂ the prior:

    fires  ⇔  C_spent + scale · Q_c^π̂(s, a) ≥ d,        executed action = π̂(s) if fires else a,

with d the episode cost budget and scale = T·(1 − γ_c) / action_repeat turning the prior's discounted
cost-to-go Q_c (one term per decision, discount γ_c per decision) into episode cost units: a cost spread
evenly over the T env steps, r steps per decision, has Q_c ≈ (r·d/T) / (1 − γ_c) (the inverse of
`saferl.constraints.discounted_budget` for r = 1). In SOOPER's imagined MDP, an imagined trajectory ends
where the shield would fire, with terminal reward Q_r^π̂(s, π̂(s)): `terminal_value`.

The rule above queries the prior's cost critic at the learner's action a, which the critic (trained on the
prior's own, near-deterministic actions) never saw; `docs/sooper_safety.md` measures what that costs. The
*recovery* rule checks the learner's action one step ahead instead and queries the critic only at the prior's
own actions:

    fires  ⇔  C_spent + max_e [ c̃_e(s, a) + scale · Q_c^π̂(s'_e, π̂(s'_e)) ] + m ≥ d,

with s'_e, c̃_e the next state and pessimistic cost that ensemble member e predicts (the worst member counts)
and m ≥ 0 a recovery margin (how far scale·Q_c was measured below the prior's true cost-to-go on the real
system). If the rule lets a pass, the prior can still finish the episode within d from s' by the bound; if it
fires, the prior acts and, where scale·Q_c(·, π̂) + m is a Bellman upper bound of its real cost-to-go, the same
holds one step later: by induction no episode exceeds d. `recovery_bound` and `recovery_fires` are that rule;
`shielded_policy(..., lookahead=...)` executes it.

Array functions are pure and jittable (jnp only) and broadcast over leading batch axes [...]; costs are in
the env's cost units, Q-values on the prior critics' discounted scales. `shielded_policy` wraps a learner and
a prior `Policy` into the `Policy` that executes the shielded action and counts interventions in its carry.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
from flax import struct

from saferl.config import is_integer, is_real
from saferl.policies.policy import ActFn, Policy, PolicyCarry, ValueFn


def shield_scale(episode_length: int, cost_discounting: float, action_repeat: int = 1) -> float:
    """scale = T·(1 − γ_c) / action_repeat: episode cost units per unit of the prior's discounted Q_c.

    `episode_length` T in env steps (integer ≥ 1), `cost_discounting` γ_c of the prior's cost critic (per
    decision, in [0, 1)), `action_repeat` env steps each decision is held for (integer ≥ 1).
    E.g. T = 1000, γ_c = 0.99, repeat 4 → 2.5.
    """
    if not is_integer(episode_length) or episode_length < 1:
        raise ValueError(f"episode_length must be an integer >= 1, got {episode_length!r}")
    if not is_real(cost_discounting) or not (math.isfinite(cost_discounting) and 0.0 <= cost_discounting < 1.0):
        raise ValueError(f"cost_discounting must be in [0, 1), got {cost_discounting!r}")
    if not is_integer(action_repeat) or action_repeat < 1:
        raise ValueError(f"action_repeat must be an integer >= 1, got {action_repeat!r}")
    return int(episode_length) * (1.0 - float(cost_discounting)) / int(action_repeat)


@dataclasses.dataclass(frozen=True)
class ShieldConfig:
    """The shield's constants (Python floats: static under jit, close over it or pass it as a static arg)."""

    budget: float  # d, the episode cost budget (env cost units, finite, ≥ 0)
    scale: float  # T·(1 − γ_c)/action_repeat, episode cost units per unit of Q_c (finite, > 0)

    def __post_init__(self) -> None:
        if not is_real(self.budget) or not (math.isfinite(self.budget) and self.budget >= 0.0):
            raise ValueError(f"ShieldConfig.budget must be finite and >= 0, got {self.budget!r}")
        if not is_real(self.scale) or not (math.isfinite(self.scale) and self.scale > 0.0):
            raise ValueError(f"ShieldConfig.scale must be finite and > 0, got {self.scale!r}")
        object.__setattr__(self, "budget", float(self.budget))
        object.__setattr__(self, "scale", float(self.scale))

    @classmethod
    def for_episode(
        cls, budget: float, episode_length: int, cost_discounting: float, action_repeat: int = 1
    ) -> ShieldConfig:
        """The config of budget d over episodes of T env steps, a prior cost critic with discount γ_c and
        decisions held for `action_repeat` steps (see `shield_scale`)."""
        return cls(budget=budget, scale=shield_scale(episode_length, cost_discounting, action_repeat))


def shield_fires(
    cost_spent: jax.Array, prior_cost_q: jax.Array, budget: jax.Array | float, scale: jax.Array | float
) -> jax.Array:
    """Whether the shield replaces the learner's action: cost_spent + scale · Q_c ≥ budget.

    `cost_spent` [...] the episode's cost so far (env cost units), `prior_cost_q` [...] the prior's
    Q_c(s, a) of the learner's action a (discounted cost units); `budget`, `scale` scalars or [...]
    (broadcast). Returns bool [...] (the broadcast shape).
    """
    return jnp.asarray(cost_spent) + scale * jnp.asarray(prior_cost_q) >= budget


def recovery_bound(step_cost: jax.Array, next_prior_cost_q: jax.Array, scale: jax.Array | float) -> jax.Array:
    """The worst member's cost of an action and the prior's cost after it: max_e (c̃_e + scale·Q_c^π̂(s'_e, π̂(s'_e))).

    `step_cost` [E, ...] the pessimistic cost c̃_e of the step each of E ensemble members predicts (env cost
    units), `next_prior_cost_q` [E, ...] the prior's Q_c at member e's next state and the prior's own action
    there (discounted units). Returns [...] (episode cost units).
    """
    return jnp.max(jnp.asarray(step_cost) + scale * jnp.asarray(next_prior_cost_q), axis=0)


def recovery_fires(
    cost_spent: jax.Array, bound: jax.Array, budget: jax.Array | float, margin: jax.Array | float = 0.0
) -> jax.Array:
    """The recovery rule: cost_spent + bound + margin ≥ budget, with `bound` from `recovery_bound` (the step's
    cost and the prior's cost-to-go after it, episode cost units) and `margin` ≥ 0 the recovery margin.
    Returns bool [...] (broadcast shape)."""
    return jnp.asarray(cost_spent) + jnp.asarray(bound) + margin >= budget


def shielded_action(learner_action: jax.Array, prior_action: jax.Array, fires: jax.Array) -> jax.Array:
    """The executed action: `prior_action` where `fires`, else `learner_action`.

    `learner_action`, `prior_action` [..., act_dim]; `fires` bool [...] (one flag per batch element,
    broadcast over the action axis). Returns [..., act_dim].
    """
    return jnp.where(jnp.asarray(fires)[..., None], prior_action, learner_action)


class ShieldTermination(NamedTuple):
    """How the shield ends an imagined trajectory at one step (arrays [...])."""

    value: jax.Array  # terminal reward: Q_r^π̂(s, π̂(s)) where the shield fires, else 0 (reward critic's scale)
    done: jax.Array  # float32 1.0 where the shield fires (the imagined trajectory ends here), else 0.0


def terminal_value(
    cost_spent: jax.Array,
    prior_cost_q: jax.Array,
    prior_reward_q: jax.Array,
    budget: jax.Array | float,
    scale: jax.Array | float,
) -> ShieldTermination:
    """SOOPER's imagined-MDP termination: where the shield would fire on the imagined action a, the imagined
    trajectory ends with terminal reward Q_r^π̂(s, π̂(s)).

    `cost_spent` [...] the cost so far of the (real + imagined) episode, `prior_cost_q` [...] Q_c^π̂(s, a) of
    the imagined action, `prior_reward_q` [...] Q_r^π̂(s, π̂(s)) of the prior's own action; `budget`, `scale`
    as in `shield_fires`. Returns `ShieldTermination(value [...], done [...])`.
    """
    fires = shield_fires(cost_spent, prior_cost_q, budget, scale)
    prior_reward_q = jnp.asarray(prior_reward_q)
    value = jnp.where(fires, prior_reward_q, jnp.zeros_like(prior_reward_q))
    return ShieldTermination(value=value, done=fires.astype(jnp.float32))


@struct.dataclass
class ShieldMemory:
    """`PolicyCarry.memory` of a shielded policy: both policies' memories and the intervention count."""

    learner: Any  # the learner's `PolicyCarry.memory` (() when stateless)
    prior: Any  # the prior's `PolicyCarry.memory` (advanced at every decision: the prior acts every time)
    interventions: jax.Array  # int32, decisions so far in the episode where the shield executed the prior's action


def shielded_policy(
    learner: Policy,
    prior: Policy,
    *,
    cost_discounting: float | None = None,
    scale: float | None = None,
    budget: float | None = None,
    advantage_threshold: float | None = None,
    lookahead: Any = None,
    margin: jax.Array | float = 0.0,
) -> Policy:
    """The `Policy` that executes `learner` behind SOOPER's shield with fallback `prior`.

    Its `act(carry, obs, key)` takes the learner's action a (`learner.act`, or `learner.sample` for the
    shielded policy's `sample`, with the learner's memory and key `key`), the prior's action π̂(s)
    (`prior.act`, deterministic, with the prior's memory and key `fold_in(key, 1)`), and executes π̂(s) where
    `shield_fires(carry.cost_spent, prior.cost_value(obs, a), budget, scale)`. Both sub-policies see the
    episode's `cost_spent`, which the executor keeps up to date with `observe_cost`. `carry.memory` is a
    `ShieldMemory`; its `interventions` counts the decisions of the episode where the shield fired (shape of
    `cost_spent`: a scalar per episode; vmap `act` over episodes).

    `budget` defaults to `prior.cost_budget`. Give either `scale` or `cost_discounting` (γ_c of the prior's
    cost critic), from which scale = `shield_scale(prior.env_config.episode_length, γ_c,
    prior.action_repeat)`. With `advantage_threshold` the rule is the SAILR-like advantage filter instead:
    fires ⇔ Q_c(s, a) − Q_c(s, π̂(s)) > advantage_threshold (the budget and scale are then unused). With
    `lookahead(obs, action) -> bound` (episode cost units, e.g. `recovery_bound` through a learned model) the
    rule is the recovery rule `recovery_fires(carry.cost_spent, lookahead(obs, a), budget, margin)`: the prior's
    critic is then queried only where the lookahead puts it (at its own actions). Raises
    ValueError if the prior has no `cost_value`, the two policies' observation
    sizes, action sizes or action repeats differ, or the scale cannot be derived.
    """
    config = _shield_config(learner, prior, cost_discounting, scale, budget)
    if lookahead is not None and advantage_threshold is not None:
        raise ValueError("give either lookahead (the recovery rule) or advantage_threshold, not both")
    # not None: `_shield_config` refused a prior without a cost critic (a check mypy does not follow)
    prior_act, prior_cost_value = prior.act, cast(ValueFn, prior.cost_value)

    def shielded(learner_act: ActFn) -> ActFn:
        def act(carry: PolicyCarry, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, PolicyCarry]:
            memory: ShieldMemory = carry.memory
            learner_action, learner_carry = learner_act(PolicyCarry(carry.cost_spent, memory.learner), obs, key)
            prior_action, prior_carry = prior_act(
                PolicyCarry(carry.cost_spent, memory.prior), obs, jax.random.fold_in(key, 1)
            )
            if lookahead is not None:
                fires = recovery_fires(carry.cost_spent, lookahead(obs, learner_action), config.budget, margin)
            elif advantage_threshold is None:
                fires = shield_fires(
                    carry.cost_spent, prior_cost_value(obs, learner_action), config.budget, config.scale
                )
            else:
                fires = (
                    prior_cost_value(obs, learner_action) - prior_cost_value(obs, prior_action) > advantage_threshold
                )
            action = shielded_action(learner_action, prior_action, fires)
            memory = ShieldMemory(
                learner=learner_carry.memory,
                prior=prior_carry.memory,
                interventions=memory.interventions + fires.astype(jnp.int32),
            )
            return action, carry.replace(memory=memory)

        return jax.jit(act)

    def init_carry() -> PolicyCarry:
        return PolicyCarry(
            cost_spent=jnp.zeros((), jnp.float32),
            memory=ShieldMemory(
                learner=learner.init_carry().memory,
                prior=prior.init_carry().memory,
                interventions=jnp.zeros((), jnp.int32),
            ),
        )

    return Policy(
        act=shielded(learner.act),
        init_carry=init_carry,
        params=(learner.params, prior.params),
        apply=None,
        observation_size=learner.observation_size,
        action_size=learner.action_size,
        env_name=learner.env_name,
        env_config=learner.env_config,
        cost_budget=config.budget,
        algo=f"{learner.algo}+sooper_shield({prior.algo})",
        sample=None if learner.sample is None else shielded(learner.sample),
        run_dir=learner.run_dir,
        action_repeat=learner.action_repeat,
        reward_value=None,
        cost_value=None,
        training_env=learner.training_env,
    )


def _shield_config(
    learner: Policy, prior: Policy, cost_discounting: float | None, scale: float | None, budget: float | None
) -> ShieldConfig:
    """Check that `prior` can shield `learner` and resolve the shield's budget and scale."""
    if prior.cost_value is None:
        raise ValueError(f"the prior ({prior.algo}) has no cost_value (Q_c critic): it cannot shield a learner")
    if learner.observation_size != prior.observation_size:
        raise ValueError(
            f"observation sizes differ: learner {learner.observation_size}, prior {prior.observation_size}"
        )
    if learner.action_size != prior.action_size:
        raise ValueError(f"action sizes differ: learner {learner.action_size}, prior {prior.action_size}")
    if learner.action_repeat != prior.action_repeat:
        raise ValueError(
            f"action repeats differ: learner {learner.action_repeat}, prior {prior.action_repeat} "
            "(the prior's critics and fallback action are per decision of its own repeat)"
        )
    if scale is not None and cost_discounting is not None:
        raise ValueError("give either scale or cost_discounting (from which the scale is derived), not both")
    if scale is None:
        if cost_discounting is None:
            raise ValueError(
                "the shield's scale needs cost_discounting (γ_c of the prior's cost critic); "
                "pass cost_discounting=... or scale=..."
            )
        episode_length = getattr(prior.env_config, "episode_length", None)
        if episode_length is None:
            raise ValueError(
                "the prior's env_config has no episode_length to derive the shield's scale from; pass scale=..."
            )
        scale = shield_scale(episode_length, cost_discounting, prior.action_repeat)
    return ShieldConfig(budget=prior.cost_budget if budget is None else budget, scale=scale)
