"""point_goal's `goal_clearance`: every goal (the first and each redrawn one) keeps its reach disc that far from
every hazard's edge, so no goal can be reached only through a hazard; 0 keeps the old rule."""

from __future__ import annotations

import jax
import jax.numpy as jp
import numpy as np
import pytest

import envs


def test_goals_keep_the_clearance_from_every_hazard():
    env = envs.make("point_goal", goal_clearance=0.1)
    cfg = env.config
    keep_out = cfg.hazard_radius + cfg.goal_radius + cfg.goal_clearance
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), 256))
    hazards, goal = np.asarray(states.info["hazards"]), np.asarray(states.info["goal"])
    assert np.linalg.norm(hazards - goal[:, None], axis=-1).min() > keep_out - 1e-5
    redrawn = jax.jit(jax.vmap(env._new_goal))(
        jax.random.split(jax.random.PRNGKey(1), 256), jp.zeros((256, 2)), states.info["hazards"]
    )
    assert np.linalg.norm(hazards - np.asarray(redrawn)[:, None], axis=-1).min() > keep_out - 1e-5
    assert np.linalg.norm(np.asarray(redrawn), axis=-1).min() > 2 * cfg.goal_radius  # away from the robot (origin)


def test_without_clearance_goals_may_overlap_a_hazard_disc():
    """The default (every run before the option): goal centres only 2 hazard radii from hazard centres."""
    env = envs.make("point_goal")
    cfg = env.config
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), 256))
    redrawn = jax.jit(jax.vmap(env._new_goal))(
        jax.random.split(jax.random.PRNGKey(1), 256), jp.zeros((256, 2)), states.info["hazards"]
    )
    distance = np.linalg.norm(np.asarray(states.info["hazards"]) - np.asarray(redrawn)[:, None], axis=-1).min(-1)
    assert distance.min() > 2 * cfg.hazard_radius - 1e-5
    assert (distance < cfg.hazard_radius + cfg.goal_radius).mean() > 0.1  # many goal discs overlap a hazard


def test_goal_clearance_is_validated():
    with pytest.raises(ValueError, match="goal_clearance"):
        envs.make("point_goal", goal_clearance=-0.1)
