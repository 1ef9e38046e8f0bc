"""Seeded synthetic fluorescence volumes: beads, bubbles and tubes, a larva-like brain, filament networks.

Every generator returns a float32 ``(Z, Y, X)`` array with values in ``[0, 1]``
whose maximum is exactly 1 (unless the volume is empty), and is exactly
reproducible from ``seed`` (an ``int``, or a ``numpy.random.Generator`` to draw
from; ``None`` means fresh entropy, i.e. *not* reproducible).

Geometry is in micrometres: voxel ``(iz, iy, ix)`` has its centre at
``(iz * dz, iy * dy, ix * dx)`` µm. Objects are anti-aliased rather than
binary: each voxel holds the fraction of it an object covers, estimated from
the object's distance and the voxel's width along the object's normal (a box
voxel ``(dz, dy, dx)`` is ``Σ |n_i| d_i`` wide along unit normal ``n``): an
exact 1D box-filter across membranes, a lens-volume (ball) or lens-area (tube
cross-section) filter for solid balls and tubes, an exactly voxel-integrated
Gaussian for beads. Objects larger than a voxel thus integrate to their
physical volume within about 1 %; objects below a voxel keep smooth edges and
roughly (within some tens of percent on strongly anisotropic grids) their
integrated brightness.
Objects are rendered in small local boxes around them, never by visiting the
whole volume per object, so a 64×256×256 volume takes well under a second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .rendering import (
    SeedLike,
    _as_count,
    _as_range,
    _as_shape,
    _as_voxel_size,
    _ellipsoid_coverage,
    _extent_um,
    _normalise,
    _paint_max,
    _radial_coverage,
    _render_polyline,
    _resample_step,
    _rng,
)

# Larva-like phantom: intensities relative to the brightest neuron (before the final normalisation).
_BODY_AUTOFLUORESCENCE = 0.04
_NEUROPIL_LEVEL = 0.06
_EYE_PIGMENT_ABSORPTION = 0.9
_EYE_PIGMENT_FRACTION = 0.8  # radius of the pigmented core relative to the eyeball
_TEXTURE_DEPTH = 0.3
# Random sequential addition of balls stops fitting new ones near this volume fraction.
_JAMMING_FRACTION = 0.38


def beads(
    shape: Sequence[int],
    voxel_size: float | Sequence[float],
    n_beads: int = 50,
    radius_um: float = 0.1,
    seed: SeedLike = 0,
    *,
    brightness: float | Sequence[float] = (0.5, 1.0),
    margin_um: float | None = None,
    min_separation_um: float | None = None,
    return_positions: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sub-resolution fluorescent beads at random positions, with varying brightness.

    Each bead is a Gaussian blob of standard deviation ``radius_um`` (0 gives a
    true point) integrated exactly over each voxel, so positions are continuous
    (sub-voxel) and a bead's summed intensity is proportional to its brightness,
    drawn uniformly from ``brightness`` (a number or a ``(low, high)`` range).
    Beads overlapping add up; the volume is then scaled to maximum 1.

    ``margin_um`` keeps bead centres away from every border (default: the larger
    of 4 σ and two voxels per axis, at most a quarter of the extent); ``min_separation_um`` is the smallest
    distance between two bead centres (default: the larger of three of the
    largest voxel size and 6 σ), so that every bead is its own local maximum.
    ``ValueError`` if the beads do not fit.

    With ``return_positions`` it returns ``(volume, positions_um, brightness)``:
    the ``(n_beads, 3)`` bead centres in µm (``index * voxel_size``) and the
    ``(n_beads,)`` brightness values.
    """
    shape = _as_shape(shape)
    v = _as_voxel_size(voxel_size)
    n_beads = _as_count(n_beads, "n_beads")
    if not np.isfinite(radius_um) or radius_um < 0:
        raise ValueError(f"radius_um must be ≥ 0 µm, got {radius_um!r}")
    b_lo, b_hi = _as_range(brightness, "brightness")
    rng = _rng(seed)
    sigma = float(radius_um)
    extent = _extent_um(shape, v)
    if margin_um is None:
        # Thin stacks (a few planes) would have no room left: never reserve more than a quarter per side.
        margin = np.minimum(np.maximum(4 * sigma, 2 * v), 0.25 * extent)
    else:
        margin = np.full(3, float(margin_um))
    if np.any(margin < 0):
        raise ValueError(f"margin_um must be ≥ 0, got {margin_um!r}")
    low, high = margin, extent - margin
    if n_beads and np.any(high < low):
        raise ValueError(
            f"no room for beads: volume extent {extent.tolist()} µm is smaller than twice the margin "
            f"{margin.tolist()} µm"
        )
    separation = max(3 * float(v.max()), 6 * sigma) if min_separation_um is None else float(min_separation_um)
    positions = _place_separated(rng, n_beads, low, high, separation)
    values = rng.uniform(b_lo, b_hi, size=n_beads)

    volume = np.zeros(shape, dtype=np.float32)
    if n_beads:
        _paint_gaussians(volume, v, positions, sigma, values)
        _normalise(volume)
    if return_positions:
        return volume, positions, values.astype(np.float32)
    return volume


def _place_separated(
    rng: np.random.Generator, n: int, low: np.ndarray, high: np.ndarray, separation: float
) -> np.ndarray:
    """Uniform random points in the box ``[low, high]`` at least ``separation`` apart (greedy rejection)."""
    # Random sequential addition jams near this fraction of the space filled by balls of diameter `separation`;
    # asking for more cannot succeed, so say so at once instead of after many attempts.
    available = float(np.prod(high - low + separation))
    if n * (np.pi / 6) * separation**3 > _JAMMING_FRACTION * available:
        raise ValueError(
            f"cannot place {n} beads {separation:.3g} µm apart in a {(high - low).tolist()} µm box; "
            "use fewer beads, a larger volume or a smaller min_separation_um"
        )
    accepted = np.empty((n, 3))
    count, attempts, max_attempts = 0, 0, 100 * n + 1000
    while count < n:
        if attempts >= max_attempts:
            raise ValueError(
                f"could only place {count} of {n} beads {separation:.3g} µm apart; "
                "use fewer beads, a larger volume or a smaller min_separation_um"
            )
        for point in rng.uniform(low, high, size=(max(64, n - count), 3)):
            attempts += 1
            if count and np.min(np.sum((accepted[:count] - point) ** 2, axis=1)) < separation**2:
                continue
            accepted[count] = point
            count += 1
            if count == n:
                break
    return accepted


def _paint_gaussians(out: np.ndarray, v: np.ndarray, centres: np.ndarray, sigma: float, weights: np.ndarray) -> None:
    """Add voxel-integrated 3D Gaussians (separable: product of per-axis erf differences)."""
    shape = np.asarray(out.shape)
    half = np.ceil((4 * sigma) / v + 1).astype(int)
    base = np.rint(centres / v).astype(int)  # (N, 3)
    per_axis = []
    for axis in range(3):
        offs = np.arange(-half[axis], half[axis] + 1)
        idx = base[:, axis, None] + offs[None, :]  # (N, k)
        lo = (idx - 0.5) * v[axis] - centres[:, axis, None]
        hi = (idx + 0.5) * v[axis] - centres[:, axis, None]
        if sigma > 0:
            scale = 1.0 / (math.sqrt(2.0) * sigma)
            edges = torch.erf(torch.from_numpy(np.stack([lo, hi]) * scale)).numpy()
            mass = 0.5 * (edges[1] - edges[0])
        else:
            mass = ((lo <= 0) & (hi > 0)).astype(np.float64)
        mass = np.where((idx >= 0) & (idx < shape[axis]), mass, 0.0)
        per_axis.append((np.clip(idx, 0, shape[axis] - 1), mass))
    (iz, wz), (iy, wy), (ix, wx) = per_axis
    values = weights[:, None, None, None] * wz[:, :, None, None] * wy[:, None, :, None] * wx[:, None, None, :]
    flat = np.ravel_multi_index((iz[:, :, None, None], iy[:, None, :, None], ix[:, None, None, :]), out.shape)
    flat, values = np.broadcast_arrays(flat, values)
    np.add.at(out.reshape(-1), flat.ravel(), values.ravel().astype(np.float32))


# ----------------------------------------------------------------------------- bubbles and tubes


def bubtub(
    shape: Sequence[int],
    voxel_size: float | Sequence[float],
    n_bubbles: int = 20,
    n_tubes: int = 20,
    seed: SeedLike = 0,
    *,
    bubble_radius_um: float | Sequence[float] = (1.5, 6.0),
    shell_thickness_um: float | Sequence[float] = (0.3, 1.0),
    tube_radius_um: float | Sequence[float] = (0.2, 0.8),
    tube_length_fraction: float | Sequence[float] = (0.3, 1.0),
    intensity: float | Sequence[float] = (0.2, 1.0),
    return_params: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
    """ "Bubbles and tubes": hollow spherical shells and smooth tubes (SeReNet-style training volumes).

    Bubbles are thin hollow shells (membranes) with radius and thickness drawn
    from ``bubble_radius_um`` and ``shell_thickness_um``, centred anywhere in the
    volume (they may be cut by its borders). Tubes are cubic Bézier curves whose
    chord is ``tube_length_fraction`` of the largest field extent, through a
    random point of the volume, rendered with a radius from ``tube_radius_um``.
    Each object has its own intensity from ``intensity``; where objects overlap
    the brighter wins. Ranges are numbers or ``(low, high)`` pairs, in µm.

    With ``return_params`` it returns ``(volume, params)``; ``params`` holds
    ``bubble_centres_um`` ``(n_bubbles, 3)``, ``bubble_radii_um``,
    ``bubble_thickness_um``, ``bubble_intensity``, ``tube_control_points_um``
    ``(n_tubes, 4, 3)``, ``tube_radii_um`` and ``tube_intensity`` (intensities
    before the final scaling to maximum 1).
    """
    shape = _as_shape(shape)
    v = _as_voxel_size(voxel_size)
    n_bubbles = _as_count(n_bubbles, "n_bubbles")
    n_tubes = _as_count(n_tubes, "n_tubes")
    r_range = _as_range(bubble_radius_um, "bubble_radius_um")
    t_range = _as_range(shell_thickness_um, "shell_thickness_um")
    tr_range = _as_range(tube_radius_um, "tube_radius_um")
    len_range = _as_range(tube_length_fraction, "tube_length_fraction")
    i_range = _as_range(intensity, "intensity")
    rng = _rng(seed)
    extent = _extent_um(shape, v)

    # All random draws happen up front, in a fixed order, so params and volume match exactly.
    centres = rng.uniform(0.0, extent, size=(n_bubbles, 3))
    radii = rng.uniform(*r_range, size=n_bubbles)
    thickness = rng.uniform(*t_range, size=n_bubbles)
    b_intensity = rng.uniform(*i_range, size=n_bubbles)
    controls = _bezier_controls(rng, n_tubes, extent, len_range)
    t_radii = rng.uniform(*tr_range, size=n_tubes)
    t_intensity = rng.uniform(*i_range, size=n_tubes)

    volume = np.zeros(shape, dtype=np.float32)
    for c, r, t, value in zip(centres, radii, thickness, b_intensity, strict=True):
        rendered = _radial_coverage(shape, v, c, r, 0.5 * t)
        if rendered is not None:
            box, cover = rendered
            _paint_max(volume, box, value * cover)
    step = _resample_step(v)
    for ctrl, r, value in zip(controls, t_radii, t_intensity, strict=True):
        _render_polyline(volume, v, _bezier_points(ctrl, step), float(r), float(value))
    _normalise(volume)
    if return_params:
        params = {
            "bubble_centres_um": centres,
            "bubble_radii_um": radii,
            "bubble_thickness_um": thickness,
            "bubble_intensity": b_intensity,
            "tube_control_points_um": controls,
            "tube_radii_um": t_radii,
            "tube_intensity": t_intensity,
        }
        return volume, params
    return volume


def _random_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    d = rng.normal(size=(n, 3))
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


def _bezier_controls(
    rng: np.random.Generator, n: int, extent: np.ndarray, length_fraction: tuple[float, float]
) -> np.ndarray:
    """Control points ``(n, 4, 3)`` of smooth curves centred on random points of the volume."""
    centre = rng.uniform(0.0, extent, size=(n, 3))
    direction = _random_directions(rng, n)
    length = rng.uniform(*length_fraction, size=n) * float(extent.max())
    # Inner control points wander sideways by up to a third of the chord: visibly curved, never looped.
    bend = rng.normal(scale=0.3, size=(n, 2, 3)) * length[:, None, None]
    fractions = np.array([-0.5, -1 / 6, 1 / 6, 0.5])
    controls = centre[:, None, :] + fractions[None, :, None] * length[:, None, None] * direction[:, None, :]
    controls[:, 1:3] += bend
    return controls


def _bezier_points(ctrl: np.ndarray, step_um: float) -> np.ndarray:
    """Points along a cubic Bézier curve, at most ``step_um`` apart (the control polygon bounds its length)."""
    polygon = float(np.sum(np.linalg.norm(np.diff(ctrl, axis=0), axis=1)))
    n = max(2, int(math.ceil(polygon / step_um)) + 1)
    s = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - s) ** 3 * ctrl[0] + 3 * (1 - s) ** 2 * s * ctrl[1] + 3 * (1 - s) * s**2 * ctrl[2] + s**3 * ctrl[3]


# ----------------------------------------------------------------------------- filaments


def filaments(
    shape: Sequence[int],
    voxel_size: float | Sequence[float],
    n_filaments: int = 30,
    seed: SeedLike = 0,
    *,
    radius_um: float = 0.1,
    length_fraction: float | Sequence[float] = (0.5, 1.5),
    persistence_um: float | None = None,
    intensity: float | Sequence[float] = (0.4, 1.0),
) -> np.ndarray:
    """A network of long thin fibres (microtubule / actin-like), anti-aliased.

    Each fibre is a smooth random walk: its unit tangent is a Gaussian-smoothed
    random direction field added to a fixed heading, so it bends gradually over
    ``persistence_um`` (default: a fifth of the largest field extent). Its
    length is ``length_fraction`` of the largest field extent; it passes through
    a random point of the volume's central 80 % and is cut where it leaves the
    field. Fibres are drawn with ``radius_um`` (usually below a voxel: they then
    appear dimmer but keep their integrated brightness) and an intensity from
    ``intensity``; the volume is scaled to maximum 1.
    """
    shape = _as_shape(shape)
    v = _as_voxel_size(voxel_size)
    n_filaments = _as_count(n_filaments, "n_filaments")
    if not np.isfinite(radius_um) or radius_um <= 0:
        raise ValueError(f"radius_um must be > 0 µm, got {radius_um!r}")
    len_range = _as_range(length_fraction, "length_fraction")
    i_range = _as_range(intensity, "intensity")
    extent = _extent_um(shape, v)
    span = float(extent.max())
    persistence = 0.2 * span if persistence_um is None else float(persistence_um)
    if not np.isfinite(persistence) or persistence <= 0:
        raise ValueError(f"persistence_um must be > 0 µm, got {persistence_um!r}")
    rng = _rng(seed)
    step = _resample_step(v)

    volume = np.zeros(shape, dtype=np.float32)
    for _ in range(n_filaments):
        length = rng.uniform(*len_range) * span
        value = rng.uniform(*i_range)
        through = rng.uniform(0.1 * extent, 0.9 * extent)
        points = _smooth_walk(rng, length, step, persistence)
        points += through - points[len(points) // 2]
        _render_polyline(volume, v, points, float(radius_um), float(value))
    return _normalise(volume)


def _smooth_walk(rng: np.random.Generator, length_um: float, step_um: float, persistence_um: float) -> np.ndarray:
    """Points of a smooth random curve of ``length_um``, ``step_um`` apart, centred near the origin."""
    n = max(2, int(math.ceil(length_um / step_um)) + 1)
    sigma_steps = max(1.0, persistence_um / step_um)
    half = int(math.ceil(3 * sigma_steps))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_steps) ** 2)
    # Unit variance after smoothing, so the heading bias below sets the typical bending.
    kernel /= np.sqrt(np.sum(kernel**2))
    noise = rng.normal(size=(n + 2 * half, 3))
    smooth = np.stack([np.convolve(noise[:, k], kernel, mode="valid") for k in range(3)], axis=1)
    heading = _random_directions(rng, 1)[0]
    tangent = heading + 0.7 * smooth[:n]
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-12)
    points = np.concatenate([np.zeros((1, 3)), np.cumsum(tangent[:-1] * step_um, axis=0)])
    return points


# ----------------------------------------------------------------------------- larva-like


def zebrafish_like(
    shape: Sequence[int],
    voxel_size: float | Sequence[float],
    n_neurons: int = 300,
    seed: SeedLike = 0,
    *,
    neuron_radius_um: float | Sequence[float] = (2.0, 3.0),
    neuron_brightness: float | Sequence[float] = (0.25, 1.0),
    eyes: bool = True,
) -> np.ndarray:
    """A larval-zebrafish-like volume: body, brain with sparse bright neurons, dark eyes.

    The larva lies along X, head towards ``x = 0``, its body (an ellipsoid
    cut by the far X border) filling the field: weak, slowly varying
    autofluorescence. Three brain regions (fore-, mid- and hindbrain
    ellipsoids) add a faint neuropil signal and hold ``n_neurons`` somas:
    solid spheres with radius from ``neuron_radius_um`` (µm) and brightness
    from ``neuron_brightness``. With ``eyes``, two eyes (a faint rim around a
    dark pigmented core) sit either side of the forebrain. The body geometry follows the field of view;
    only the neurons have a fixed physical size. Scaled to maximum 1.
    """
    shape = _as_shape(shape)
    v = _as_voxel_size(voxel_size)
    n_neurons = _as_count(n_neurons, "n_neurons")
    r_range = _as_range(neuron_radius_um, "neuron_radius_um")
    b_range = _as_range(neuron_brightness, "neuron_brightness")
    rng = _rng(seed)
    extent = np.maximum(_extent_um(shape, v), v)  # a single plane still gets a finite "depth"
    ez, ey, ex = extent
    mid_z, mid_y = 0.5 * ez, 0.5 * ey

    volume = np.zeros(shape, dtype=np.float32)
    texture = _texture(shape, v, extent, rng)

    body_centre = np.array([mid_z, mid_y, 0.75 * ex])
    body = _ellipsoid_coverage(shape, v, body_centre, np.array([0.45 * ez, 0.3 * ey, 0.7 * ex]))
    if body is not None:
        box, cover = body
        volume[box] += _BODY_AUTOFLUORESCENCE * cover * texture[box]

    # (centre, semi-axes) of the brain regions, as fractions of the field extent.
    regions = [
        ((0.5, 0.5, 0.18), (0.25, 0.12, 0.08)),  # forebrain
        ((0.45, 0.42, 0.32), (0.3, 0.09, 0.09)),  # left optic tectum
        ((0.45, 0.58, 0.32), (0.3, 0.09, 0.09)),  # right optic tectum
        ((0.5, 0.5, 0.5), (0.3, 0.1, 0.14)),  # hindbrain
    ]
    centres = np.array([c for c, _ in regions]) * np.array([ez, ey, ex])
    semi_axes = np.array([a for _, a in regions]) * np.array([ez, ey, ex])
    neuropil = np.zeros(shape, dtype=np.float32)
    for c, a in zip(centres, semi_axes, strict=True):
        rendered = _ellipsoid_coverage(shape, v, c, a)
        if rendered is not None:
            _paint_max(neuropil, *rendered)
    volume += _NEUROPIL_LEVEL * neuropil * texture

    if eyes:
        # Eyes bulge out of the head: the eyeball carries the body's autofluorescence,
        # its pigmented core (most of it) absorbs and shows dark.
        eye_radius = float(min(0.1 * ex, 0.12 * ey, 0.45 * ez))
        for side in (-1, 1):
            eye_centre = np.array([mid_z, mid_y + side * 0.22 * ey, 0.2 * ex])
            rendered = _radial_coverage(shape, v, eye_centre, 0.0, eye_radius)
            if rendered is not None:
                box, cover = rendered
                _paint_max(volume, box, _BODY_AUTOFLUORESCENCE * cover * texture[box])
            rendered = _radial_coverage(shape, v, eye_centre, 0.0, _EYE_PIGMENT_FRACTION * eye_radius)
            if rendered is not None:
                box, cover = rendered
                volume[box] *= 1.0 - _EYE_PIGMENT_ABSORPTION * cover

    positions = _points_in_ellipsoids(rng, n_neurons, centres, semi_axes)
    radii = rng.uniform(*r_range, size=n_neurons)
    brightness = rng.uniform(*b_range, size=n_neurons)
    for p, r, value in zip(positions, radii, brightness, strict=True):
        rendered = _radial_coverage(shape, v, p, 0.0, float(r))
        if rendered is not None:
            box, cover = rendered
            _paint_max(volume, box, value * cover)
    return _normalise(volume)


def _texture(shape: tuple[int, int, int], v: np.ndarray, extent: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth positive modulation around 1 (sum of a few random long-wavelength plane waves)."""
    n_waves = 3
    z = (np.arange(shape[0]) * v[0]).astype(np.float32)[:, None, None]
    y = (np.arange(shape[1]) * v[1]).astype(np.float32)[None, :, None]
    x = (np.arange(shape[2]) * v[2]).astype(np.float32)[None, None, :]
    field = np.zeros(shape, dtype=np.float32)
    for _ in range(n_waves):
        # Wavelengths of a third to a whole field: structure, but no voxel-scale noise.
        k = 2 * np.pi * rng.uniform(1.0, 3.0, size=3) / extent * rng.choice([-1, 1], size=3)
        phase = rng.uniform(0, 2 * np.pi)
        # cos(a + b + c) split into separable factors would be faster but this is already ~0.1 s at 4 M voxels.
        field += np.cos(np.float32(k[0]) * z + np.float32(k[1]) * y + np.float32(k[2]) * x + np.float32(phase))
    return 1.0 + np.float32(_TEXTURE_DEPTH / n_waves) * field


def _points_in_ellipsoids(rng: np.random.Generator, n: int, centres: np.ndarray, semi_axes: np.ndarray) -> np.ndarray:
    """``n`` points uniform in the union of ellipsoids (rejection from their joint bounding box)."""
    lo = (centres - semi_axes).min(axis=0)
    hi = (centres + semi_axes).max(axis=0)
    found: list[np.ndarray] = []
    total = 0
    while total < n:
        candidates = rng.uniform(lo, hi, size=(max(4 * (n - total), 64), 3))
        q = (candidates[:, None, :] - centres[None]) / semi_axes[None]
        inside = np.any(np.sum(q * q, axis=-1) <= 1.0, axis=1)
        found.append(candidates[inside])
        total += int(inside.sum())
    return np.concatenate(found)[:n] if n else np.empty((0, 3))
