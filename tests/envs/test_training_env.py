"""The training world (`envs/training_env.py`): config validation, dynamics-shift presets, the wrapped training
stack (per-episode randomisation, fresh layouts, final_obs, obs noise, action delay), the evaluation stack and
the physics fingerprint. One compiled rollout of the wrapped point_goal stack serves most checks."""

import dataclasses
import itertools
import json

import jax
import jax.numpy as jp
import numpy as np
import pytest

import envs
from envs import ShiftConfig, TrainingEnvConfig
from envs.wrappers import DomainRandomizationConfig

# ---- config --------------------------------------------------------------------------------------------


def test_default_world_is_nominal_and_configs_are_hashable():
    world = TrainingEnvConfig()
    assert not world.randomized and world.shift.is_identity and world.obs_noise_std == 0 and world.action_delay == 0
    shifted = TrainingEnvConfig(shift=ShiftConfig(preset="heavy_pole", body_mass_scale={"pole": 1.5, "cart": 1.2}))
    assert shifted.shift.body_mass_scale == (("cart", 1.2), ("pole", 1.5))  # dict -> sorted pairs
    same = TrainingEnvConfig(shift=ShiftConfig(preset="heavy_pole", body_mass_scale=(("pole", 1.5), ("cart", 1.2))))
    assert hash(shifted) == hash(same) and shifted == same and shifted != world
    assert not shifted.shift.is_identity and not ShiftConfig(gravity_scale=0.9).is_identity
    assert TrainingEnvConfig(randomization=DomainRandomizationConfig(mass_scale=(0.9, 1.1))).randomized


def test_world_round_trips_through_json():
    world = TrainingEnvConfig(
        randomization=DomainRandomizationConfig(mass_scale=(0.5, 1.5)),
        obs_noise_std=0.01,
        action_delay=2,
        shift=ShiftConfig(preset="weak_motor", body_mass_scale={"pole": 2.0}),
    )
    data = json.loads(json.dumps(dataclasses.asdict(world)))  # ranges and pairs come back as lists
    rebuilt = TrainingEnvConfig(
        randomization=data["randomization"],
        obs_noise_std=data["obs_noise_std"],
        action_delay=data["action_delay"],
        shift=data["shift"],
    )
    assert rebuilt == world and hash(rebuilt) == hash(world)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(obs_noise_std=-0.1), "obs_noise_std must be a finite number >= 0"),
        (dict(obs_noise_std=float("nan")), "obs_noise_std"),
        (dict(action_delay=-1), r"action_delay must be an integer >= 0 \(env steps\), got -1"),
        (dict(action_delay=1.5), "action_delay"),
        (dict(randomization=DomainRandomizationConfig.off()), None),
        (dict(randomization={"mass_scale": (1.2, 0.8)}), r"mass_scale must satisfy 0 < low <= high"),
        (dict(shift={"mass_scale": 0.0}), "shift.mass_scale must be a finite number > 0, got 0.0"),
        (dict(shift={"body_mass_scale": {"pole": -1.0}}), r"shift.body_mass_scale\['pole'\] must be"),
        (dict(shift={"presett": "heavy_pole"}), r"unknown shift key\(s\) \['presett'\]; valid keys: preset, "),
    ],
)
def test_world_validation_names_field_value_and_range(fields, message):
    if message is None:
        TrainingEnvConfig(**fields)  # explicit all-(1, 1) ranges are valid (randomisation off)
        return
    with pytest.raises(ValueError, match=message):
        TrainingEnvConfig(**fields)


# ---- dynamics shift: presets and fingerprint -------------------------------------------------------------


def test_heavy_pole_preset_scales_the_pole_in_mj_model_and_mjx_sys():
    nominal = envs.make("safe_cartpole")
    heavy = envs.make_training_env("safe_cartpole", None, TrainingEnvConfig(shift=ShiftConfig(preset="heavy_pole")))
    pole = nominal.mj_model.body("pole").id
    factor = envs.shift_presets("safe_cartpole")["heavy_pole"]["body_mass_scale"]["pole"]
    assert 1.5 <= factor <= 2.0
    assert heavy.mj_model.body_mass[pole] == pytest.approx(factor * nominal.mj_model.body_mass[pole])
    assert float(heavy.sys.body_mass[pole]) == pytest.approx(factor * nominal.mj_model.body_mass[pole], rel=1e-6)
    np.testing.assert_allclose(heavy.sys.body_inertia[pole], factor * nominal.mj_model.body_inertia[pole], rtol=1e-6)
    assert heavy.mj_model.body_mass[nominal.mj_model.body("cart").id] == pytest.approx(1.0)  # the cart is untouched
    # explicit factors multiply the preset's; env overrides still apply
    both = envs.make_training_env(
        "safe_cartpole",
        {"cost_bound": 0.5},
        TrainingEnvConfig(
            shift=ShiftConfig(preset="heavy_pole", body_mass_scale={"pole": 1.1}, actuator_gain_scale=0.8)
        ),
    )
    assert both.mj_model.body_mass[pole] == pytest.approx(1.1 * factor * 0.1)
    assert both.mj_model.actuator_gainprm[0, 0] == pytest.approx(0.8 * nominal.mj_model.actuator_gainprm[0, 0])
    assert both.config.cost_bound == 0.5
    # the identity world gives the unchanged env
    plain = envs.make_training_env("safe_cartpole", nominal.config, TrainingEnvConfig())
    assert envs.physics_fingerprint(plain) == envs.physics_fingerprint(nominal)


@pytest.mark.parametrize("name", ["safe_cartpole", "point_goal", "pendulum"])
def test_every_preset_changes_the_physics(name):
    presets = envs.shift_presets(name)
    expected = {
        "safe_cartpole": {"heavy_pole", "weak_motor"},
        "point_goal": {"heavy_robot", "low_friction"},
        "pendulum": {"heavy_pole"},
    }[name]
    assert expected <= set(presets)
    nominal = envs.physics_fingerprint(envs.make(name))
    fingerprints = {
        envs.physics_fingerprint(
            envs.make_training_env(name, None, TrainingEnvConfig(shift=ShiftConfig(preset=preset)))
        )
        for preset in presets
    }
    assert nominal not in fingerprints and len(fingerprints) == len(presets)


def test_unknown_preset_or_env_is_a_clear_env_error():
    world = TrainingEnvConfig(shift=ShiftConfig(preset="heavy_robot"))
    with pytest.raises(
        envs.EnvError,
        match="unknown shift preset 'heavy_robot' for env 'safe_cartpole'; presets: heavy_pole, weak_motor",
    ):
        envs.make_training_env("safe_cartpole", None, world)
    with pytest.raises(envs.EnvError, match="available envs"):
        envs.shift_presets("cartpole")
    with pytest.raises(envs.EnvError, match="bodies of this env: cart, pole"):
        envs.make_training_env(
            "safe_cartpole", None, TrainingEnvConfig(shift=ShiftConfig(body_mass_scale={"robot": 2.0}))
        )


def test_physics_fingerprint_separates_shift_variants_and_matches_equal_physics():
    nominal, again = envs.make("safe_cartpole"), envs.make("safe_cartpole")
    heavy = envs.dynamics_shift("safe_cartpole", body_mass_scale={"pole": 1.5})
    heavy_again = envs.dynamics_shift("safe_cartpole", body_mass_scale={"pole": 1.5})
    heavier = envs.dynamics_shift("safe_cartpole", body_mass_scale={"pole": 1.6})
    assert type(heavy) is type(nominal) and heavy.config == nominal.config  # only the physics differs
    fingerprint = envs.physics_fingerprint
    assert fingerprint(nominal) == fingerprint(again) and fingerprint(heavy) == fingerprint(heavy_again)
    assert len({fingerprint(nominal), fingerprint(heavy), fingerprint(heavier)}) == 3
    assert fingerprint(envs.make("safe_cartpole", cost_bound=0.3)) != fingerprint(nominal)  # config counts too
    assert fingerprint(envs.wrap_training_env(heavy, envs.TrainingEnvConfig(), 2)) == fingerprint(
        heavy
    )  # of the base env
    nominal.set_mj_model(heavy.mj_model)  # the cache follows the model
    assert fingerprint(nominal) == fingerprint(heavy)


# ---- the wrapped stacks --------------------------------------------------------------------------------------

RANGES = dict(
    mass_scale=(0.5, 1.5), friction_scale=(0.8, 1.2), damping_scale=(0.5, 2.0), actuator_gain_scale=(0.8, 1.2)
)
WORLD = TrainingEnvConfig(randomization=DomainRandomizationConfig(**RANGES), obs_noise_std=0.05, action_delay=1)
EPISODE, NUM_ENVS, T = 4, 3, 10  # done after steps 4 and 8: states 0, 4, 8 start episodes


@pytest.fixture(scope="module")
def rollout():
    """One jitted rollout of the randomised, noisy, delayed point_goal training stack:
    (base env, wrapped env, actions [T, B, 2], states [T + 1, B, ...] including the reset state)."""
    env = envs.make_training_env("point_goal", {"episode_length": EPISODE}, WORLD)
    wrapped = envs.wrap_training_env(env, WORLD, NUM_ENVS)
    actions = jax.random.uniform(jax.random.PRNGKey(1), (T, NUM_ENVS, env.action_size), minval=-1, maxval=1)

    @jax.jit
    def run(key, actions):
        first = wrapped.reset(key)

        def step(state, action):
            state = wrapped.step(state, action)
            return state, state

        _, states = jax.lax.scan(step, first, actions)
        return jax.tree.map(lambda a, b: jp.concatenate([a[None], b]), first, states)

    states = run(jax.random.PRNGKey(0), actions)
    return env, wrapped, actions, states


def _at(states, t):
    return jax.tree.map(lambda leaf: leaf[t], states)


@pytest.mark.slow
def test_training_stack_is_batched_and_time_limited(rollout):
    env, _, _, states = rollout
    assert states.obs.shape == (T + 1, NUM_ENVS, env.observation_size)
    done = np.asarray(states.done)
    np.testing.assert_array_equal(np.flatnonzero(done[:, 0]), [4, 8])
    assert (done == done[:, :1]).all() and (np.asarray(states.info["truncation"])[[4, 8]] == 1).all()


@pytest.mark.slow
def test_each_episode_gets_new_in_range_physics(rollout):
    env, _, _, states = rollout
    nominal = env.mj_model
    mass = np.asarray(states.info["randomization"]["body_mass"])  # [T + 1, B, nbody]
    has_mass = nominal.body_mass > 0
    ratio = mass[:, :, has_mass] / nominal.body_mass[has_mass]
    assert ((ratio >= 0.5 - 1e-6) & (ratio <= 1.5 + 1e-6)).all()
    damping = np.asarray(states.info["randomization"]["dof_damping"]) / nominal.dof_damping
    assert ((damping >= 0.5 - 1e-6) & (damping <= 2.0 + 1e-6)).all()
    episodes = [mass[0:4], mass[4:8], mass[8:]]
    for masses in episodes:
        np.testing.assert_array_equal(masses, masses[:1].repeat(len(masses), 0))  # fixed within an episode
    for before, after in itertools.pairwise(episodes):
        assert (np.abs(after[0] - before[0])[:, has_mass] > 1e-4).all()  # every env, every body: new draw
    assert len({float(m) for m in mass[0, :, 1]}) == NUM_ENVS  # and per env


def test_hazard_layouts_change_between_episodes(rollout):
    _, _, _, states = rollout
    hazards = np.asarray(states.info["hazards"])  # [T + 1, B, n_hazards, 2]
    for start, end in [(0, 4), (4, 8), (8, T + 1)]:
        assert (hazards[start:end] == hazards[start]).all()
    assert (np.abs(hazards[4] - hazards[0]).max(axis=(-1, -2)) > 1e-3).all()
    assert (np.abs(hazards[8] - hazards[4]).max(axis=(-1, -2)) > 1e-3).all()


@pytest.mark.slow
def test_final_obs_is_the_pre_reset_observation_and_steps_use_the_episode_physics(rollout):
    _, wrapped, actions, states = rollout
    final_obs, obs = np.asarray(states.info["final_obs"]), np.asarray(states.obs)
    not_done = [t for t in range(T + 1) if t not in (4, 8)]
    np.testing.assert_array_equal(final_obs[not_done], obs[not_done])  # the reset state included
    inner_step = jax.jit(wrapped.env.step)  # the stack below the auto-reset
    for t in (4, 8):
        reached = inner_step(_at(states, t - 1), actions[t - 1])
        np.testing.assert_allclose(final_obs[t], reached.obs, atol=1e-5)  # same ops, maybe fused differently
        assert np.abs(final_obs[t] - obs[t]).max() > 1e-2  # obs is the fresh reset's
    # the recorded physics is what the step used: nominal fields give another next state
    before = _at(states, 2)
    sys = wrapped.unwrapped.sys
    nominal_fields = {
        name: jp.broadcast_to(getattr(sys, name), value.shape) for name, value in before.info["randomization"].items()
    }
    as_nominal = before.replace(info={**before.info, "randomization": nominal_fields})
    qvel = inner_step(before, actions[2]).pipeline_state.qvel
    qvel_nominal = inner_step(as_nominal, actions[2]).pipeline_state.qvel
    np.testing.assert_allclose(qvel, states.pipeline_state.qvel[3], atol=1e-5)
    assert np.abs(np.asarray(qvel - qvel_nominal)).max() > 1e-4


@pytest.mark.slow
def test_observation_noise_is_applied_with_the_requested_std(rollout):
    env, _, _, states = rollout
    clean = jax.jit(jax.vmap(jax.vmap(env._observe)))(states.pipeline_state, states.info)
    noise = np.asarray(states.obs - clean)  # [T + 1, B, obs]: 11 · 3 · 35 ≈ 1150 samples
    assert abs(noise.std() / WORLD.obs_noise_std - 1) < 0.15  # sampling error of the std ≈ 2 %
    assert abs(noise.mean()) < 4 * WORLD.obs_noise_std / np.sqrt(noise.size)


def test_actions_act_one_step_late(rollout):
    _, _, actions, states = rollout
    ctrl = np.asarray(states.pipeline_state.ctrl)  # [T + 1, B, 2]; point_goal's ctrl = action
    for t in (1, 5, 9):  # first step of an episode: the delay queue is still empty
        np.testing.assert_array_equal(ctrl[t], 0.0)
    for t in (2, 3, 6, 7, 10):
        np.testing.assert_allclose(ctrl[t], actions[t - 2], atol=1e-6)


def test_nominal_world_stack_has_no_randomization_and_final_obs_from_reset():
    env = envs.make("pendulum")
    wrapped = envs.wrap_training_env(env, TrainingEnvConfig(), 4)
    state = jax.eval_shape(wrapped.reset, jax.random.PRNGKey(0))  # tracing only
    assert "randomization" not in state.info and "action_queue" not in state.info
    assert state.info["final_obs"].shape == state.obs.shape == (4, 3)
    stepped = jax.eval_shape(wrapped.step, state, jp.zeros((4, 1)))
    assert jax.tree.structure(stepped) == jax.tree.structure(state)  # scan-compatible carry


def test_evaluation_env_is_unbatched_with_delay_and_noise_and_no_auto_reset():
    world = TrainingEnvConfig(randomization=DomainRandomizationConfig(**RANGES), obs_noise_std=0.1, action_delay=2)
    env = envs.wrap_evaluation_env(envs.make("pendulum"), world)
    state = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
    assert state.obs.shape == (3,) and state.info["action_queue"].shape == (2, 1)
    assert not {"randomization", "final_obs", "steps", "episode_metrics"} & set(state.info)
    nominal = envs.make("pendulum")
    assert envs.wrap_evaluation_env(nominal, TrainingEnvConfig()) is nominal  # nothing to add
