"""SOOPER's shield: it fires exactly when cost spent + scale·Q_c^prior reaches the budget, executes the prior's
action exactly there (per batch element), counts its interventions in the carry the executor feeds costs into,
ends imagined trajectories with Q_r^prior(s, π̂(s)), and rejects what it cannot shield; pure under jit and vmap.
Numbers are dyadic, so float32 sums and products are exact at the budget boundary."""

import pathlib
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "policies"))
from counter_env import CounterEnv

from saferl.agents.sooper import (
    ShieldConfig,
    ShieldMemory,
    shield_fires,
    shield_scale,
    shielded_action,
    shielded_policy,
    terminal_value,
)
from saferl.agents.sooper.shield import recovery_bound, recovery_fires
from saferl.policies import Policy, PolicyCarry, episode, observe_cost

KEY = jax.random.PRNGKey(0)


def counting(action_fn):
    """act(carry, obs, key) -> (action_fn(obs, key), carry with memory + 1): a policy with memory."""
    return lambda carry, obs, key: (action_fn(obs, key), carry.replace(memory=carry.memory + 1))


def counter_carry() -> PolicyCarry:
    return PolicyCarry(cost_spent=jnp.zeros((), jnp.float32), memory=jnp.zeros((), jnp.int32))


def make_policy(
    act,
    *,
    observation_size=2,
    action_size=1,
    repeat=1,
    budget=4.0,
    env_config=None,
    sample=None,
    reward_value=None,
    cost_value=None,
    algo="test",
) -> Policy:
    return Policy(
        act=act,
        init_carry=counter_carry,
        params=None,
        apply=None,
        observation_size=observation_size,
        action_size=action_size,
        env_name="counter",
        env_config=env_config,
        cost_budget=budget,
        algo=algo,
        sample=sample,
        action_repeat=repeat,
        reward_value=reward_value,
        cost_value=cost_value,
    )


def ones_learner(**kwargs) -> Policy:
    """Acts 1 in every action dimension; its memory counts its decisions."""
    return make_policy(counting(lambda obs, key: jnp.ones((*obs.shape[:-1], 1))), algo="learner", **kwargs)


def zeros_prior(
    cost_value=lambda obs, action: 1.0 + action[..., 0],
    reward_value=lambda obs, action: 8.0 * obs[..., 1] - action[..., 0],
    **kwargs,
) -> Policy:
    """Acts 0; Q_c(s, a) = 1 + a (2 for the learner's action), Q_r(s, a) = 8·obs[1] − a."""
    return make_policy(
        counting(lambda obs, key: jnp.zeros((*obs.shape[:-1], 1))),
        cost_value=cost_value,
        reward_value=reward_value,
        algo="prior",
        **kwargs,
    )


# --- shield_scale and ShieldConfig -------------------------------------------------------------------------------


def test_shield_scale_turns_discounted_cost_into_episode_cost():
    assert shield_scale(1000, 0.99, 4) == pytest.approx(2.5)
    assert shield_scale(16, 0.75, 2) == 2.0
    assert shield_scale(100, 0.0) == 100.0  # γ_c = 0: Q_c is the per-decision cost, T of them per episode
    assert ShieldConfig.for_episode(3.0, 16, 0.75, 2) == ShieldConfig(budget=3.0, scale=2.0)


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, 0.99), "episode_length must be an integer >= 1, got 0"),
        ((10.5, 0.99), "episode_length must be an integer >= 1, got 10.5"),
        ((True, 0.99), "episode_length must be an integer >= 1, got True"),
        ((1000, 1.0), r"cost_discounting must be in \[0, 1\), got 1.0"),
        ((1000, -0.1), r"cost_discounting must be in \[0, 1\), got -0.1"),
        ((1000, float("nan")), r"cost_discounting must be in \[0, 1\), got nan"),
        ((1000, 0.99, 0), "action_repeat must be an integer >= 1, got 0"),
        ((1000, 0.99, 2.0), "action_repeat must be an integer >= 1, got 2.0"),
    ],
)
def test_shield_scale_rejects_bad_inputs(args, message):
    with pytest.raises(ValueError, match=message):
        shield_scale(*args)


@pytest.mark.parametrize(
    "budget, scale, message",
    [
        (-1.0, 2.0, "ShieldConfig.budget must be finite and >= 0, got -1.0"),
        (float("inf"), 2.0, "ShieldConfig.budget must be finite and >= 0, got inf"),
        (4.0, 0.0, "ShieldConfig.scale must be finite and > 0, got 0.0"),
        (4.0, float("nan"), "ShieldConfig.scale must be finite and > 0, got nan"),
    ],
)
def test_shield_config_rejects_bad_budget_and_scale(budget, scale, message):
    with pytest.raises(ValueError, match=message):
        ShieldConfig(budget=budget, scale=scale)


def test_shield_config_is_frozen():
    config = ShieldConfig(budget=4, scale=2)
    assert (config.budget, config.scale) == (4.0, 2.0) and isinstance(config.budget, float)
    with pytest.raises(AttributeError):
        config.budget = 5.0


# --- the array functions ---------------------------------------------------------------------------------------


def test_shield_fires_exactly_when_cost_spent_plus_scaled_cost_value_reaches_the_budget():
    # scale 2.5, budget 10, spent 2.5: Q_c = 3 − 2⁻¹⁰ is just below (sum 9.9976), 3 exactly at, 3 + 2⁻¹⁰ above
    q = jnp.array([3.0 - 2.0**-10, 3.0, 3.0 + 2.0**-10, 0.0], jnp.float32)
    fires = shield_fires(jnp.float32(2.5), q, 10.0, 2.5)
    assert fires.dtype == jnp.bool_ and fires.shape == (4,)
    np.testing.assert_array_equal(fires, [False, True, True, False])
    # the cost spent alone: the budget already used up fires even for Q_c = 0; just below does not
    spent = jnp.array([10.0 - 2.0**-10, 10.0, 12.0], jnp.float32)
    np.testing.assert_array_equal(shield_fires(spent, jnp.zeros(3), 10.0, 2.5), [False, True, True])


def test_shield_fires_broadcasts_budget_and_scale_over_batch_axes():
    spent = jnp.array([[0.0], [3.0]], jnp.float32)  # [2, 1]
    q = jnp.array([1.0, 2.0, 3.0], jnp.float32)  # [3]
    np.testing.assert_array_equal(shield_fires(spent, q, 6.0, 2.0), [[False, False, True], [False, True, True]])
    np.testing.assert_array_equal(
        shield_fires(0.0, q, jnp.array([2.0, 8.0, 8.0]), jnp.array([2.0, 2.0, 2.0])), [True, False, False]
    )


def test_shielded_action_takes_the_prior_action_exactly_where_the_shield_fires():
    learner = jnp.ones((2, 3, 2))
    prior = jnp.full((2, 3, 2), -0.5)
    fires = jnp.array([[True, False, True], [False, False, True]])
    action = shielded_action(learner, prior, fires)
    assert action.shape == (2, 3, 2)
    np.testing.assert_array_equal(action[..., 0], jnp.where(fires, -0.5, 1.0))
    np.testing.assert_array_equal(action[..., 1], action[..., 0])  # every action dimension switches together


def test_terminal_value_is_the_prior_reward_value_where_the_shield_fires_and_zero_elsewhere():
    spent = jnp.array([0.0, 2.0, 2.0 - 2.0**-8, 9.0], jnp.float32)
    cost_q = jnp.array([1.0, 1.0, 1.0, 0.0], jnp.float32)  # scale 2, budget 4: fires where spent ≥ 2
    reward_q = jnp.array([-3.0, 5.0, 7.0, 0.25], jnp.float32)
    value, done = terminal_value(spent, cost_q, reward_q, 4.0, 2.0)
    np.testing.assert_array_equal(value, [0.0, 5.0, 0.0, 0.25])
    assert done.dtype == jnp.float32
    np.testing.assert_array_equal(done, [0.0, 1.0, 0.0, 1.0])


def test_array_functions_under_jit_and_vmap_with_traced_budget_and_scale():
    spent = jnp.array([2.5, 2.5, 0.0], jnp.float32)
    q = jnp.array([3.0 - 2.0**-10, 3.0, 4.0], jnp.float32)
    fires = jax.jit(shield_fires)(spent, q, jnp.float32(10.0), jnp.float32(2.5))
    np.testing.assert_array_equal(fires, [False, True, True])
    per_element = jax.vmap(shield_fires, in_axes=(0, 0, None, None))(spent, q, 10.0, 2.5)
    np.testing.assert_array_equal(per_element, fires)
    action = jax.jit(jax.vmap(shielded_action))(jnp.ones((3, 2)), jnp.zeros((3, 2)), fires)
    np.testing.assert_array_equal(action, [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    value, done = jax.jit(jax.vmap(terminal_value, in_axes=(0, 0, 0, None, None)))(
        spent, q, jnp.array([1.0, 2.0, 3.0]), 10.0, 2.5
    )
    np.testing.assert_array_equal(value, [0.0, 2.0, 3.0])
    np.testing.assert_array_equal(done, [0.0, 1.0, 1.0])


# --- shielded_policy -------------------------------------------------------------------------------------------


def test_shielded_policy_falls_back_to_the_prior_at_the_budget_per_episode_under_vmap():
    # budget 4, scale 1, Q_c(s, learner's 1) = 2: the shield fires once 2 or more has been spent
    policy = shielded_policy(ones_learner(), zeros_prior(), scale=1.0)
    spent = jnp.array([0.0, 2.0 - 2.0**-10, 2.0, 3.5], jnp.float32)
    carries = jax.vmap(lambda c: policy.init_carry().replace(cost_spent=c))(spent)
    obs = jnp.zeros((4, 2))
    action, carries = jax.vmap(policy.act)(carries, obs, jax.random.split(KEY, 4))
    assert action.shape == (4, 1)
    np.testing.assert_array_equal(action[:, 0], [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(carries.memory.interventions, [0, 0, 1, 1])
    np.testing.assert_array_equal(carries.memory.learner, [1, 1, 1, 1])  # both policies acted and kept memory
    np.testing.assert_array_equal(carries.memory.prior, [1, 1, 1, 1])
    np.testing.assert_array_equal(carries.cost_spent, spent)  # the executor, not act, adds costs


def test_shielded_policy_with_an_advantage_threshold_filters_on_the_cost_advantage_not_the_budget():
    # Q_c(s, learner's 1) − Q_c(s, prior's 0) = (1 + 1·w) − 1 = w; fires where w > 0.2, whatever is spent
    prior = zeros_prior(cost_value=lambda obs, action: 1.0 + obs[..., 0] * action[..., 0])
    policy = shielded_policy(ones_learner(), prior, scale=1.0, advantage_threshold=0.2)
    obs = jnp.array([[0.0, 0.0], [0.19, 0.0], [0.21, 0.0], [5.0, 0.0]])
    spent = jnp.array([100.0, 100.0, 0.0, 0.0], jnp.float32)  # far over the budget of 4: ignored by this rule
    carries = jax.vmap(lambda c: policy.init_carry().replace(cost_spent=c))(spent)
    action, carries = jax.vmap(policy.act)(carries, obs, jax.random.split(KEY, 4))
    np.testing.assert_array_equal(action[:, 0], [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(carries.memory.interventions, [0, 0, 1, 1])


def test_shielded_policy_carry_accumulates_cost_and_counts_interventions_step_by_step():
    policy = shielded_policy(ones_learner(), zeros_prior(), scale=1.0)
    carry = policy.init_carry()
    assert isinstance(carry.memory, ShieldMemory) and int(carry.memory.interventions) == 0
    actions = []
    for step in range(6):
        action, carry = policy.act(carry, jnp.zeros(2), jax.random.fold_in(KEY, step))
        actions.append(float(action[0]))
        carry = observe_cost(carry, 0.75)
    # spent before each decision: 0, 0.75, 1.5, 2.25, 3, 3.75 -> fires from 2.25 on
    assert actions == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert float(carry.cost_spent) == 4.5 and int(carry.memory.interventions) == 3
    assert int(carry.memory.learner) == 6 and int(carry.memory.prior) == 6


def test_shielded_policy_in_the_episode_loop_switches_to_the_prior_once_the_budget_is_in_reach():
    # CounterEnv: each env step costs 0.5, reward = the action; decisions held 2 steps (cost 1 per decision).
    # Budget: the prior's, 7; scale from its env config: T 16, γ_c 0.75, repeat 2 -> 2. Q_c(s, learner's 1) = 2,
    # so the shield fires once spent + 2·2 ≥ 7, i.e. spent ≥ 3: from decision 3 on.
    env_config = types.SimpleNamespace(episode_length=16)
    learner = ones_learner(repeat=2)
    prior = zeros_prior(repeat=2, env_config=env_config, budget=7.0)
    policy = shielded_policy(learner, prior, cost_discounting=0.75)
    assert policy.cost_budget == 7.0 and policy.action_repeat == 2 and policy.apply is None
    env = CounterEnv(episode_length=16)
    run = jax.jit(lambda state, key: episode.run(policy, env, state, key, 6))
    (_, carry), decisions = run(env.reset(KEY), KEY)
    np.testing.assert_array_equal(decisions.transition.action[:, 0], [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(decisions.transition.reward, [2, 2, 2, 0, 0, 0])
    np.testing.assert_array_equal(decisions.carry.cost_spent, [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(decisions.carry.memory.interventions, [0, 0, 0, 1, 2, 3])
    assert int(carry.memory.interventions) == 3 and float(carry.cost_spent) == 6.0
    # vmapped over episodes with different start costs: an episode starting at the budget is shielded at once
    starts = jax.vmap(lambda c: policy.init_carry().replace(cost_spent=c))(jnp.array([0.0, 7.0]))
    (_, carries), _ = jax.jit(
        jax.vmap(lambda carry, key: episode.run(policy, env, env.reset(key), key, 6, carry=carry))
    )(starts, jax.random.split(KEY))
    np.testing.assert_array_equal(carries.memory.interventions, [3, 6])


def test_shielded_policy_samples_with_the_learner_key_and_acts_with_the_deterministic_prior():
    def uniform(obs, key):
        return jax.random.uniform(key, (*obs.shape[:-1], 1), minval=-1.0, maxval=1.0)

    learner = ones_learner(sample=counting(uniform))
    policy = shielded_policy(learner, zeros_prior(cost_value=lambda obs, action: obs[..., 0]), scale=1.0)
    key = jax.random.PRNGKey(7)
    action, _ = policy.sample(policy.init_carry(), jnp.array([0.0, 0.0]), key)  # Q_c = 0: not shielded
    np.testing.assert_array_equal(action, uniform(jnp.zeros(2), key))  # exactly what the learner alone samples
    action, carry = policy.sample(policy.init_carry(), jnp.array([4.0, 0.0]), key)  # Q_c = 4: shielded
    np.testing.assert_array_equal(action, [0.0])
    assert int(carry.memory.interventions) == 1
    assert shielded_policy(ones_learner(), zeros_prior(), scale=1.0).sample is None


def test_shielded_policy_rejects_what_it_cannot_shield():
    with pytest.raises(ValueError, match=r"the prior \(prior\) has no cost_value"):
        shielded_policy(ones_learner(), zeros_prior(cost_value=None), scale=1.0)
    with pytest.raises(ValueError, match="observation sizes differ: learner 3, prior 2"):
        shielded_policy(ones_learner(observation_size=3), zeros_prior(), scale=1.0)
    with pytest.raises(ValueError, match="action sizes differ: learner 2, prior 1"):
        shielded_policy(ones_learner(action_size=2), zeros_prior(), scale=1.0)
    with pytest.raises(ValueError, match="action repeats differ: learner 1, prior 2"):
        shielded_policy(ones_learner(), zeros_prior(repeat=2), scale=1.0)
    with pytest.raises(ValueError, match="give either scale or cost_discounting"):
        shielded_policy(ones_learner(), zeros_prior(), scale=1.0, cost_discounting=0.99)
    with pytest.raises(ValueError, match="the shield's scale needs cost_discounting"):
        shielded_policy(ones_learner(), zeros_prior())
    with pytest.raises(ValueError, match="env_config has no episode_length"):
        shielded_policy(ones_learner(), zeros_prior(), cost_discounting=0.99)
    with pytest.raises(ValueError, match=r"cost_discounting must be in \[0, 1\), got 1.5"):
        shielded_policy(
            ones_learner(), zeros_prior(env_config=types.SimpleNamespace(episode_length=16)), cost_discounting=1.5
        )
    with pytest.raises(ValueError, match=r"ShieldConfig.budget must be finite and >= 0, got -1.0"):
        shielded_policy(ones_learner(), zeros_prior(), scale=1.0, budget=-1.0)


# --- the recovery rule (issue #26) ------------------------------------------------------------------------------


def off_data_prior() -> Policy:
    """Acts 0. Its cost critic saw only actions near its own: Q_c(s, a) = 4·s₀ + 3·a·(1 − a), which extrapolates
    to 0 at the learner's a = 1 although a = 1 pushes s₀ up by 1 (`one_step_model`), where Q_c(s', 0) = 4·(s₀ + 1)."""
    return zeros_prior(cost_value=lambda obs, action: 4.0 * obs[..., 0] + 3.0 * action[..., 0] * (1.0 - action[..., 0]))


def one_step_model(spread: float = 0.0):
    """lookahead(obs, a) of a two-member 'ensemble': s'₀ = s₀ + a ± spread, step cost 0, prior's Q_c after it."""
    prior = off_data_prior()

    def lookahead(obs, action):
        next_obs = jnp.stack([obs.at[0].add(action[0] + d) for d in (-spread, spread)])  # [E = 2, obs]
        q_next = prior.cost_value(next_obs, jnp.zeros((2, 1)))
        return recovery_bound(jnp.zeros(2), q_next, 1.0)

    return lookahead


def test_recovery_shield_fires_on_an_action_the_critic_never_saw_where_the_budget_rule_lets_it_pass():
    # issue #26's failure mode: C_spent 1, budget 4, scale 1, state s₀ = 0.25. The paper's rule asks the critic at
    # the learner's action: 1 + Q_c(s, 1) = 1 + 1 + 0 = 2 < 4 -> passes. One step ahead the prior faces
    # Q_c(s', 0) = 4·1.25 = 5: the episode would end at 1 + 5 = 6 > 4 even if the prior took over at once.
    prior = off_data_prior()
    obs = jnp.array([0.25, 0.0])

    def carry():
        return shielded_policy(ones_learner(), prior, scale=1.0).init_carry().replace(cost_spent=jnp.float32(1.0))

    budget_rule = shielded_policy(ones_learner(), prior, scale=1.0)
    action, after = budget_rule.act(carry(), obs, KEY)
    assert float(action[0]) == 1.0 and int(after.memory.interventions) == 0  # the old rule lets it through
    recovery = shielded_policy(ones_learner(), prior, scale=1.0, lookahead=one_step_model())
    action, after = recovery.act(carry(), obs, KEY)
    assert float(action[0]) == 0.0 and int(after.memory.interventions) == 1  # the prior acts instead
    # where the prior can still recover after the learner's step, the learner acts: s₀ = -0.5 -> Q_c(s', 0) = 2
    action, after = recovery.act(carry(), jnp.array([-0.5, 0.0]), KEY)
    assert float(action[0]) == 1.0 and int(after.memory.interventions) == 0


def test_recovery_shield_counts_the_worst_member_and_keeps_the_margin():
    prior = off_data_prior()
    spent = jnp.float32(1.0)
    obs = jnp.array([-0.5, 0.0])  # members' s'₀ = 0.5 ± spread -> Q_c(s', 0) = 2 ∓ 4·spread
    for spread, margin, fires in [
        (0.0, 0.0, False),
        (0.125, 0.0, False),
        (0.25, 0.0, True),
        (0.0, 0.5, False),
        (0.0, 1.0, True),
    ]:
        # bound = 1 + 2 + 4·spread + margin vs budget 4: fires at 4 exactly
        policy = shielded_policy(ones_learner(), prior, scale=1.0, lookahead=one_step_model(spread), margin=margin)
        action, after = policy.act(policy.init_carry().replace(cost_spent=spent), obs, KEY)
        assert int(after.memory.interventions) == int(fires), (spread, margin)
        assert float(action[0]) == (0.0 if fires else 1.0)


def test_recovery_bound_and_fires_on_known_numbers():
    step_cost = jnp.array([[0.0, 1.0], [0.5, 0.0]])  # [E = 2, batch 2]
    q_next = jnp.array([[2.0, 1.0], [1.0, 3.0]])
    bound = recovery_bound(step_cost, q_next, 2.0)  # max over members of c + 2·q
    np.testing.assert_array_equal(bound, [4.0, 6.0])
    np.testing.assert_array_equal(recovery_fires(jnp.array([1.0, 0.0]), bound, 6.0, 1.0), [True, True])
    np.testing.assert_array_equal(recovery_fires(jnp.array([0.5, 0.0]), bound, 7.0, 1.0 - 2.0**-4), [False, False])
    np.testing.assert_array_equal(recovery_fires(jnp.array([2.0, 0.0]), bound, 7.0, 1.0), [True, True])  # at d exactly
    with pytest.raises(ValueError, match="either lookahead"):
        shielded_policy(ones_learner(), zeros_prior(), scale=1.0, lookahead=one_step_model(), advantage_threshold=0.2)
