"""point_goal: layout, lidar, goal reaching and resampling, hazard cost, actuation along the heading."""

import jax
import jax.numpy as jp
import numpy as np
import pytest

import envs
from envs.safety.point_goal import lidar


@pytest.fixture(scope="module")
def env():
    return envs.make("point_goal")


def _place(env, state, xy, heading=0.0):
    qpos = jp.array([xy[0], xy[1], heading], jp.float32)
    data = jax.jit(env.pipeline_init)(qpos, jp.zeros(3))
    return state.replace(pipeline_state=data)


def test_random_layouts_never_overlap_and_change_per_episode(env):
    cfg = env.config
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), 256))
    hazards, goal = np.asarray(states.info["hazards"]), np.asarray(states.info["goal"])
    robot = np.asarray(states.pipeline_state.qpos[:, :2])
    pairwise = np.linalg.norm(hazards[:, :, None] - hazards[:, None], axis=-1)
    pairwise[:, np.arange(8), np.arange(8)] = np.inf
    assert pairwise.min() >= 2 * cfg.hazard_radius - 1e-5
    assert np.linalg.norm(hazards - robot[:, None], axis=-1).min() >= 2 * cfg.hazard_radius - 1e-5
    assert np.linalg.norm(hazards - goal[:, None], axis=-1).min() >= 2 * cfg.hazard_radius - 1e-5
    assert (np.abs(hazards) <= cfg.arena_half_size).all()
    assert len(np.unique(hazards[:, 0, 0])) == 256
    assert np.asarray(states.info["cost"]).sum() == 0


def test_lidar_puts_objects_in_the_bins_of_their_bearing():
    ahead = np.asarray(lidar(jp.zeros(2), jp.array(0.0), jp.array([[1.0, 0.0]]), 16, 1.0))
    assert ahead[0] == pytest.approx(np.exp(-1.0), rel=1e-5) and ahead[1:].max() == 0
    left = np.asarray(lidar(jp.zeros(2), jp.array(0.0), jp.array([[0.0, 2.0]]), 16, 1.0))
    assert left[4] == pytest.approx(np.exp(-2.0), rel=1e-4)  # +90° = bin 16/4
    turned = np.asarray(lidar(jp.zeros(2), jp.array(np.pi / 2), jp.array([[0.0, 2.0]]), 16, 1.0))
    assert turned[0] == pytest.approx(np.exp(-2.0), rel=1e-4)  # egocentric: now straight ahead
    between = np.asarray(
        lidar(jp.zeros(2), jp.array(0.0), jp.array([[np.cos(np.pi / 16), np.sin(np.pi / 16)]]), 16, 1.0)
    )
    np.testing.assert_allclose(between[:2], [0.5 * np.exp(-1), 0.5 * np.exp(-1)], rtol=1e-4)


def test_reaching_the_goal_pays_the_bonus_and_draws_a_new_clear_goal(env):
    state = jax.jit(env.reset)(jax.random.PRNGKey(4))
    goal = np.asarray(state.info["goal"])
    near = _place(env, state, goal + np.array([0.05, 0.0]))
    near = near.replace(info={**near.info, "goal_dist": jp.linalg.norm(near.pipeline_state.qpos[:2] - goal)})
    after = jax.jit(env.step)(near, jp.zeros(2))
    assert float(after.reward) == pytest.approx(env.config.goal_bonus, abs=0.05)
    new_goal = np.asarray(after.info["goal"])
    assert np.linalg.norm(new_goal - goal) > env.config.goal_radius
    assert np.linalg.norm(np.asarray(after.info["hazards"]) - new_goal, axis=-1).min() > 2 * env.config.hazard_radius
    assert float(after.info["goal_dist"]) == pytest.approx(np.linalg.norm(new_goal - goal - [0.05, 0]), abs=0.02)


@pytest.mark.slow
def test_cost_is_one_inside_a_hazard_and_zero_outside(env):
    state = jax.jit(env.reset)(jax.random.PRNGKey(5))
    hazard = np.asarray(state.info["hazards"][0])
    inside = jax.jit(env.step)(_place(env, state, hazard), jp.zeros(2))
    assert float(inside.info["cost"]) == 1.0 and float(inside.metrics["cost"]) == 1.0
    outside = jax.jit(env.step)(
        _place(env, state, hazard + np.array([env.config.hazard_radius + 0.05, 0])), jp.zeros(2)
    )
    assert float(outside.info["cost"]) == 0.0


def test_forward_action_drives_along_the_heading_and_turn_action_rotates(env):
    state = _place(env, jax.jit(env.reset)(jax.random.PRNGKey(6)), np.zeros(2), heading=np.pi / 2)

    def run(action):
        def step(s, _):
            return env.step(s, action), None

        return jax.lax.scan(step, state, None, 50)[0].pipeline_state.qpos

    forward = np.asarray(jax.jit(run)(jp.array([1.0, 0.0])))
    assert forward[1] > 0.5 and abs(forward[0]) < 1e-3  # 1 s at ≤ 1 m/s along +y (heading 90°)
    turned = np.asarray(jax.jit(run)(jp.array([0.0, 1.0])))
    assert turned[2] - np.pi / 2 > 1.0 and np.abs(turned[:2]).max() < 1e-3
