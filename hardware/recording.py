"""Episode recordings of robot runs: one `.npz` per episode plus `metadata.json`, loadable as training data.

Each file holds the transitions the policy side saw, paired by the robot's step counter (gaps from dropped
states are skipped, never stitched): obs/next_obs [T, obs_dim], action [T, act_dim] (the action the robot
*applied*, as it reported it), reward/cost/done [T], source [T] (0 policy, 1 hold, 2 safe, 3 onboard), seq [T].
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

from hardware.protocol import ACTION_SOURCES, Message

TRANSITION_KEYS = ("obs", "action", "next_obs", "reward", "cost", "done")


class EpisodeRecorder:
    """Collects transitions from consecutive state messages of one episode."""

    def __init__(self) -> None:
        self._rows: dict[str, list] = {k: [] for k in (*TRANSITION_KEYS, "source", "seq")}
        self._previous: Message | None = None
        self.gaps = 0  # states missed between two received ones

    def observe(self, state: Message) -> bool:
        """Feed a state message; returns True if it completed a transition."""
        previous, self._previous = self._previous, state
        if previous is None or state.body["episode"] != previous.body["episode"]:
            return False
        delta = state.body["step"] - previous.body["step"]
        if delta == 0:
            self._previous = previous  # a repeated reading (robot idle): keep the first
            return False
        if delta != 1:
            self.gaps += max(delta - 1, 0)
            return False
        body = state.body
        for key, value in (("obs", previous.body["obs"]), ("action", body["action"]), ("next_obs", body["obs"]),
                           ("reward", body["reward"]), ("cost", body["cost"]), ("done", body["done"]),
                           ("source", ACTION_SOURCES.index(body["action_source"])), ("seq", state.seq)):
            self._rows[key].append(value)
        return True

    def __len__(self) -> int:
        return len(self._rows["reward"])

    def arrays(self) -> dict[str, np.ndarray]:
        dtypes = {"reward": np.float32, "cost": np.float32, "done": np.float32, "source": np.int8, "seq": np.int64}
        return {k: (np.asarray(v, dtypes.get(k, np.float32)) if v else np.zeros((0,), dtypes.get(k, np.float32)))
                for k, v in self._rows.items()}

    def save(self, path: str | pathlib.Path) -> pathlib.Path:
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **self.arrays())
        return path


def write_metadata(directory: str | pathlib.Path, metadata: dict[str, Any]) -> pathlib.Path:
    path = pathlib.Path(directory) / "metadata.json"
    path.write_text(json.dumps(metadata, indent=2, default=float))
    return path


def read_metadata(directory: str | pathlib.Path) -> dict[str, Any]:
    path = pathlib.Path(directory) / "metadata.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a recording directory")
    return json.loads(path.read_text())


def episode_files(directory: str | pathlib.Path) -> list[pathlib.Path]:
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"recording directory {directory} not found")
    files = sorted(directory.glob("episode_*.npz"))
    if not files:
        raise FileNotFoundError(f"no episode_*.npz files in {directory}")
    return files


def load_episode(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def load_recordings(directory: str | pathlib.Path, policy_only: bool = False) -> dict[str, np.ndarray]:
    """All episodes of a recording directory as one transition batch (saferl.data layout).

    Returns obs [N, obs_dim], action [N, act_dim], next_obs [N, obs_dim], reward [N], cost [N], done [N]
    (float32). `policy_only`: keep only transitions driven by a fresh policy action (no hold/safe).
    """
    episodes = [e for e in (load_episode(p) for p in episode_files(directory)) if e["reward"].size]
    if not episodes:
        raise FileNotFoundError(f"the recordings in {directory} hold no transitions")
    batch = {k: np.concatenate([e[k] for e in episodes]).astype(np.float32) for k in TRANSITION_KEYS}
    if policy_only:
        source = np.concatenate([e["source"] for e in episodes])
        keep = (source == ACTION_SOURCES.index("policy")) | (source == ACTION_SOURCES.index("onboard"))
        batch = {k: v[keep] for k, v in batch.items()}
    return batch
