"""Episode recordings of robot runs: one `.npz` per episode plus `metadata.json`, loadable as training data.
The writer lives here; the format and its readers are `saferl.data.recordings` (numpy only).

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
from saferl.data import recordings
from saferl.data.recordings import (
    EPISODE_KEYS,
    METADATA_FILE,
    TRANSITION_KEYS,
    episode_files,
    load_episode,
    read_metadata,
)

__all__ = [
    "EPISODE_KEYS",
    "TRANSITION_KEYS",
    "EpisodeRecorder",
    "episode_files",
    "load_episode",
    "load_recordings",
    "read_metadata",
    "write_metadata",
]


class EpisodeRecorder:
    """Collects transitions from consecutive state messages of one episode."""

    def __init__(self) -> None:
        self._rows: dict[str, list] = {k: [] for k in EPISODE_KEYS}
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
        for key, value in (
            ("obs", previous.body["obs"]),
            ("action", body["action"]),
            ("next_obs", body["obs"]),
            ("reward", body["reward"]),
            ("cost", body["cost"]),
            ("done", body["done"]),
            ("source", ACTION_SOURCES.index(body["action_source"])),
            ("seq", state.seq),
        ):
            self._rows[key].append(value)
        return True

    def __len__(self) -> int:
        return len(self._rows["reward"])

    def arrays(self) -> dict[str, np.ndarray]:
        dtypes = {"reward": np.float32, "cost": np.float32, "done": np.float32, "source": np.int8, "seq": np.int64}
        return {
            k: (np.asarray(v, dtypes.get(k, np.float32)) if v else np.zeros((0,), dtypes.get(k, np.float32)))
            for k, v in self._rows.items()
        }

    def save(self, path: str | pathlib.Path) -> pathlib.Path:
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # numpy's stub also types the keyword allow_pickle (bool), which a dict of arrays could hold; none is named so
        np.savez(path, **self.arrays())  # type: ignore[arg-type]
        return path


def write_metadata(directory: str | pathlib.Path, metadata: dict[str, Any]) -> pathlib.Path:
    path = pathlib.Path(directory) / METADATA_FILE
    path.write_text(json.dumps(metadata, indent=2, default=float))
    return path


def load_recordings(directory: str | pathlib.Path, policy_only: bool = False) -> dict[str, np.ndarray]:
    """All episodes of a recording directory as one transition batch (`saferl.data.recordings`).

    `policy_only`: keep only transitions driven by a fresh policy action (policy or onboard; no hold/safe).
    """
    sources = [ACTION_SOURCES.index("policy"), ACTION_SOURCES.index("onboard")] if policy_only else None
    return recordings.load_recordings(directory, keep_sources=sources)
