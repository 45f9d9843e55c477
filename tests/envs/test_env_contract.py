"""Contract test over every registered env: jit + vmap(16) reset/step for 200 random steps under lax.scan,
through the stack every trainer steps (`envs.wrap_training_env` of the nominal training world, as PPO and SAC
build it; episodes of `EPISODE` steps, so 4 per env, each ended by the auto-reset). Sized for CI's 2
cores: the ultrasound envs (10 physics substeps per step) took ~17 min at 64 x 1000 for the three rollouts;
soft_arm's setup (≈ 150 s) is nearly all XLA compile, ≈ 1.5 s per 16 x 200 rollout."""

import jax
import numpy as np
import pytest

import envs

BATCH, STEPS, EPISODE = 16, 200, 50


def _rollout_fn(env):
    wrapped = envs.wrap_training_env(env, envs.TrainingEnvConfig(), BATCH)

    @jax.jit
    def rollout(key):
        reset_key, action_key = jax.random.split(key)
        state = wrapped.reset(jax.random.split(reset_key, BATCH))

        def step(state, key):
            action = jax.random.uniform(key, (BATCH, env.action_size), minval=-1.0, maxval=1.0)
            state = wrapped.step(state, action)
            out = dict(
                obs=state.obs,
                action=action,
                reward=state.reward,
                cost=state.info["cost"],
                done=state.done,
                steps=state.info["steps"],
                length=state.info["episode_metrics"]["length"],
                truncation=state.info["truncation"],
                final_obs=state.info["final_obs"],
            )
            return state, out

        final, traj = jax.lax.scan(step, state, jax.random.split(action_key, STEPS))
        return final, dict(traj, initial_obs=state.obs)  # the reset's obs too: no second trace of reset

    return wrapped, rollout


@pytest.fixture(scope="module", params=envs.names())
def rollout(request):
    env = envs.make(request.param, episode_length=EPISODE)
    _wrapped, rollout_fn = _rollout_fn(env)
    final, traj = rollout_fn(jax.random.PRNGKey(0))
    traj = jax.tree.map(np.asarray, traj)
    return env, rollout_fn, traj.pop("initial_obs"), final, traj


def test_rollout_has_contract_shapes_finite_values_and_nonnegative_cost(rollout):
    env, _, initial, _, traj = rollout
    assert initial.shape == (BATCH, env.observation_size) and initial.dtype == np.float32  # the reset's obs
    assert traj["obs"].shape == (STEPS, BATCH, env.observation_size)
    assert traj["reward"].shape == traj["cost"].shape == traj["done"].shape == (STEPS, BATCH)
    for key in ("obs", "reward", "cost"):
        assert np.isfinite(traj[key]).all(), key
        assert traj[key].dtype == np.float32, key
    assert (traj["cost"] >= 0).all()
    assert env.action_size >= 1 and env.cost_budget >= 0
    assert isinstance(env.cost_description, str) and env.cost_description


# envs whose cost is a function of the observed transition (`env.transition_cost`); the others' costs need state
# the observation does not show (point_goal's hazard layout, the ultrasound contact force)
OBSERVED_COST = {"safe_cartpole", "soft_fish", "soft_arm", "muscle_leg"}


def test_transition_cost_equals_the_steps_cost_on_every_real_transition(rollout, request):
    env, _, initial, _, traj = rollout
    if request.node.callspec.params["rollout"] not in OBSERVED_COST:
        assert env.transition_cost is None
        return
    previous = np.concatenate([initial[None], traj["obs"][:-1]])  # after an auto-reset: the new episode's first obs
    arrived = np.where(traj["done"][..., None] > 0, traj["final_obs"], traj["obs"])  # the obs the step reached
    cost = np.asarray(env.transition_cost(previous, traj["action"], arrived))
    np.testing.assert_array_equal(cost, traj["cost"])
    assert env.transition_cost is env.transition_cost  # built once per instance (compiled planners are reused)


def test_rollout_is_deterministic_for_a_fixed_key(rollout):
    _, rollout_fn, _, _, traj = rollout
    _, again = rollout_fn(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(traj["obs"], np.asarray(again["obs"]))
    np.testing.assert_array_equal(traj["cost"], np.asarray(again["cost"]))
    _, other = rollout_fn(jax.random.PRNGKey(1))
    assert not np.array_equal(traj["obs"], np.asarray(other["obs"]))


def test_auto_reset_ends_episodes_at_the_time_limit_and_starts_fresh_ones(rollout):
    _env, _, _, _, traj = rollout
    done_steps = np.nonzero(traj["done"].all(axis=1))[0] + 1  # 1-based env step of each episode end
    np.testing.assert_array_equal(done_steps, np.arange(EPISODE, STEPS + 1, EPISODE))
    assert (traj["done"].sum(axis=0) == STEPS // EPISODE).all()  # no other terminations (no blow-ups)
    ends = done_steps - 1
    np.testing.assert_array_equal(traj["length"][ends], EPISODE)
    assert (traj["truncation"][ends] == 1).all()
    assert (traj["steps"][ends] == 0).all()  # the state after a done is a fresh reset
    # the obs after the reset differs from the obs one step before it (a new episode began)
    assert not np.allclose(traj["obs"][ends], traj["obs"][ends - 1])
    assert (traj["steps"][ends[0] + 1] == 1).all()
    # what learners store as the next observation: the obs the step reached, before the reset
    within = ~traj["done"].astype(bool)
    np.testing.assert_array_equal(traj["final_obs"][within], traj["obs"][within])
    assert not np.allclose(traj["final_obs"][ends], traj["obs"][ends])
