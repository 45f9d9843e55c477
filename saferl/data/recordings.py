"""Recorded robot episodes as training data (numpy only: `hardware/` writes them, `saferl train --data` reads).

A recording directory holds `metadata.json` and one `episode_XXXX.npz` per episode with obs/next_obs
[T, obs_dim], action [T, act_dim] (the action the robot applied), reward/cost/done [T], source [T] (int8 code
of who chose the action: `hardware.protocol.ACTION_SOURCES`) and seq [T] (message sequence number; steps the
policy side missed leave a jump, consecutive steps differ by 1). Every reader here validates what it loads
and raises `UserError` naming the file and the problem.
"""

from __future__ import annotations

import json
import pathlib
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from saferl.errors import UserError

TRANSITION_KEYS = ("obs", "action", "next_obs", "reward", "cost", "done")
EPISODE_KEYS = (*TRANSITION_KEYS, "source", "seq")
METADATA_FILE = "metadata.json"
EPISODE_GLOB = "episode_*.npz"


def read_metadata(directory: str | pathlib.Path) -> dict[str, Any]:
    """The recording's `metadata.json` as a dict."""
    path = pathlib.Path(directory) / METADATA_FILE
    if not path.is_file():
        raise UserError(f"{path} not found: {directory} is not a recording directory")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is corrupt (not valid JSON: {err})") from None


def episode_files(directory: str | pathlib.Path) -> list[pathlib.Path]:
    """The `episode_*.npz` files of a recording directory, in episode order."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise UserError(f"recording directory {directory} not found")
    files = sorted(directory.glob(EPISODE_GLOB))
    if not files:
        raise UserError(
            f"no {EPISODE_GLOB} files in {directory}: not a recording directory "
            "(make one with `saferl-deploy run ... --record DIR`)"
        )
    return files


def load_episode(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """One episode file as arrays, checked: every key present, one length T, obs/next_obs of one width.

    An episode without transitions (T = 0) may have 1-D empty arrays (its recorder never saw the sizes).
    """
    path = pathlib.Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            episode = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise UserError(f"{path} is not a readable episode file: {err}") from None
    missing = [k for k in EPISODE_KEYS if k not in episode]
    if missing:
        raise UserError(f"{path} lacks {missing}; episode files hold {list(EPISODE_KEYS)}")
    if all(episode[k].size == 0 for k in EPISODE_KEYS):
        return episode
    length = episode["reward"].shape[0] if episode["reward"].ndim == 1 else -1
    for key in EPISODE_KEYS:
        expected_ndim = 2 if key in ("obs", "action", "next_obs") else 1
        if episode[key].ndim != expected_ndim or episode[key].shape[0] != length:
            raise UserError(
                f"{path}: '{key}' has shape {episode[key].shape}; expected "
                f"{'[T, dim]' if expected_ndim == 2 else '[T]'} with the same T as 'reward'"
            )
    if episode["obs"].shape != episode["next_obs"].shape:
        raise UserError(f"{path}: obs {episode['obs'].shape} and next_obs {episode['next_obs'].shape} differ")
    return episode


def _constant_action_windows(episode: dict[str, np.ndarray], repeat: int) -> dict[str, np.ndarray]:
    """Transitions over `repeat` consecutive robot steps under one action (float32 arrays, leading axis [N]).

    A window qualifies if its steps are consecutive (seq +1), its actions equal (up to 1e-6) and no step but
    the last is `done`; reward and cost are summed over it, as `envs.wrappers.ActionRepeatWrapper` does.
    Windows overlap: the dynamics are Markov, so each start gives a valid `repeat`-step transition.
    """
    arrays = {k: episode[k].astype(np.float32) for k in TRANSITION_KEYS}
    count = arrays["reward"].shape[0] - repeat + 1
    if repeat == 1 or count <= 0:
        return arrays if repeat == 1 else {k: v[:0] for k, v in arrays.items()}
    starts = np.arange(count)
    offsets = starts[:, None] + np.arange(repeat)[None, :]  # [N, repeat]
    chained = np.all(np.diff(episode["seq"][offsets], axis=1) == 1, axis=1)
    actions = arrays["action"][offsets]  # [N, repeat, act_dim]
    constant = np.all(np.abs(actions - actions[:, :1]) <= 1e-6, axis=(1, 2))
    alive = ~np.any(arrays["done"][offsets[:, :-1]] > 0, axis=1)
    keep = starts[chained & constant & alive]
    last = keep + repeat - 1
    window = offsets[keep]
    return {
        "obs": arrays["obs"][keep],
        "action": arrays["action"][keep],
        "next_obs": arrays["next_obs"][last],
        "reward": arrays["reward"][window].sum(axis=1),
        "cost": arrays["cost"][window].sum(axis=1),
        "done": arrays["done"][last],
    }


def load_recordings(
    directory: str | pathlib.Path, keep_sources: Sequence[int] | None = None, action_repeat: int = 1
) -> dict[str, np.ndarray]:
    """All episodes of a recording directory as one transition batch (the `saferl.data.Transition` layout).

    Returns float32 obs [N, obs_dim], action [N, act_dim], next_obs [N, obs_dim], reward [N], cost [N],
    done [N]. `keep_sources`: keep only transitions whose `source` code is listed (None: all; every applied
    action is valid dynamics data). `action_repeat` > 1: transitions over that many steps under one action
    (see `_constant_action_windows`), the unit model-based agents with action repeat learn in.
    """
    if action_repeat < 1:
        raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
    files = episode_files(directory)
    parts = []
    for path in files:
        episode = load_episode(path)
        if episode["reward"].size == 0:
            continue
        if keep_sources is not None:
            selected = np.isin(episode["source"], np.asarray(keep_sources))
            episode = {k: v[selected] for k, v in episode.items()}
        parts.append(_constant_action_windows(episode, action_repeat))
    widths = {(p["obs"].shape[1], p["action"].shape[1]) for p in parts}
    if not parts:
        raise UserError(f"the recordings in {directory} hold no transitions")
    if len(widths) > 1:
        raise UserError(f"the episodes in {directory} disagree on (obs, action) sizes: {sorted(widths)}")
    batch = {k: np.concatenate([p[k] for p in parts]) for k in TRANSITION_KEYS}
    if batch["reward"].size == 0:
        detail = f" spanning {action_repeat} consecutive steps under one action" if action_repeat > 1 else ""
        raise UserError(f"the recordings in {directory} hold no transitions{detail}")
    bad = [k for k, v in batch.items() if not np.all(np.isfinite(v))]
    if bad:
        raise UserError(f"the recordings in {directory} hold NaN/Inf values in {bad}")
    return batch


def load_training_data(
    directory: str | pathlib.Path,
    observation_size: int,
    action_size: int,
    env_name: str = "the env",
    action_repeat: int = 1,
) -> dict[str, np.ndarray]:
    """`load_recordings` for training on an env: sizes must match the env's, actions lie in [-1, 1]."""
    batch = load_recordings(directory, action_repeat=action_repeat)
    got = (batch["obs"].shape[1], batch["action"].shape[1])
    if got != (observation_size, action_size):
        raise UserError(
            f"--data {directory}: recorded obs size {got[0]} and action size {got[1]} do not match "
            f"{env_name} (obs {observation_size}, action {action_size})"
        )
    if np.abs(batch["action"]).max() > 1.0 + 1e-6:
        raise UserError(
            f"--data {directory}: recorded actions exceed [-1, 1] (max |a| = "
            f"{np.abs(batch['action']).max():.3g}); env actions are normalised to [-1, 1]"
        )
    return batch
