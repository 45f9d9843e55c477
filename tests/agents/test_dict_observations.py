"""Dict observations {"image": [H, W, C], "state": [d]} through the stack: the CNN encoder, PPO/SAC networks and
normaliser, the wrappers, the replay buffer, checkpoints (resume bit for bit), loaded policies, ONNX export
(refused) and the model-based agents' state-only view, on the test-only env `pixel_point` (dict_obs_env.py)."""

import json
import pathlib
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "data"))
from dict_obs_env import GRID, PixelPoint

import envs
from envs import wrappers
from envs.registry import _REGISTRY, register
from saferl.agents.modelfree import pixel_networks
from saferl.agents.ppo import PPOConfig, make_networks
from saferl.config import apply_overrides
from saferl.data import buffer, observations
from saferl.errors import UserError

ENV = "pixel_point"
# tiny sizes: the point of most tests is shapes and plumbing; one compile of each trainer per module
PPO_TINY = {
    "num_envs": 4,
    "batch_size": 4,
    "num_minibatches": 2,
    "unroll_length": 6,
    "num_updates_per_batch": 1,
    "iterations_per_chunk": 2,
    "policy_hidden_sizes": [16],
    "value_hidden_sizes": [16],
    "encoder.channels": [4],
    "encoder.features": 8,
    "checkpoint_every": 192,
}
PPO_CHUNK = 4 * 2 * 6 * 2  # env steps per chunk
SAC_TINY = {
    "num_envs": 4,
    "batch_size": 8,
    "grad_updates_per_step": 1,
    "max_replay_size": 128,
    "min_replay_size": 16,
    "iterations_per_chunk": 8,
    "hidden_sizes": [16],
    "encoder.channels": [4],
    "encoder.features": 8,
}


@pytest.fixture(scope="module", autouse=True)
def pixel_point_registered():
    """`pixel_point` in the env registry for this module only (other modules iterate over every env)."""
    register(ENV, PixelPoint)
    yield
    _REGISTRY.pop(ENV, None)


@pytest.fixture(scope="module")
def env():
    return envs.make(ENV)


def _batch_obs(key, batch):
    image = jax.random.uniform(key, (batch, GRID, GRID, 1))
    return {"image": image, "state": jax.random.normal(jax.random.fold_in(key, 1), (batch, 2))}


# ---- encoder and networks ----------------------------------------------------------------------------------


def test_encoder_maps_images_with_any_leading_axes_to_features_through_strided_convs():
    config = pixel_networks.PixelEncoderConfig(channels=(8, 16), kernel_size=3, stride=2, features=32)
    encoder = pixel_networks.ImageEncoder(config)
    params = encoder.init(jax.random.PRNGKey(0), jnp.zeros((1, GRID, GRID, 1)))
    shapes = jax.tree.map(jnp.shape, params["params"])
    assert shapes["Conv_0"]["kernel"] == (3, 3, 1, 8) and shapes["Conv_1"]["kernel"] == (3, 3, 8, 16)
    assert shapes["Dense_0"]["kernel"] == (2 * 2 * 16, 32)  # 8x8 -> 4x4 -> 2x2 (stride 2, SAME), 16 channels
    images = jax.random.uniform(jax.random.PRNGKey(1), (5, 3, GRID, GRID, 1))
    features = encoder.apply(params, images)
    assert features.shape == (5, 3, 32) and encoder.apply(params, images[0, 0]).shape == (32,)
    # the same image gives the same features whatever axes surround it
    np.testing.assert_allclose(features[2, 1], encoder.apply(params, images[2, 1]), atol=1e-6)


def test_encoder_config_rejects_bad_sizes_naming_the_field():
    with pytest.raises(ValueError, match=r"encoder.channels"):
        pixel_networks.PixelEncoderConfig(channels=())
    with pytest.raises(ValueError, match=r"encoder.stride"):
        pixel_networks.PixelEncoderConfig(stride=0)
    with pytest.raises(UserError, match=r"encoder.features"):
        apply_overrides(PPOConfig(), {"encoder.features": -1})
    assert apply_overrides(PPOConfig(), {"encoder.channels": [4, 8]}).encoder.channels == (4, 8)


def test_malformed_dict_observation_sizes_are_user_errors():
    with pytest.raises(UserError, match="exactly the keys"):
        observations.shapes({"pixels": (8, 8, 1), "state": (2,)})
    with pytest.raises(UserError, match="observation_size\\['image'\\]"):
        observations.shapes({"image": (8, 8), "state": (2,)})
    assert observations.state_size({"image": (8, 8, 1), "state": (5,)}) == 5 and observations.state_size(7) == 7


def test_pixel_networks_use_image_and_state_and_normalise_only_the_state(env):
    config = apply_overrides(PPOConfig(), dict(PPO_TINY.items()))
    networks = make_networks(config, env.observation_size, env.action_size)
    params = networks.policy_network.init(jax.random.PRNGKey(0))
    normalizer = pixel_networks.init_normalizer(env.observation_size)
    assert normalizer.mean.shape == (2,)  # statistics of the state part only
    obs = _batch_obs(jax.random.PRNGKey(2), 6)
    normalizer = pixel_networks.update_normalizer(normalizer, obs)
    np.testing.assert_allclose(normalizer.mean, obs["state"].mean(0), atol=1e-5)
    logits = networks.policy_network.apply(normalizer, params, obs)
    assert logits.shape == (6, 2 * env.action_size)
    other_image = networks.policy_network.apply(normalizer, params, {**obs, "image": obs["image"][::-1]})
    other_state = networks.policy_network.apply(normalizer, params, {**obs, "state": obs["state"][::-1]})
    assert not np.allclose(logits, other_image) and not np.allclose(logits, other_state)
    value = networks.cost_value_network.apply(normalizer, networks.cost_value_network.init(jax.random.PRNGKey(1)), obs)
    assert value.shape == (6,)


# ---- wrappers ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_training_world_wrappers_keep_dict_observations_and_noise_only_the_state(env):
    world = envs.TrainingEnvConfig(obs_noise_std=0.5, action_delay=1, randomization={"mass_scale": (0.8, 1.2)})
    noisy = envs.wrap_training_env(env, world, num_envs=3)
    clean = envs.wrap_training_env(env, envs.TrainingEnvConfig(randomization={"mass_scale": (0.8, 1.2)}), num_envs=3)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    state, reference = jax.jit(noisy.reset)(keys), jax.jit(clean.reset)(keys)
    assert state.obs["image"].shape == (3, GRID, GRID, 1) and state.obs["state"].shape == (3, 2)
    # the same reset key gives the same point: the image is untouched, the state (velocity 0) got the noise
    np.testing.assert_array_equal(state.obs["image"], reference.obs["image"])
    np.testing.assert_array_equal(reference.obs["state"], 0.0)
    assert 0.2 < float(jnp.std(state.obs["state"])) < 1.0  # std 0.5 from 6 draws
    step = jax.jit(noisy.step)
    start_x = _centroid_x(state.obs["image"])
    for _ in range(env.episode_length):  # through one time limit: every env auto-resets
        state = step(state, jnp.full((3, 2), 0.1))  # terminal speed 0.1 m/s along +x and +y
    assert bool(state.info["episode_done"].all())
    # final_obs is where the episode went (≈ 0.25 m along +x); obs is already the next episode's start
    assert set(state.info["final_obs"]) == {"image", "state"}
    assert bool((_centroid_x(state.info["final_obs"]["image"]) > start_x + 0.1).all())
    assert not np.allclose(state.obs["image"], state.info["final_obs"]["image"])


def _centroid_x(image):
    """x (m) of the blob's intensity centroid in images [B, 8, 8, 1]."""
    weights = image[..., 0].sum(1)  # [B, W]
    centres = jnp.linspace(-1.0 + 1.0 / GRID, 1.0 - 1.0 / GRID, GRID)
    return (weights * centres).sum(-1) / weights.sum(-1)


def test_noise_action_repeat_and_the_episode_wrappers_run_on_dict_observations(env):
    repeated = wrappers.ActionRepeatWrapper(wrappers.ObservationNoiseWrapper(env, 0.1), 2)
    wrapped = wrappers.AutoResetWrapper(wrappers.EpisodeWrapper(wrappers.VmapWrapper(repeated, 2), 6, steps_per_call=2))
    state = jax.jit(wrapped.reset)(jax.random.PRNGKey(0))
    state = jax.jit(wrapped.step)(state, jnp.zeros((2, 2)))
    assert state.obs["image"].shape == (2, GRID, GRID, 1) and int(state.info["steps"][0]) == 2


@pytest.mark.slow
def test_state_observation_wrapper_gives_model_based_agents_the_state_vector(env):
    state_env = wrappers.StateObservationWrapper(env)
    assert state_env.observation_size == 2
    state = state_env.reset(jax.random.PRNGKey(0))
    state = state_env.step(state, jnp.ones(2))
    assert state.obs.shape == (2,) and float(state.obs[0]) > 0.0  # pushed along +x: vx > 0
    flat = envs.make(ENV, observation="state")
    assert wrappers.StateObservationWrapper(flat).observation_size == 4  # flat envs pass through


# ---- buffer ------------------------------------------------------------------------------------------------


def test_buffer_holds_dict_observations_and_saves_them_round_trip(env, tmp_path):
    example = buffer.example_transition(env.observation_size, env.action_size)
    assert example.obs["image"].shape == (GRID, GRID, 1)
    buf = buffer.init(5, example)
    obs = _batch_obs(jax.random.PRNGKey(0), 7)
    batch = buffer.Transition(
        obs=obs, action=jnp.zeros((7, 2)), next_obs=obs, reward=jnp.arange(7.0), cost=jnp.zeros(7), done=jnp.zeros(7)
    )
    buf = jax.jit(buffer.add)(buf, batch)
    assert int(buf.size) == 5
    sample = buffer.sample(buf, jax.random.PRNGKey(1), 16)
    rows = np.asarray(sample.reward, int)  # rows stay consistent across the dict's parts
    np.testing.assert_array_equal(sample.obs["image"], obs["image"][rows])
    back = buffer.restore(buffer.save(buf, tmp_path / "replay"))
    for a, b in zip(jax.tree.leaves(buf), jax.tree.leaves(back), strict=False):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(back) == jax.tree.structure(buf)
    with np.load(tmp_path / "replay.npz") as archive:
        assert {"data.obs.image", "data.obs.state", "data.next_obs.image", "data.reward"} <= set(archive.files)


# ---- trainers, checkpoints, policies -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ppo_runs(tmp_path_factory):
    """A PPO run of 4 tiny chunks on pixel_point, and a copy cut back to its checkpoint after 2 and resumed."""
    from saferl.training import rundir
    from saferl.training.run import train

    out = tmp_path_factory.mktemp("dict-ppo")
    full = train(
        "ppo", ENV, steps=4 * PPO_CHUNK, overrides=PPO_TINY, out=out / "full", seed=1, progress=False, tensorboard=False
    )
    half = pathlib.Path(shutil.copytree(full.run_dir, out / "half" / full.run_dir.name))
    shutil.rmtree(half / "checkpoints" / str(4 * PPO_CHUNK))
    config = json.loads((half / "config.json").read_text())
    (half / "config.json").write_text(json.dumps({**config, "steps": 2 * PPO_CHUNK}))
    assert rundir.checkpoint_steps(half) == [2 * PPO_CHUNK]
    resumed = train(None, None, steps=4 * PPO_CHUNK, resume=half, progress=False, tensorboard=False)
    return full, resumed


@pytest.mark.slow
def test_ppo_on_dict_observations_resumes_bit_for_bit(ppo_runs):
    from saferl.policies import load_policy

    full, resumed = ppo_runs
    a, b = load_policy(full.run_dir), load_policy(resumed.run_dir)
    same = jax.tree.map(lambda x, y: bool(np.array_equal(np.asarray(x), np.asarray(y))), a.params, b.params)
    assert all(jax.tree.leaves(same))
    assert (full.run_dir / "metrics.csv").read_text() == (resumed.run_dir / "metrics.csv").read_text()
    conv = a.params[1]["params"]["ImageEncoder_0"]["Conv_0"]["kernel"]
    assert conv.shape == (3, 3, 1, 4)  # the checkpoint holds the CNN encoder of the config


@pytest.mark.slow
def test_loaded_dict_policy_acts_on_dict_observations_and_cannot_be_exported_to_onnx(ppo_runs, tmp_path):
    from saferl.export.onnx import export_policy_onnx
    from saferl.policies import load_policy
    from saferl.policies.evaluate import evaluate
    from saferl.policies.worlds import evaluation_env, evaluation_world

    policy = load_policy(ppo_runs[0].run_dir)
    assert policy.observation_size == {"image": (GRID, GRID, 1), "state": (2,)}
    actions, _ = policy.act(policy.init_carry(), _batch_obs(jax.random.PRNGKey(0), 5), jax.random.PRNGKey(1))
    assert actions.shape == (5, 2) and float(jnp.abs(actions).max()) <= 1.0
    result = evaluate(policy, evaluation_env(policy, evaluation_world(policy)), episodes=2)
    assert np.isfinite(result["mean_return"]) and result["mean_return"] < 0.0  # reward −distance ≤ 0
    with pytest.raises(UserError, match="dict observations"):
        export_policy_onnx(policy, tmp_path / "policy.onnx")


@pytest.mark.slow
def test_sac_on_dict_observations_fills_its_buffer_with_images_and_learns_finite(env):
    from saferl.agents.sac import SACConfig, make_train

    config = apply_overrides(SACConfig(), SAC_TINY)
    init, train_chunk = make_train(config, env)
    state = init(jax.random.PRNGKey(0))
    for _ in range(3):  # 96 transitions: learning starts after 16
        state, metrics = train_chunk(state)
    assert state.buffer.data.obs["image"].shape == (128, GRID, GRID, 1) and int(state.buffer.size) == 96
    assert float(jnp.abs(state.buffer.data.next_obs["image"][:96]).sum()) > 0.0  # real images stored
    assert state.normalizer.mean.shape == (2,)
    assert all(np.isfinite(float(v)) for v in metrics.values()) and float(metrics["critic_loss"]) > 0.0
    # recordings (--data) hold flat vectors: SAC cannot put them into an image buffer and says so
    from saferl.agents.sac.train import prefill

    recorded = {k: np.zeros((4, 2), np.float32) for k in ("obs", "next_obs", "action")}
    recorded.update(reward=np.zeros(4, np.float32), cost=np.zeros(4, np.float32))
    with pytest.raises(UserError, match=r"sac --data: .*dicts"):
        prefill(config, state, recorded)


def test_recorded_data_of_a_dict_observation_env_is_checked_against_its_state_part(env, tmp_path):
    from recording_files import write_episode

    from saferl.training.run import _check_data_dir

    steps = 5
    write_episode(tmp_path / "ok", 0, np.zeros((steps + 1, 2)), np.zeros((steps, 2)))  # state part: 2 values
    assert _check_data_dir(tmp_path / "ok", env, ENV) == (tmp_path / "ok").resolve()
    write_episode(tmp_path / "bad", 0, np.zeros((steps + 1, 3)), np.zeros((steps, 2)))
    with pytest.raises(UserError):
        _check_data_dir(tmp_path / "bad", env, ENV)


@pytest.mark.slow
def test_ppo_pixel_policy_learns_to_reach_the_point_only_the_image_shows(env):
    from saferl.agents.ppo import make_train

    config = PPOConfig(
        num_envs=16,
        batch_size=16,
        num_minibatches=4,
        unroll_length=15,
        num_updates_per_batch=4,
        iterations_per_chunk=4,
        policy_hidden_sizes=(32, 32),
        value_hidden_sizes=(32, 32),
    )
    init, train_chunk = make_train(config, env)  # 3840 env steps per chunk
    state = init(jax.random.PRNGKey(0))
    returns = []
    for _ in range(5):
        state, metrics = train_chunk(state)
        returns.append(float(metrics["episode_return"]))
    # return = −Σ distance to the origin over 30 steps: the first chunk's near-random policy ≈ −19, a policy that
    # reads the blob's position from the image and drives to the origin −5.5 after 5 chunks and −4.1 after 10
    # (measured, seed 0); the state part (velocity) alone cannot tell where the origin is
    assert returns[-1] > -9.0 and returns[-1] > returns[0] + 6.0, returns


@pytest.mark.slow
def test_pets_models_the_state_part_of_dict_observations(env):
    from saferl.agents.pets import PETSConfig
    from saferl.agents.pets.agent import make_agent
    from saferl.agents.pets.policy import mpc_policy

    config = apply_overrides(
        PETSConfig(),
        {
            "model.num_members": 2,
            "model.num_elites": 2,
            "model.hidden_sizes": [8],
            "rollout.num_particles": 2,
            "buffer_capacity": 16,
        },
    )
    agent = make_agent(config, env)
    assert agent.obs_size == 2 and agent.env.observation_size == 2  # the velocity vector, no image
    state = agent.init(jax.random.PRNGKey(0))
    assert state.buffer.data.obs.shape == (16, 2) and state.buffer.data.next_obs.shape == (16, 2)
    env_state = agent.env.step(agent.env.reset(jax.random.PRNGKey(1)), jnp.ones(2))
    assert env_state.obs.shape == (2,)
    # a policy built on the raw dict env (as `saferl eval` does) also plans on the state part
    assert mpc_policy(config, state.model, env).observation_size == 2
