"""Ultrasound probe tasks (envs/ultrasound/probe.py, navigate.py, coverage.py, surgery.py): MJX contact force,
force and tilt cost, navigation success, coverage as marginal gain, the surgery critical zone, pixel observations,
config errors. Small phantoms (8 cm cube) and 16 × 16 images; one compiled rollout per env, each running a batch of
scripted scenarios (servo targets held for a number of steps)."""

import jax
import jax.numpy as jp
import numpy as np
import pytest

import envs

SMALL = dict(phantom_shape=(32, 32, 32), image_height=16, image_width=16)
STEPS = 30  # env steps per scenario phase (3 s): the servos settle within ≈ 1 s


def actions_for(env, targets):
    """Servo targets [..., nu] (m, rad) → actions in [-1, 1] (the env's affine ctrlrange map)."""
    low, high = env.mj_model.actuator_ctrlrange.T
    return np.clip(2.0 * (np.asarray(targets) - low) / (high - low) - 1.0, -1.0, 1.0).astype(np.float32)


def rollout_fn(env):
    """jit(keys [B], actions [B, T, nu]) → (per-step outputs [B, T, ...], final states [B])."""

    def one(key, actions):
        def step(state, action):
            state = env.step(state, action)
            return state, dict(
                obs=state.obs,
                reward=state.reward,
                cost=state.info["cost"],
                metrics=state.metrics,
                force=env.contact_force(state.pipeline_state),
                done=state.done,
            )

        first = env.reset(key)
        final, out = jax.lax.scan(step, first, actions)
        return dict(out, first_obs=first.obs), final

    return jax.jit(jax.vmap(one))


def run(env, fn, targets, seed=0):
    targets = np.asarray(targets, np.float32)
    keys = jax.random.split(jax.random.PRNGKey(seed), targets.shape[0])
    out, final = fn(keys, jp.asarray(actions_for(env, targets)))
    return jax.tree.map(np.asarray, out), final


def hold(pose, steps=STEPS):
    """A servo target [nu] held for `steps` steps → [steps, nu]."""
    return np.repeat(np.asarray(pose, np.float32)[None], steps, axis=0)


# ---- us_navigate (pixels mode: the image and the state vector in one compile) ---------------------------------
PRESS_Z = (0.01, -0.005, -0.011, -0.02, -0.04)  # servo z targets (m): hover, then deeper commanded indentation


@pytest.fixture(scope="module")
def navigate():
    env = envs.make("us_navigate", observation="pixels", **SMALL)
    x, y, _ = env.target_position
    roll = env.target_roll
    poses = [[x, y, z, 0.0, 0.0, roll] for z in PRESS_Z]
    poses += [
        [x, y, 0.01, 0.6, 0.0, roll],  # tilted 0.6 rad > tilt_limit, hovering
        [x, y, 0.01, 0.0, 0.4, roll],  # tilted 0.4 rad < tilt_limit
        [x + 0.02, y, -0.011, 0.0, 0.0, roll],
    ]  # pressing lightly 2 cm off the target
    targets = np.stack([hold(p) for p in poses])
    fn = rollout_fn(env)
    out, final = run(env, fn, targets)
    return env, out, final, (fn, targets)


def test_navigate_observation_is_the_declared_dict_of_image_and_state(navigate):
    env, out, _, _ = navigate
    assert env.observation_size == {"image": (16, 16, 1), "state": (25,)}
    assert out["obs"]["image"].shape == (8, STEPS, 16, 16, 1) and out["obs"]["state"].shape == (8, STEPS, 25)
    assert out["first_obs"]["image"].dtype == np.float32 and out["obs"]["state"].dtype == np.float32
    assert np.isfinite(out["obs"]["state"]).all() and (out["done"] == 0).all()
    state_env = envs.make("us_navigate", **SMALL)  # state mode: a flat vector, no image
    assert state_env.observation_size == 25


def test_image_only_in_contact(navigate):
    _, out, _, _ = navigate
    image = out["obs"]["image"][:, -1]
    assert (out["first_obs"]["image"] == 0).all()  # episodes start above the skin
    assert (image[0] == 0).all()  # hovering 1 cm above the skin
    assert image[2].mean() > 0.05 and image[2].std() > 0.02  # pressing: tissue and speckle
    assert ((image >= 0) & (image <= 1)).all()


def test_contact_force_is_mjx_constraint_force_rising_with_commanded_indentation(navigate):
    _env, out, final, _ = navigate
    force = out["force"][: len(PRESS_Z), -1]
    assert force[0] == 0.0  # no contact
    assert (np.diff(force) > 1.0).all(), force  # deeper servo target → more force (N)
    # the touch sensor is the sum of the contact rows' constraint forces (condim 1: one row per contact)
    data = final.pipeline_state
    address = np.asarray(data._impl.contact.efc_address)  # [contacts] (static across the batch)
    efc = np.asarray(data._impl.efc_force)  # [B, rows]
    from_rows = np.where(address >= 0, efc[:, np.maximum(address, 0)], 0.0).sum(axis=1)
    np.testing.assert_allclose(np.asarray(data.sensordata[:, 0]), from_rows, rtol=1e-5, atol=1e-5)
    # a compliant skin: force / indentation ≈ constant (≈ 2.8 kN/m), indentation by millimetres
    depth = -np.asarray(data.xpos[: len(PRESS_Z), 1, 2])
    stiffness = force[1:] / depth[1:]
    assert (depth[1:] > 0.001).all() and (depth[1:] < 0.015).all(), depth
    assert np.ptp(stiffness) / stiffness.mean() < 0.1 and 1500 < stiffness.mean() < 5000, stiffness


def test_force_cost_fires_only_when_pressing_too_hard(navigate):
    env, out, _, _ = navigate
    force, cost = out["force"][: len(PRESS_Z), -1], out["cost"][: len(PRESS_Z), -1]
    assert force[-1] > env.config.force_limit and cost[-1] == 1.0  # 40 mm commanded: ≈ 29 N
    assert (force[:-1] < env.config.force_limit).all() and (cost[:-1] == 0.0).all()  # light contact: no cost
    assert (out["cost"] >= 0).all()


def test_tilt_cost_fires_beyond_the_tilt_limit(navigate):
    _, out, _, _ = navigate
    assert out["cost"][5, -1] == 1.0 and out["force"][5, -1] == 0.0  # 0.6 rad, no contact
    assert out["cost"][6, -1] == 0.0  # 0.4 rad


def test_navigate_success_at_the_target_pose_only(navigate):
    _env, out, _, _ = navigate
    success = out["metrics"]["success"][:, -1]
    # face depth 0 (hover), 1.3, 2.9, 5.3, 10.6 mm vs the target's 3 mm; tilted; 2 cm off
    np.testing.assert_array_equal(success, [0, 1, 1, 1, 0, 0, 0, 0])
    assert out["reward"][2, -1] > 0.9  # at the target: bonus 1, pose error < 0.1
    assert out["reward"][7, -1] < out["reward"][2, -1] - 0.9  # 2 cm off: no bonus and −0.4 for the distance
    state = out["obs"]["state"][2, -1]
    assert np.abs(state[16:19]).max() < 0.005  # target − face position (m)
    np.testing.assert_allclose(state[19:], [1, 0, 0, 0, 1, 0], atol=0.02)  # relative orientation ≈ identity


def test_navigate_is_deterministic_per_seed(navigate):
    env, out, _, (fn, targets) = navigate
    again, _ = run(env, fn, targets, seed=0)
    for key in ("image", "state"):
        np.testing.assert_array_equal(again["obs"][key], out["obs"][key])
    other, _ = run(env, fn, targets, seed=1)
    assert not np.allclose(other["first_obs"]["state"], out["first_obs"]["state"])
    starts = out["first_obs"]["state"]
    assert (starts[:, 2] > 0).all() and len(np.unique(starts[:, 0])) == 8  # above the skin, 8 distinct starts


# ---- us_coverage --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coverage():
    env = envs.make("us_coverage", **SMALL)
    cx, cy, _ = np.asarray(env.phantom.organ_center)
    pose_a = [cx, cy, -0.015, 0.0, 0.0, 0.0]
    pose_b = [cx, cy, -0.015, 0.0, 0.0, 1.2]  # the same spot, image plane rotated by 1.2 rad
    hover = [cx, cy, 0.01, 0.0, 0.0, 1.2]
    targets = np.stack(
        [
            np.concatenate([hold(pose_a), hold(pose_b)]),
            np.concatenate([hold(pose_a), hold(pose_a)]),
            np.concatenate([hold(hover), hold(hover)]),
        ]
    )
    out, final = run(env, rollout_fn(env), targets)
    return env, out, final


def test_coverage_reward_is_the_marginal_gain_of_newly_covered_organ_cells(coverage):
    env, out, final = coverage
    new = out["metrics"]["new_cells"]
    covered = np.asarray(final.info["covered"]).reshape(3, -1).sum(axis=1)
    np.testing.assert_array_equal(new.sum(axis=1), covered)  # every covered cell was counted exactly once
    assert covered[1] > 10  # one image plane through the organ covers a slice of its cells
    # imaging the same pose again adds nothing: once the probe rests, no new cells
    assert (new[1, STEPS // 2 :] == 0).all()
    # a new pose adds cells (rotated plane through the same centre)
    assert new[0, STEPS:].sum() > 10 and covered[0] > covered[1]
    # reward = 0.01 × new cells − path penalty (≤ 0): their difference is the path penalty alone
    path_term = out["reward"] - env.config.coverage_reward * new
    assert (path_term <= 1e-6).all()
    resting = out["reward"][1, STEPS // 2 :]
    assert np.abs(resting).max() < 1e-3  # resting: no new cells and (almost) no path
    obs = out["obs"][:, -1]
    np.testing.assert_allclose(obs[:, -1], covered / env.num_organ_cells, rtol=1e-6)  # covered fraction


def test_coverage_needs_contact(coverage):
    _, out, final = coverage
    assert out["force"][2].max() == 0.0
    assert not np.asarray(final.info["covered"][2]).any() and (out["metrics"]["new_cells"][2] == 0).all()
    assert (out["reward"][2] <= 0).all()


# ---- us_surgery ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def surgery():
    env = envs.make("us_surgery", **SMALL)
    entry, target = np.asarray(env.phantom.entry), np.asarray(env.phantom.target)
    axis = np.asarray(env.phantom.corridor_axis)
    assert abs(axis[2] + 1) < 1e-6  # the abdomen's corridor is vertical (entry straight above the rib)
    face_z = -0.003  # a light press: the face rests ≈ 3 mm deep
    depth = face_z - target[2]  # insertion that puts the tip on the target
    place = [entry[0], entry[1], -0.011, 0.0, 0.0, 0.0, 0.0]
    off = [entry[0] + 0.01, entry[1], -0.011, 0.0, 0.0, 0.0, 0.0]  # 1 cm off the corridor
    targets = np.stack(
        [np.concatenate([hold(place), hold([*place[:6], depth])]), np.concatenate([hold(off), hold([*off[:6], depth])])]
    )
    out, final = run(env, rollout_fn(env), targets)
    return env, out, final, depth


def test_surgery_reaches_the_target_along_the_corridor_without_critical_cost(surgery):
    env, out, _final, depth = surgery
    assert env.action_size == 7 and env.observation_size == 28
    assert 0.01 < depth < env.config.max_insertion
    obs = out["obs"][0, -1]
    assert np.linalg.norm(obs[19:22]) < env.config.success_radius  # target − tip (m)
    assert out["metrics"]["success"][0, -1] == 1.0 and (out["metrics"]["critical"][0] == 0).all()
    assert (out["cost"][0] == 0).all()
    # progress reward telescopes: Σ reward = 100 × (start distance − end distance) + bonus × reached steps
    first_distance = np.linalg.norm(out["first_obs"][0, 19:22])
    expected = (
        env.config.progress_scale * (first_distance - np.linalg.norm(obs[19:22]))
        + out["metrics"]["success"][0].sum() * env.config.success_bonus
    )
    np.testing.assert_allclose(out["reward"][0].sum(), expected, rtol=1e-3)


def test_surgery_critical_zone_costs_off_the_corridor(surgery):
    _env, out, _, _ = surgery
    assert out["metrics"]["critical"][1, -1] == 1.0 and out["cost"][1, -1] >= 1.0
    assert (out["metrics"]["critical"][1, :STEPS] == 0).all()  # before insertion the tip stays at the skin
    assert out["metrics"]["success"][1].sum() == 0
    assert abs(out["obs"][1, -1, 25] - 0.01) < 0.002  # tip distance to the corridor line (m)


# ---- config errors ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("us_navigate", dict(observation="rgb"), "observation must be one of"),
        ("us_navigate", dict(force_limit=-1.0), "force_limit must be a number > 0"),
        ("us_navigate", dict(tilt_limit=2.0), "tilt_limit must be in"),
        ("us_navigate", dict(phantom_preset="foot"), "preset must be one of"),
        ("us_navigate", dict(phantom_shape=(16, 16, 16)), "must span at least"),
        ("us_navigate", dict(image_height=4), "height must be an integer in"),
        ("us_navigate", dict(tissue_timeconst=0.01), "tissue_timeconst must be >= 2 · sim_dt"),
        ("us_navigate", dict(start_height=(0.02, 0.01)), "start_height must be"),
        ("us_navigate", dict(start_height=(0.02,)), "start_height must be"),
        ("us_coverage", dict(coverage_grid=1), "coverage_grid must be an integer in"),
        ("us_surgery", dict(corridor_radius=0.05), "corridor_radius"),
    ],
)
def test_bad_config_raises_a_clear_error(name, overrides, message):
    with pytest.raises(envs.EnvError, match=message):
        envs.make_config(name, **overrides)


def _settled_force(env, z_target: float = -0.01, steps: int = 400) -> float:
    """Contact force (N) after holding the mount vertical with its z target `z_target` m (native MuJoCo)."""
    import mujoco

    model = env.mj_model
    data = mujoco.MjData(model)
    data.ctrl[:] = 0.0
    data.ctrl[2] = z_target
    for _ in range(steps):
        mujoco.mj_step(model, data)
    return float(data.sensordata[0])


def test_stiff_mount_preset_presses_harder_for_the_same_command():
    world = lambda preset: envs.TrainingEnvConfig(shift=envs.ShiftConfig(preset=preset))  # noqa: E731
    assert set(envs.shift_presets("us_navigate")) == {"stiff_mount", "heavy_mount"}
    nominal = _settled_force(envs.make_training_env("us_navigate", None, world("")))
    stiff = _settled_force(envs.make_training_env("us_navigate", None, world("stiff_mount")))
    assert 5.0 < nominal < 10.0 and 1.25 < stiff / nominal < 1.6
    heavy = envs.make_training_env("us_navigate", None, world("heavy_mount"))
    assert envs.physics_fingerprint(heavy) != envs.physics_fingerprint(envs.make("us_navigate"))
