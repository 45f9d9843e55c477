"""Ring semantics, jit, sampling and save/restore of saferl.data.buffer."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saferl.data import buffer
from saferl.data.buffer import Transition
from saferl.errors import UserError


def steps(start: int, n: int) -> Transition:
    """n transitions whose every field encodes its index start, start+1, ... (obs_dim 2, act_dim 1)."""
    idx = jnp.arange(start, start + n, dtype=jnp.float32)
    return Transition(
        obs=jnp.stack([idx, -idx], -1),
        action=idx[:, None],
        next_obs=jnp.stack([idx + 1, -idx], -1),
        reward=idx,
        cost=idx * 0.5,
        done=(idx % 2).astype(jnp.float32),
    )


def example() -> Transition:
    return jax.tree.map(lambda x: x[0], steps(0, 1))


def test_add_fills_rows_in_order_then_wraps_around_as_a_ring():
    buf = buffer.init(5, example())
    buf = buffer.add(buf, steps(0, 3))
    assert int(buf.size) == 3 and int(buf.position) == 3
    np.testing.assert_array_equal(buf.data.reward[:3], [0, 1, 2])
    buf = buffer.add(buf, steps(3, 4))  # 3, 4 fill rows 3-4; 5, 6 overwrite the oldest rows 0-1
    assert int(buf.size) == 5 and int(buf.position) == 2 and int(buf.total_added) == 7
    np.testing.assert_array_equal(buf.data.reward, [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buffer.to_numpy(buf).reward, [2, 3, 4, 5, 6])  # oldest first


def test_batch_larger_than_capacity_keeps_only_the_latest_rows():
    buf = buffer.add(buffer.add(buffer.init(4, example()), steps(0, 1)), steps(1, 10))
    assert int(buf.size) == 4 and int(buf.total_added) == 11
    np.testing.assert_array_equal(np.sort(np.asarray(buf.data.reward)), [7, 8, 9, 10])
    np.testing.assert_array_equal(buffer.to_numpy(buf).reward, [7, 8, 9, 10])
    # the next add continues the ring right after the newest row
    buf = buffer.add(buf, steps(11, 1))
    np.testing.assert_array_equal(buffer.to_numpy(buf).reward, [8, 9, 10, 11])


def test_add_and_sample_compile_once_and_sample_only_valid_rows():
    traces = []

    @jax.jit
    def add_and_sample(buf, batch, key):
        traces.append(1)
        buf = buffer.add(buf, batch)
        return buf, buffer.sample(buf, key, 64)

    buf = buffer.init(100, example())
    for i in range(3):
        buf, sample = add_and_sample(buf, steps(10 * i, 10), jax.random.key(i))
        assert float(sample.reward.max()) < 10 * (i + 1)  # never an unwritten (zero-padded) row beyond size
        np.testing.assert_array_equal(sample.obs[:, 0], sample.reward)  # rows stay consistent across fields
    assert len(traces) == 1
    data, mask = buffer.all_valid(buf)
    assert data.reward.shape == (100,) and int(mask.sum()) == 30


def test_sample_covers_all_valid_rows_uniformly():
    buf = buffer.add(buffer.init(8, example()), steps(0, 8))
    counts = np.bincount(np.asarray(buffer.sample(buf, jax.random.key(0), 8000).reward, int), minlength=8)
    # 1000 expected per row, binomial std ≈ 30: ±150 is 5 σ
    assert np.all(np.abs(counts - 1000) < 150)


def test_save_restore_round_trip(tmp_path):
    buf = buffer.add(buffer.init(6, example()), steps(0, 9))
    path = buffer.save(buf, tmp_path / "replay")
    assert path.suffix == ".npz"
    back = buffer.restore(path)
    for a, b in zip(jax.tree.leaves(buf), jax.tree.leaves(back), strict=False):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    np.testing.assert_array_equal(buffer.to_numpy(back).reward, [3, 4, 5, 6, 7, 8])


def test_restore_missing_or_foreign_file_raises_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        buffer.restore(tmp_path / "nope.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(UserError, match="lacks"):
        buffer.restore(tmp_path / "other.npz")


def test_init_rejects_non_positive_capacity():
    with pytest.raises(ValueError, match="capacity"):
        buffer.init(0, example())


@settings(max_examples=25, deadline=None)
@given(capacity=st.integers(1, 7), batch_sizes=st.lists(st.integers(1, 10), min_size=1, max_size=5))
def test_ring_matches_a_reference_deque(capacity, batch_sizes):
    reference = collections.deque(maxlen=capacity)  # keeps the newest `capacity` items, oldest first
    buf, start = buffer.init(capacity, example()), 0
    for n in batch_sizes:
        buf = buffer.add(buf, steps(start, n))
        reference.extend(range(start, start + n))
        start += n
    assert int(buf.size) == len(reference) and int(buf.total_added) == start
    np.testing.assert_array_equal(buffer.to_numpy(buf).reward, list(reference))


def test_sample_recent_draws_only_the_newest_rows_across_the_ring_boundary():
    buf = buffer.add(buffer.init(10, example()), steps(0, 13))  # rows hold 3..12, the newest (12) at row 2
    recent = buffer.sample_recent(buf, jax.random.key(0), 4000, window=4)
    values, counts = np.unique(np.asarray(recent.reward), return_counts=True)
    np.testing.assert_array_equal(values, [9, 10, 11, 12])  # the 4 newest, wrapping from row 9 to rows 0-2
    assert counts.min() > 850  # uniform: 1000 each expected, 4σ ≈ 110
    small = buffer.sample_recent(buffer.add(buffer.init(10, example()), steps(0, 2)), jax.random.key(1), 100, 8)
    assert set(np.asarray(small.reward).tolist()) <= {0.0, 1.0}  # a window beyond the data: only valid rows
