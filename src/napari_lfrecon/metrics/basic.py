"""Pixel-wise and structural quality numbers: PSNR and SSIM (2D and 3D, explicit data range). No Qt."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._arrays import as_pair, check_range

#: SSIM constants of Wang et al. (2004): Gaussian window σ = 1.5 px, K1 = 0.01, K2 = 0.03.
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
#: The Gaussian window is cut at this many σ (radius 5 px for σ = 1.5, an 11-px window as in the paper).
SSIM_TRUNCATE = 3.5


def psnr(pred: Any, ref: Any, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB: ``10·log10(data_range² / mean((pred − ref)²))``.

    ``pred`` and ``ref`` are numpy arrays or torch tensors of the same shape (any
    dimension); ``data_range`` is explicit (no guessing from the dtype).
    Identical inputs give ``inf``.
    """
    a, b = as_pair(pred, ref, "psnr")
    data_range = check_range(data_range)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def gaussian_window(sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE) -> np.ndarray:
    """The normalised 1D Gaussian weights of the SSIM window (odd length ``2·round(truncate·σ) + 1``)."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _filter(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Separable filtering along every axis, edges mirrored (``symmetric``, i.e. scipy's ``reflect``)."""
    radius = len(weights) // 2
    for axis in range(x.ndim):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (radius, radius)
        windows = sliding_window_view(np.pad(x, pad, mode="symmetric"), len(weights), axis=axis)
        x = windows @ weights
    return x


def ssim(
    pred: Any,
    ref: Any,
    data_range: float,
    *,
    sigma: float = SSIM_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> float:
    """Mean structural similarity (Wang et al. 2004) of two 2D images or 3D volumes.

    Local means, variances and covariance are Gaussian-weighted (σ = ``sigma``
    pixels along every axis, population statistics), with ``C1 = (k1·L)²`` and
    ``C2 = (k2·L)²`` for ``L = data_range``. The SSIM map is averaged over the
    voxels whose window lies inside the array (a margin of the window radius is
    dropped on every axis long enough to have an interior; shorter axes, such as
    the few planes of a thin stack, keep all voxels and are mirrored at the edges).
    Identical inputs give 1.
    """
    a, b = as_pair(pred, ref, "ssim")
    if a.ndim not in (2, 3):
        raise ValueError(f"ssim needs 2D images or 3D volumes, got {a.ndim}D arrays of shape {a.shape}")
    data_range = check_range(data_range)
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    weights = gaussian_window(sigma)
    mu_a, mu_b = _filter(a, weights), _filter(b, weights)
    var_a = _filter(a * a, weights) - mu_a**2
    var_b = _filter(b * b, weights) - mu_b**2
    cov = _filter(a * b, weights) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    radius = len(weights) // 2
    interior = tuple(slice(radius, n - radius) if n > 2 * radius else slice(None) for n in a.shape)
    return float(np.mean(ssim_map[interior]))
