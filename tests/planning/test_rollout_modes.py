"""Rollouts: mean / TS1 / TS∞ agreement, member assignment, optimism, pessimism, hallucinated control."""

import jax
import jax.numpy as jp
import numpy as np
import pytest
from planning_mocks import double_integrator

from saferl.planning import RolloutConfig, rollout

KEY = jax.random.PRNGKey(0)
OBS0 = jp.array([0.3, -0.1])
ACTIONS = jax.random.uniform(jax.random.PRNGKey(1), (4, 6, 1), minval=-1, maxval=1)  # N=4, H=6


def _run(model, **config):
    return jax.jit(lambda actions: rollout(KEY, model, RolloutConfig(**config), OBS0, actions))(ACTIONS)


def test_ts_and_mean_rollouts_agree_for_zero_noise_identical_members():
    model = double_integrator(member_spread=0.0, noise_var=0.0)
    mean = _run(model, propagation="mean", num_particles=1)
    for propagation in ("ts1", "tsinf"):
        sampled = _run(model, propagation=propagation, num_particles=10)
        assert sampled.obs.shape == (4, 10, 7, 2) and sampled.rewards.shape == (4, 10, 6)
        np.testing.assert_allclose(sampled.obs, jp.broadcast_to(mean.obs, sampled.obs.shape), atol=1e-6)
        np.testing.assert_allclose(sampled.rewards, jp.broadcast_to(mean.rewards, sampled.rewards.shape), atol=1e-6)


def test_tsinf_keeps_one_member_per_particle_and_ts1_mixes_members():
    spread = 0.1
    model = double_integrator(num_members=5, member_spread=spread)
    tsinf = _run(model, propagation="tsinf", num_particles=5)
    # particle p uses member p: its velocity drifts by offset_p per step, offsets = spread·(p − 2)
    drift = (tsinf.obs[:, :, -1, 1] - tsinf.obs[:, :, 0, 1]) - 0.1 * ACTIONS[:, :, 0].sum(-1)[:, None]
    np.testing.assert_allclose(drift, jp.broadcast_to(6 * spread * (jp.arange(5) - 2.0), (4, 5)), atol=1e-5)
    ts1 = _run(model, propagation="ts1", num_particles=5)
    drift_ts1 = (ts1.obs[:, :, -1, 1] - ts1.obs[:, :, 0, 1]) - 0.1 * ACTIONS[:, :, 0].sum(-1)[:, None]
    # each step every member is used exactly once per candidate: the particles' drifts sum to Σ offsets = 0
    np.testing.assert_allclose(drift_ts1.sum(-1), 0.0, atol=1e-5)
    assert float(jp.abs(drift_ts1).max()) < 6 * 2 * spread - 1e-3  # re-drawn members: no particle always extreme
    all_members = _run(model, propagation="ts1", num_particles=5, track_uncertainty=True)
    np.testing.assert_allclose(all_members.obs, ts1.obs, atol=1e-6)  # both code paths agree


def test_aleatoric_sampling_spreads_particles_with_the_model_variance():
    model = double_integrator(member_spread=0.0, noise_var=1e-4)
    traj = jax.jit(lambda a: rollout(KEY, model, RolloutConfig("tsinf", 500), OBS0, a))(ACTIONS[:1, :1])
    # one step: x' − E[x'] ~ N(0, 1e-4) per particle; 500 particles -> std within ±10 % of 0.01
    assert abs(float(traj.obs[0, :, 1, 0].std()) - 0.01) < 0.001
    plain = jax.jit(lambda a: rollout(KEY, model, RolloutConfig("tsinf", 5, sample_aleatoric=False), OBS0, a))
    assert float(plain(ACTIONS[:1, :1]).obs[0, :, 1, 0].std()) < 1e-7


def test_optimism_and_pessimism_add_lambda_times_the_members_next_state_spread():
    model = double_integrator(member_spread=0.0)
    plain = _run(model, propagation="mean", num_particles=1, track_uncertainty=True)
    spread_model = double_integrator(member_spread=0.2)
    base = _run(spread_model, propagation="mean", num_particles=1, track_uncertainty=True)
    bold = _run(spread_model, propagation="mean", num_particles=1, optimism=2.0, pessimism=3.0, track_uncertainty=True)
    assert float(plain.epistemic_std.max()) < 1e-5 and float(plain.info_gain.max()) < 1e-5
    # the members differ only in Δv, by std(0.2·(arange(5) − 2)) = 0.2·√2 (tracked: ‖σ_epi‖₂ over [x, v]); they
    # agree on Δx, so σ = mean over the state dims = 0.1·√2
    np.testing.assert_allclose(base.epistemic_std, 0.2 * np.sqrt(2.0), rtol=1e-4)
    sigma = 0.1 * np.sqrt(2.0)
    np.testing.assert_allclose(bold.rewards, base.rewards + 2.0 * sigma, atol=1e-5)  # float32 of O(1) numbers
    np.testing.assert_allclose(bold.costs, base.costs + 3.0 * sigma, atol=1e-5)  # base costs are 0 here
    np.testing.assert_allclose(bold.obs, base.obs, atol=0.0)  # neither moves the state
    assert float(base.info_gain.min()) > 0.0


def test_information_gain_noise_floor_is_a_fraction_of_each_outputs_data_std():
    # noiseless members (σ_ale² = 0 -> the 1e-8 floor) that disagree on Δv only: σ_epi,v² = 0.2² · 2 = 0.08
    model = double_integrator(member_spread=0.2, noise_var=0.0)
    raw = _run(model, propagation="mean", num_particles=1, track_uncertainty=True)
    np.testing.assert_allclose(raw.info_gain, 0.5 * np.log1p(0.08 / 1e-8), rtol=1e-4)  # ≈ 7.5 nats, log(1/σ_ale)
    scaled = model._replace(output_std=jp.array([1.0, 2.0, 1.0, 1.0]))  # Δv varies by 2 in the data
    floored = _run(scaled, propagation="mean", num_particles=1, track_uncertainty=True, noise_floor=0.1)
    np.testing.assert_allclose(floored.info_gain, 0.5 * np.log1p(0.08 / (0.1 * 2.0) ** 2), rtol=1e-4)
    np.testing.assert_allclose(floored.obs, raw.obs, atol=1e-6)  # only the objective changes
    noisy = double_integrator(member_spread=0.2, noise_var=1.0)._replace(output_std=jp.ones(4))
    above = _run(noisy, propagation="mean", num_particles=1, track_uncertainty=True, noise_floor=0.1)
    np.testing.assert_allclose(above.info_gain, 0.5 * np.log1p(0.08 / 1.0), rtol=1e-4)  # σ_ale above the floor
    with pytest.raises(ValueError, match="output_std"):
        _run(model, propagation="mean", num_particles=1, track_uncertainty=True, noise_floor=0.1)
    # the floor only enters the information gain: without it, a model lacking output_std rolls out as before
    bonus = _run(model, propagation="mean", num_particles=1, optimism=1.0, noise_floor=0.1)
    np.testing.assert_allclose(bonus.rewards, _run(model, propagation="mean", num_particles=1, optimism=1.0).rewards)
    with pytest.raises(ValueError, match="noise_floor"):
        RolloutConfig(noise_floor=-0.1)


def test_hallucinated_control_moves_the_state_by_beta_sigma_eta():
    model = double_integrator(member_spread=0.2)
    eta = jp.concatenate([jp.zeros((1, 3, 1)), jp.zeros((1, 3, 1)), jp.ones((1, 3, 1))], axis=-1)  # a=0, η_v=1
    config = RolloutConfig(propagation="mean", num_particles=1, hallucination_scale=1.5)
    traj = rollout(KEY, model, config, jp.zeros(2), eta)
    # Δv = 0 (mean of symmetric offsets) + β·σ_epi,v·η = 1.5·0.2·√2 per step
    np.testing.assert_allclose(traj.obs[0, 0, 1:, 1], 1.5 * 0.2 * np.sqrt(2.0) * jp.arange(1, 4), rtol=1e-4)


def test_optimism_reads_the_next_state_spread_not_the_reward_or_cost_heads():
    """Two members that disagree on Δs by ±0.3 and ±0.1 (σ = (0.3 + 0.1)/2 = 0.2), on the reward by ±1 and on the
    cost by ±2: the bonus is λ·0.2 on top of the followed member's reward/cost, whatever the heads' spread."""
    from saferl.planning import ModelFns

    def predict(obs, action):
        sign = jp.array([-1.0, 1.0]).reshape((2,) + (1,) * obs.ndim)
        mean = sign * jp.broadcast_to(jp.array([0.3, 0.1, 1.0, 2.0]), (*obs.shape[:-1], 4)) + jp.array(
            [0.0, 0.0, 0.5, 3.0]
        )
        return mean, jp.zeros_like(mean)

    model = ModelFns(predict, predict, 2)
    config = RolloutConfig("mean", 1, optimism=0.5, pessimism=2.0)
    mean = rollout(KEY, model, config, jp.zeros(2), jp.zeros((3, 4, 1)))
    np.testing.assert_allclose(mean.rewards, 0.5 + 0.5 * 0.2, atol=1e-6)  # r̄ = 0.5
    np.testing.assert_allclose(mean.costs, 3.0 + 2.0 * 0.2, atol=1e-6)  # c̄ = 3
    # TS∞ with 2 particles: particle p follows member p (reward 0.5 ∓ 1, cost 3 ∓ 2), the same σ on top
    config = RolloutConfig("tsinf", 2, sample_aleatoric=False, optimism=0.5, pessimism=2.0)
    members = rollout(KEY, model, config, jp.zeros(2), jp.zeros((3, 4, 1)))
    np.testing.assert_allclose(members.rewards, np.broadcast_to([[-0.4], [1.6]], (3, 2, 4)), atol=1e-6)
    np.testing.assert_allclose(members.costs, np.broadcast_to([[1.4], [5.4]], (3, 2, 4)), atol=1e-6)


def test_config_validation_and_particle_multiple():
    with pytest.raises(ValueError, match="num_particles"):
        RolloutConfig(propagation="mean", num_particles=4)
    with pytest.raises(ValueError, match="optimism"):
        RolloutConfig(optimism=-1.0)
    with pytest.raises(ValueError, match="pessimism"):
        RolloutConfig(pessimism=-1.0)
    with pytest.raises(ValueError, match="multiple of the ensemble size"):
        rollout(KEY, double_integrator(num_members=5), RolloutConfig("ts1", 4), OBS0, ACTIONS)


def test_state_bound_keeps_a_diverging_model_finite_and_inside_the_datas_box():
    """A model that extrapolates without bound (Δs = 3·s + 1, members disagreeing in proportion to |s|) overflows
    within 100 imagined steps; with state_bound the imagined states stay in mean ± bound·std of its data and the
    information gain stays finite (the soft_arm failure of issue #31, reduced to its mechanism)."""
    from saferl.planning import ModelFns

    def predict(obs, action):
        spread = jp.array([0.5, 1.5]).reshape((2,) + (1,) * obs.ndim)  # two members: ±50 % around the mean
        delta = spread * (3.0 * obs + 1.0)
        zero = jp.zeros((*obs.shape[:-1], 2))[None].repeat(2, axis=0)
        mean = jp.concatenate([delta, zero], -1)
        return mean, jp.full_like(mean, 0.01)

    mean, std = jp.array([0.5, -1.0]), jp.array([0.2, 2.0])
    model = ModelFns(predict, predict, 2, jp.ones(4), mean, std)
    actions = jp.zeros((3, 100, 1))
    start = jp.array([0.4, 0.0])
    free = rollout(KEY, model, RolloutConfig("mean", 1, track_uncertainty=True), start, actions)
    assert not np.isfinite(np.asarray(free.info_gain)).all()  # without a bound the states overflow
    bounded = rollout(KEY, model, RolloutConfig("mean", 1, track_uncertainty=True, state_bound=5.0), start, actions)
    obs = np.asarray(bounded.obs)
    assert np.isfinite(np.asarray(bounded.info_gain)).all() and np.isfinite(obs).all()
    low, high = np.asarray(mean - 5.0 * std), np.asarray(mean + 5.0 * std)
    assert (obs[:, :, 1:] >= low - 1e-5).all() and (obs[:, :, 1:] <= high + 1e-5).all()
    np.testing.assert_allclose(obs[:, :, -1], np.broadcast_to(high, obs[:, :, -1].shape), rtol=1e-6)  # at the edge
    with pytest.raises(ValueError, match="state_bound"):
        RolloutConfig(state_bound=-1.0)
    with pytest.raises(ValueError, match="obs_mean"):
        rollout(KEY, ModelFns(predict, predict, 2), RolloutConfig("mean", 1, state_bound=5.0), start, actions)


def test_information_gain_weighting_sums_averages_or_weighs_every_group_alike():
    """Three Δobs outputs, members disagreeing by σ_epi = 1, 2, 3 with σ_ale = 1: per output ½·log(1 + σ²_epi);
    groups {0, 1} and {2}: 'groups' gives each group half the weight, split over its outputs."""
    from saferl.planning import ModelFns

    spread = jp.array([1.0, 2.0, 3.0, 0.0, 0.0])  # [Δobs 3, reward, cost]

    def predict(obs, action):
        sign = jp.array([-1.0, 1.0]).reshape((2,) + (1,) * obs.ndim)
        mean = sign * jp.broadcast_to(spread, (*obs.shape[:-1], 5))
        return mean, jp.ones_like(mean)

    per_output = 0.5 * np.log1p(np.array([1.0, 4.0, 9.0]))
    expected = {
        "sum": per_output.sum(),
        "mean": per_output.mean(),
        "groups": 0.5 * per_output[:2].mean() + 0.5 * per_output[2],
    }
    model = ModelFns(predict, predict, 2, obs_groups=jp.array([0, 0, 1]))
    for weighting, value in expected.items():
        config = RolloutConfig("mean", 1, track_uncertainty=True, gain_weighting=weighting)
        traj = rollout(KEY, model, config, jp.zeros(3), jp.zeros((1, 2, 1)))
        np.testing.assert_allclose(traj.info_gain, value, rtol=1e-5, err_msg=weighting)
    ungrouped = rollout(
        KEY,
        ModelFns(predict, predict, 2),
        RolloutConfig("mean", 1, track_uncertainty=True, gain_weighting="groups"),
        jp.zeros(3),
        jp.zeros((1, 2, 1)),
    )
    np.testing.assert_allclose(ungrouped.info_gain, per_output.mean(), rtol=1e-5)  # no groups: the mean
    with pytest.raises(ValueError, match="gain_weighting"):
        RolloutConfig(gain_weighting="max")


def test_observation_group_ids_follow_the_envs_groups():
    import envs
    from saferl.agents.pets.policy import observation_group_ids

    assert observation_group_ids(envs.make("pendulum"), 3) is None
    fish = envs.make("soft_fish")
    ids = observation_group_ids(fish, 13)
    assert ids == (0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4)
