"""Widefield PSF: the scalar pupil model with Zernike aberrations (torch, differentiable).

Model (object space, micrometres, cycles/µm in the pupil):

    P_z(k) = circ(|k| <= NA/λ) · exp(i2π Σ_j c_j Z_j(ρ, θ)) · exp(i2π z kz),
    kz = sqrt((n/λ)² - |k|²),  ρ = |k| λ / NA,
    PSF(z, y, x) = |∫ P_z(k) exp(i2π k·r) d²k|²,

with uniform pupil amplitude (no apodisation, no vector effects) and ``c_j`` in
waves (ANSI/OSA order, unit-RMS modes, see :mod:`.zernike`). Planes are at
``z = (arange(Z) - Z//2) · dz`` and lateral samples at ``(arange(N) - N//2) · d``,
so the unaberrated focus is exactly at index ``shape // 2`` on every axis.

Sampling (see :mod:`.pupil`): the pupil has its own grid sized from the optics
and the field is evaluated directly at the voxel centres (matrix Fourier
transform), so the pupil is never cut or under-resolved however small or
coarse the output grid is. By default the PSF is *point-sampled* at voxel
centres; ``oversample = s > 1`` averages ``s × s`` sub-samples per voxel, i.e.
integrates the intensity over the voxel footprint like a camera pixel (worth it
when ``dx`` is coarser than the Nyquist step ``λ / 4NA`` of the intensity).

Normalisation: the whole array sums to 1 (a unit-flux point source spread over
the sampled volume). Every plane of an ideal, unclipped PSF carries the same
energy, so this equals ``1/Z`` per plane up to the light that falls outside the
lateral field of view of defocused planes.

Options (keyword-only, default: the scalar model above in a matched sample):

- ``model="vectorial"``: the Richards–Wolf high-NA model of :mod:`.vectorial`
  (aplanatic apodisation, three field components, unpolarised emitter =
  incoherent sum over two orthogonal input polarisations); the Zernike phase
  applies to every component. Worth it for NA ≳ 0.9 (the lateral FWHM at NA
  1.4 oil is ~10 % wider than the scalar one); costs five field transforms
  instead of one.
- ``sample_index``, ``depth_um``: the emitter sits ``depth_um`` below the
  coverslip in a sample of index ``sample_index``; the pupil gains the
  Gibson–Lanni phase ``d (n_s cos θ_s - n_i cos θ_i) / λ`` and loses the light
  beyond the critical angle (see :mod:`.index_mismatch`, which also fixes the
  direction of ``z``: the stage coordinate, positive towards the objective).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .index_mismatch import index_mismatch_factor, mismatch_pupil_samples, mismatch_ray_displacement_um
from .model import PSF
from .pupil import (
    MAX_PUPIL_SAMPLES,
    aberrated_pupil,
    centred_coordinates,
    field_from_pupil,
    make_pupil_grid,
    propagation_factors,
    pupil_samples_for,
)
from .vectorial import aplanatic_apodisation, polarisation_factors, summed_intensity

ZernikeLike = Sequence[float] | np.ndarray | torch.Tensor | None

#: Accepted values of the ``model`` argument and the name each records as ``optics["psf_model"]``.
PSF_MODELS: dict[str, str] = {"scalar": "scalar-pupil", "vectorial": "vectorial"}


@lru_cache(maxsize=2)
def _cached_propagation_factors(
    na: float,
    wavelength_um: float,
    immersion_index: float,
    pupil_samples: int,
    n_z: int,
    dz: float,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Per-plane defocus factors for one optics/grid, kept between calls.

    They hold no gradient and are the costliest part of the pupil (``Z · Nk²``
    complex exponentials), while interactive editing only changes the Zernike
    coefficients; two entries bound the memory held (``Z · Nk²`` complex each).
    """
    grid = make_pupil_grid(na, wavelength_um, immersion_index, pupil_samples, device=device, dtype=dtype)
    return propagation_factors(grid, centred_coordinates(n_z, dz))


def _check_optics(
    shape_zyx: Sequence[int],
    voxel_size_um: Sequence[float],
    na: float | torch.Tensor,
    wavelength_um: float,
    immersion_index: float,
    oversample: int,
) -> tuple[tuple[int, int, int], tuple[float, float, float], float]:
    """Validate the arguments shared by the widefield functions; return clean shape, voxel size and NA value."""
    shape = tuple(int(s) for s in shape_zyx)
    if len(shape) != 3 or min(shape) < 1 or any(int(s) != s for s in shape_zyx):
        raise ValueError(f"shape_zyx must be three positive integers (Z, Y, X), got {tuple(shape_zyx)}")
    voxel = tuple(float(v) for v in voxel_size_um)
    if len(voxel) != 3 or not all(np.isfinite(voxel)) or min(voxel) <= 0:
        raise ValueError(f"voxel_size_um must be three positive numbers (dz, dy, dx) in µm, got {tuple(voxel_size_um)}")
    if not (np.isfinite(wavelength_um) and wavelength_um > 0):
        raise ValueError(f"wavelength_um must be a positive number of micrometres, got {wavelength_um}")
    if not (np.isfinite(immersion_index) and immersion_index > 0):
        raise ValueError(f"immersion_index must be a positive refractive index, got {immersion_index}")
    na_value = float(na.detach()) if isinstance(na, torch.Tensor) else float(na)
    if not 0 < na_value < immersion_index:
        raise ValueError(f"na must be in (0, immersion_index = {immersion_index}), got {na_value}")
    if isinstance(oversample, bool) or int(oversample) != oversample or oversample < 1:
        raise ValueError(f"oversample must be an integer >= 1 (sub-samples per voxel and axis), got {oversample}")
    return shape, voxel, na_value  # type: ignore[return-value]


def _check_model_options(model: str, sample_index: float | None, depth_um: float) -> float | None:
    """Validate the model and index-mismatch options; return the sample index, or ``None`` for a matched sample."""
    if model not in PSF_MODELS:
        raise ValueError(f"model must be one of {sorted(PSF_MODELS)}, got {model!r}")
    depth = float(depth_um)
    if not (np.isfinite(depth) and depth >= 0):
        raise ValueError(f"depth_um must be a finite number >= 0 (µm below the coverslip), got {depth_um}")
    if sample_index is None:
        return None
    n_sample = float(sample_index)
    if not (np.isfinite(n_sample) and n_sample > 0):
        raise ValueError(f"sample_index must be a positive refractive index or None, got {sample_index}")
    return n_sample


def _resolved_mismatch_samples(na: float, wavelength_um: float, ray_displacement_um: float) -> int:
    """Pupil samples resolving the index-mismatch phase, capped at the largest automatic grid (with a warning)."""
    samples = mismatch_pupil_samples(na, wavelength_um, ray_displacement_um)
    if samples > MAX_PUPIL_SAMPLES:
        warnings.warn(
            f"resolving the index-mismatch phase needs {samples} pupil samples per axis; capped at "
            f"{MAX_PUPIL_SAMPLES}, so the PSF may be less accurate than ~0.5 % of its peak (a shallower "
            "depth or a smaller NA - sample-index gap lowers the need; pass pupil_samples to override)",
            RuntimeWarning,
            stacklevel=3,
        )
    return min(samples, MAX_PUPIL_SAMPLES)


def _zernike_tensor(zernike_waves: ZernikeLike, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
    """Coefficients as a 1-D tensor on ``device``/``dtype`` (keeps the autograd graph), or ``None``."""
    if zernike_waves is None:
        return None
    if isinstance(zernike_waves, torch.Tensor):
        coefficients = zernike_waves.to(device=device, dtype=dtype)
    else:
        coefficients = torch.as_tensor(np.asarray(zernike_waves, dtype=np.float64), device=device, dtype=dtype)
    if coefficients.ndim != 1:
        raise ValueError(
            f"zernike_waves must be a 1-D sequence of coefficients (ANSI order, waves), got shape "
            f"{tuple(coefficients.shape)}"
        )
    if not bool(torch.isfinite(coefficients.detach()).all()):
        raise ValueError("zernike_waves contains NaN or Inf")
    return coefficients


def widefield_psf_torch(
    shape_zyx: Sequence[int],
    voxel_size_um: Sequence[float],
    na: float | torch.Tensor,
    wavelength_um: float,
    immersion_index: float,
    zernike_waves: ZernikeLike = None,
    *,
    oversample: int = 1,
    pupil_samples: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    model: str = "scalar",
    sample_index: float | None = None,
    depth_um: float = 0.0,
) -> torch.Tensor:
    """Widefield PSF ``(Z, Y, X)``, summing to 1, differentiable in the Zernike coefficients and NA.

    Parameters
    ----------
    shape_zyx:
        Output shape ``(Z, Y, X)``; the focus sits at index ``shape // 2``.
    voxel_size_um:
        ``(dz, dy, dx)`` in µm (object space).
    na, wavelength_um, immersion_index:
        Numerical aperture (a float, or a 0-d tensor to differentiate through),
        emission wavelength in vacuum (µm) and immersion refractive index.
    zernike_waves:
        Pupil aberration coefficients in waves, ANSI/OSA order (``j = 0`` piston,
        4 defocus, ...). A tensor keeps its autograd graph. A positive defocus
        coefficient ``c_4`` moves the focus towards positive ``z`` by about
        ``4 √3 c_4 n λ / NA²`` (paraxial).
    oversample:
        Lateral sub-samples per voxel and axis; ``> 1`` integrates the
        intensity over each voxel's footprint instead of point-sampling.
    pupil_samples:
        Pupil grid size; ``None`` chooses it from the optics, shape, z range and
        aberration size (:func:`.pupil.pupil_samples_for`; the result is then
        within ~0.1-0.5 % of the peak of a converged computation, the residue
        being the pupil-edge discretisation, which shrinks as ``1 / Nk``; with an
        index mismatch the grid is also made fine enough that the mismatch phase
        changes by at most 0.25 waves per sample, which keeps it within ~1 %). Fix
        it when the grid must not change between calls (finite differences,
        optimisation) or for higher accuracy.
    device, dtype:
        Where and in which real dtype (float32 or float64) to compute; ``device``
        defaults to the coefficients' device if they are a tensor, else the CPU.
    model:
        ``"scalar"`` (uniform scalar pupil, the default) or ``"vectorial"``
        (Richards–Wolf: ``1/sqrt(cos θ)`` apodisation per ``d²k``, the three
        field components of an unpolarised emitter, see :mod:`.vectorial`).
    sample_index, depth_um:
        Refractive index of the sample and the emitter's depth below the
        coverslip (µm, ``>= 0``). ``None`` (default) means a sample matched
        to the immersion (then ``depth_um`` has no effect). Otherwise the pupil
        gains the Gibson–Lanni phase ``d (n_s cos θ_s - n_i cos θ_i) / λ`` and,
        when ``NA > sample_index``, the pupil beyond the critical angle is
        masked: it would only receive the emitter's evanescent near field, so it
        carries no propagating light (:mod:`.index_mismatch`). ``z`` stays the
        focal (stage) coordinate, positive towards the objective: with
        ``sample_index < immersion_index`` the brightest plane moves to
        ``z ≈ -depth (n_i/n_s - 1)`` (paraxial).
    """
    shape, (dz, dy, dx), na_value = _check_optics(
        shape_zyx, voxel_size_um, na, wavelength_um, immersion_index, oversample
    )
    n_sample = _check_model_options(model, sample_index, depth_um)
    mismatched = n_sample is not None
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if device is None:
        device = zernike_waves.device if isinstance(zernike_waves, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)
    coefficients = _zernike_tensor(zernike_waves, device, dtype)
    n_z, n_y, n_x = shape

    z_um = centred_coordinates(n_z, dz)
    y_um = centred_coordinates(n_y, dy, oversample)
    x_um = centred_coordinates(n_x, dx, oversample)
    if pupil_samples is None:
        half_width = max(float(y_um.abs().max()), float(x_um.abs().max()))
        extra_blur = (
            mismatch_ray_displacement_um(na_value, immersion_index, n_sample, float(depth_um)) if mismatched else 0.0
        )
        pupil_samples = pupil_samples_for(
            na_value,
            wavelength_um,
            immersion_index,
            half_width,
            float(z_um.abs().max()),
            coefficients,
            extra_blur_um=extra_blur,
        )
        if mismatched:
            pupil_samples = max(pupil_samples, _resolved_mismatch_samples(na_value, wavelength_um, extra_blur))
    grid = make_pupil_grid(na, wavelength_um, immersion_index, int(pupil_samples), device=device, dtype=dtype)
    if isinstance(na, torch.Tensor) and na.requires_grad:
        defocus = propagation_factors(grid, z_um)  # kz depends on NA: keep the graph
    else:
        defocus = _cached_propagation_factors(
            na_value, float(wavelength_um), float(immersion_index), int(pupil_samples), n_z, dz, device, dtype
        )
    in_focus = aberrated_pupil(grid, coefficients)
    if mismatched:
        in_focus = in_focus * index_mismatch_factor(grid, wavelength_um, immersion_index, n_sample, float(depth_um))
    if model == "vectorial":
        in_focus = in_focus * aplanatic_apodisation(grid, wavelength_um, immersion_index)
        emitter_index = n_sample if mismatched else immersion_index
        # (5, 1, Nk, Nk) x (Z, Nk, Nk): one pupil per polarisation entry and plane.
        # The factors carry sqrt(weight) and the dk² scale is skipped (the sum is normalised
        # below): the intensity is then one plain pass over the five fields.
        factors = polarisation_factors(grid, wavelength_um, emitter_index, weighted=True)
        pupils = factors[:, None] * (in_focus[None] * defocus)
        intensity = summed_intensity(field_from_pupil(pupils, grid, y_um, x_um, scaled=False))
    else:
        pupil = in_focus[None] * defocus
        field = field_from_pupil(pupil, grid, y_um, x_um)
        intensity = field.real**2 + field.imag**2
    if oversample > 1:
        intensity = intensity.reshape(n_z, n_y, oversample, n_x, oversample).mean(dim=(2, 4))
    return intensity / intensity.sum()


def widefield_psf(
    shape_zyx: Sequence[int],
    voxel_size_um: Sequence[float],
    na: float,
    wavelength_um: float,
    immersion_index: float,
    zernike_waves: ZernikeLike = None,
    *,
    magnification: float = 1.0,
    camera_pixel_um: float | None = None,
    oversample: int = 1,
    pupil_samples: int | None = None,
    dtype: torch.dtype = torch.float32,
    model: str = "scalar",
    sample_index: float | None = None,
    depth_um: float = 0.0,
) -> PSF:
    """The widefield PSF as a :class:`.PSF` object (float32 array, optics recorded, no autograd).

    Computed on the CPU in ``dtype`` (float32 is ~2x faster and accurate to
    ~1e-6 of the peak; float64 for reference work) and stored as float32. The
    other arguments are those of :func:`widefield_psf_torch`. The optics dict holds
    ``na``, ``wavelength_um``, ``immersion_index``, ``magnification``,
    ``camera_pixel_um`` (when given), ``psf_model`` (``"scalar-pupil"`` or
    ``"vectorial"``), ``oversample``, ``sample_index`` (the immersion index for a
    matched sample) and ``depth_um``.
    """
    if isinstance(zernike_waves, torch.Tensor):
        zernike_waves = zernike_waves.detach().cpu().numpy()
    with torch.no_grad():
        array = widefield_psf_torch(
            shape_zyx,
            voxel_size_um,
            float(na),
            wavelength_um,
            immersion_index,
            zernike_waves,
            oversample=oversample,
            pupil_samples=pupil_samples,
            device="cpu",
            dtype=dtype,
            model=model,
            sample_index=sample_index,
            depth_um=depth_um,
        )
    if not (np.isfinite(magnification) and magnification > 0):
        raise ValueError(f"magnification must be a positive number, got {magnification}")
    optics: dict[str, Any] = {
        "na": float(na),
        "wavelength_um": float(wavelength_um),
        "immersion_index": float(immersion_index),
        "magnification": float(magnification),
        "psf_model": PSF_MODELS[model],
        "oversample": int(oversample),
        "sample_index": float(immersion_index if sample_index is None else sample_index),
        "depth_um": float(depth_um),
    }
    if camera_pixel_um is not None:
        if not (np.isfinite(camera_pixel_um) and camera_pixel_um > 0):
            raise ValueError(f"camera_pixel_um must be a positive number of micrometres, got {camera_pixel_um}")
        optics["camera_pixel_um"] = float(camera_pixel_um)
    zernike = np.zeros(0) if zernike_waves is None else np.asarray(zernike_waves, dtype=np.float64).ravel()
    n_z, dz = int(shape_zyx[0]), float(voxel_size_um[0])
    return PSF(
        array=array.numpy().astype(np.float32),
        modality="widefield",
        voxel_size=tuple(float(v) for v in voxel_size_um),  # type: ignore[arg-type]
        optics=optics,
        zernike=zernike,
        z_planes_um=(np.arange(n_z) - n_z // 2) * dz,
    )
