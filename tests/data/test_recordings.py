"""Recorded episodes as training data: reading, validation with one-line errors, constant-action windows."""

import numpy as np
import pytest
from recording_files import write_episode

from saferl.data.recordings import load_episode, load_recordings, load_training_data, read_metadata
from saferl.errors import UserError


def _obs(steps, dim=3):
    return np.arange((steps + 1) * dim, dtype=np.float32).reshape(steps + 1, dim)


def test_episodes_concatenate_into_one_float32_transition_batch(tmp_path):
    write_episode(tmp_path, 0, _obs(4), np.zeros((4, 1)))
    write_episode(tmp_path, 1, _obs(6), np.ones((6, 1)), source=[0, 1, 2, 3, 0, 0])
    batch = load_recordings(tmp_path)
    assert batch["obs"].shape == (10, 3) and batch["action"].shape == (10, 1) and batch["reward"].shape == (10,)
    assert all(v.dtype == np.float32 for v in batch.values())
    np.testing.assert_array_equal(batch["next_obs"][:4], _obs(4)[1:])
    assert load_recordings(tmp_path, keep_sources=[0, 3])["reward"].size == 4 + 4  # hold (1) and safe (2) dropped
    assert read_metadata(tmp_path)["robot"]["name"] == "test"


def test_action_repeat_windows_need_consecutive_steps_one_action_and_no_early_done(tmp_path):
    action = np.array([[0.1], [0.1], [0.2], [0.2], [0.2], [0.3], [0.3], [0.4], [0.4]])
    seq = [0, 1, 2, 3, 4, 5, 7, 8, 9]  # a missed state between steps 5 and 6 (seq 6): no window across it
    done = [0, 0, 0, 0, 0, 0, 0, 1, 0]  # a window may end on done, not run past it
    write_episode(tmp_path, 0, _obs(9), action, seq=seq, done=done)
    batch = load_recordings(tmp_path, action_repeat=2)
    # kept windows start at 0 (0.1 twice), 2 and 3 (0.2 twice); 1, 4, 6 mix actions; 5 crosses the gap;
    # 7 has one action (0.4) but runs past the done of its first step
    starts = [0, 2, 3]
    np.testing.assert_array_equal(batch["obs"], _obs(9)[starts])
    np.testing.assert_array_equal(batch["next_obs"], _obs(9)[[s + 2 for s in starts]])
    np.testing.assert_array_equal(batch["reward"], [0 + 1, 2 + 3, 3 + 4])  # summed over the held steps
    np.testing.assert_array_equal(batch["cost"], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(load_recordings(tmp_path, action_repeat=1)["reward"], np.arange(9))


def test_windows_ending_on_done_are_kept(tmp_path):
    write_episode(tmp_path, 0, _obs(3), np.zeros((3, 1)), done=[0, 1, 0])
    batch = load_recordings(tmp_path, action_repeat=2)
    np.testing.assert_array_equal(batch["done"], [1.0])  # window 0-1 ends on done; 1-2 would run past it
    np.testing.assert_array_equal(batch["next_obs"], _obs(3)[[2]])


def test_training_data_must_fit_the_env_sizes_and_action_box(tmp_path):
    write_episode(tmp_path, 0, _obs(4), np.zeros((4, 1)))
    assert load_training_data(tmp_path, 3, 1)["obs"].shape == (4, 3)
    with pytest.raises(UserError, match=r"obs size 3 and action size 1 do not match env 'x' \(obs 5, action 1\)"):
        load_training_data(tmp_path, 5, 1, "env 'x'")
    write_episode(tmp_path, 1, _obs(4), np.full((4, 1), 3.0))
    with pytest.raises(UserError, match=r"exceed \[-1, 1\]"):
        load_training_data(tmp_path, 3, 1)


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("missing_dir", "not found"),
        ("no_episodes", "no episode_*.npz files"),
        ("not_npz", "not a readable episode file"),
        ("missing_key", "lacks ['cost']"),
        ("ragged", "'action' has shape (3, 1)"),
        ("mixed_sizes", "disagree on (obs, action) sizes"),
        ("nan", "NaN/Inf values in ['obs', 'next_obs']"),
        ("empty", "hold no transitions"),
    ],
)
def test_broken_recordings_are_one_line_user_errors(breakage, message, tmp_path):
    directory = tmp_path / "rec"
    if breakage != "missing_dir":
        directory.mkdir()
    if breakage == "not_npz":
        (directory / "episode_0000.npz").write_bytes(b"garbage")
    elif breakage in ("missing_key", "ragged"):
        write_episode(directory, 0, _obs(4), np.zeros((4, 1)))
        arrays = dict(load_episode(directory / "episode_0000.npz"))
        if breakage == "missing_key":
            del arrays["cost"]
        else:
            arrays["action"] = arrays["action"][:3]
        np.savez(directory / "episode_0000.npz", **arrays)
    elif breakage == "mixed_sizes":
        write_episode(directory, 0, _obs(4), np.zeros((4, 1)))
        write_episode(directory, 1, _obs(4, dim=5), np.zeros((4, 1)))
    elif breakage == "nan":
        obs = _obs(4)
        obs[2, 1] = np.nan
        write_episode(directory, 0, obs, np.zeros((4, 1)))
    elif breakage == "empty":  # what the recorder writes for an episode in which it saw no transition
        np.savez(
            directory / "episode_0000.npz",
            **{
                k: np.zeros((0,), np.float32)
                for k in ("obs", "action", "next_obs", "reward", "cost", "done", "source", "seq")
            },
        )
    with pytest.raises(UserError) as info:
        load_recordings(directory)
    assert message in str(info.value) and "\n" not in str(info.value)
