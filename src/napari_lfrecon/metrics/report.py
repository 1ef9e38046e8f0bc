"""All readouts of one prediction against one reference at once (the Metrics widget and the benchmark). No Qt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._arrays import as_pair
from .basic import psnr, ssim
from .fourier import NIIV_AXES, fourier_psnr_sweep
from .fsc import fsc


def fit_scale(pred: np.ndarray, ref: np.ndarray) -> float:
    """Least-squares intensity factor ``s`` minimising ``‖s·pred − ref‖²`` (1 for an all-zero prediction).

    Reconstructions come in the measurement's units (photo-electrons) while a
    ground truth is normalised; PSNR and SSIM compare shapes only after this fit.
    """
    denominator = float(np.sum(pred * pred))
    return float(np.sum(pred * ref) / denominator) if denominator > 0 else 1.0


def default_planes(ndim: int) -> tuple[tuple[int, int], ...]:
    """Fourier-PSNR planes: niiv's xz and yz planes for volumes, the image itself for 2D."""
    return NIIV_AXES if ndim == 3 else ((-2, -1),)


def compare(
    pred: Any,
    ref: Any,
    voxel_size: Sequence[float],
    *,
    radius: float,
    data_range: float | None = None,
    rescale: bool = True,
    fsc_threshold: str | float = "reference",
    n_radii: int = 32,
) -> dict[str, Any]:
    """PSNR, SSIM, Fourier-PSNR at ``radius`` (+ sweep) and FSC of ``pred`` against ``ref``.

    ``rescale`` first fits ``pred``'s intensity scale onto ``ref`` (see
    :func:`fit_scale`); ``data_range`` defaults to ``ref.max() − ref.min()``.
    ``fsc_threshold`` is ``"reference"`` (0.5) for a noise-free reference, or
    ``"1/7"`` / ``"half-bit"`` when ``pred`` and ``ref`` are two half-data
    reconstructions. Returns a dict of floats plus ``sweep`` and ``fsc`` (the
    dicts of :func:`fourier_psnr_sweep` and :func:`fsc`).
    """
    a, b = as_pair(pred, ref, "compare")
    scale = fit_scale(a, b) if rescale else 1.0
    a = a * scale
    if data_range is None:
        data_range = float(b.max() - b.min()) or 1.0
    planes = default_planes(a.ndim)
    sweep = fourier_psnr_sweep(a, b, data_range=data_range, axes=planes, n_radii=n_radii)
    at_radius = fourier_psnr_sweep(a, b, [radius], data_range=data_range, axes=planes)["fourier_psnr"][0]
    ring = fsc(a, b, voxel_size[-a.ndim :], threshold=fsc_threshold)
    return {
        "psnr": psnr(a, b, data_range),
        "ssim": ssim(a, b, data_range) if a.ndim in (2, 3) else float("nan"),
        "fourier_psnr": float(at_radius),
        "radius": float(radius),
        "resolution_um": ring["resolution_um"],
        "scale": scale,
        "data_range": float(data_range),
        "sweep": sweep,
        "fsc": ring,
    }
