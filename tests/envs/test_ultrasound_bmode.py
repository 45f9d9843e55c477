"""The B-mode renderer's physics on small synthetic phantoms (reflection at an impedance jump, shadow behind bone,
attenuation and TGC, contact), speckle consistency across views, batching, geometry and config validation."""

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jp
import numpy as np
import pytest

import envs  # noqa: F401  (XLA flags before JAX's backend exists)
from envs.ultrasound.bmode import BModeConfig, contact_quality, image_plane_points, render
from envs.ultrasound.phantom import (
    ATTENUATION,
    BONE,
    FAT,
    IMPEDANCE,
    MUSCLE,
    SCATTER_AMPLITUDE,
    SCATTER_DENSITY,
    Phantom,
    PhantomConfig,
    make_phantom,
)

VOXEL = 0.0025  # m
SHAPE = (32, 8, 40)  # 8 × 2 × 10 cm, x ∈ [-4, 4] cm, z ∈ [-10, 0] cm
CONFIG = BModeConfig()  # 64 × 64 linear, 4 cm × 8 cm: 0.625 mm per column, 1.25 mm per row
DOWN = jp.eye(3)  # probe's local -z is world -z: beams go straight down, columns along world +x
FACE = jp.array([0.0, 0.0, 0.0])
FULL = 10.0  # N, above full_quality_force


def synthetic(labels: np.ndarray, **tables) -> Phantom:
    """A phantom of SHAPE with the given labels [X, Y, Z] (k = Z-1 at the skin) and the default tissue tables."""
    f32 = lambda a: jp.asarray(np.asarray(a, np.float64), jp.float32)  # noqa: E731
    table = dict(
        impedance=IMPEDANCE,
        attenuation=ATTENUATION,
        scatter_density=SCATTER_DENSITY,
        scatter_amplitude=SCATTER_AMPLITUDE,
    )
    table.update(tables)
    extent = np.array(SHAPE) * VOXEL
    return Phantom(
        labels=jp.asarray(labels, jp.int8),
        origin=f32([-extent[0] / 2, -extent[1] / 2, -extent[2]]),
        **{k: f32(v) for k, v in table.items()},
        organ_center=f32([0, 0, -0.05]),
        target=f32([0, 0, -0.05]),
        entry=f32([0, 0, 0]),
        corridor_axis=f32([0, 0, -1]),
        speckle_seed=jp.asarray(5, jp.uint32),
        voxel_size=VOXEL,
    )


def layers(*bands: tuple[int, float]) -> np.ndarray:
    """Labels of horizontal layers: bands of (label, depth where it ends in m), from the skin down."""
    depth = (SHAPE[2] - np.arange(SHAPE[2]) - 0.5) * VOXEL  # [Z] m below the skin at each voxel centre
    column = np.full(SHAPE[2], bands[-1][0], np.int8)
    for label, bottom in reversed(bands):
        column[depth < bottom] = label
    return np.broadcast_to(column, SHAPE).copy()


@functools.cache
def renderer(config: BModeConfig = CONFIG):
    """One compiled render per config (the phantom is an argument, so every synthetic phantom shares it)."""
    return jax.jit(lambda phantom, position, rotation, force: render(phantom, position, rotation, force, config))


def row_profile(image) -> np.ndarray:
    return np.asarray(image).mean(axis=1)


def test_image_shape_range_dtype_and_jit():
    phantom = synthetic(layers((FAT, 0.02), (MUSCLE, 1.0)))
    image = renderer()(phantom, FACE, DOWN, FULL)
    eager = render(phantom, FACE, DOWN, FULL, CONFIG)
    assert image.shape == (64, 64) and image.dtype == jp.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0 and float(image.std()) > 0.05
    np.testing.assert_allclose(image, eager, atol=1e-5)  # float32 reassociation under jit only


def test_impedance_jump_is_brighter_than_the_homogeneous_tissue_before_it():
    # Fat down to 4 cm, then muscle: R = ((1.70 - 1.38) / 3.08)² ≈ 0.011 ≫ fat's mean speckle ≈ 0.0007.
    profile = row_profile(renderer()(synthetic(layers((FAT, 0.04), (MUSCLE, 1.0))), FACE, DOWN, FULL))
    interface_row = 32  # rows are 1.25 mm: row 32 is the first sample below 4 cm
    assert profile[interface_row - 1 : interface_row + 2].max() > profile[16:28].mean() + 0.15


def test_bone_casts_an_acoustic_shadow():
    labels = layers((MUSCLE, 1.0))
    depth = (SHAPE[2] - np.arange(SHAPE[2]) - 0.5) * VOXEL
    labels[:16, :, (depth > 0.02) & (depth < 0.03)] = BONE  # a bone plate under x < 0 at 2-3 cm depth
    image = np.asarray(renderer()(synthetic(labels), FACE, DOWN, FULL))
    rows = slice(32, 56)  # 4-7 cm deep, below the plate
    shadow, beside = image[rows, 4:26].mean(), image[rows, 38:60].mean()  # columns ≥ 6 px from x = 0
    noise_level = 1.0 + 10.0 * np.log10(CONFIG.noise_floor / CONFIG.reference_intensity) / CONFIG.dynamic_range
    assert shadow < noise_level + 0.02 and beside > noise_level + 0.25  # nothing but noise behind the bone
    surface = image[14:18, 4:26].max(axis=0).mean()  # the plate's top at 2 cm: row 16 (± blur)
    assert surface > 0.9 and surface > image[14:18, 38:60].max(axis=0).mean() + 0.3  # R ≈ 0.41: bright


def test_attenuation_darkens_with_depth_and_tgc_flattens_it():
    # Homogeneous muscle (α = 1 dB/cm/MHz) with a scatterer in every speckle cell; 2 MHz, 100 dB shown, no noise:
    # the log image falls by 2·α·f / dynamic_range = 0.04 per cm without TGC and is flat with tgc = α.
    phantom = synthetic(layers((MUSCLE, 1.0)), scatter_density=np.ones(7))
    base = BModeConfig(frequency=2.0, dynamic_range=100.0, noise_floor=0.0, tgc=0.0)
    depth_cm = (np.arange(64) + 0.5) * 0.125
    rows = slice(4, 60)  # away from the blur's edge rows
    slopes = {}
    for tgc in (0.0, 1.0):
        image = renderer(dataclasses.replace(base, tgc=tgc))(phantom, FACE, DOWN, FULL)
        slopes[tgc] = np.polyfit(depth_cm[rows], row_profile(image)[rows], 1)[0]
    assert slopes[0.0] == pytest.approx(-0.04, rel=0.1)  # speckle noise on 56 row means: a few % of the slope
    assert abs(slopes[1.0]) < 0.004


def test_no_contact_gives_a_black_image_and_force_raises_contrast_up_to_full_quality():
    phantom = synthetic(layers((FAT, 0.02), (MUSCLE, 0.05), (FAT, 1.0)))
    render_at = renderer()
    for force in (0.0, CONFIG.min_contact_force, -3.0):
        assert float(jp.abs(render_at(phantom, FACE, DOWN, force)).max()) == 0.0
    assert float(render_at(phantom, FACE, DOWN, CONFIG.min_contact_force + 0.05).max()) > 0.0
    forces = (0.6, 1.5, 3.0, 5.0, 8.0)
    contrast = [float(np.std(render_at(phantom, FACE, DOWN, f))) for f in forces]
    assert all(b > a + 0.005 for a, b in itertools.pairwise(contrast[:4]))  # rises with force up to 5 N
    assert contrast[4] == pytest.approx(contrast[3], abs=1e-6)  # and is full beyond full_quality_force
    np.testing.assert_allclose(contact_quality(jp.array(forces), CONFIG), [0.0222, 0.2222, 0.5556, 1.0, 1.0], atol=1e-3)


@pytest.fixture(scope="module")
def abdomen():
    return make_phantom(PhantomConfig(seed=2))


def test_speckle_is_the_same_for_the_same_tissue_seen_from_two_poses(abdomen):
    render_at = renderer()
    start = jp.array([-0.01, 0.005, -0.001])
    first = np.asarray(render_at(abdomen, start, DOWN, FULL))
    shifted = np.asarray(render_at(abdomen, start + jp.array([VOXEL, 0.0, 0.0]), DOWN, FULL))  # 4 columns
    # Columns j + 4 of the first view image the same tissue as columns j of the shifted one; the lateral blur
    # (radius 4 columns) only differs within 4 columns of either edge.
    np.testing.assert_allclose(shifted[:, 4:52], first[:, 8:56], atol=1e-5)
    turned = jp.array([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])  # 180° about z: columns reversed
    np.testing.assert_allclose(np.asarray(render_at(abdomen, start, turned, FULL))[:, ::-1], first, atol=1e-5)
    other = np.asarray(render_at(abdomen, start + jp.array([0.0, VOXEL, 0.0]), DOWN, FULL))
    assert np.abs(other - first).mean() > 0.05  # a parallel plane 2.5 mm away shows other speckle


def rotation_about_x(angle):
    c, s = jp.cos(angle), jp.sin(angle)
    return jp.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def test_vmap_over_poses_and_over_phantoms_equals_single_renders(abdomen):
    positions = jp.stack([jp.linspace(-0.03, 0.03, 8), jp.linspace(0.02, -0.02, 8), jp.full(8, -0.002)], -1)
    rotations = jax.vmap(rotation_about_x)(jp.linspace(-0.3, 0.3, 8))
    forces = jp.linspace(1.0, 9.0, 8)
    batched = jax.jit(jax.vmap(lambda p, r, f: render(abdomen, p, r, f, CONFIG)))(positions, rotations, forces)
    single = renderer()
    for i in range(8):
        np.testing.assert_allclose(batched[i], single(abdomen, positions[i], rotations[i], forces[i]), atol=1e-5)
    phantoms = jax.tree.map(lambda *leaves: jp.stack(leaves), abdomen, make_phantom(PhantomConfig(seed=3)))
    per_phantom = jax.vmap(lambda ph: render(ph, positions[0], rotations[0], forces[0], CONFIG))(phantoms)
    np.testing.assert_allclose(per_phantom[0], batched[0], atol=1e-5)
    assert np.abs(np.asarray(per_phantom[1] - per_phantom[0])).mean() > 0.02  # another patient, another image


def test_image_plane_points_follow_the_probe_pose():
    points = np.asarray(image_plane_points(FACE, DOWN, CONFIG))
    assert points.shape == (64, 64, 3)
    np.testing.assert_allclose(points[0, [0, -1], 0], [-0.02 + 0.0003125, 0.02 - 0.0003125], atol=1e-7)
    np.testing.assert_allclose(points[[0, -1], 0, 2], [-0.000625, -0.08 + 0.000625], atol=1e-7)
    np.testing.assert_allclose(points[..., 1], 0.0, atol=1e-7)
    tilted = np.asarray(image_plane_points(jp.array([0.01, 0.02, 0.0]), rotation_about_x(0.5), CONFIG))
    beam = tilted[:, 32] - tilted[0, 32]
    np.testing.assert_allclose(beam[-1] / np.linalg.norm(beam[-1]), [0.0, np.sin(0.5), -np.cos(0.5)], atol=1e-5)


def test_fan_geometry_spreads_beams_from_the_apex_and_renders():
    fan = BModeConfig(geometry="fan", fan_angle=1.0, height=48, width=40)
    points = np.asarray(image_plane_points(FACE, DOWN, fan))
    radius = np.linalg.norm(points, axis=-1)  # distance from the apex at the probe's origin
    np.testing.assert_allclose(
        radius, np.broadcast_to(((np.arange(48) + 0.5) * 0.08 / 48)[:, None], (48, 40)), atol=1e-6
    )
    angles = np.arctan2(points[-1, :, 0], -points[-1, :, 2])
    np.testing.assert_allclose([angles[0], angles[-1]], [-0.5 + 0.0125, 0.5 - 0.0125], atol=1e-5)
    labels = layers((MUSCLE, 1.0))
    depth = (SHAPE[2] - np.arange(SHAPE[2]) - 0.5) * VOXEL
    labels[14:18, :, (depth > 0.02) & (depth < 0.025)] = BONE  # 1 cm wide plate under the centre beams
    image = np.asarray(renderer(fan)(synthetic(labels), FACE, DOWN, FULL))
    assert image.shape == (48, 40) and image.std() > 0.05
    assert image[30:44, 18:22].mean() < image[30:44, 2:8].mean() - 0.2  # the central shadow


def test_large_images_render():
    image = renderer(BModeConfig(height=200, width=150))(synthetic(layers((MUSCLE, 1.0))), FACE, DOWN, FULL)
    assert image.shape == (200, 150) and float(image.std()) > 0.05


@pytest.mark.parametrize(
    "field, value",
    [
        ("height", 4),
        ("width", 1000),
        ("width", 64.0),
        ("geometry", "convex"),
        ("depth", 0.0),
        ("aperture", -0.01),
        ("fan_angle", 4.0),
        ("frequency", 0.1),
        ("tgc", -1.0),
        ("dynamic_range", 0.0),
        ("noise_floor", float("nan")),
        ("speckle_cells_per_voxel", 0),
        ("min_contact_force", -1.0),
        ("full_quality_force", 0.2),
    ],
)
def test_bad_config_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        BModeConfig(**{field: value})
