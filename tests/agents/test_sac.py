"""SAC: train-stop-resume equals an uninterrupted run bit for bit (replay buffer, optimiser, RNG restored), and
recorded transitions (`--data`) prefill the replay buffer and the observation normaliser."""

import pathlib
import shutil
import sys

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "training"))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "data"))
from recording_files import write_episode  # noqa: E402
from tiny_configs import ENV_TINY, SAC_CHUNK, SAC_TINY  # noqa: E402
from tiny_runs import copy_run  # noqa: E402

from saferl.agents import sac  # noqa: E402
from saferl.policies import load_policy  # noqa: E402
from saferl.policies.modelfree import restore_run_state  # noqa: E402
from saferl.training.run import train  # noqa: E402


def _state(run_dir):
    return restore_run_state(run_dir, lambda c, e: sac.make_train(c, e)[0])[-1]


def test_sac_resumed_run_equals_uninterrupted_run_bit_for_bit(tmp_path):
    kwargs = dict(overrides=SAC_TINY, env_overrides=ENV_TINY, out=tmp_path / "full", progress=False)
    # 3 chunks: learning starts after min_replay_size=64 steps, so the resumed part does gradient updates
    full = train("sac", "pendulum", steps=3 * SAC_CHUNK, **kwargs)
    part = copy_run(full.run_dir, tmp_path)
    shutil.rmtree(part / "checkpoints" / str(3 * SAC_CHUNK))  # its checkpoint after 2 chunks is the last
    resumed = train(None, None, steps=3 * SAC_CHUNK, resume=part, progress=False)
    a, b = load_policy(full.run_dir), load_policy(resumed.run_dir)
    assert all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a.params, b.params)))
    assert (full.run_dir / "metrics.csv").read_text() == (resumed.run_dir / "metrics.csv").read_text()
    assert float(resumed.metrics["critic_loss"]) > 0  # gradient updates happened after the resume
    assert float(np.abs(a.act(np.zeros((8, 3), np.float32), jax.random.PRNGKey(0))).max()) <= 1.0


def test_recorded_transitions_prefill_the_replay_buffer_and_normaliser(tmp_path):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(101, 3)).astype(np.float32)
    write_episode(tmp_path / "rec", 0, obs, rng.uniform(-1, 1, (100, 1)), done=[0] * 99 + [1])
    result = train("sac", "pendulum", steps=SAC_CHUNK, overrides=SAC_TINY, env_overrides=ENV_TINY,
                   out=tmp_path / "runs", data=tmp_path / "rec", progress=False)
    state = _state(result.run_dir)
    assert int(state.buffer.insert_position) == 100 + SAC_CHUNK  # recorded first, then the chunk's steps
    assert int(state.normalizer.count.to_numpy()) == 100 + SAC_CHUNK
    stored = jax.tree.map(lambda x: np.asarray(x)[:100], sac._replay_buffer(
        sac.SACConfig(**{**SAC_TINY, "hidden_sizes": (16,)}), 3, 1)._unflatten_fn(state.buffer.data))
    np.testing.assert_allclose(stored.observation, obs[:-1])
    np.testing.assert_allclose(stored.next_observation, obs[1:])
    # the recorded done (maybe a time limit) ends bootstrapping and is masked out of the critic loss
    assert stored.discount[-1] == 0.0 and stored.extras["state_extras"]["truncation"][-1] == 1.0
    assert stored.discount[:-1].min() == 1.0
    # learning started at once (100 stored ≥ min_replay_size 64), so the temperature moved in the first chunk
    assert float(result.metrics["alpha"]) != 1.0
