"""Pixel-wise quality numbers (no Qt)."""

from __future__ import annotations

import numpy as np


def psnr(pred: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB: ``10·log10(data_range² / mean((pred − ref)²))``.

    ``data_range`` is explicit (no guessing from dtype); identical inputs give ``inf``.
    """
    pred = np.asarray(pred, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape:
        raise ValueError(f"psnr needs arrays of the same shape, got {pred.shape} and {ref.shape}")
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    mse = float(np.mean((pred - ref) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(data_range**2 / mse)
