"""Input checks every engine shares: clear messages, input never modified."""

from __future__ import annotations

import warnings

import numpy as np

from .base import EngineInputError


def checked_measurement(data: np.ndarray, *, non_negative: bool, what: str = "data") -> np.ndarray:
    """Return a float32 copy of ``data`` after checking it is usable.

    NaN/Inf and all-zero data raise :class:`EngineInputError`; negative values
    (normal after dark subtraction) are clipped to 0 with a warning when the
    engine needs non-negative data. The caller's array is never modified.
    """
    array = np.asarray(data)
    if array.size == 0:
        raise EngineInputError(f"the {what} is empty (shape {array.shape})")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise EngineInputError(f"the {what} must be a real numeric array, got dtype {array.dtype}")
    out = np.array(array, dtype=np.float32, copy=True)
    if not np.all(np.isfinite(out)):
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise EngineInputError(f"the {what} contains {bad} NaN or Inf value(s); remove or replace them first")
    if not np.any(out):
        raise EngineInputError(f"the {what} is all zeros: there is nothing to reconstruct")
    # Round-off negatives (e.g. from FFT filtering) are not worth a warning; real ones are.
    tolerance = 1e-6 * float(np.max(np.abs(out)))
    if non_negative and np.any(out < -tolerance):
        fraction = float(np.mean(out < -tolerance))
        warnings.warn(
            f"{fraction:.1%} of the {what} values are negative (normal after dark subtraction); "
            "they were clipped to 0 for this engine",
            stacklevel=3,
        )
    if non_negative:
        np.clip(out, 0, None, out=out)
        if not np.any(out):
            raise EngineInputError(f"the {what} has no positive values: there is nothing to reconstruct")
    return out
