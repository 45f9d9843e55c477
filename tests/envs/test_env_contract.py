"""Contract test over every registered env: jit + vmap(16) reset/step for 200 random steps under lax.scan,
through the stack every trainer steps (`envs.wrap_training_env` of the nominal training world, as PPO and SAC
build it; episodes of `EPISODE` steps, so 2 per env, each ended by the auto-reset), and the native twin
(`envs.native.NativeTwin`, plain `mujoco.mj_step`) replaying one row's first episode of that same rollout, so each
env's MJX program is compiled once for both. Sized for CI's 2 cores: the ultrasound envs (10 physics substeps
per step) took ~17 min at 64 x 1000 for the three rollouts; soft_arm's setup (≈ 80 s) is nearly all XLA compile,
≈ 1.5 s per 16 x 200 rollout."""

import jax
import numpy as np
import pytest

import envs
from envs.native import NativeTwin

BATCH, STEPS, EPISODE = 16, 200, 100


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
                qpos=state.pipeline_state.qpos,  # after an auto-reset: the fresh episode's
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
OBSERVED_COST = {"safe_cartpole", "soft_fish", "soft_arm", "muscle_leg", "walker"}


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


# envs whose random-action episodes are chaotic, with the steps over which float32 MJX and float64 native MuJoCo can
# agree to 1e-3: walker flails and falls under random actions, and a 1e-6 change of one joint angle grows past 1e-3
# within 27-73 steps in native float64 alone (measured: 6 action seeds x 6 settings, MuJoCo's default solver, 2.5 ms
# steps, 10x damping or 5x armature included), so only the start of the episode is compared; all of it is checked
# for shape and the time limit
PREDICTABLE_STEPS = {"walker": 25}


def test_native_twin_replays_the_first_episode_of_a_rollout_row(rollout, request):
    """Native `mujoco.mj_step` (what `saferl-deploy sim` steps) agrees with MJX: the twin, reset with the key row 0
    of the rollout was reset with, replays that row's random actions over its first episode."""
    env, _, initial, _, traj = rollout
    compared = PREDICTABLE_STEPS.get(request.node.callspec.params["rollout"], EPISODE)
    twin = NativeTwin(env)
    reset_key = jax.random.split(jax.random.split(jax.random.PRNGKey(0))[0], BATCH)[0]  # as `rollout` splits it
    np.testing.assert_allclose(twin.reset(key=reset_key), initial[0], rtol=0, atol=1e-6)
    native, qpos = [], []
    for action in traj["action"][:EPISODE, 0]:
        native.append(twin.step(action))
        qpos.append(twin.mj_data.qpos.copy())
    # float32 MJX vs float64 native over 100 Euler steps: measured ≤ 1e-5; 1e-3 leaves room for
    # platform differences while a wrong ctrl map, substep count or formula gives errors ≥ 1e-2.
    reached = traj["final_obs"][:compared, 0]  # the obs each step reached (the last one's before the auto-reset)
    np.testing.assert_allclose(np.stack([n[0] for n in native[:compared]]), reached, atol=1e-3)
    np.testing.assert_allclose([n[1] for n in native[:compared]], traj["reward"][:compared, 0], atol=1e-3)
    np.testing.assert_array_equal([n[2] for n in native[:compared]], traj["cost"][:compared, 0])
    assert [n[3] for n in native] == [False] * (EPISODE - 1) + [True]  # done at the time limit only
    last = min(compared, EPISODE - 1)  # the last step's qpos is the fresh episode's
    np.testing.assert_allclose(qpos[:last], traj["qpos"][:last, 0], atol=1e-3)
    assert twin.state_vector().shape == (env.mj_model.nq + env.mj_model.nv,)


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
