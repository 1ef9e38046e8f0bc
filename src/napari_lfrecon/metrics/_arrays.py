"""Turn numpy arrays, torch tensors and array-likes into float64 numpy arrays for the metrics."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_array(x: Any, name: str) -> np.ndarray:
    """``x`` (numpy array, torch tensor or array-like) as a float64 numpy array.

    Torch tensors are detached and moved to the CPU first, so metrics accept
    a tensor straight from an engine on any device.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    try:
        out = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array (numpy or torch), got {type(x).__name__}") from exc
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return out


def as_pair(pred: Any, ref: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as float64, checked to have the same shape."""
    a, b = as_array(pred, "pred"), as_array(ref, "ref")
    if a.shape != b.shape:
        raise ValueError(f"{what} needs arrays of the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError(f"{what} needs non-empty arrays")
    return a, b


def check_range(data_range: float) -> float:
    """An explicit, positive, finite data range (no guessing from the dtype)."""
    value = float(data_range)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"data_range must be a positive number, got {data_range!r}")
    return value
