"""Writes recording directories in the format `hardware.recording.EpisodeRecorder.save` writes (for tests)."""

import json

import numpy as np


def write_episode(directory, index, obs, action, seq=None, reward=None, done=None, source=None):
    """An `episode_XXXX.npz` in the format `hardware.recording.EpisodeRecorder.save` writes."""
    steps = len(action)
    obs = np.asarray(obs, np.float32)
    arrays = {
        "obs": obs[:-1],
        "action": np.asarray(action, np.float32),
        "next_obs": obs[1:],
        "reward": np.arange(steps, dtype=np.float32) if reward is None else np.asarray(reward, np.float32),
        "cost": np.full(steps, 0.5, np.float32),
        "done": np.zeros(steps, np.float32) if done is None else np.asarray(done, np.float32),
        "source": np.zeros(steps, np.int8) if source is None else np.asarray(source, np.int8),
        "seq": np.arange(steps, dtype=np.int64) if seq is None else np.asarray(seq, np.int64),
    }
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / f"episode_{index:04d}.npz", **arrays)
    (directory / "metadata.json").write_text(json.dumps({"robot": {"name": "test"}}))
