"""Rendering primitives shared by the phantoms: argument checks and anti-aliased coverage of objects.

Voxel ``(iz, iy, ix)`` has its centre at ``(iz * dz, iy * dy, ix * dx)`` µm.
Each function renders into a small local box around an object (never the whole
volume per object); see :mod:`napari_lfrecon.data.phantoms` for the filters'
definitions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: What a ``seed`` argument accepts.
SeedLike = int | np.random.Generator | None

# Filter kernels for balls and tube cross-sections: a sphere with the volume of a cube, a disk with the area
# of a square, whose side is the voxel's width along the object's normal.
_BALL_KERNEL = (3.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
_DISK_KERNEL = 1.0 / math.sqrt(math.pi)
# A polyline is rendered as straight segments this many times the smallest voxel size long.
_SEGMENT_LENGTH_VOXELS = 1.0
# Upper bound on (segment, voxel) pairs processed at once, to bound memory.
_MAX_PAIRS_PER_CHUNK = 2_000_000


# ----------------------------------------------------------------------------- input checks


def _rng(seed: SeedLike) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (int, np.integer)):
        return np.random.default_rng(seed)
    raise ValueError(f"seed must be an int, a numpy Generator or None, got {type(seed).__name__}")


def _as_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        values = list(shape)
        out = tuple(int(s) for s in values)
        integral = all(int(s) == s for s in values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"shape must be (Z, Y, X) positive integers, got {shape!r}") from exc
    if len(out) != 3 or min(out) < 1 or not integral:
        raise ValueError(f"shape must be (Z, Y, X) positive integers, got {shape!r}")
    return out  # type: ignore[return-value]


def _as_voxel_size(voxel_size: float | Sequence[float]) -> np.ndarray:
    try:
        v = np.asarray(voxel_size, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"voxel_size must be (dz, dy, dx) positive µm, got {voxel_size!r}") from exc
    if v.ndim == 0:
        v = np.full(3, float(v))
    if v.shape != (3,) or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"voxel_size must be (dz, dy, dx) positive µm (or one number), got {voxel_size!r}")
    return v


def _as_range(value: float | Sequence[float], name: str, *, positive: bool = True) -> tuple[float, float]:
    """A ``(low, high)`` range from a number or a pair; ``low ≤ high``, both > 0 when ``positive``."""
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.shape == (1,):
        arr = np.repeat(arr, 2)
    if arr.shape != (2,) or not np.all(np.isfinite(arr)) or arr[0] > arr[1]:
        raise ValueError(f"{name} must be a number or a (low, high) pair with low ≤ high, got {value!r}")
    if positive and arr[0] <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if not positive and arr[0] < 0:
        raise ValueError(f"{name} must be ≥ 0, got {value!r}")
    return float(arr[0]), float(arr[1])


def _as_count(n: int, name: str) -> int:
    if int(n) != n or n < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    return int(n)


def _extent_um(shape: tuple[int, int, int], v: np.ndarray) -> np.ndarray:
    """Distance between the centres of the first and last voxel along each axis (µm)."""
    return (np.asarray(shape) - 1) * v


def _normalise(volume: np.ndarray) -> np.ndarray:
    """Scale to maximum 1 (the contract of every generator) and clip rounding excursions."""
    peak = float(volume.max()) if volume.size else 0.0
    if peak > 0:
        volume /= np.float32(peak)
    np.clip(volume, 0.0, 1.0, out=volume)
    return volume.astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- anti-aliased rendering


def _slab_coverage(s: np.ndarray, half: np.ndarray | float, width: np.ndarray) -> np.ndarray:
    """Fraction of a voxel of ``width`` (along the normal) inside the slab ``|s| ≤ half``.

    ``s`` is the voxel centre's coordinate along the normal. This is the exact
    1D box-filter overlap, so membranes thinner than a voxel keep their
    integrated brightness (peak ``2·half/width``) instead of vanishing.
    """
    overlap = np.minimum(half, s + 0.5 * width) - np.maximum(-half, s - 0.5 * width)
    return np.clip(overlap / width, 0.0, 1.0)


def _ball_coverage(d: np.ndarray, radius: float, kernel: np.ndarray) -> np.ndarray:
    """Fraction of a ball of radius ``kernel`` centred ``d`` from a ball of ``radius`` that lies inside it.

    The ball is thus filtered with a normalised spherical kernel (lens-volume
    formula), which conserves its integrated brightness (4/3)πr³ even when it
    is smaller than a voxel, where a 1D edge ramp would inflate it.
    """
    d = np.asarray(d, dtype=np.float64)
    k = np.broadcast_to(kernel, d.shape)
    full = np.minimum(radius, k) ** 3 / k**3
    lens = (d > np.abs(radius - k)) & (d < radius + k)
    ds, ks = np.where(lens, d, 1.0), np.where(lens, k, 1.0)
    volume = (
        np.pi
        * (radius + ks - ds) ** 2
        * (ds**2 + 2 * ds * ks - 3 * ks**2 + 2 * ds * radius + 6 * ks * radius - 3 * radius**2)
        / (12 * ds)
    )
    out = np.where(d <= np.abs(radius - k), full, 0.0)
    return np.where(lens, volume / (4.0 / 3.0 * np.pi * ks**3), out)


def _disk_coverage(d: np.ndarray, radius: float, kernel: np.ndarray) -> np.ndarray:
    """2D analogue of :func:`_ball_coverage` for a tube's cross-section (lens-area formula).

    Conserves the cross-section πr² of tubes thinner than a voxel.
    """
    d = np.asarray(d, dtype=np.float64)
    k = np.broadcast_to(kernel, d.shape)
    full = np.minimum(radius, k) ** 2 / k**2
    lens = (d > np.abs(radius - k)) & (d < radius + k)
    ds, ks = np.where(lens, d, 1.0), np.where(lens, k, 1.0)
    cos_r = np.clip((ds**2 + radius**2 - ks**2) / (2 * ds * radius), -1.0, 1.0)
    cos_k = np.clip((ds**2 + ks**2 - radius**2) / (2 * ds * ks), -1.0, 1.0)
    heron = (-ds + radius + ks) * (ds + radius - ks) * (ds - radius + ks) * (ds + radius + ks)
    area = radius**2 * np.arccos(cos_r) + ks**2 * np.arccos(cos_k) - 0.5 * np.sqrt(np.clip(heron, 0.0, None))
    out = np.where(d <= np.abs(radius - k), full, 0.0)
    return np.where(lens, area / (np.pi * ks**2), out)


def _box(
    centre_um: np.ndarray, reach_um: float, v: np.ndarray, shape: tuple[int, int, int]
) -> tuple[slice, ...] | None:
    """Index slices of the voxels within ``reach_um`` of ``centre_um`` per axis, clipped; None if outside."""
    lo = np.maximum(np.floor((centre_um - reach_um) / v).astype(int), 0)
    hi = np.minimum(np.ceil((centre_um + reach_um) / v).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _grid_um(box: tuple[slice, ...], v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Broadcastable voxel-centre coordinates (µm) of a box."""
    z = (np.arange(box[0].start, box[0].stop) * v[0])[:, None, None]
    y = (np.arange(box[1].start, box[1].stop) * v[1])[None, :, None]
    x = (np.arange(box[2].start, box[2].stop) * v[2])[None, None, :]
    return z, y, x


def _radial_coverage(
    shape: tuple[int, int, int],
    v: np.ndarray,
    centre_um: np.ndarray,
    radius_um: float,
    half_thickness_um: float,
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Coverage of a spherical shell ``| |p − c| − R | ≤ h`` in its bounding box.

    A solid ball of radius ``r`` is the shell with ``R = 0`` and ``h = r``.
    """
    reach = radius_um + half_thickness_um + float(np.linalg.norm(v))
    box = _box(centre_um, reach, v, shape)
    if box is None:
        return None
    z, y, x = _grid_um(box, v)
    dz, dy, dx = np.broadcast_arrays(
        (z - centre_um[0]).astype(np.float32),
        (y - centre_um[1]).astype(np.float32),
        (x - centre_um[2]).astype(np.float32),
    )
    r = np.sqrt(dz * dz + dy * dy + dx * dx)
    # Only voxels within half a voxel diagonal of the shell can be covered: skip the rest (most of a big bubble).
    near = np.abs(r - radius_um) <= half_thickness_um + 0.5 * float(np.linalg.norm(v))
    rn = r[near].astype(np.float64)
    # The radial direction is the shell's normal; at the exact centre any direction will do.
    safe = np.where(rn > 0, rn, 1.0)
    width = (np.abs(dz[near]) * v[0] + np.abs(dy[near]) * v[1] + np.abs(dx[near]) * v[2]) / safe
    width = np.where(rn > 0, width, v.min())
    cover = np.zeros(r.shape, dtype=np.float32)
    if radius_um == 0:
        cover[near] = _ball_coverage(rn, half_thickness_um, _BALL_KERNEL * width)
    else:
        cover[near] = _slab_coverage(rn - radius_um, half_thickness_um, width)
    return box, cover


def _ellipsoid_coverage(
    shape: tuple[int, int, int],
    v: np.ndarray,
    centre_um: np.ndarray,
    semi_axes_um: np.ndarray,
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Coverage of a solid axis-aligned ellipsoid in its bounding box.

    Uses the first-order distance estimate ``d ≈ k0 (k0 − 1) / k1`` with
    ``k0 = |q / a|`` and ``k1 = |q / a²|`` (exact on the surface, good within a
    voxel of it, which is all anti-aliasing needs), normal along ``q / a²``.
    """
    a = np.asarray(semi_axes_um, dtype=np.float64)
    reach = a + float(np.linalg.norm(v))
    lo = np.maximum(np.floor((centre_um - reach) / v).astype(int), 0)
    hi = np.minimum(np.ceil((centre_um + reach) / v).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    box = tuple(slice(int(p), int(q)) for p, q in zip(lo, hi, strict=True))
    z, y, x = _grid_um(box, v)
    # float32 keeps the whole-body envelope of a 64×256×256 volume fast.
    qz = ((z - centre_um[0]) / a[0]).astype(np.float32)
    qy = ((y - centre_um[1]) / a[1]).astype(np.float32)
    qx = ((x - centre_um[2]) / a[2]).astype(np.float32)
    k0 = np.sqrt(qz * qz + qy * qy + qx * qx)
    gz, gy, gx = qz / np.float32(a[0]), qy / np.float32(a[1]), qx / np.float32(a[2])
    k1 = np.sqrt(gz * gz + gy * gy + gx * gx)
    k1 = np.maximum(k1, np.float32(1e-12))
    distance = k0 * (k0 - 1.0) / k1
    width = (np.abs(gz) * np.float32(v[0]) + np.abs(gy) * np.float32(v[1]) + np.abs(gx) * np.float32(v[2])) / k1
    width = np.maximum(width, np.float32(v.min()))
    return box, np.clip(0.5 - distance / width, 0.0, 1.0)


def _paint_max(out: np.ndarray, box: tuple[slice, ...], values: np.ndarray) -> None:
    """Overlapping objects take the brighter value (keeps the volume within [0, 1])."""
    region = out[box]
    np.maximum(region, values.astype(np.float32, copy=False), out=region)


def _render_polyline(
    out: np.ndarray,
    v: np.ndarray,
    points_um: np.ndarray,
    radius_um: float,
    intensity: float,
) -> None:
    """Max-paint an anti-aliased tube of ``radius_um`` around a polyline (``(M, 3)`` µm) into ``out``.

    Every segment visits a fixed box of voxel offsets around its midpoint, all
    segments at once; each voxel takes the coverage from its distance to that
    segment, and ``maximum.at`` keeps the nearest segment's (largest) coverage.
    """
    shape = out.shape
    a, b = points_um[:-1], points_um[1:]
    seg = b - a
    length2 = np.einsum("ij,ij->i", seg, seg)
    mid = 0.5 * (a + b)
    half_len = 0.5 * np.sqrt(length2.max(initial=0.0))
    # A voxel can be covered only within radius + half its width (≤ |v|/2) of the centreline.
    reach = half_len + radius_um + 0.5 * float(np.linalg.norm(v))
    lo_bound, hi_bound = -reach, (np.asarray(shape) - 1) * v + reach
    keep = np.all((mid >= lo_bound) & (mid <= hi_bound), axis=1) & (length2 > 0)
    if not np.any(keep):
        return
    a, seg, mid, length2 = a[keep], seg[keep], mid[keep], length2[keep]
    half = np.ceil(reach / v).astype(int)
    offsets = np.stack(np.meshgrid(*(np.arange(-h, h + 1) for h in half), indexing="ij"), axis=-1).reshape(-1, 3)
    flat_out = out.reshape(-1)
    chunk = max(1, _MAX_PAIRS_PER_CHUNK // len(offsets))
    for start in range(0, len(a), chunk):
        sl = slice(start, start + chunk)
        centre_idx = np.rint(mid[sl] / v).astype(int)
        idx = centre_idx[:, None, :] + offsets[None, :, :]  # (m, K, 3)
        inside = np.all((idx >= 0) & (idx < np.asarray(shape)), axis=-1)
        p = idx * v
        rel = p - a[sl][:, None, :]
        t = np.clip(np.einsum("mkj,mj->mk", rel, seg[sl]) / length2[sl][:, None], 0.0, 1.0)
        perp = rel - t[..., None] * seg[sl][:, None, :]
        rho = np.sqrt(np.einsum("mkj,mkj->mk", perp, perp))
        safe = np.where(rho > 0, rho, 1.0)
        width = np.abs(perp) @ v / safe
        width = np.where(rho > 0, width, v.min())
        cover = _disk_coverage(rho, radius_um, _DISK_KERNEL * width)
        hit = inside & (cover > 0)
        if not np.any(hit):
            continue
        flat_idx = np.ravel_multi_index(tuple(idx[hit].T), shape)
        np.maximum.at(flat_out, flat_idx, (intensity * cover[hit]).astype(np.float32))


def _resample_step(v: np.ndarray) -> float:
    return _SEGMENT_LENGTH_VOXELS * float(v.min())


# ----------------------------------------------------------------------------- beads
