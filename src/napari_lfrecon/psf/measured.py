"""Use a measured bead stack directly as a widefield PSF.

Steps: find the single bead (:func:`.calibrate_bead.find_bead`, which refuses
no bead, several beads or a bead at the border), subtract the background
(median of the stack unless given) and clip at 0, locate the bead to sub-voxel
precision (intensity-weighted centroid of its bright core), shift it by a
Fourier phase ramp so it sits exactly at index ``shape // 2``, crop, normalise
to sum 1 and, if asked, resample to the data's voxel size with
:func:`.resample.resample_psf`.

No optical model is assumed, so this also works for PSFs a widefield model
cannot describe (e.g. a lattice light-sheet's excitation × detection PSF).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .calibrate_bead import find_bead
from .model import PSF
from .resample import resample_psf


def bead_centre(stack: np.ndarray, peak_index: Sequence[int], *, radius: int = 3) -> np.ndarray:
    """Sub-voxel ``(z, y, x)`` of the bead: centroid of the voxels above half the peak within ``radius`` of it.

    ``stack`` must already have its background removed. Half-maximum
    thresholding keeps the dim, asymmetric wings (and noise) from pulling
    the centroid.
    """
    stack = np.asarray(stack, dtype=np.float64)
    lo = [max(int(p) - radius, 0) for p in peak_index]
    hi = [min(int(p) + radius + 1, s) for p, s in zip(peak_index, stack.shape, strict=True)]
    window = stack[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    peak = float(window.max())
    weights = np.where(window > 0.5 * peak, window - 0.5 * peak, 0.0)
    coords = np.indices(window.shape).reshape(3, -1).astype(np.float64)
    centre = coords @ weights.ravel() / max(float(weights.sum()), 1e-30)
    return centre + np.asarray(lo, dtype=np.float64)


def _fourier_shift(array: np.ndarray, shift: Sequence[float]) -> np.ndarray:
    """``array`` moved by ``shift`` voxels (positive = towards higher indices), periodic, by a phase ramp."""
    spectrum = np.fft.fftn(array)
    for axis, (n, s) in enumerate(zip(array.shape, shift, strict=True)):
        freq = np.fft.fftfreq(n)
        ramp = np.exp(-2j * np.pi * freq * s)
        shape = [1] * array.ndim
        shape[axis] = n
        spectrum = spectrum * ramp.reshape(shape)
    return np.fft.ifftn(spectrum).real


def measured_psf(
    stack: np.ndarray,
    voxel_size: Sequence[float],
    *,
    target_voxel_size: Sequence[float] | None = None,
    shape: Sequence[int] | None = None,
    background: float | None = None,
    optics: dict[str, Any] | None = None,
) -> PSF:
    """A widefield :class:`.PSF` made from a measured bead stack ``(Z, Y, X)`` sampled at ``voxel_size`` (µm).

    Parameters
    ----------
    stack:
        The bead stack (any real dtype; camera counts or photo-electrons).
    voxel_size:
        The stack's ``(dz, dy, dx)`` in µm.
    target_voxel_size:
        Resample the PSF to this voxel size (the data's); ``None`` keeps ``voxel_size``.
    shape:
        Size of the PSF window (odd sizes keep the window symmetric about the
        bead); ``None`` takes the largest window centred on the bead that fits
        in the stack.
    background:
        Value subtracted before use; ``None`` uses the stack's median.
    optics:
        Optional optics to record (``na``, ``wavelength_um``, ...).
    """
    voxel = tuple(float(v) for v in voxel_size)
    if len(voxel) != 3 or min(voxel) <= 0:
        raise ValueError(f"voxel_size must be three positive numbers (dz, dy, dx) in µm, got {tuple(voxel_size)}")
    stack = np.asarray(stack, dtype=np.float64)
    location = find_bead(stack)
    level = location.background if background is None else float(background)
    clean = np.clip(stack - level, 0.0, None)
    centre = bead_centre(clean, location.index_zyx)
    # Largest window centred on the bead's voxel that stays inside the stack.
    peak = np.asarray(location.index_zyx)
    half_max = np.minimum(peak, np.asarray(stack.shape) - 1 - peak)
    if shape is None:
        half = half_max
    else:
        wanted = np.asarray([int(s) for s in shape])
        if wanted.size != 3 or np.any(wanted < 1):
            raise ValueError(f"shape must be three positive integers (Z, Y, X), got {tuple(shape)}")
        half = wanted // 2
        if np.any(half > half_max):
            raise ValueError(
                f"a {tuple(int(s) for s in wanted)} window centred on the bead at {tuple(int(p) for p in peak)} "
                f"does not fit in the {stack.shape} stack; expected at most {tuple(int(2 * h + 1) for h in half_max)}"
            )
    lo = peak - half
    window = clean[lo[0] : peak[0] + half[0] + 1, lo[1] : peak[1] + half[1] + 1, lo[2] : peak[2] + half[2] + 1]
    # Move the sub-voxel centre onto the window's centre index (= half, i.e. shape // 2 for odd sizes).
    # Thresholded centroids are biased by where the grid cuts the peak; re-measuring on the
    # shifted window and accumulating converges to the point about which the core is symmetric.
    total_shift = (centre - lo) - half
    shifted = window
    for _ in range(4):
        shifted = np.clip(_fourier_shift(window, -total_shift), 0.0, None)
        total_shift = total_shift + (bead_centre(shifted, tuple(int(h) for h in half)) - half)
    window = np.clip(_fourier_shift(window, -total_shift), 0.0, None)
    if shape is not None and any(int(s) % 2 == 0 for s in shape):
        # Even sizes: drop the last sample so the centre stays at shape // 2.
        window = window[tuple(slice(0, int(s)) for s in shape)]
    total = float(window.sum())
    if total <= 0:
        raise ValueError("the bead stack has no signal above its background; expected a bright bead")
    record = {"psf_model": "measured bead", "background_removed": level, "source_voxel_size": list(voxel)}
    record.update(optics or {})
    psf = PSF(
        array=(window / total).astype(np.float32),
        modality="widefield",
        voxel_size=voxel,
        optics=record,
        z_planes_um=(np.arange(window.shape[0]) - window.shape[0] // 2) * voxel[0],
    )
    if target_voxel_size is not None and tuple(float(v) for v in target_voxel_size) != voxel:
        psf = resample_psf(psf, tuple(float(v) for v in target_voxel_size))
    return psf
