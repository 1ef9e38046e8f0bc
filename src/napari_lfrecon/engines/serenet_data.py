"""SeReNet's data side: measurements to views, simulated training frames, per-view registration.

No Qt. Views are ``(A, Ny, Nx)`` in the PSF's raster order; a raw light field
``(Y, X)`` is rearranged with :func:`napari_lfrecon.physics.lightfield.raw_to_views`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..psf.model import PSF
from .base import EngineInputError

#: Rounds of outlier rejection in the parallax fit, and the residual (lenslets) always accepted as an inlier.
_ROBUST_ROUNDS = 5
_OUTLIER_FLOOR_LENSLETS = 0.25
#: Phantom families the simulator knows (name → generator keyword defaults).
PHANTOM_FAMILIES = ("bubtub", "filaments", "beads")


def measurement_to_views(data: np.ndarray, psf: PSF) -> np.ndarray:
    """``(A, Ny, Nx)`` views from a raw light field ``(Y, X)`` or views ``(A, Ny, Nx)``; one frame.

    Raises :class:`EngineInputError` naming what the PSF expects when the
    shape does not fit.
    """
    from ..physics.lightfield import raw_to_views

    array = np.asarray(data, dtype=np.float32)
    n_views = int(psf.array.shape[0])
    nnum = int(psf.optics.get("pixels_per_lenslet", 0))
    if array.ndim == 2:
        if nnum <= 0 or array.shape[0] % nnum or array.shape[1] % nnum:
            raise EngineInputError(
                f"a raw light field must be a whole number of {nnum}×{nnum}-pixel lenslets for this PSF; "
                f"got a {array.shape[0]}×{array.shape[1]} frame"
            )
        return np.ascontiguousarray(raw_to_views(array, nnum))
    if array.ndim == 3:
        if array.shape[0] != n_views:
            raise EngineInputError(
                f"the light-field views have {array.shape[0]} angles but the PSF has {n_views} "
                f"({nnum}×{nnum}); give all views, or a raw frame"
            )
        return np.ascontiguousarray(array)
    raise EngineInputError(
        f"SeReNet needs one raw light field (Y, X) or its views ({n_views}, Ny, Nx); got shape {array.shape}"
    )


def frames_to_views(data: np.ndarray, psf: PSF) -> np.ndarray:
    """``(N, A, Ny, Nx)`` training views from one or many frames (raw ``(N, Y, X)`` or views ``(N, A, Ny, Nx)``)."""
    array = np.asarray(data, dtype=np.float32)
    n_views = int(psf.array.shape[0])
    if array.ndim == 2 or (array.ndim == 3 and array.shape[0] == n_views and n_views > 1):
        return measurement_to_views(array, psf)[None]
    if array.ndim == 3:
        return np.stack([measurement_to_views(frame, psf) for frame in array])
    if array.ndim == 4:
        return np.stack([measurement_to_views(frame, psf) for frame in array])
    raise EngineInputError(
        f"training data must be raw frames (N, Y, X) or views (N, {n_views}, Ny, Nx); got shape {array.shape}"
    )


def default_view_indices(psf: PSF) -> list[int]:
    """The views inside the objective's aperture (the PSF's ``view_mask``), else the views that carry light."""
    mask = psf.arrays.get("view_mask")
    if mask is not None and np.asarray(mask).shape == (psf.array.shape[0],) and np.any(mask):
        return [int(i) for i in np.nonzero(np.asarray(mask, dtype=bool))[0]]
    light = np.asarray(psf.array, dtype=np.float64).sum(axis=(1, 2, 3))
    return [int(i) for i in np.nonzero(light > 1e-3 * light.max())[0]]


def parse_view_indices(text: str | Sequence[int] | None, n_views: int) -> list[int] | None:
    """Indices from ``"0,4,9"`` / ``"3-7"`` ranges or a sequence; ``None`` or ``""`` means "not given"."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, str):
        indices: list[int] = []
        for part in text.replace(" ", "").split(","):
            if not part:
                continue
            try:
                if "-" in part:
                    lo, hi = (int(v) for v in part.split("-", 1))
                    indices.extend(range(lo, hi + 1))
                else:
                    indices.append(int(part))
            except ValueError:
                raise EngineInputError(f"view indices must look like '0,4,9' or '3-7', got {text!r}") from None
    else:
        indices = [int(v) for v in text]
    bad = [i for i in indices if not 0 <= i < n_views]
    if bad:
        raise EngineInputError(f"view indices must be in 0..{n_views - 1} (raster order); got {bad}")
    return sorted(set(indices))


def simulate_training_frames(
    psf: PSF,
    n_frames: int,
    lenslets: tuple[int, int],
    *,
    family: str = "bubtub",
    photons: tuple[float, float] = (200.0, 1000.0),
    background_e: float = 1.0,
    read_noise_e: float = 1.5,
    seed: int = 0,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Simulate noisy LF frames of a phantom family through ``psf``: ``(views, volumes, scales)``.

    ``views`` is ``(N, A, Ny, Nx)`` in photo-electrons (Poisson shot noise with
    a peak signal drawn log-uniformly from ``photons``, plus ``background_e``
    and Gaussian read noise, clipped at 0 like the shipped sample); ``volumes``
    ``(N, D, s·Ny, s·Nx)`` are the phantoms (maximum 1) and ``scales`` the
    factor that maps a phantom to the photo-electron volume a reconstruction
    estimates. Seeded: the same arguments give the same frames.
    """
    from ..data.simulate import simulate_acquisition
    from ..physics.phase_space import PhaseSpaceLF

    if family not in PHANTOM_FAMILIES:
        raise ValueError(f"phantom family must be one of {PHANTOM_FAMILIES}, got {family!r}")
    s = int(psf.optics.get("supersample", 1))
    depth = int(psf.array.shape[1])
    volume_shape = (depth, int(lenslets[0]) * s, int(lenslets[1]) * s)
    op = PhaseSpaceLF(psf.array, s, volume_shape)
    rng = np.random.default_rng(seed)
    views, volumes, scales = [], [], []
    for _ in range(int(n_frames)):
        if should_stop is not None and should_stop():
            break
        volume = _phantom(family, volume_shape, psf.voxel_size, rng)
        peak = float(np.exp(rng.uniform(np.log(photons[0]), np.log(photons[1]))))
        sim = simulate_acquisition(
            volume, op, photons=peak, background_e=background_e, read_noise_e=read_noise_e, seed=rng, clip_negative=True
        )
        views.append(sim["noisy"])
        volumes.append(volume)
        scales.append(float(sim["scale"]))
    return np.stack(views).astype(np.float32), np.stack(volumes).astype(np.float32), scales


def _phantom(family: str, shape: tuple[int, int, int], voxel: tuple[float, float, float], rng: np.random.Generator):
    from ..data import phantoms

    if family == "bubtub":
        # object sizes as in the shipped LFM sample, object count varied so density is not fixed
        return phantoms.bubtub(
            shape,
            voxel,
            n_bubbles=int(rng.integers(3, 10)),
            n_tubes=int(rng.integers(3, 10)),
            seed=rng,
            bubble_radius_um=(3.0, 7.0),
            shell_thickness_um=(0.8, 1.5),
            tube_radius_um=(0.6, 1.2),
        )
    if family == "filaments":
        return phantoms.filaments(shape, voxel, n_filaments=int(rng.integers(6, 14)), seed=rng, radius_um=0.8)
    return phantoms.beads(shape, voxel, n_beads=int(rng.integers(20, 60)), radius_um=0.8, seed=rng, margin_um=1.0)


# ----------------------------------------------------------------------------- registration


def estimate_view_shifts(views: np.ndarray, reference: int, *, upsample: int = 10) -> np.ndarray:
    """``(A, 2)`` shift ``(dy, dx)`` in lenslets of each view against view ``reference`` (cross-correlation peak).

    The peak of the FFT cross-correlation (mean removed, so flat backgrounds do
    not dominate) gives the integer shift; a parabola through the peak and its
    neighbours refines it to ``1/upsample`` lenslet. A positive shift means the
    view's content sits further along the axis than the reference's.
    """
    v = np.asarray(views, dtype=np.float64)
    if v.ndim != 3:
        raise ValueError(f"views must be (A, Ny, Nx), got shape {v.shape}")
    v = v - v.mean(axis=(1, 2), keepdims=True)
    ref = np.fft.rfft2(v[reference])
    corr = np.fft.irfft2(np.fft.rfft2(v) * np.conj(ref)[None], s=v.shape[1:])
    ny, nx = v.shape[1:]
    shifts = np.zeros((v.shape[0], 2))
    for a in range(v.shape[0]):
        c = corr[a]
        iy, ix = np.unravel_index(int(np.argmax(c)), c.shape)
        fine = []
        for axis, (i, n) in enumerate(((iy, ny), (ix, nx))):
            prev = c[(iy - 1) % ny, ix] if axis == 0 else c[iy, (ix - 1) % nx]
            nxt = c[(iy + 1) % ny, ix] if axis == 0 else c[iy, (ix + 1) % nx]
            denom = prev - 2 * c[iy, ix] + nxt
            delta = 0.5 * (prev - nxt) / denom if denom < 0 else 0.0
            pos = i + float(np.clip(delta, -0.5, 0.5))
            pos = pos - n if pos > n / 2 else pos  # wrap to a signed shift
            fine.append(round(pos * upsample) / upsample)
        shifts[a] = fine
    return shifts


def registration_corrections(views: np.ndarray, angles: np.ndarray, reference: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-view misregistration ``(A, 2)`` (lenslets) and the measured shifts.

    Each view's shift against the reference view mixes real parallax (for the
    sample's dominant depth, a linear function of the view's ray tangent) with
    misregistration (aberrations, a tilted lenslet array). A least-squares fit
    of ``shift = c + m·tan θ`` per axis, refitted without outlying views, models
    the parallax; the residual is the misregistration to remove before
    reconstructing.
    """
    measured = estimate_view_shifts(views, reference)
    design = np.column_stack([np.ones(len(angles)), np.asarray(angles, dtype=np.float64)])
    inliers = np.ones(len(measured), dtype=bool)
    residual = np.zeros_like(measured)
    for _ in range(_ROBUST_ROUNDS):
        # a misregistered view would pull an ordinary least-squares fit towards itself: refit without outliers
        for axis in range(2):
            coef, *_ = np.linalg.lstsq(design[inliers], measured[inliers, axis], rcond=None)
            residual[:, axis] = measured[:, axis] - design @ coef
        size = np.hypot(residual[:, 0], residual[:, 1])
        spread = 1.4826 * float(np.median(np.abs(size[inliers] - np.median(size[inliers]))))
        keep = size <= max(_OUTLIER_FLOOR_LENSLETS, 3.0 * spread)
        if keep.sum() < design.shape[1] + 1 or np.array_equal(keep, inliers):
            break
        inliers = keep
    return residual, measured


def shift_views(views: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Move each of ``(B, A, Ny, Nx)`` views by ``−shifts[a]`` lenslets (bilinear, zeros outside)."""
    from .serenet_model import refocus

    return refocus(views, shifts[:, None, :])[:, :, 0]


__all__ = [
    "PHANTOM_FAMILIES",
    "default_view_indices",
    "estimate_view_shifts",
    "frames_to_views",
    "measurement_to_views",
    "parse_view_indices",
    "registration_corrections",
    "shift_views",
    "simulate_training_frames",
]
