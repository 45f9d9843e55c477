"""The Gymnasium face (`envs.to_gymnasium`): Gymnasium's env checker, a random policy that gives the MJX env's own
observations, rewards and costs on the same seeds (single and vector env, across an episode boundary), the
Safety-Gymnasium step signature, dict observations as `spaces.Dict`, rendering and clear errors.

One short safe_cartpole config throughout (its programs are compiled once and shared by every face of it), with
a cost band narrow enough that a random policy pays some cost within an episode."""

import pathlib
import sys
import warnings

import jax
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "agents"))
from dict_obs_env import GRID, PixelPoint

import envs
from envs.registry import _REGISTRY, register
from envs.render import RenderError

ENV = "safe_cartpole"
EPISODE = 12  # env steps per episode (0.24 s)
CONFIG = {"episode_length": EPISODE, "cost_bound": 0.02}  # m: a cart pushed right leaves the band within 0.1 s
# what check_env may say about these envs: unbounded observations (as Gymnasium's own MuJoCo envs) and no spec
# (the envs are not in Gymnasium's registry)
EXPECTED_WARNINGS = ("minimum value is -infinity", "maximum value is infinity", "not having a spec")


def random_actions(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """A random policy's actions [*shape], uniform in [-0.2, 1]: drifts right, so the cart leaves the band."""
    return np.random.default_rng(seed).uniform(-0.2, 1.0, shape).astype(np.float32)


@pytest.fixture(scope="module")
def mjx_rollout():
    """The reference, the MJX env itself without Gymnasium or wrappers: (key [2], actions [T, 1]) -> first obs
    [5], obs [T, 5], rewards [T], costs [T] and the final state's `info["rng"]` [2]."""
    env = envs.make(ENV, **CONFIG)

    def rollout(key, actions):
        first = env.reset(key)

        def step(state, action):
            state = env.step(state, action)
            return state, (state.obs, state.reward, state.info["cost"])

        final, (obs, rewards, costs) = jax.lax.scan(step, first, actions)
        return first.obs, obs, rewards, costs, final.info["rng"]

    return jax.jit(rollout)


@pytest.fixture(scope="module")
def gym_env():
    return envs.to_gymnasium(ENV, **CONFIG)


def _assert_same_episode(reference, first_obs, obs, rewards, costs):
    ref_first, ref_obs, ref_rewards, ref_costs, _ = reference
    # one jitted step per call vs. a scan of steps: XLA may fuse them differently, so float32 round-off only
    np.testing.assert_allclose(first_obs, ref_first, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(obs, ref_obs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rewards, ref_rewards, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(costs, ref_costs)  # 0/1 indicators, none within round-off of the band edge


def test_gymnasium_env_passes_the_env_checker(gym_env):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym_env)
    unexpected = [str(w.message) for w in caught if not any(text in str(w.message) for text in EXPECTED_WARNINGS)]
    assert not unexpected
    assert gym_env.observation_space == spaces.Box(-np.inf, np.inf, (5,), np.float32)
    assert gym_env.action_space == spaces.Box(-1.0, 1.0, (1,), np.float32)


def test_random_policy_gives_the_mjx_envs_costs_rewards_and_observations_on_the_same_seed(gym_env, mjx_rollout):
    actions = random_actions(0, (2 * EPISODE, 1))
    first_obs, _ = gym_env.reset(seed=7)
    steps = [gym_env.step(action) for action in actions[:EPISODE]]
    obs, rewards, terminated, truncated, infos = zip(*steps, strict=False)
    assert not any(terminated) and truncated == (False,) * (EPISODE - 1) + (True,)
    costs = [info["cost"] for info in infos]
    reference = mjx_rollout(jax.random.PRNGKey(7), actions[:EPISODE])
    _assert_same_episode(reference, first_obs, obs, rewards, costs)
    assert 0 < sum(costs) < EPISODE  # the comparison covers both cost values

    # an unseeded reset continues the chain with the key the auto-reset wrapper draws
    second_obs, _ = gym_env.reset()
    steps = [gym_env.step(action) for action in actions[EPISODE:]]
    obs, rewards, _, _, infos = zip(*steps, strict=False)
    next_key = jax.random.split(reference[-1])[1]
    _assert_same_episode(
        mjx_rollout(next_key, actions[EPISODE:]), second_obs, obs, rewards, [info["cost"] for info in infos]
    )


def test_seeded_resets_are_reproducible_and_seeds_differ(gym_env):
    first, _ = gym_env.reset(seed=3)
    again, _ = gym_env.reset(seed=3)
    other, _ = gym_env.reset(seed=4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_safety_gymnasium_signature_puts_the_cost_third(gym_env):
    safety_env = envs.to_gymnasium(ENV, safety_gym_signature=True, **CONFIG)
    safety_env.reset(seed=7)
    gym_env.reset(seed=7)
    action = np.ones(1, np.float32)
    for _ in range(6):  # the cart leaves the band (cost 1) within these steps
        obs, reward, cost, terminated, truncated, info = safety_env.step(action)
        plain_obs, plain_reward, _, _, plain_info = gym_env.step(action)
        assert isinstance(cost, float) and cost == info["cost"] == plain_info["cost"]
        assert reward == plain_reward and isinstance(terminated, bool) and isinstance(truncated, bool)
        np.testing.assert_array_equal(obs, plain_obs)
    assert cost == 1.0


@pytest.mark.slow  # 6-8 s with a warm cache on the loaded 2-core host (tracing the vmapped reset and step)
def test_vector_env_steps_every_env_as_the_mjx_env_and_auto_resets_on_the_same_step(mjx_rollout):
    num_envs, seed = 3, 5
    vector_env = envs.to_gymnasium(ENV, num_envs=num_envs, safety_gym_signature=True, **CONFIG)
    assert vector_env.observation_space.shape == (num_envs, 5) and vector_env.action_space.shape == (num_envs, 1)
    actions = random_actions(1, (2 * EPISODE, num_envs, 1))
    first_obs, _ = vector_env.reset(seed=seed)
    steps = [vector_env.step(action) for action in actions]
    obs, rewards, costs, terminated, truncated, infos = (
        np.stack(part) if i < 5 else part for i, part in enumerate(zip(*steps, strict=False))
    )
    assert obs.shape == (2 * EPISODE, num_envs, 5) and costs.shape == rewards.shape == (2 * EPISODE, num_envs)
    assert not terminated.any() and truncated[EPISODE - 1 :: EPISODE].all() and truncated.sum() == 2 * num_envs
    np.testing.assert_array_equal(costs, np.stack([info["cost"] for info in infos]))
    assert "final_obs" not in infos[0] and infos[EPISODE - 1]["_final_obs"].all()

    keys = jax.random.split(jax.random.PRNGKey(seed), num_envs)  # env i starts from the i-th key of the seed
    for i in range(num_envs):
        reference = mjx_rollout(keys[i], actions[:EPISODE, i])
        episode_obs = np.concatenate([obs[: EPISODE - 1, i], infos[EPISODE - 1]["final_obs"][i][None]])
        _assert_same_episode(reference, first_obs[i], episode_obs, rewards[:EPISODE, i], costs[:EPISODE, i])
        # the step that ended the episode returns the next episode's first observation (same-step auto-reset)
        next_episode = mjx_rollout(jax.random.split(reference[-1])[1], actions[EPISODE:, i])
        np.testing.assert_allclose(obs[EPISODE - 1, i], next_episode[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(obs[EPISODE:-1, i], next_episode[1][:-1], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(costs[EPISODE:, i], next_episode[3])


@pytest.fixture(scope="module")
def pixel_point_registered():
    """The test-only dict-observation env `pixel_point` in the registry for this module only."""
    register("pixel_point", PixelPoint)
    yield
    _REGISTRY.pop("pixel_point", None)


def test_dict_observations_become_a_dict_space_and_pass_the_checker(pixel_point_registered):
    env = envs.to_gymnasium("pixel_point", episode_length=5)
    assert env.observation_space == spaces.Dict(
        {
            "image": spaces.Box(-np.inf, np.inf, (GRID, GRID, 1), np.float32),
            "state": spaces.Box(-np.inf, np.inf, (2,), np.float32),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unbounded-space notes, as above
        check_env(env)
    obs, _ = env.reset(seed=0)
    assert obs["image"].dtype == np.float32 and obs in env.observation_space
    vector_space = envs.to_gymnasium("pixel_point", num_envs=4).observation_space  # built without compiling
    assert vector_space["image"].shape == (4, GRID, GRID, 1) and vector_space["state"].shape == (4, 2)


def test_render_draws_the_current_state_as_an_rgb_frame():
    env = envs.to_gymnasium(ENV, render_mode="rgb_array", **CONFIG)
    env.render_size = (48, 64)
    env.reset(seed=0)
    try:
        frame = env.render()
    except RenderError as err:
        pytest.skip(f"no OpenGL context on this machine: {err}")
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8 and frame.std() > 0
    assert env.metadata["render_fps"] == pytest.approx(50.0)  # 1 / ctrl_dt (0.02 s)


def test_bad_names_config_and_arguments_raise_clear_errors(gym_env):
    with pytest.raises(envs.EnvError, match=r"unknown env 'cartpol'; available envs: .*safe_cartpole"):
        envs.to_gymnasium("cartpol")
    with pytest.raises(envs.EnvError, match=r"unknown config key\(s\) \['cost_bund'\].*cost_bound"):
        envs.to_gymnasium(ENV, cost_bund=0.1)
    with pytest.raises(envs.EnvError, match="episode_length must be >= 1"):
        envs.to_gymnasium(ENV, episode_length=0)
    with pytest.raises(envs.EnvError, match="num_envs must be an integer >= 1"):
        envs.to_gymnasium(ENV, num_envs=0)
    with pytest.raises(envs.EnvError, match=r"render_mode must be one of \['rgb_array'\]"):
        envs.to_gymnasium(ENV, render_mode="human")
    gym_env.reset(seed=0)
    with pytest.raises(envs.EnvError, match=r"action must have shape \(1,\), got \(2,\)"):
        gym_env.step(np.zeros(2))
    for seed in (-1, 2**32, 1.5):  # JAX keys hold 32 bits of seed: larger seeds would collide
        with pytest.raises(envs.EnvError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
            gym_env.reset(seed=seed)
