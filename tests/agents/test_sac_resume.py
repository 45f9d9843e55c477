"""SAC: train-stop-resume equals an uninterrupted run bit for bit (replay buffer, optimiser, RNG restored)."""

import pathlib
import sys

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "training"))
from tiny_configs import ENV_TINY, SAC_CHUNK, SAC_TINY  # noqa: E402

from saferl.policies import load_policy  # noqa: E402
from saferl.training.run import train  # noqa: E402


def test_sac_resumed_run_equals_uninterrupted_run_bit_for_bit(tmp_path):
    kwargs = dict(overrides=SAC_TINY, env_overrides=ENV_TINY, out=tmp_path, progress=False)
    # 3 chunks: learning starts after min_replay_size=64 steps, so the resumed part does gradient updates
    full = train("sac", "pendulum", steps=3 * SAC_CHUNK, **kwargs)
    part = train("sac", "pendulum", steps=SAC_CHUNK * 2, **kwargs)
    resumed = train(None, None, steps=3 * SAC_CHUNK, resume=part.run_dir, progress=False)
    a, b = load_policy(full.run_dir), load_policy(resumed.run_dir)
    assert all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a.params, b.params)))
    assert (full.run_dir / "metrics.csv").read_text() == (resumed.run_dir / "metrics.csv").read_text()
    assert float(resumed.metrics["critic_loss"]) > 0  # gradient updates happened after the resume
    assert float(np.abs(a.act(np.zeros((8, 3), np.float32), jax.random.PRNGKey(0))).max()) <= 1.0
