"""Split raw data into two statistically independent halves for half-data FSC. No Qt.

Half-data FSC compares two reconstructions made from *independent* halves of
the measurement. Split the raw data (never a reconstruction: its two halves
share noise through the reconstruction and overestimate the resolution), then
reconstruct each half with the same engine and settings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._arrays import as_array


def binomial_split(counts: Any, seed: int | np.random.Generator | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Binomial thinning of a photon-count image into two independent halves.

    Each pixel's count ``n`` (photo-electrons, rounded to an integer) is split
    as ``h1 ~ Binomial(n, ½)``, ``h2 = n − h1``: for Poisson data ``h1`` and
    ``h2`` are independent Poisson images with half the mean. Negative values
    (read noise around a zero background) are set to 0 first; data with
    strong read noise is only approximately Poisson, and the halves are then
    only approximately independent. Returns two float32 arrays.
    """
    data = as_array(counts, "counts")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = np.rint(np.clip(data, 0.0, None)).astype(np.int64)
    first = rng.binomial(n, 0.5)
    return first.astype(np.float32), (n - first).astype(np.float32)


def odd_even_split(frames: Any, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Even- and odd-indexed frames along ``axis`` (repeated acquisitions of the same scene, e.g. a time series).

    Each half is returned as a float32 array; average or sum each before
    reconstructing, as you would the full set.
    """
    data = as_array(frames, "frames")
    if data.ndim == 0 or data.shape[axis] < 2:
        raise ValueError(f"odd_even_split needs at least 2 frames along axis {axis}, got shape {data.shape}")
    even = np.take(data, np.arange(0, data.shape[axis], 2), axis=axis)
    odd = np.take(data, np.arange(1, data.shape[axis], 2), axis=axis)
    return even.astype(np.float32), odd.astype(np.float32)
