"""Procedural body phantom: a 3-D tissue label volume drawn from a seed, with per-tissue acoustic properties.

World frame in metres: the body fills x ∈ [-Lx/2, Lx/2], y ∈ [-Ly/2, Ly/2], z ∈ [-Lz, 0] with the skin the plane
z = 0; voxel (i, j, k) has its centre at origin + (i + ½, j + ½, k + ½)·voxel_size. Below the skin lie fat, muscle
and, per preset, ribs over an organ with a vessel through it ("abdomen", "thin") or lumbar vertebrae with a kidney
and a vessel ("spine"). Every preset also defines a surgical corridor (entry on the skin → target in bone).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jp
import numpy as np
from flax import struct

TISSUES: tuple[str, ...] = ("gel_or_air", "skin", "fat", "muscle", "bone", "organ", "vessel")
BACKGROUND, SKIN, FAT, MUSCLE, BONE, ORGAN, VESSEL = range(len(TISSUES))
PRESETS: tuple[str, ...] = ("abdomen", "spine", "thin")

# Per tissue, in TISSUES order. Impedance Z: MRayl. Attenuation α: dB/cm/MHz (one way, amplitude and intensity
# alike in dB). Scatter density: fraction of speckle cells holding a scatterer, in [0, 1]. Scatter amplitude:
# backscattered intensity of one scatterer relative to a perfect reflector (unitless). The background is coupling
# gel (water-like, anechoic); textbook values (e.g. Szabo, Diagnostic Ultrasound Imaging, tables B.1/B.2) rounded.
IMPEDANCE = (1.48, 1.99, 1.38, 1.70, 7.80, 1.65, 1.61)
ATTENUATION = (0.002, 1.0, 0.6, 1.0, 10.0, 0.6, 0.18)
SCATTER_DENSITY = (0.0, 0.9, 0.35, 0.6, 0.9, 0.8, 0.03)
SCATTER_AMPLITUDE = (0.0, 0.012, 0.002, 0.003, 0.05, 0.008, 0.0005)

MIN_LATERAL_EXTENT = 0.08  # m; smallest x / y size of a phantom: the anatomy spans ±4 cm around the centre
MIN_DEPTH = 0.08  # m; smallest z size: the deepest structures (organ, vertebral bodies) lie 4-8 cm deep


@dataclasses.dataclass(frozen=True)
class PhantomConfig:
    seed: int = 0  # anatomy seed: same seed → identical labels
    preset: str = "abdomen"  # one of PRESETS
    shape: tuple[int, int, int] = (64, 64, 40)  # voxels along x, y, z; each in [8, 512]
    voxel_size: float = 0.0025  # m, edge of a cubic voxel, in [0.0005, 0.02]; default volume 16 × 16 × 10 cm

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {list(PRESETS)}, got {self.preset!r}")
        shape = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else None
        if (
            shape is None
            or len(shape) != 3
            or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and 8 <= n <= 512 for n in shape)
        ):
            raise ValueError(f"shape must be 3 integers (x, y, z voxels) each in [8, 512], got {self.shape!r}")
        object.__setattr__(self, "shape", tuple(int(n) for n in shape))
        if not isinstance(self.voxel_size, (int, float)) or not 0.0005 <= self.voxel_size <= 0.02:
            raise ValueError(f"voxel_size must be a number of metres in [0.0005, 0.02], got {self.voxel_size!r}")
        extent = tuple(n * self.voxel_size for n in self.shape)
        if min(extent[:2]) < MIN_LATERAL_EXTENT - 1e-9 or extent[2] < MIN_DEPTH - 1e-9:
            raise ValueError(
                f"shape × voxel_size must span at least {MIN_LATERAL_EXTENT} m in x and y and {MIN_DEPTH} m in z "
                f"(the anatomy's size), got shape={self.shape} × voxel_size={self.voxel_size} = "
                f"{tuple(round(e, 4) for e in extent)} m"
            )


@struct.dataclass
class Phantom:
    """A body volume (a pytree; batch it by stacking leaves for a different patient per env).

    labels: [X, Y, Z] int8, index into TISSUES. origin: [3] m, corner of voxel (0, 0, 0). Property tables [T]
    (T = len(TISSUES)): impedance MRayl, attenuation dB/cm/MHz, scatter_density in [0, 1], scatter_amplitude.
    organ_center: [3] m, centroid of the organ's voxels. Surgery: `target` [3] m, a point inside bone; `entry`
    [3] m, the corridor's start on the skin (z = 0); `corridor_axis` [3], unit vector entry → target; a tool
    on the corridor stays within a few mm of the segment entry-target (the critical zone is the env's choice).
    speckle_seed: [] uint32, makes each patient's speckle pattern its own.
    """

    labels: jp.ndarray
    origin: jp.ndarray
    impedance: jp.ndarray
    attenuation: jp.ndarray
    scatter_density: jp.ndarray
    scatter_amplitude: jp.ndarray
    organ_center: jp.ndarray
    target: jp.ndarray
    entry: jp.ndarray
    corridor_axis: jp.ndarray
    speckle_seed: jp.ndarray
    voxel_size: float = struct.field(pytree_node=False, default=0.0025)

    @property
    def shape(self) -> tuple[int, int, int]:
        x, y, z = self.labels.shape[-3:]
        return (x, y, z)

    @property
    def extent(self) -> np.ndarray:
        """[3] m, size of the volume along x, y, z."""
        return np.asarray(self.shape, dtype=np.float64) * self.voxel_size


def world_to_voxel(phantom: Phantom, points: jp.ndarray) -> jp.ndarray:
    """points [..., 3] m (world) → [..., 3] int32 voxel indices (not clipped: may lie outside the volume)."""
    return jp.floor((points - phantom.origin) / phantom.voxel_size).astype(jp.int32)


def labels_at(phantom: Phantom, points: jp.ndarray) -> jp.ndarray:
    """points [..., 3] m → [...] int32 tissue label of the voxel holding each point; BACKGROUND outside."""
    index = world_to_voxel(phantom, points)
    size = jp.asarray(phantom.shape, dtype=jp.int32)
    inside = jp.all((index >= 0) & (index < size), axis=-1)
    index = jp.clip(index, 0, size - 1)
    flat = (index[..., 0] * size[1] + index[..., 1]) * size[2] + index[..., 2]
    labels = jp.take(phantom.labels.reshape(-1), flat, mode="clip").astype(jp.int32)
    return jp.where(inside, labels, BACKGROUND)


def organ_mask(phantom: Phantom) -> jp.ndarray:
    """[X, Y, Z] bool, the organ's voxels (the target of navigation and coverage)."""
    return phantom.labels == ORGAN


def voxel_centers(config: PhantomConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World coordinates (m) of the voxel centres along x [X], y [Y], z [Z]."""
    axes = []
    for n, lo in zip(config.shape, _origin(config), strict=False):
        axes.append(lo + (np.arange(n) + 0.5) * config.voxel_size)
    return tuple(axes)


def _origin(config: PhantomConfig) -> np.ndarray:
    x, y, z = (n * config.voxel_size for n in config.shape)
    return np.array([-x / 2, -y / 2, -z])


def _smooth_field(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, wavelength: float) -> np.ndarray:
    """A smooth random field on the (x, y) grid in [-1, 1]: a sum of 4 random plane waves of ~`wavelength` m."""
    field = np.zeros(np.broadcast_shapes(x.shape, y.shape))
    for _ in range(4):
        angle, phase = rng.uniform(0, 2 * np.pi, 2)
        k = 2 * np.pi / (wavelength * rng.uniform(0.7, 1.4))
        field = field + np.sin(k * (np.cos(angle) * x + np.sin(angle) * y) + phase)
    return field / 4


def _body_wall(rng, x, y, depth, fat_range, muscle_range) -> tuple[np.ndarray, np.ndarray]:
    """Skin / fat / muscle layers: ([X, Y, Z] int8 labels, [X, Y, 1] depth of the muscle's bottom, m) from x [X, 1,
    1], y [1, Y, 1], depth below the skin [1, 1, Z] (m); skin 3 mm, so the top voxel row is skin at ≤ 6 mm voxels."""
    fat = np.interp(_smooth_field(rng, x, y, 0.12), [-1, 1], fat_range)
    muscle = np.interp(_smooth_field(rng, x, y, 0.10), [-1, 1], muscle_range)
    skin = 0.003
    labels = np.full(np.broadcast_shapes(x.shape, y.shape, depth.shape), MUSCLE, np.int8)
    labels[np.broadcast_to(depth < skin + fat, labels.shape)] = FAT
    labels[np.broadcast_to(depth < skin, labels.shape)] = SKIN
    return labels, skin + fat + muscle


def _tube(x, y, z, start: np.ndarray, direction: np.ndarray, radius: float) -> np.ndarray:
    """[X, Y, Z] bool, points within `radius` m of the infinite line start + t·direction (direction unit)."""
    rel = [x - start[0], y - start[1], z - start[2]]
    along = rel[0] * direction[0] + rel[1] * direction[1] + rel[2] * direction[2]
    dist2 = sum((r - along * d) ** 2 for r, d in zip(rel, direction, strict=False))
    return dist2 < radius**2


def _abdomen(rng, x, y, z, thin: bool):
    """Body wall, an organ (a lobulated, rotated ellipsoid), ribs above part of it, a vessel through it."""
    depth = -z
    fat_range = (0.002, 0.006) if thin else (0.010, 0.025)
    muscle_range = (0.006, 0.010) if thin else (0.010, 0.016)
    labels, wall = _body_wall(rng, x, y, depth, fat_range, muscle_range)
    center = np.array(
        [
            rng.uniform(-0.02, 0.02),
            rng.uniform(-0.02, 0.02),
            -(rng.uniform(0.035, 0.045) if thin else rng.uniform(0.045, 0.055)),
        ]
    )
    axes = np.array([rng.uniform(0.030, 0.045), rng.uniform(0.025, 0.038), rng.uniform(0.016, 0.022)])
    yaw = rng.uniform(-np.pi / 4, np.pi / 4)
    u = np.cos(yaw) * (x - center[0]) + np.sin(yaw) * (y - center[1])
    v = -np.sin(yaw) * (x - center[0]) + np.cos(yaw) * (y - center[1])
    lobes = 1 + 0.12 * _smooth_field(rng, u, v, 0.05)
    organ = (u / axes[0]) ** 2 + (v / axes[1]) ** 2 + ((z - center[2]) / axes[2]) ** 2 < lobes**2
    labels[organ & (depth > wall)] = ORGAN
    # A vessel through the organ, roughly horizontal, at a random angle.
    angle = rng.uniform(0, np.pi)
    direction = np.array([np.cos(angle), np.sin(angle), rng.uniform(-0.15, 0.15)])
    direction /= np.linalg.norm(direction)
    offset = center + np.array([rng.uniform(-0.008, 0.008), rng.uniform(-0.008, 0.008), axes[2] * 0.2])
    labels[_tube(x, y, z, offset, direction, rng.uniform(0.003, 0.006)) & (depth > wall)] = VESSEL
    # Ribs: cylinders along x over one side of the organ, in the bottom of the muscle layer (following it).
    rib_radius = rng.uniform(0.005, 0.007)
    spacing = rng.uniform(0.025, 0.032)
    first = center[1] + rng.uniform(0.0, 0.015)
    ribs = np.zeros(labels.shape, bool)
    rib_centers = []
    for k in range(3):
        rib_y = first + k * spacing
        along_rib = wall[:, np.argmin(np.abs(y[0, :, 0] - rib_y))]  # [X, 1] m, muscle bottom under the rib
        rib_z = -(along_rib - 0.6 * rib_radius)[:, None, :]  # [X, 1, 1]
        ribs |= (y - rib_y) ** 2 + (z - rib_z) ** 2 < rib_radius**2
        i_center = np.argmin(np.abs(x[:, 0, 0] - center[0]))
        rib_centers.append(np.array([x[i_center, 0, 0], rib_y, rib_z[i_center, 0, 0]]))
    labels[ribs] = BONE
    target = rib_centers[0]
    entry = np.array([target[0], target[1], 0.0])
    return labels, target, entry


def _spine(rng, x, y, z):
    """Body wall, lumbar vertebrae along y (body, pedicles, lamina, processes), a kidney, a vessel."""
    depth = -z
    labels, _ = _body_wall(rng, x, y, depth, (0.004, 0.012), (0.018, 0.025))
    step = rng.uniform(0.032, 0.038)  # m between vertebrae
    phase = rng.uniform(-0.005, 0.005)
    lamina_depth = rng.uniform(0.034, 0.040)  # m, top of the lamina
    body_depth = lamina_depth + rng.uniform(0.026, 0.030)  # m, centre of the vertebral body
    bone = np.zeros(labels.shape, bool)
    canal = np.zeros(labels.shape, bool)
    for k in range(-3, 4):
        yc = phase + k * step
        ry = np.abs(y - yc)
        body = (x / 0.020) ** 2 + ((depth - body_depth) / 0.014) ** 2 < 1
        bone |= body & (ry < 0.012)
        pedicle = (np.abs(np.abs(x) - 0.014) < 0.004) & (depth > lamina_depth) & (depth < body_depth) & (ry < 0.006)
        lamina = (np.abs(x) < 0.022) & (np.abs(depth - lamina_depth - 0.003) < 0.003) & (ry < 0.010)
        transverse = (np.abs(x) < 0.040) & (np.abs(depth - lamina_depth - 0.008) < 0.0025) & (ry < 0.005)
        spinous = (np.abs(x) < 0.003) & (depth > lamina_depth - 0.014) & (depth < lamina_depth) & (ry < 0.008)
        bone |= pedicle | lamina | transverse | spinous
        canal |= (np.abs(x) < 0.009) & (depth > lamina_depth + 0.006) & (depth < body_depth - 0.014) & (ry < 0.012)
    side = rng.choice([-1.0, 1.0])
    kidney_center = np.array([side * rng.uniform(0.045, 0.055), rng.uniform(-0.02, 0.02), -body_depth + 0.005])
    kidney = ((x - kidney_center[0]) / 0.022) ** 2 + ((y - kidney_center[1]) / 0.045) ** 2 + (
        (z - kidney_center[2]) / 0.016
    ) ** 2 < 1
    labels[kidney & ~bone] = ORGAN
    vessel_start = np.array([-side * rng.uniform(0.025, 0.032), 0.0, -body_depth - rng.uniform(0.0, 0.008)])
    labels[_tube(x, y, z, vessel_start, np.array([0.0, 1.0, 0.0]), rng.uniform(0.004, 0.007))] = VESSEL
    labels[canal] = FAT
    labels[bone] = BONE
    # Pedicle corridor of the middle vertebra: enters the pedicle from behind and ends in the vertebral body.
    pedicle_side = rng.choice([-1.0, 1.0])
    target = np.array([pedicle_side * 0.005, phase, -body_depth])
    through = np.array([pedicle_side * 0.014, phase, -(lamina_depth + 0.004)])
    axis = target - through
    entry = through - axis * (through[2] / axis[2])  # continue back to the skin plane z = 0
    return labels, target, entry


def make_phantom(config: PhantomConfig = PhantomConfig()) -> Phantom:
    """Draw the anatomy of `config.preset` from `config.seed` (numpy, deterministic; ~10 ms at 64 × 64 × 40)."""
    rng = np.random.default_rng([config.seed, PRESETS.index(config.preset)])
    xs, ys, zs = voxel_centers(config)
    x, y, z = xs[:, None, None], ys[None, :, None], zs[None, None, :]
    if config.preset == "spine":
        labels, target, entry = _spine(rng, x, y, z)
    else:
        labels, target, entry = _abdomen(rng, x, y, z, thin=config.preset == "thin")
    labels = np.ascontiguousarray(np.broadcast_to(labels, config.shape), dtype=np.int8)
    organ = np.argwhere(labels == ORGAN)
    organ_center = (
        _origin(config) + (organ.mean(axis=0) + 0.5) * config.voxel_size
        if len(organ)
        else np.array([0.0, 0.0, -config.shape[2] * config.voxel_size / 2])
    )
    axis = (target - entry) / np.linalg.norm(target - entry)
    f32 = lambda a: jp.asarray(np.asarray(a, np.float64), dtype=jp.float32)  # noqa: E731
    return Phantom(
        labels=jp.asarray(labels),
        origin=f32(_origin(config)),
        impedance=f32(IMPEDANCE),
        attenuation=f32(ATTENUATION),
        scatter_density=f32(SCATTER_DENSITY),
        scatter_amplitude=f32(SCATTER_AMPLITUDE),
        organ_center=f32(organ_center),
        target=f32(target),
        entry=f32(entry),
        corridor_axis=f32(axis),
        speckle_seed=jp.asarray(np.random.default_rng([config.seed, 7]).integers(0, 2**31), dtype=jp.uint32),
        voxel_size=float(config.voxel_size),
    )
