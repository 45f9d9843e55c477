"""B-mode ultrasound images of a `Phantom` from a probe pose and contact force, in pure JAX (jit / vmap).

Along each beam (sample i at depth d_i), the echo intensity is
    E_i = Π_{k<i} (1 - R_k)² · 10^(-2 f Σ_{k<i} α_k Δ / 10) · (R_i + S_i),   R_i = ((Z_i - Z_{i-1}) / (Z_i + Z_{i-1}))²
(round-trip transmission through every boundary, so bone casts a shadow; round-trip attenuation α in dB/cm/MHz
at frequency f; specular reflection R at impedance jumps; speckle S from scatterers hashed from the world
position, so the same tissue shows the same speckle in every view). The image is E blurred by a Gaussian point
spread, amplified by time-gain compensation, scaled by the contact's coupling, floored by noise and
log-compressed to [0, 1].
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jp
import numpy as np

from envs.ultrasound.phantom import BACKGROUND, Phantom, labels_at

GEOMETRIES = ("linear", "fan")
_LN10_OVER_10 = math.log(10.0) / 10.0  # dB → natural log of an intensity ratio


@dataclasses.dataclass(frozen=True)
class BModeConfig:
    height: int = 64  # samples along each beam (image rows), in [8, 512]
    width: int = 64  # beams (image columns), in [8, 512]
    geometry: str = "linear"  # "linear": parallel beams over `aperture`; "fan": beams from one apex over `fan_angle`
    depth: float = 0.08  # m, imaging depth (length of each beam), in (0, 0.3]
    aperture: float = 0.04  # m, width of the linear array's field of view, in (0, 0.2]
    fan_angle: float = 1.0  # rad, opening of the fan, in (0, π)
    frequency: float = 5.0  # MHz, in [1, 20]; attenuation grows with it
    tgc: float = 0.8  # dB/cm/MHz, time-gain compensation: gain 10^(2·tgc·f·d/10) at depth d (cm); 0 = off
    dynamic_range: float = 50.0  # dB shown between black (noise) and white (reference_intensity), > 0
    reference_intensity: float = 0.3  # echo intensity shown white (a bone surface reflects ~0.4)
    noise_floor: float = 5e-6  # additive electronic noise intensity (after TGC), ≥ 0; shown at ~0.04 by default
    axial_resolution: float = 0.0006  # m, σ of the Gaussian point spread along the beam, ≥ 0
    lateral_resolution: float = 0.0008  # m, σ of the point spread across beams, ≥ 0
    speckle_cells_per_voxel: int = 2  # speckle cells per phantom voxel edge, in [1, 8]
    min_contact_force: float = 0.5  # N; at or below: no contact, the image is all zero
    full_quality_force: float = 5.0  # N; coupling rises from min to here, then stays full; > min_contact_force
    contact_loss_db: float = 30.0  # dB of signal lost just above min_contact_force (0 at full quality), ≥ 0

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 8 <= value <= 512:
                raise ValueError(f"{name} must be an integer in [8, 512], got {value!r}")
        if self.geometry not in GEOMETRIES:
            raise ValueError(f"geometry must be one of {list(GEOMETRIES)}, got {self.geometry!r}")
        _check_range("depth", self.depth, 0.0, 0.3, low_open=True)
        _check_range("aperture", self.aperture, 0.0, 0.2, low_open=True)
        _check_range("fan_angle", self.fan_angle, 0.0, math.pi, low_open=True, high_open=True)
        _check_range("frequency", self.frequency, 1.0, 20.0)
        for name in ("tgc", "noise_floor", "axial_resolution", "lateral_resolution", "contact_loss_db"):
            _check_range(name, getattr(self, name), 0.0, math.inf)
        for name in ("dynamic_range", "reference_intensity"):
            _check_range(name, getattr(self, name), 0.0, math.inf, low_open=True)
        cells = self.speckle_cells_per_voxel
        if isinstance(cells, bool) or not isinstance(cells, int) or not 1 <= cells <= 8:
            raise ValueError(f"speckle_cells_per_voxel must be an integer in [1, 8], got {cells!r}")
        _check_range("min_contact_force", self.min_contact_force, 0.0, math.inf)
        if not isinstance(self.full_quality_force, (int, float)) or not (
            self.min_contact_force < self.full_quality_force < math.inf
        ):
            raise ValueError(
                f"full_quality_force must be a number of N > min_contact_force "
                f"({self.min_contact_force}), got {self.full_quality_force!r}"
            )

    @property
    def sample_spacing(self) -> float:
        """m between samples along a beam."""
        return self.depth / self.height

    @property
    def lateral_spacing(self) -> float:
        """m between beams: at the face for "linear", at half depth for "fan"."""
        if self.geometry == "linear":
            return self.aperture / self.width
        return 0.5 * self.depth * self.fan_angle / self.width


def _check_range(name, value, low, high, low_open=False, high_open=False) -> None:
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)) or value == math.inf
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be a number in {lo}{low}, {high}{hi}, got {value!r}")


def image_plane_points(probe_position: jp.ndarray, probe_rotation: jp.ndarray, config: BModeConfig) -> jp.ndarray:
    """World points (m) of the pixels: [H, W, 3]. The image plane is the probe's local x-z plane; beams run
    along local -z from the face (sample i at depth (i + ½)·depth/H), beams are spread along local x (linear:
    offsets over the aperture; fan: angles over fan_angle from an apex at the probe's origin)."""
    depth = (jp.arange(config.height, dtype=jp.float32) + 0.5) * config.sample_spacing  # [H]
    across = (jp.arange(config.width, dtype=jp.float32) + 0.5) / config.width - 0.5  # [W] in (-½, ½)
    if config.geometry == "linear":
        local_x = jp.broadcast_to(across[None, :] * config.aperture, (config.height, config.width))
        local_z = jp.broadcast_to(-depth[:, None], (config.height, config.width))
    else:
        angle = across * config.fan_angle
        local_x = depth[:, None] * jp.sin(angle)[None, :]
        local_z = -depth[:, None] * jp.cos(angle)[None, :]
    rotation = jp.asarray(probe_rotation, jp.float32)
    return (
        jp.asarray(probe_position, jp.float32)
        + local_x[..., None] * rotation[:, 0]
        + local_z[..., None] * rotation[:, 2]
    )


def contact_quality(contact_force: jp.ndarray, config: BModeConfig) -> jp.ndarray:
    """Coupling quality in [0, 1]: 0 at or below min_contact_force, rising linearly to 1 at full_quality_force."""
    span = config.full_quality_force - config.min_contact_force
    return jp.clip((contact_force - config.min_contact_force) / span, 0.0, 1.0)


def _mix32(h: jp.ndarray) -> jp.ndarray:
    """MurmurHash3's 32-bit finaliser: a bijective avalanche of uint32 bits."""
    h = h ^ (h >> 16)
    h = h * jp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def speckle_uniforms(cells: jp.ndarray, seed: jp.ndarray) -> tuple[jp.ndarray, jp.ndarray]:
    """Two independent uniforms in (0, 1) per integer cell index cells [..., 3] (a hash, no PRNG state)."""
    c = cells.astype(jp.uint32)
    h = _mix32(
        c[..., 0] * jp.uint32(0x9E3779B1)
        ^ _mix32(c[..., 1] * jp.uint32(0x85EBCA77) ^ _mix32(c[..., 2] + jp.asarray(seed, jp.uint32)))
    )
    first = _mix32(h ^ jp.uint32(0x68E31DA4))
    second = _mix32(h ^ jp.uint32(0xB5297A4D))
    scale = jp.float32(2.0**-24)
    return ((first >> 8).astype(jp.float32) + 0.5) * scale, ((second >> 8).astype(jp.float32) + 0.5) * scale


def _blur_matrix(sigma_px: float, size: int) -> np.ndarray:
    """[size, size] matrix M of a Gaussian blur with σ = sigma_px samples and edge-clamped borders: blurred = M @ x
    along the first axis (rows sum to 1). Blurs and the running sum along the beam are matrix products: XLA:CPU
    keeps their inputs materialised, while shifted-slice sums made it recompute the whole echo per tap (4× slower)."""
    radius = min(6, int(math.ceil(2.5 * sigma_px)))
    if sigma_px <= 1e-3 or radius == 0:
        return np.eye(size, dtype=np.float32)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_px) ** 2)
    matrix = np.zeros((size, size))
    for offset, weight in zip(range(-radius, radius + 1), taps / taps.sum(), strict=False):
        np.add.at(matrix, (np.arange(size), np.clip(np.arange(size) + offset, 0, size - 1)), weight)
    return matrix.astype(np.float32)


def echo_intensity(phantom: Phantom, points: jp.ndarray, config: BModeConfig) -> jp.ndarray:
    """Raw echo intensity E [H, W] (before blur, TGC, coupling and log) at the pixel points [H, W, 3] (m)."""
    labels = labels_at(phantom, points)  # [H, W]
    impedance = phantom.impedance[labels]
    previous = jp.concatenate(
        [jp.broadcast_to(phantom.impedance[BACKGROUND], impedance[:1].shape), impedance[:-1]], axis=0
    )
    reflection = ((impedance - previous) / (impedance + previous)) ** 2
    cell = phantom.voxel_size / config.speckle_cells_per_voxel
    cells = jp.floor((points - phantom.origin) / cell).astype(jp.int32)
    occupied, magnitude = speckle_uniforms(cells, phantom.speckle_seed)
    scatter = jp.where(
        occupied < phantom.scatter_density[labels], phantom.scatter_amplitude[labels] * -jp.log(magnitude), 0.0
    )  # exponential intensity
    step_cm = 100.0 * config.sample_spacing
    loss = (
        2.0 * jp.log1p(-reflection) - 2.0 * _LN10_OVER_10 * config.frequency * step_cm * phantom.attenuation[labels]
    )  # [H, W], ln
    strictly_above = np.tril(np.ones((config.height, config.height), np.float32), -1)
    # What the pulse lost on its way to sample i and back (an exclusive running sum; full float32 on GPUs too).
    before = jp.matmul(strictly_above, loss, precision="highest")
    return jp.exp(before) * (reflection + scatter)


def render(
    phantom: Phantom,
    probe_position: jp.ndarray,
    probe_rotation: jp.ndarray,
    contact_force: jp.ndarray,
    config: BModeConfig = BModeConfig(),
) -> jp.ndarray:
    """B-mode image [height, width] float32 in [0, 1] (row 0 at the probe face) of the probe at probe_position [3]
    (m, world) with orientation probe_rotation [3, 3] (columns: the probe's local axes in world coordinates),
    pressing with contact_force (N, scalar). All zero without contact (force ≤ min_contact_force)."""
    points = image_plane_points(probe_position, probe_rotation, config)
    echo = echo_intensity(phantom, points, config)
    axial = _blur_matrix(config.axial_resolution / config.sample_spacing, config.height)
    lateral = _blur_matrix(config.lateral_resolution / config.lateral_spacing, config.width)
    echo = jp.matmul(jp.matmul(axial, echo, precision="highest"), lateral.T, precision="highest")  # separable PSF
    depth_cm = 100.0 * (jp.arange(config.height, dtype=jp.float32) + 0.5) * config.sample_spacing
    tgc_ln = 2.0 * _LN10_OVER_10 * config.tgc * config.frequency * depth_cm  # [H]
    quality = contact_quality(jp.asarray(contact_force, jp.float32), config)
    coupling_ln = -_LN10_OVER_10 * config.contact_loss_db * (1.0 - quality)
    signal = echo * jp.exp(tgc_ln + coupling_ln)[:, None] + config.noise_floor
    decibels = 10.0 * jp.log10(signal / config.reference_intensity)
    image = jp.clip(1.0 + decibels / config.dynamic_range, 0.0, 1.0)
    return jp.where(quality > 0.0, image, 0.0).astype(jp.float32)
