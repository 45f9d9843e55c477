"""The procedural body phantom: determinism per seed, plausible anatomy per preset, the surgical corridor,
label look-ups and config validation."""

import time

import jax
import jax.numpy as jp
import numpy as np
import pytest

import envs  # noqa: F401  (XLA flags before JAX's backend exists)
from envs.ultrasound.phantom import (
    BACKGROUND,
    BONE,
    FAT,
    MUSCLE,
    ORGAN,
    PRESETS,
    SKIN,
    TISSUES,
    VESSEL,
    PhantomConfig,
    labels_at,
    make_phantom,
    organ_mask,
    voxel_centers,
    world_to_voxel,
)


@pytest.fixture(scope="module")
def phantoms():
    return {preset: make_phantom(PhantomConfig(preset=preset)) for preset in PRESETS}


def test_same_seed_gives_identical_labels_and_geometry():
    first, second = make_phantom(PhantomConfig(seed=3)), make_phantom(PhantomConfig(seed=3))
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.target, second.target)
    assert int(first.speckle_seed) == int(second.speckle_seed)


@pytest.mark.parametrize("preset", PRESETS)
def test_different_seeds_give_different_anatomy(preset):
    first = np.asarray(make_phantom(PhantomConfig(seed=0, preset=preset)).labels)
    second = np.asarray(make_phantom(PhantomConfig(seed=1, preset=preset)).labels)
    assert np.mean(first != second) > 0.01  # random layer thicknesses and organ/bone placement move > 1 % voxels


@pytest.mark.parametrize("preset", PRESETS)
def test_anatomy_is_layered_with_bone_organ_and_vessel(phantoms, preset):
    phantom = phantoms[preset]
    labels = np.asarray(phantom.labels)
    assert labels.shape == (64, 64, 40) and labels.dtype == np.int8
    assert set(np.unique(labels)) <= set(range(len(TISSUES)))
    assert np.all(labels[:, :, -1] == SKIN)  # the top voxel row (2.5 mm) is skin everywhere
    assert not np.any(labels[:, :, :-3] == SKIN)  # and skin is nowhere deeper than 7.5 mm
    assert not np.any(labels == BACKGROUND)  # the body fills the volume
    fraction = np.bincount(labels.ravel(), minlength=len(TISSUES)) / labels.size
    assert 0.005 < fraction[BONE] < 0.15 and 0.01 < fraction[ORGAN] < 0.2 and 0.0005 < fraction[VESSEL] < 0.05
    assert fraction[MUSCLE] > 0.3 and fraction[FAT] > 0.02
    # Fat lies between skin and muscle: in every column, the first non-skin voxel below the skin is fat.
    below_skin = labels[:, :, -2]
    assert np.mean(below_skin == FAT) > 0.95
    # Organ and vessel lie deeper than the body wall (≥ 1 cm below the skin).
    z_organ = np.argwhere(labels == ORGAN)[:, 2]
    assert z_organ.max() < 40 - 4
    # The vessel runs inside the body, below the wall; in the abdomen it passes through the organ.
    vessel = np.argwhere(labels == VESSEL)
    assert vessel[:, 2].max() < 40 - 4
    if preset != "spine":
        organ = np.argwhere(labels == ORGAN)
        inside_box = np.all((vessel >= organ.min(axis=0)) & (vessel <= organ.max(axis=0)), axis=1)
        assert inside_box.mean() > 0.2
    assert labels_at(phantom, phantom.organ_center[None])[0] in (ORGAN, VESSEL)
    assert int(organ_mask(phantom).sum()) == int(np.sum(labels == ORGAN))


def test_thin_preset_has_less_fat_than_abdomen(phantoms):
    fat = {p: float(np.mean(np.asarray(phantoms[p].labels) == FAT)) for p in ("thin", "abdomen")}
    assert fat["thin"] < 0.5 * fat["abdomen"]


@pytest.mark.parametrize("preset", PRESETS)
def test_surgical_corridor_runs_from_the_skin_to_a_target_in_bone(phantoms, preset):
    phantom = phantoms[preset]
    target, entry, axis = (np.asarray(a, np.float64) for a in (phantom.target, phantom.entry, phantom.corridor_axis))
    assert int(labels_at(phantom, phantom.target[None])[0]) == BONE
    assert entry[2] == 0.0 and np.all(np.abs(entry[:2]) < phantom.extent[:2] / 2)
    np.testing.assert_allclose(np.linalg.norm(axis), 1.0, atol=1e-6)
    along = target - entry
    np.testing.assert_allclose(along / np.linalg.norm(along), axis, atol=1e-5)  # axis points entry → target
    # The planned path crosses only the body wall and bone: no organ or vessel on the way.
    path = entry + np.linspace(0.0, 1.0, 200)[:, None] * along
    on_path = np.asarray(labels_at(phantom, jp.asarray(path, jp.float32)))
    assert not np.any(np.isin(on_path, (ORGAN, VESSEL)))


def test_world_to_voxel_inverts_voxel_centres_and_outside_is_background(phantoms):
    phantom = phantoms["abdomen"]
    xs, ys, zs = voxel_centers(PhantomConfig())
    assert xs[0] == pytest.approx(-0.08 + 0.00125) and zs[-1] == pytest.approx(-0.00125)
    index = np.array([[0, 0, 0], [63, 10, 39], [5, 63, 20]])
    centres = np.stack([xs[index[:, 0]], ys[index[:, 1]], zs[index[:, 2]]], axis=-1)
    np.testing.assert_array_equal(world_to_voxel(phantom, jp.asarray(centres, jp.float32)), index)
    np.testing.assert_array_equal(
        labels_at(phantom, jp.asarray(centres, jp.float32)), np.asarray(phantom.labels)[tuple(index.T)]
    )
    outside = jp.array([[0.0, 0.0, 0.001], [0.0, 0.0, -0.2], [0.09, 0.0, -0.05], [0.0, -0.09, -0.05]])
    np.testing.assert_array_equal(labels_at(phantom, outside), BACKGROUND)
    # Batched leading axes are kept.
    assert labels_at(phantom, jp.zeros((2, 5, 3)) - jp.array([0, 0, 0.01])).shape == (2, 5)


def test_make_phantom_is_fast_and_sizes_are_configurable():
    make_phantom(PhantomConfig(seed=11))  # first call pays numpy/JAX start-up
    start = time.perf_counter()
    make_phantom(PhantomConfig(seed=12))
    assert time.perf_counter() - start < 1.0
    coarse = make_phantom(PhantomConfig(shape=(20, 24, 20), voxel_size=0.005))
    assert coarse.labels.shape == (20, 24, 20) and coarse.voxel_size == 0.005
    np.testing.assert_allclose(coarse.origin, [-0.05, -0.06, -0.1], atol=1e-7)
    assert int(labels_at(coarse, coarse.target[None])[0]) == BONE


def test_phantoms_stack_into_a_batched_pytree():
    batch = jax.tree.map(lambda *leaves: jp.stack(leaves), *[make_phantom(PhantomConfig(seed=s)) for s in range(3)])
    assert batch.labels.shape == (3, 64, 64, 40) and batch.target.shape == (3, 3)
    looked_up = jax.vmap(labels_at)(batch, batch.target[:, None])
    np.testing.assert_array_equal(looked_up, BONE)


@pytest.mark.parametrize(
    "field, value",
    [
        ("seed", -1),
        ("seed", 1.5),
        ("preset", "leg"),
        ("shape", (64, 64)),
        ("shape", (64, 64, 4)),
        ("voxel_size", 0.0),
        ("voxel_size", "big"),
        ("shape", (16, 16, 16)),
    ],
)
def test_bad_config_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        PhantomConfig(**{field: value})
