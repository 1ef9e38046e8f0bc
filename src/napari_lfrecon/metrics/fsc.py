"""Fourier shell / ring correlation (FSC in 3D, FRC in 2D) with a resolution estimate in µm. No Qt.

For two arrays ``a``, ``b`` with DFTs ``A``, ``B`` and shells ``S_k`` of
physical spatial frequency ``|f| ≈ k·Δf`` (1/µm)::

    FSC_k = Re Σ_{S_k} A·B* / √(Σ_{S_k} |A|² · Σ_{S_k} |B|²)

Frequencies are physical: along axis ``i`` the DFT index ``m`` is
``m / (N_i · d_i)`` µm⁻¹, so anisotropic voxels (a coarse z step) are handled
by measuring ``|f|`` in µm⁻¹, not in index units. The shell width ``Δf`` is the
coarsest frequency step ``max_i 1 / (N_i · d_i)`` (so every shell meets the
sampling grid of every axis) and shells run up to the lowest Nyquist
frequency ``min_i 1 / (2 d_i)``: beyond it a shell is no longer sampled in all
directions. The resolution is ``1 / f`` at the first crossing of the curve
below the threshold (linear interpolation between shells).

Thresholds, by how ``a`` and ``b`` were made:

* ``"1/7"`` (0.143) or ``"half-bit"``: two *independent half-data*
  reconstructions (raw data split by :func:`~napari_lfrecon.metrics.halves.binomial_split`
  or :func:`~napari_lfrecon.metrics.halves.odd_even_split`, each half
  reconstructed; never two halves of one reconstruction, whose noise is correlated);
* ``"reference"`` (0.5): a reconstruction against a noise-free reference;
* or any number in (0, 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._arrays import as_pair

#: Named thresholds (constant ones); "half-bit" depends on the shell size.
THRESHOLDS: dict[str, float] = {"1/7": 1.0 / 7.0, "reference": 0.5, "0.5": 0.5}
#: van Heel & Schatz (2005) half-bit curve constants: T = (a + b/√n) / (1 + a + (b − 1)/√n).
_HALF_BIT_A = 0.2071
_HALF_BIT_B = 1.9102


def threshold_curve(threshold: str | float, n_voxels: np.ndarray) -> np.ndarray:
    """The threshold per shell: a constant, or the half-bit curve for shells of ``n_voxels`` voxels."""
    n = np.asarray(n_voxels, dtype=np.float64)
    if isinstance(threshold, str):
        key = threshold.strip().lower()
        if key in ("half-bit", "halfbit", "half_bit"):
            root = np.sqrt(np.maximum(n, 1.0))
            return (_HALF_BIT_A + _HALF_BIT_B / root) / (1.0 + _HALF_BIT_A + (_HALF_BIT_B - 1.0) / root)
        if key not in THRESHOLDS:
            raise ValueError(
                f"threshold must be a number in (0, 1) or one of {sorted(THRESHOLDS) + ['half-bit']}, got {threshold!r}"
            )
        return np.full(n.shape, THRESHOLDS[key])
    value = float(threshold)
    if not 0.0 < value < 1.0:
        raise ValueError(f"a numeric FSC threshold must lie in (0, 1), got {threshold!r}")
    return np.full(n.shape, value)


def _voxel(voxel_size: float | Sequence[float], ndim: int) -> np.ndarray:
    v = np.asarray(voxel_size, dtype=np.float64)
    if v.ndim == 0:
        v = np.full(ndim, float(v))
    if v.shape != (ndim,) or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"voxel_size must be {ndim} positive numbers (µm) or one number, got {voxel_size!r}")
    return v


def fsc(
    a: Any,
    b: Any,
    voxel_size: float | Sequence[float],
    threshold: str | float = "1/7",
    *,
    shell_width: float | None = None,
) -> dict[str, Any]:
    """Fourier shell (3D) or ring (2D) correlation of ``a`` and ``b`` with a resolution estimate.

    ``voxel_size`` is ``(dz, dy, dx)`` (or ``(dy, dx)``, or one number) in µm;
    ``threshold`` as in the module docstring; ``shell_width`` in µm⁻¹ overrides
    the default shell width. Inputs are numpy arrays or torch tensors of the
    same shape. Returns a dict with ``frequency`` (shell centres, µm⁻¹),
    ``curve``, ``threshold`` (per shell), ``n_voxels`` (DFT samples per shell),
    ``resolution_um`` (``1 / f`` at the first crossing; ``inf`` when even the
    lowest shells are below threshold), ``crossing_frequency`` and ``crossed``
    (False when the curve stays above the threshold up to the last shell: the
    resolution is then limited by the sampling and reported as ``1 / f_max``).
    Shells without energy have a ``nan`` correlation, counted as below threshold.
    """
    x, y = as_pair(a, b, "fsc")
    if x.ndim not in (2, 3):
        raise ValueError(f"fsc needs 2D images (FRC) or 3D volumes (FSC), got shape {x.shape}")
    v = _voxel(voxel_size, x.ndim)
    shape = np.asarray(x.shape)
    step = float(np.max(1.0 / (shape * v))) if shell_width is None else float(shell_width)
    if not step > 0:
        raise ValueError(f"shell_width must be positive (µm⁻¹), got {shell_width!r}")
    f_max = float(np.min(1.0 / (2.0 * v)))
    # Real FFT: the last axis holds half the spectrum; all other bins there stand for a conjugate pair.
    fa = np.fft.rfftn(x)
    fb = np.fft.rfftn(y)
    freqs = [np.fft.fftfreq(n, d) for n, d in zip(x.shape[:-1], v[:-1], strict=True)]
    freqs.append(np.fft.rfftfreq(x.shape[-1], v[-1]))
    grids = np.meshgrid(*freqs, indexing="ij", sparse=True)
    radius = np.sqrt(sum(g**2 for g in grids))
    weight = np.full(fa.shape[-1], 2.0)
    weight[0] = 1.0
    if x.shape[-1] % 2 == 0:
        weight[-1] = 1.0
    weight = np.broadcast_to(weight, fa.shape)
    n_shells = int(math.floor(f_max / step + 1e-9)) + 1
    shell = np.floor(radius / step + 0.5).astype(np.int64)
    keep = shell < n_shells
    idx = shell[keep]
    w = weight[keep]

    def shell_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(idx, weights=(w * values[keep]), minlength=n_shells)

    cross = shell_sum((fa * np.conj(fb)).real)
    power_a = shell_sum(np.abs(fa) ** 2)
    power_b = shell_sum(np.abs(fb) ** 2)
    n_voxels = np.bincount(idx, weights=w, minlength=n_shells)
    with np.errstate(invalid="ignore", divide="ignore"):
        denominator = np.sqrt(power_a * power_b)
        curve = np.where(denominator > 0, cross / np.where(denominator > 0, denominator, 1.0), np.nan)
    frequency = np.arange(n_shells) * step
    thresholds = threshold_curve(threshold, n_voxels)
    f_cross, crossed = _first_crossing(frequency, curve, thresholds)
    resolution = float("inf") if f_cross <= 0 else 1.0 / f_cross
    return {
        "frequency": frequency,
        "curve": curve,
        "threshold": thresholds,
        "threshold_name": str(threshold),
        "n_voxels": n_voxels,
        "resolution_um": resolution,
        "crossing_frequency": f_cross,
        "crossed": crossed,
    }


def _first_crossing(frequency: np.ndarray, curve: np.ndarray, thresholds: np.ndarray) -> tuple[float, bool]:
    """Frequency where ``curve`` first falls below ``thresholds`` (after the zero shell), linearly interpolated."""
    margin = np.where(np.isnan(curve), -1.0, curve - thresholds)
    below = np.nonzero(margin[1:] < 0)[0]
    if below.size == 0:
        return float(frequency[-1]), False
    k = int(below[0]) + 1
    m0, m1 = margin[k - 1], margin[k]
    if m0 < 0:  # the zero-frequency shell itself is below threshold: nothing is resolved
        return 0.0, True
    t = m0 / (m0 - m1)
    return float(frequency[k - 1] + t * (frequency[k] - frequency[k - 1])), True


#: FRC is the 2D FSC; one function handles both.
frc = fsc
