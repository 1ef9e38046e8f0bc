"""Scalar pupil-plane helpers shared by the PSF models.

The pupil is sampled on its own square grid in spatial frequency (cycles/µm,
object space) that just covers the disc ``|k| <= NA / λ``; the field is then
evaluated *directly* at the wanted real-space coordinates with two small
matrix products (a "matrix Fourier transform", Soummer et al., Opt. Express 15,
15935 (2007)) instead of an FFT:

    E(z, y, x) = Σ_{ky, kx} exp(i2π y ky) · P_z(ky, kx) · exp(i2π x kx) · dk²

Why not an FFT: with an FFT the pupil grid is tied to the output grid
(``dk = 1 / (N dx)``), so a small or coarsely sampled output either cuts the
pupil (``dx > λ / 2NA``) or resolves it with a handful of samples, and the only
cures are padding and oversampling the whole field. Here the pupil sampling is
chosen from the optics alone, the output samples sit exactly at the voxel
centres (so the focus is exactly at index ``shape // 2`` for odd and even
sizes) and the cost is ``O(Z · N · Nk · (N + Nk))`` with ``Nk`` ~ 100.

The sampled pupil makes the computed field periodic in real space with period
``1 / dk``; :func:`pupil_samples_for` picks ``Nk`` so that period exceeds the
output half-width plus the blur radius of the most defocused / aberrated
plane, so no wrapped-around light reaches the output.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from .zernike import ansi_to_nm, zernike_basis, zernike_norm

#: Smallest pupil grid (samples across the disc): keeps the disc round for tiny outputs.
MIN_PUPIL_SAMPLES = 32
#: Largest automatic pupil grid; beyond it memory (``Z · Nk²`` complex values) dominates.
MAX_PUPIL_SAMPLES = 512
#: Extra real-space period, in units of ``λ / NA``, so the diffraction tails of
#: the periodic copies are negligible at the output edge (Airy intensity ~1e-4 there).
_TAIL_GUARD_RESELS = 4.0


def centred_coordinates(n: int, spacing: float, oversample: int = 1) -> torch.Tensor:
    """Sample positions (float64) of ``n`` voxels of size ``spacing`` centred on index ``n // 2``.

    With ``oversample = s > 1`` each voxel is represented by ``s`` sub-samples at
    the centres of ``s`` equal sub-intervals, voxel-major (``n * s`` values), so
    averaging consecutive groups of ``s`` integrates over the voxel footprint.
    """
    centres = (torch.arange(n, dtype=torch.float64) - n // 2) * spacing
    if oversample == 1:
        return centres
    offsets = (torch.arange(oversample, dtype=torch.float64) - (oversample - 1) / 2) * (spacing / oversample)
    return (centres[:, None] + offsets[None, :]).reshape(-1)


def max_gradient_waves(zernike_waves: Sequence[float] | torch.Tensor | None) -> float:
    """Upper bound of ``|∇ρ W|`` (waves per unit pupil radius) for ``W = Σ c_j Z_j`` over the disc.

    Uses the edge value of each mode's gradient, ``N_nm sqrt(R'(1)² + m²)`` with
    ``R_n^m'(1) = (n(n+2) - m²) / 2``, summed with ``|c_j|``: conservative, cheap,
    and only used to size the pupil grid.
    """
    if zernike_waves is None:
        return 0.0
    coefficients = torch.as_tensor(zernike_waves).detach().to("cpu", torch.float64).reshape(-1)
    total = 0.0
    for j, c in enumerate(coefficients.tolist()):
        if c == 0.0:
            continue
        n, m = ansi_to_nm(j)
        radial_slope = (n * (n + 2) - m * m) / 2.0
        total += abs(c) * zernike_norm(n, m) * math.hypot(radial_slope, m)
    return total


def pupil_samples_for(
    na: float,
    wavelength_um: float,
    immersion_index: float,
    half_width_um: float,
    max_abs_z_um: float,
    zernike_waves: Sequence[float] | torch.Tensor | None = None,
    *,
    extra_blur_um: float = 0.0,
) -> int:
    """Pupil grid size ``Nk`` (even) that keeps the periodic copies of the field out of the output.

    The blur radius of the worst plane is the geometric defocus cone
    ``|z| NA / sqrt(n² - NA²)`` plus the ray displacement of the aberration,
    ``max|∇ρ W| · λ / NA``. By Poisson summation the sampled-pupil field is
    exactly the true field periodised with period ``1 / dk``, so the only
    condition is that the nearest copy stays out of the output:
    ``1 / dk > half_width + blur``, plus a guard of a few resolution elements
    for the diffraction tails. (A pupil phase sampled coarser than Nyquist is
    the same thing seen from the pupil side: copies overlapping *outside*
    the output are harmless.) ``extra_blur_um`` adds the ray displacement of
    any other pupil phase (e.g. an index mismatch, see :mod:`.index_mismatch`).
    """
    k_na = na / wavelength_um
    cone = max_abs_z_um * na / math.sqrt(max(immersion_index**2 - na**2, 1e-12))
    blur = cone + max_gradient_waves(zernike_waves) / k_na + max(float(extra_blur_um), 0.0)
    period = half_width_um + blur + _TAIL_GUARD_RESELS / k_na
    samples = math.ceil(2.0 * k_na * period) + 2
    if samples > MAX_PUPIL_SAMPLES:
        warnings.warn(
            f"the pupil needs {samples} samples per axis to keep wrapped-around light out of a "
            f"{2 * half_width_um:.3g} µm field with |z| up to {max_abs_z_um:.3g} µm; capped at "
            f"{MAX_PUPIL_SAMPLES}, so the outer, most defocused planes may alias (pass pupil_samples "
            "explicitly, or use a smaller z range or aberration)",
            RuntimeWarning,
            stacklevel=2,
        )
    samples = max(MIN_PUPIL_SAMPLES, min(MAX_PUPIL_SAMPLES, samples))
    # Round up to a multiple of 8: small coefficient changes then rarely change
    # the grid, which keeps finite differences (and editor sliders) smooth.
    return int(8 * math.ceil(samples / 8))


@dataclass
class PupilGrid:
    """A square, origin-symmetric sampling of the pupil plane, fixed in normalised coordinates.

    The samples sit at fixed *normalised* positions ``u = k / (NA/λ)``, so the
    disc edge is always at ``ρ = 1`` and changing NA rescales the grid (its
    frequencies, ``kz`` and ``dk``) instead of moving the edge across samples:
    the gradient in NA is then the exact derivative of the discrete model.

    Attributes
    ----------
    k:
        1-D sample frequencies (cycles/µm, float64) along ky and kx, ``(Nk,)``,
        cell-centred and symmetric about 0, so the sampled pupil is exactly
        symmetric under ``k -> -k`` (an unaberrated PSF is then exactly symmetric).
    dk:
        Sample spacing (cycles/µm, 0-d float64 tensor); the field computed from
        this grid repeats every ``1 / dk`` µm.
    rho, theta:
        Normalised pupil radius (1 at the NA edge) and azimuth (from +x towards
        +y), ``(Nk, Nk)`` indexed ``[ky, kx]``, in the working dtype.
    aperture:
        Pupil amplitude in ``[0, 1]``: 1 inside the disc, 0 outside, with a
        one-sample linear ramp across the edge (approximates each sample's
        area fraction inside the disc, so the disc area is right to ~0.1 %).
    kz_rel:
        ``kz - n/λ`` (cycles/µm, float64, ``(Nk, Nk)``): the axial wavenumber
        minus its on-axis value (a per-plane constant phase, dropped to keep
        phases small).
    """

    k: torch.Tensor
    dk: torch.Tensor
    rho: torch.Tensor
    theta: torch.Tensor
    aperture: torch.Tensor
    kz_rel: torch.Tensor

    @property
    def n_samples(self) -> int:
        """Number of pupil samples along each axis."""
        return int(self.k.shape[0])

    @property
    def period_um(self) -> float:
        """Real-space period of the computed field, ``1 / dk`` (µm)."""
        return 1.0 / float(self.dk)


def normalised_pupil_coordinates(n_samples: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Cell-centred sample positions ``u`` (float64) in units of the pupil radius, one spare cell past each edge."""
    du = 2.0 / (n_samples - 2)
    return (torch.arange(n_samples, dtype=torch.float64, device=device) + 0.5 - n_samples / 2) * du


def make_pupil_grid(
    na: float | torch.Tensor,
    wavelength_um: float,
    immersion_index: float,
    n_samples: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> PupilGrid:
    """Sample the pupil disc of radius ``NA / λ`` on ``n_samples × n_samples`` points.

    ``na`` may be a 0-d tensor that requires grad; ``k``, ``dk`` and ``kz_rel``
    then carry its gradient (``rho``, ``theta`` and the aperture do not depend on NA).
    """
    na_value = float(na.detach()) if isinstance(na, torch.Tensor) else float(na)
    if not 0 < na_value < immersion_index:
        raise ValueError(f"NA must be in (0, immersion_index={immersion_index}), got {na_value}")
    if n_samples < 8:
        raise ValueError(f"the pupil grid needs at least 8 samples per axis, got {n_samples}")
    u = normalised_pupil_coordinates(n_samples, device)
    uy, ux = torch.meshgrid(u, u, indexing="ij")
    rho64 = torch.sqrt(uy**2 + ux**2)
    du = float(u[1] - u[0])
    aperture = torch.clamp(0.5 + (1.0 - rho64) / du, 0.0, 1.0)

    if isinstance(na, torch.Tensor):
        k_na = na.to(device=u.device, dtype=torch.float64) / wavelength_um
    else:
        k_na = torch.tensor(na_value / wavelength_um, dtype=torch.float64, device=u.device)
    k_medium = immersion_index / wavelength_um
    argument = k_medium**2 - (k_na * rho64) ** 2
    # Grid corners may lie beyond the immersion cut-off (imaginary kz); they are outside
    # the aperture, and the guarded sqrt keeps their gradient finite (0, not NaN).
    evanescent = argument <= 0
    kz = torch.where(evanescent, torch.zeros_like(argument), torch.sqrt(torch.where(evanescent, 1.0, argument)))
    return PupilGrid(
        k=u * k_na,
        dk=du * k_na,
        rho=rho64.to(dtype),
        theta=torch.atan2(uy, ux).to(dtype),
        aperture=aperture.to(dtype),
        kz_rel=kz - k_medium,
    )


@lru_cache(maxsize=8)
def _cached_basis(n_modes: int, n_samples: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Zernike modes on the normalised pupil grid: they depend on the grid size only, so they are reused."""
    u = normalised_pupil_coordinates(n_samples, device)
    uy, ux = torch.meshgrid(u, u, indexing="ij")
    return zernike_basis(n_modes, torch.sqrt(uy**2 + ux**2), torch.atan2(uy, ux)).to(dtype)


def pupil_phase_waves(grid: PupilGrid, zernike_waves: torch.Tensor | None) -> torch.Tensor | None:
    """Aberration ``W = Σ_j c_j Z_j(ρ, θ)`` in waves on the pupil grid, or ``None`` without coefficients."""
    if zernike_waves is None or zernike_waves.numel() == 0:
        return None
    basis = _cached_basis(int(zernike_waves.numel()), grid.n_samples, grid.rho.device, grid.rho.dtype)
    return torch.tensordot(zernike_waves.to(grid.rho.dtype), basis, dims=1)


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype matching a real working dtype."""
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def aberrated_pupil(grid: PupilGrid, zernike_waves: torch.Tensor | None = None) -> torch.Tensor:
    """Complex in-focus pupil ``A · exp(i2π W)``, ``(Nk, Nk)``, carrying the coefficients' gradient."""
    aberration = pupil_phase_waves(grid, zernike_waves)
    if aberration is None:
        return torch.complex(grid.aperture, torch.zeros_like(grid.aperture))
    phase = (2.0 * math.pi) * aberration
    return torch.complex(grid.aperture * torch.cos(phase), grid.aperture * torch.sin(phase))


def propagation_factors(grid: PupilGrid, z_um: torch.Tensor) -> torch.Tensor:
    """``exp(i2π z (kz - n/λ))`` per plane, ``(Z, Nk, Nk)`` complex: moves the observed plane to ``z`` (µm).

    The phase is formed in float64 and only the result is cast to the working
    dtype, so float32 pupils keep their accuracy far from focus.
    """
    phase = (2.0 * math.pi) * z_um.to(device=grid.kz_rel.device, dtype=torch.float64)[:, None, None] * grid.kz_rel
    return torch.polar(torch.ones_like(phase), phase).to(_complex_dtype(grid.rho.dtype))


def fourier_matrix(coordinates_um: torch.Tensor, k: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``exp(i2π x k)`` for every (x, k) pair, ``(len(x), len(k))``, complex matching the real ``dtype``.

    The product ``x · k`` is formed in float64 so large coordinates keep their phase accuracy.
    """
    phase = (2.0 * math.pi) * coordinates_um.to(device=k.device, dtype=torch.float64)[:, None] * k.to(torch.float64)
    return torch.polar(torch.ones_like(phase), phase).to(_complex_dtype(dtype))


def field_from_pupil(
    pupil: torch.Tensor, grid: PupilGrid, y_um: torch.Tensor, x_um: torch.Tensor, *, scaled: bool = True
) -> torch.Tensor:
    """Scalar field ``(..., len(y), len(x))`` from the pupils ``(..., Nk, Nk)`` at the given lateral positions.

    Approximates ``∫ P(k) exp(i2π k·r) d²k`` by ``dk² Σ``, so an unaberrated
    in-focus field at the origin is ``π (NA/λ)²`` (the disc area).
    ``scaled=False`` skips the ``dk²`` factor (one pass over the output saved)
    for callers that normalise the intensity anyway.
    """
    real_dtype = grid.rho.dtype
    wy = fourier_matrix(y_um, grid.k, real_dtype)  # (Ny, Nk)
    wx = fourier_matrix(x_um, grid.k, real_dtype).transpose(0, 1)  # (Nk, Nx)
    n_k, n_y, n_x = grid.n_samples, wy.shape[0], wx.shape[1]
    # Contract the cheaper axis first.
    if n_y * n_k * (n_k + n_x) <= n_x * n_k * (n_k + n_y):
        field = torch.matmul(torch.matmul(wy, pupil), wx)
    else:
        field = torch.matmul(wy, torch.matmul(pupil, wx))
    if not scaled:
        return field
    return field * (grid.dk**2).to(real_dtype)
