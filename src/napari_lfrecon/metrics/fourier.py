"""Fourier-PSNR (niiv's "clipped Fourier PSNR") and its sweep over low-pass radii. No Qt.

For one 2D slice of size ``H × W``, with ``ΔF`` the centred (``fftshift``ed)
unnormalised DFT of ``pred − ref`` and ``D_r`` the ideal low-pass disc of radius
``r`` in frequency-index units around index ``(H // 2, W // 2)``::

    FPSNR_r = 20·log10(data_range · H·W) − 10·log10(Σ_{k ∈ D_r} |ΔF_k|²)

By Parseval (``Σ|ΔF|² = H·W · Σ|Δx|²``), a disc covering the whole spectrum
(``r ≥ √(H² + W²) / 2``) gives exactly the slice's PSNR; smaller discs measure
the error in the low frequencies only. The value is computed per slice over
the chosen plane ``axes`` and averaged (niiv averages the xz and yz planes of
a volume: pass ``axes=((-3, -1), (-3, -2))``; several planes are averaged per
orientation, then over orientations). Slices with no error at all inside the
disc (``inf``, e.g. empty edge slices a prediction also leaves empty) carry no
information and are left out of the average; if every slice is perfect the
result is ``inf``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._arrays import as_pair, check_range

Axes = tuple[int, int] | Sequence[tuple[int, int]]

#: Plane orientations niiv evaluates a volume on: the xz and yz planes.
NIIV_AXES: tuple[tuple[int, int], ...] = ((-3, -1), (-3, -2))
#: Default number of radii in a sweep.
SWEEP_POINTS = 32


def _planes(axes: Any, ndim: int) -> list[tuple[int, int]]:
    """``axes`` as a list of normalised (non-negative, distinct) axis pairs."""
    try:
        pairs = [tuple(int(a) for a in axes)] if np.ndim(axes) == 1 else [tuple(int(a) for a in p) for p in axes]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"axes must be a pair of axes or a sequence of pairs, got {axes!r}") from exc
    out = []
    for pair in pairs:
        if len(pair) != 2 or any(not -ndim <= a < ndim for a in pair):
            raise ValueError(f"axes {pair} do not name two axes of a {ndim}D array")
        p = (pair[0] % ndim, pair[1] % ndim)
        if p[0] == p[1]:
            raise ValueError(f"axes {pair} name the same axis twice")
        out.append(p)
    if not out:
        raise ValueError("axes must name at least one plane")
    return out


def _sorted_energy(diff: np.ndarray, plane: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Per slice of ``plane``: cumulative spectral error energy sorted by distance from the centre.

    Returns ``(distances_sorted, cumulative (n_slices, H·W), H·W)``.
    """
    moved = np.moveaxis(diff, plane, (-2, -1))
    height, width = moved.shape[-2:]
    slices = moved.reshape(-1, height, width)
    spectrum = np.fft.fftshift(np.fft.fft2(slices), axes=(-2, -1))
    energy = (spectrum.real**2 + spectrum.imag**2).reshape(len(slices), -1)
    y = np.arange(height) - height // 2
    x = np.arange(width) - width // 2
    dist = np.sqrt(y[:, None] ** 2 + x[None, :] ** 2).ravel()
    order = np.argsort(dist, kind="stable")
    return dist[order], np.cumsum(energy[:, order], axis=1), height * width


def _values(
    dist: np.ndarray, cumulative: np.ndarray, n_pixels: int, radii: np.ndarray, data_range: float
) -> np.ndarray:
    """Fourier-PSNR ``(n_slices, n_radii)`` from the sorted cumulative energies."""
    counts = np.searchsorted(dist, radii, side="right")
    inside = np.where(counts[None, :] > 0, cumulative[:, np.maximum(counts - 1, 0)], 0.0)
    with np.errstate(divide="ignore"):
        return 20.0 * math.log10(data_range * n_pixels) - 10.0 * np.log10(inside)


def _check_radii(radii: Any) -> np.ndarray:
    values = np.atleast_1d(np.asarray(radii, dtype=np.float64))
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"radii must be non-negative numbers (frequency-index units), got {radii!r}")
    return values


def fourier_psnr_sweep(
    pred: Any,
    ref: Any,
    radii: Sequence[float] | np.ndarray | None = None,
    *,
    data_range: float = 1.0,
    axes: Axes = (-2, -1),
    n_radii: int = SWEEP_POINTS,
) -> dict[str, np.ndarray]:
    """Fourier-PSNR at several low-pass radii (see the module docstring for the definition).

    ``radii`` are in frequency-index units; by default ``n_radii`` evenly spaced
    from 1 to the largest ``√(H² + W²) / 2`` of the chosen planes (the last one
    covers every spectrum, i.e. equals the mean per-slice PSNR). Returns
    ``{"radius": (n,), "fourier_psnr": (n,)}`` in dB; a disc holding no error
    gives ``inf``. Inputs are numpy arrays or torch tensors of the same shape.
    """
    a, b = as_pair(pred, ref, "fourier_psnr")
    if a.ndim < 2:
        raise ValueError(f"fourier_psnr needs arrays with at least 2 dimensions, got shape {a.shape}")
    data_range = check_range(data_range)
    planes = _planes(axes, a.ndim)
    if radii is None:
        if int(n_radii) < 1:
            raise ValueError(f"n_radii must be a positive integer, got {n_radii}")
        largest = max(math.hypot(a.shape[p[0]], a.shape[p[1]]) / 2 for p in planes)
        radii_arr = np.linspace(1.0, largest, int(n_radii))
    else:
        radii_arr = _check_radii(radii)
    diff = a - b
    per_plane = [_finite_mean(_values(*_sorted_energy(diff, p), radii_arr, data_range)) for p in planes]
    return {"radius": radii_arr, "fourier_psnr": np.mean(per_plane, axis=0)}


def _finite_mean(values: np.ndarray) -> np.ndarray:
    """Mean over slices (axis 0) of the finite values; ``inf`` where every slice is error-free."""
    finite = np.isfinite(values)
    total = np.where(finite, values, 0.0).sum(axis=0)
    count = finite.sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.inf)


def fourier_psnr(
    pred: Any,
    ref: Any,
    radius: float,
    data_range: float = 1.0,
    axes: Axes = (-2, -1),
) -> float:
    """Fourier-PSNR (dB) of ``pred`` against ``ref`` with a low-pass disc of ``radius`` frequency indices.

    Computed per 2D slice over the plane ``axes`` (a pair, or several pairs
    such as niiv's xz and yz planes ``((-3, -1), (-3, -2))``) and averaged; with
    ``radius ≥ √(H² + W²) / 2`` it equals the mean per-slice PSNR.
    """
    return float(fourier_psnr_sweep(pred, ref, [radius], data_range=data_range, axes=axes)["fourier_psnr"][0])
