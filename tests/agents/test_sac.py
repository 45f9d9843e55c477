"""SAC: train-stop-resume equals an uninterrupted run bit for bit (replay buffer with costs, optimisers,
cost critic, constraint multipliers, RNG restored); recorded transitions (`--data`) prefill the replay buffer;
the loaded policy exposes its critics; training runs on the project's env stack (fresh layouts per episode)
and on the physics of the env it is given (no cached closure of the nominal env)."""

import pathlib
import shutil
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "training"))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "data"))
from recording_files import write_episode
from tiny_configs import ENV_TINY, SAC_CHUNK, SAC_TINY
from tiny_runs import copy_run

import envs
from saferl import constraints
from saferl.agents import sac
from saferl.config import apply_overrides
from saferl.policies import load_policy
from saferl.training.restore import restore_run_state
from saferl.training.run import train

CONSTRAINED = {
    **SAC_TINY,
    "constraint.kind": "augmented_lagrangian",
    "constraint.penalty": 0.1,
    "constraint.penalty_growth": 0.01,
    "constraint.update_every": 4,
}


def _state(run_dir):
    return restore_run_state(run_dir, sac.make_train_init).state


def _equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


@pytest.mark.slow
def test_sac_resumed_run_equals_uninterrupted_run_bit_for_bit_with_cost_critic_and_multiplier(tmp_path):
    kwargs = dict(
        overrides=CONSTRAINED,
        env_overrides={**ENV_TINY, "cost_budget": 1.0, "randomization.mass_scale": [0.8, 1.2]},
        out=tmp_path / "full",
        progress=False,
    )
    # 3 chunks: learning starts after min_replay_size=64 steps, so the resumed part does gradient updates
    full = train("sac", "pendulum", steps=3 * SAC_CHUNK, **kwargs)
    part = copy_run(full.run_dir, tmp_path)
    shutil.rmtree(part / "checkpoints" / str(3 * SAC_CHUNK))  # its checkpoint after 2 chunks is the last
    resumed = train(None, None, steps=3 * SAC_CHUNK, resume=part, progress=False)
    a, b = _state(full.run_dir), _state(resumed.run_dir)
    assert _equal(a, b)  # everything: params, both critics, λ, penalty, buffer, env states (with their physics)
    assert (full.run_dir / "metrics.csv").read_text() == (resumed.run_dir / "metrics.csv").read_text()
    assert float(resumed.metrics["critic_loss"]) > 0 and float(resumed.metrics["cost_critic_loss"]) >= 0
    assert float(a.constraint.penalty) > 0.1  # the augmented Lagrangian's penalty grew with every λ step
    header = (full.run_dir / "metrics.csv").read_text().splitlines()[0]
    for logged in ("lagrange_multiplier", "penalty", "cost_critic_loss", "cost_estimate", "measured_cost"):
        assert logged in header
    # the default constraint_signal is the measured cost: the handler's violation is it minus half the budget
    target = 0.5 * constraints.discounted_budget(1.0, ENV_TINY["episode_length"], 0.97)
    m = resumed.metrics
    assert np.isclose(float(m["constraint_violation"]), float(m["measured_cost"]) - target, atol=1e-5)
    assert not np.isclose(float(m["cost_estimate"]), float(m["measured_cost"]), atol=1e-3)


@pytest.mark.slow
def test_critic_constraint_signal_steps_the_multiplier_on_the_cost_critics_estimate(tmp_path):
    overrides = {**SAC_TINY, "constraint.kind": "lagrangian", "constraint_signal": "critic"}
    run = train(
        "sac",
        "pendulum",
        steps=2 * SAC_CHUNK,
        overrides=overrides,
        env_overrides={**ENV_TINY, "cost_budget": 1.0},
        out=tmp_path,
        progress=False,
    )
    target = 0.5 * constraints.discounted_budget(1.0, ENV_TINY["episode_length"], 0.97)
    m = run.metrics
    assert np.isclose(float(m["constraint_violation"]), float(m["cost_estimate"]) - target, atol=1e-5)


@pytest.mark.slow
def test_loaded_sac_policy_has_reward_and_cost_critics_and_an_episode_carry(tmp_path):
    run = train(
        "sac", "pendulum", steps=2 * SAC_CHUNK, overrides=SAC_TINY, env_overrides=ENV_TINY, out=tmp_path, progress=False
    )
    policy = load_policy(run.run_dir)
    obs, action = np.zeros((5, 3), np.float32), np.zeros((5, 1), np.float32)
    assert policy.reward_value(obs, action).shape == (5,)
    assert policy.cost_value(obs, action).shape == (5,)
    carry = policy.init_carry()
    actions, carry_after = policy.act(carry, obs, jax.random.PRNGKey(0))
    assert actions.shape == (5, 1) and float(np.abs(actions).max()) <= 1.0
    assert float(carry_after.cost_spent) == 0.0  # the executor, not the policy, adds observed costs


@pytest.mark.slow
def test_recorded_transitions_prefill_the_replay_buffer_and_normaliser(tmp_path):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(101, 3)).astype(np.float32)
    write_episode(tmp_path / "rec", 0, obs, rng.uniform(-1, 1, (100, 1)), done=[0] * 99 + [1])
    result = train(
        "sac",
        "pendulum",
        steps=SAC_CHUNK,
        overrides=SAC_TINY,
        env_overrides=ENV_TINY,
        out=tmp_path / "runs",
        data=tmp_path / "rec",
        progress=False,
    )
    state = _state(result.run_dir)
    assert int(state.buffer.size) == 100 + SAC_CHUNK  # recorded first, then the chunk's steps
    assert int(state.normalizer.count.to_numpy()) == 100 + SAC_CHUNK
    np.testing.assert_allclose(np.asarray(state.buffer.data.obs)[:100], obs[:-1])
    np.testing.assert_allclose(np.asarray(state.buffer.data.next_obs)[:100], obs[1:])
    # the recorded done may be a time limit; its next_obs is the true one, so it is stored as one (bootstrap)
    assert float(np.asarray(state.buffer.data.done)[:100].max()) == 0.0
    # learning started at once (100 stored ≥ min_replay_size 64), so the temperature moved in the first chunk
    assert float(result.metrics["alpha"]) != 1.0


def _one_chunk(env, config, seed=0):
    init, chunk = sac.make_train(config, env)
    start = init(jax.random.PRNGKey(seed))
    return start, chunk(start)[0]


@pytest.mark.slow
def test_training_draws_a_new_point_goal_layout_every_episode_inside_the_run():
    # brax's training.wrap restored each env's first layout forever; our stack resets afresh per episode
    env = envs.make("point_goal", episode_length=8)
    # 12 iterations of 4 envs: every env ended one 8-step episode and is 4 steps into the next
    config = apply_overrides(sac.SACConfig(), {**SAC_TINY, "min_replay_size": 1024, "iterations_per_chunk": 12})
    start, after = _one_chunk(env, config)
    hazards = lambda s: np.asarray(s.env_state.info["hazards"])  # noqa: E731  [envs, n_hazards, 2]
    for i in range(config.num_envs):
        assert not np.allclose(hazards(start)[i], hazards(after)[i])  # each env has a new layout
    data = after.buffer.data
    assert int(after.buffer.size) == 12 * 4 and float(np.asarray(data.done).sum()) == 0.0  # time limits ≠ ends
    # the step that ended an episode stores its own last observation, not the next episode's first one
    ended = 7 * config.num_envs + np.arange(config.num_envs)  # rows of iteration 8 (the 8th step)
    np.testing.assert_allclose(
        np.asarray(data.next_obs)[ended - config.num_envs], np.asarray(data.obs)[ended]
    )  # consecutive steps chain before the end
    assert not np.allclose(np.asarray(data.next_obs)[ended], np.asarray(data.obs)[ended + config.num_envs])
    # the first reward of an episode is progress from the new layout's start, not the jump between the old
    # episode's goal distance and the new one's (what brax's auto-reset gave): |progress| ≤ speed·dt ≈ 0.02 m
    progress = np.asarray(data.reward)
    progress = progress[progress < 0.5]  # reaching a goal adds a bonus of 1
    assert np.abs(progress).max() < 0.1


@pytest.mark.slow
def test_training_on_a_shifted_env_uses_the_shifted_physics():
    config = apply_overrides(sac.SACConfig(), {**SAC_TINY, "min_replay_size": 1024})  # random actions only
    nominal = envs.make("pendulum", **ENV_TINY)
    heavy = envs.dynamics_shift("pendulum", gravity_scale=2.0, **ENV_TINY)  # same class and config
    _, a = _one_chunk(nominal, config)
    _, b = _one_chunk(heavy, config)
    _, a_again = _one_chunk(nominal, config)
    assert _equal(a.buffer.data, a_again.buffer.data)  # same physics and key: same data
    assert not np.allclose(np.asarray(a.buffer.data.next_obs), np.asarray(b.buffer.data.next_obs))
    assert sac.make_train(config, nominal) is not sac.make_train(config, heavy)
