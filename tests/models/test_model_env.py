"""The ensemble in the env contract (saferl.models.model_env): imagined steps, optimism/pessimism, starts,
horizon, the termination hook, and jit/vmap/scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from saferl.models import ensemble, uncertainty
from saferl.models import normalizer as norm_lib
from saferl.models.model_env import ModelEnv, ModelEnvConfig, TerminationWrapper, ensemble_step, make_model_env

OBS, ACT = 2, 1

# member e predicts [Δobs (2), reward, cost] = MEMBER_OUTPUTS[e] whatever the input
MEMBER_OUTPUTS = np.array([[0.1, 0.0, 1.0, -1.0], [0.2, 0.3, 2.0, -0.5], [0.3, -0.3, 3.0, 0.0]], np.float32)
# σ by hand: std of [0.1, 0.2, 0.3] = 0.1·√(2/3), std of [0, 0.3, −0.3] = √0.06; mean over the 2 state dims
SIGMA = (0.1 * np.sqrt(2.0 / 3.0) + np.sqrt(0.06)) / 2.0
STARTS = np.array([[0.0, 0.0], [1.0, -1.0], [2.0, 0.5], [-3.0, 4.0]], np.float32)


def constant_ensemble(outputs: np.ndarray, aleatoric_std: float = 0.0) -> ensemble.EnsembleState:
    """Deterministic ensemble whose member e outputs `outputs[e]` everywhere (zero output kernel, bias =
    outputs[e], identity normaliser), with aleatoric σ = `aleatoric_std` on every output."""
    members = outputs.shape[0]
    config = ensemble.EnsembleConfig(
        num_members=members, num_elites=members, hidden_sizes=(16,), deterministic=True, deterministic_std=aleatoric_std
    )
    state = ensemble.init(jax.random.PRNGKey(0), config, OBS, ACT, OBS + 2)
    params = jax.tree.map(lambda x: x, state.params)
    head = params["params"]["mean"]
    params["params"]["mean"] = {"kernel": jnp.zeros_like(head["kernel"]), "bias": jnp.asarray(outputs)}
    return state.replace(params=params)


@pytest.fixture(scope="module")
def random_model() -> ensemble.EnsembleState:
    """3 randomly initialised probabilistic members (they disagree) behind a non-trivial normaliser."""
    config = ensemble.EnsembleConfig(num_members=3, num_elites=3, hidden_sizes=(16,))
    state = ensemble.init(jax.random.PRNGKey(3), config, OBS, ACT, OBS + 2)
    norm = norm_lib.Normalizer(
        input_mean=jnp.array([0.5, -0.2, 0.1]),
        input_std=jnp.array([2.0, 0.5, 1.0]),
        output_mean=jnp.array([0.1, -0.1, 1.0, -0.3]),
        output_std=jnp.array([0.3, 0.2, 2.0, 0.5]),
    )
    return state.replace(normalizer=norm)


def step_once(env, obs, action, key=jax.random.PRNGKey(7)):
    state = env.reset(key).replace(obs=jnp.asarray(obs, jnp.float32))
    return env.step(state, jnp.asarray(action, jnp.float32))


def test_mean_propagation_without_bonuses_reproduces_the_ensemble_mean_prediction(random_model):
    env = ModelEnv(random_model, STARTS, ModelEnvConfig(propagation="mean"))
    obs, action = np.array([0.7, -1.2], np.float32), np.array([0.4], np.float32)
    nxt = step_once(env, obs, action)
    mean, _ = ensemble.predict(random_model, obs, action)
    expected = mean.mean(axis=0)
    # same float32 ops in the same order: equal up to rounding
    np.testing.assert_allclose(nxt.obs, obs + expected[:OBS], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(nxt.reward, expected[OBS], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(nxt.info["cost"], max(float(expected[OBS + 1]), 0.0), rtol=1e-6, atol=1e-6)
    assert float(nxt.done) == 0.0


def test_optimism_and_pessimism_are_lambda_times_the_members_next_state_spread(random_model):
    obs, action = np.array([-0.3, 0.8], np.float32), np.array([-0.6], np.float32)
    per_member, _ = ensemble.predict_per_member(
        random_model, np.broadcast_to(obs, (3, OBS)), np.broadcast_to(action, (3, ACT))
    )
    next_states = obs + np.asarray(per_member)[:, :OBS]  # [E, obs]
    sigma = np.std(next_states, axis=0).mean()  # computed independently, numpy (ddof 0)
    assert sigma > 1e-3  # random members disagree, so the bonus is visible
    base = step_once(ModelEnv(random_model, STARTS, ModelEnvConfig(propagation="mean")), obs, action)
    bold = step_once(
        ModelEnv(random_model, STARTS, ModelEnvConfig(propagation="mean", optimism=2.0, pessimism=3.0)), obs, action
    )
    # float32 differences of O(1) numbers: 1e-5 absolute
    np.testing.assert_allclose(base.info["epistemic_std"], sigma, rtol=1e-4)
    np.testing.assert_allclose(bold.reward - base.reward, 2.0 * sigma, atol=1e-5)
    raw_cost = float(ensemble.predict(random_model, obs, action)[0].mean(0)[OBS + 1])
    np.testing.assert_allclose(bold.info["cost"], max(raw_cost + 3.0 * sigma, 0.0), atol=1e-5)
    np.testing.assert_allclose(bold.obs, base.obs)  # bonuses never move the state


def test_hand_computed_step_of_a_constant_ensemble_clips_cost_at_zero():
    model = constant_ensemble(MEMBER_OUTPUTS)
    obs = np.array([1.0, 2.0], np.float32)
    for pessimism, cost in ((0.0, 0.0), (1.0, 0.0), (5.0, -0.5 + 5.0 * SIGMA)):
        env = ModelEnv(model, STARTS, ModelEnvConfig(propagation="mean", optimism=0.5, pessimism=pessimism))
        nxt = step_once(env, obs, [0.0])
        np.testing.assert_allclose(nxt.obs, obs + np.array([0.2, 0.0]), atol=1e-6)
        np.testing.assert_allclose(nxt.reward, 2.0 + 0.5 * SIGMA, atol=1e-6)
        np.testing.assert_allclose(nxt.info["epistemic_std"], SIGMA, atol=1e-6)
        np.testing.assert_allclose(nxt.info["cost"], cost, atol=1e-6)
        np.testing.assert_allclose(nxt.metrics["cost"], cost, atol=1e-6)


def test_costs_are_never_negative_under_any_propagation(random_model):
    shifted = random_model.replace(
        normalizer=random_model.normalizer.replace(
            output_mean=random_model.normalizer.output_mean.at[OBS + 1].set(-0.2)
        )
    )  # c̄ straddles 0
    keys = jax.random.split(jax.random.PRNGKey(1), 256)
    obs = jax.random.normal(jax.random.PRNGKey(2), (256, OBS)) * 2.0
    actions = jax.random.uniform(jax.random.PRNGKey(3), (256, ACT), minval=-1.0, maxval=1.0)
    for config in (ModelEnvConfig(propagation="mean"), ModelEnvConfig(), ModelEnvConfig(pessimism=0.1)):
        step = jax.vmap(lambda k, o, a, c=config: ensemble_step(shifted, c, k, o, a))
        cost = step(keys, obs, actions).cost
        assert float(cost.min()) >= 0.0
        assert 0 < int((cost == 0.0).sum()) < 256  # the clip was active somewhere, not everywhere


def test_random_member_follows_exactly_one_member_per_step_and_visits_all():
    model = constant_ensemble(MEMBER_OUTPUTS)
    obs = np.array([1.0, 2.0], np.float32)
    keys = jax.random.split(jax.random.PRNGKey(4), 600)
    step = jax.vmap(lambda k: ensemble_step(model, ModelEnvConfig(), k, jnp.asarray(obs), jnp.zeros(ACT)))
    out = step(keys)
    rows = np.concatenate([np.asarray(out.next_obs) - obs, np.asarray(out.reward)[:, None]], axis=1)
    distance = np.abs(rows[:, None, :] - MEMBER_OUTPUTS[None, :, : OBS + 1]).max(-1)  # [600, E]
    assert distance.min(1).max() < 1e-6  # each step is one member's prediction (no aleatoric noise here)
    share = np.bincount(distance.argmin(1), minlength=3) / 600.0
    # uniform draw: each share ≈ 1/3 (binomial std ≈ 0.019; 0.1 is > 5 std)
    np.testing.assert_allclose(share, 1.0 / 3.0, atol=0.1)
    np.testing.assert_allclose(out.epistemic_std, SIGMA, atol=1e-6)  # σ uses all members whichever is followed


def test_random_member_adds_the_members_aleatoric_noise():
    identical = np.tile(np.array([[0.5, -0.5, 1.0, 0.2]], np.float32), (3, 1))
    model = constant_ensemble(identical, aleatoric_std=0.4)
    keys = jax.random.split(jax.random.PRNGKey(5), 4000)
    for sample, expected_std in ((True, 0.4), (False, 0.0)):
        config = ModelEnvConfig(sample_aleatoric=sample)
        out = jax.vmap(lambda k, c=config: ensemble_step(model, c, k, jnp.zeros(OBS), jnp.zeros(ACT)))(keys)
        # 4000 samples: std error of the mean 0.006, of the std 0.0045; tolerances ≥ 4 of those
        np.testing.assert_allclose(np.mean(out.next_obs, 0), [0.5, -0.5], atol=0.03)
        np.testing.assert_allclose(np.std(out.next_obs, 0), expected_std, atol=0.02)
        np.testing.assert_allclose(np.std(out.reward), expected_std, atol=0.02)
    mean_env = ModelEnv(model, STARTS, ModelEnvConfig(propagation="mean"))
    np.testing.assert_allclose(step_once(mean_env, [0.0, 0.0], [0.0]).obs, [0.5, -0.5], atol=1e-6)  # no noise


def test_reset_draws_only_and_uniformly_from_the_start_states_with_their_cost_spent():
    spent = np.array([0.0, 1.5, 3.0, 4.5], np.float32)
    env = ModelEnv(constant_ensemble(MEMBER_OUTPUTS), STARTS, start_cost_spent=spent)
    states = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(6), 400))
    match = np.all(np.asarray(states.obs)[:, None, :] == STARTS[None], axis=-1)  # [400, N]
    assert np.all(match.sum(1) == 1)  # every start is exactly one of the given states
    index = match.argmax(1)
    np.testing.assert_array_equal(states.info["cost_spent"], spent[index])
    # 100 expected draws per start (binomial std ≈ 8.7): 60 is > 4 std below
    assert np.bincount(index, minlength=4).min() > 60
    assert float(np.abs(states.reward).max()) == 0.0 and float(np.abs(states.done).max()) == 0.0


def test_episode_ends_exactly_at_the_horizon_as_a_truncation():
    env = make_model_env(constant_ensemble(MEMBER_OUTPUTS), STARTS, ModelEnvConfig(horizon=3))
    state = env.reset(jax.random.PRNGKey(0))
    done, truncation = [], []
    for _ in range(3):
        state = env.step(state, jnp.zeros(ACT))
        done.append(float(state.done))
        truncation.append(float(state.info["truncation"]))
    assert done == [0.0, 0.0, 1.0]
    assert truncation == [0.0, 0.0, 1.0]
    assert int(state.info["steps"]) == 3
    assert env.unwrapped.episode_length == 3


def test_training_stack_auto_resets_to_a_start_state_after_each_horizon():
    """The learners' own stack (vmap → EpisodeWrapper(episode_length) → auto-reset) takes the ModelEnv."""
    model_env = ModelEnv(constant_ensemble(MEMBER_OUTPUTS), STARTS, ModelEnvConfig(horizon=3))
    env = envs.wrap_training_env(model_env, envs.TrainingEnvConfig(), num_envs=4)
    state = env.reset(jax.random.PRNGKey(0))
    for t in range(1, 8):
        state = env.step(state, jnp.zeros((4, ACT)))
        timed_out = float(t % 3 == 0)
        np.testing.assert_array_equal(state.done, timed_out)
        np.testing.assert_array_equal(state.info["truncation"], timed_out)
        if timed_out:  # the next observation is a fresh start state
            assert np.all(np.any(np.all(np.asarray(state.obs)[:, None] == STARTS[None], -1), -1))


def obs_predicate(obs, action, cost_spent):
    """Fires once the first state coordinate reaches 1; terminal reward 10 + obs₀ + action₀."""
    return obs[..., 0] >= 1.0, 10.0 + obs[..., 0] + action[..., 0]


def budget_predicate(obs, action, cost_spent):
    """Fires once the cost spent reaches 1; terminal reward −cost_spent."""
    return cost_spent >= 1.0, -cost_spent


def rollout_steps(env, steps, action=0.25):
    state = env.reset(jax.random.PRNGKey(0))
    out = []
    for _ in range(steps):
        state = env.step(state, jnp.full(ACT, action))
        out.append(state)
    return out


def test_termination_hook_ends_the_trajectory_where_the_predicate_fires_with_the_terminal_reward():
    walker = constant_ensemble(np.tile(np.array([[0.5, 0.0, 1.0, 0.25]], np.float32), (2, 1)))
    starts = np.zeros((1, OBS), np.float32)
    # obs₀ = 0, 0.5, 1.0 after 0, 1, 2 steps: the predicate sees obs₀ = 1 on the 3rd step and fires there
    env = make_model_env(walker, starts, ModelEnvConfig(propagation="mean", horizon=10), terminate_fn=obs_predicate)
    states = rollout_steps(env, 3)
    assert [float(s.done) for s in states] == [0.0, 0.0, 1.0]
    assert [float(s.info["terminated"]) for s in states] == [0.0, 0.0, 1.0]
    assert [float(s.info["truncation"]) for s in states] == [0.0, 0.0, 0.0]  # a termination, not a time-out
    np.testing.assert_allclose([float(s.reward) for s in states], [1.0, 1.0, 10.0 + 1.0 + 0.25], atol=1e-6)
    np.testing.assert_allclose([float(s.info["cost"]) for s in states], [0.25, 0.25, 0.0], atol=1e-6)
    np.testing.assert_allclose(states[2].obs, [1.0, 0.0], atol=1e-6)  # absorbing: the action is not imagined
    np.testing.assert_allclose(states[2].info["episode_metrics"]["sum_reward"], 13.25, atol=1e-5)


def test_termination_hook_reads_the_cost_spent_including_the_real_episodes():
    walker = constant_ensemble(np.tile(np.array([[0.5, 0.0, 1.0, 0.25]], np.float32), (2, 1)))
    # cost spent 0.8 at the start, 1.05 after one imagined step: the predicate fires on the 2nd step
    env = make_model_env(
        walker,
        np.zeros((1, OBS), np.float32),
        ModelEnvConfig(propagation="mean", horizon=2),
        start_cost_spent=np.array([0.8], np.float32),
        terminate_fn=budget_predicate,
    )
    first, second = rollout_steps(env, 2)
    assert float(first.done) == 0.0 and float(second.done) == 1.0
    np.testing.assert_allclose(second.reward, -1.05, atol=1e-6)
    np.testing.assert_allclose(second.info["cost_spent"], 1.05, atol=1e-6)  # nothing added on the fired step
    # it fires on the horizon's last step: the termination wins, no bootstrapping (truncation 0)
    assert float(second.info["truncation"]) == 0.0


def test_jit_vmap_scan_rollout_matches_stepping_one_env_at_a_time():
    env = make_model_env(
        constant_ensemble(MEMBER_OUTPUTS, aleatoric_std=0.1),
        STARTS,
        ModelEnvConfig(optimism=0.3, pessimism=2.0, horizon=4),
        terminate_fn=obs_predicate,
    )
    weights = jnp.array([[0.5], [-0.7]])

    def policy(obs):  # [..., obs] -> [..., act]
        return jnp.tanh(obs @ weights)

    @jax.jit
    def imagined_rollout(keys):
        def body(state, _):
            state = jax.vmap(env.step)(state, policy(state.obs))
            return state, (state.obs, state.reward, state.done, state.info["cost"])

        return jax.lax.scan(body, jax.vmap(env.reset)(keys), None, length=4)[1]

    keys = jax.random.split(jax.random.PRNGKey(8), 5)
    obs, reward, done, cost = imagined_rollout(keys)
    assert obs.shape == (4, 5, OBS) and reward.shape == done.shape == cost.shape == (4, 5)
    assert np.all(np.asarray(done)[-1] == 1.0)  # every episode has ended by the horizon
    state = env.reset(keys[2])
    for t in range(4):  # env 2 stepped alone, eagerly: same keys, same numbers (float32 rounding: 1e-5)
        state = env.step(state, policy(state.obs))
        np.testing.assert_allclose(obs[t, 2], state.obs, atol=1e-5)
        np.testing.assert_allclose(reward[t, 2], state.reward, atol=1e-5)
        np.testing.assert_allclose(cost[t, 2], state.info["cost"], atol=1e-5)
        assert float(done[t, 2]) == float(state.done)


def test_env_built_inside_jit_from_traced_model_and_starts_matches_the_eager_env(random_model):
    config = ModelEnvConfig(optimism=1.0)

    @jax.jit
    def first_step(model, starts, key):
        env = ModelEnv(model, starts, config)
        return env.step(env.reset(key), jnp.array([0.3]))

    traced = first_step(random_model, STARTS, jax.random.PRNGKey(9))
    eager_env = ModelEnv(random_model, STARTS, config)
    eager = eager_env.step(eager_env.reset(jax.random.PRNGKey(9)), jnp.array([0.3]))
    np.testing.assert_allclose(traced.obs, eager.obs, atol=1e-5)
    np.testing.assert_allclose(traced.reward, eager.reward, atol=1e-5)


def test_actions_are_clipped_to_the_unit_box(random_model):
    env = ModelEnv(random_model, STARTS, ModelEnvConfig(propagation="mean"))
    np.testing.assert_allclose(step_once(env, [0.2, 0.1], [7.0]).obs, step_once(env, [0.2, 0.1], [1.0]).obs)
    assert env.observation_size == OBS and env.action_size == ACT


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(optimism=-0.1), "optimism must be a finite number >= 0"),
        (dict(pessimism=-1.0), "pessimism must be a finite number >= 0"),
        (dict(pessimism=float("inf")), "pessimism must be a finite number >= 0"),
        (dict(propagation="ts1"), "propagation must be one of random_member/mean"),
        (dict(horizon=0), "horizon must be an integer >= 1"),
        (dict(horizon=2.5), "horizon must be an integer >= 1"),
        (dict(sample_aleatoric="yes"), "sample_aleatoric must be a bool"),
    ],
)
def test_bad_config_raises_a_value_error_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelEnvConfig(**fields)


def test_bad_start_states_and_hook_raise_value_errors():
    model = constant_ensemble(MEMBER_OUTPUTS)
    with pytest.raises(ValueError, match=r"start_obs must have shape \[N >= 1, obs_dim=2\]"):
        ModelEnv(model, np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"start_obs must have shape"):
        ModelEnv(model, np.zeros((0, OBS), np.float32))
    with pytest.raises(ValueError, match=r"start_cost_spent must have shape \[N=4\]"):
        ModelEnv(model, STARTS, start_cost_spent=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="terminate_fn must be callable"):
        TerminationWrapper(ModelEnv(model, STARTS), terminate_fn=1.0)


def test_sigma_is_the_uncertainty_modules_epistemic_std_of_the_state_deltas(random_model):
    obs, action = jnp.array([[0.1, 0.2], [-1.0, 2.0]]), jnp.array([[0.5], [-0.5]])
    out = ensemble_step(random_model, ModelEnvConfig(propagation="mean"), jax.random.PRNGKey(0), obs, action)
    mean, _ = ensemble.predict(random_model, obs, action)
    np.testing.assert_allclose(out.epistemic_std, uncertainty.epistemic_std(mean[..., :OBS]).mean(-1), rtol=1e-6)
