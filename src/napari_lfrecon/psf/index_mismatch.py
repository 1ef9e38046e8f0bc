"""Refractive-index mismatch between immersion and sample (Gibson–Lanni, simplified form).

Geometry: the objective is designed for a homogeneous immersion medium of index
``n_i`` (coverslip thickness and index at their design values, so their
contributions cancel). The emitter sits ``d = depth_um`` below the coverslip,
inside a sample of index ``n_s``. For a plane-wave component with lateral
frequency ``k`` (conserved across the flat interfaces) the emitter's wave
travels ``d`` through the sample with axial frequency
``kz_s = sqrt((n_s/λ)² - k²)`` instead of ``kz_i = sqrt((n_i/λ)² - k²)``, so the
pupil gains, relative to a matched sample, the phase (in waves)

    Ψ(k) = d · (kz_s - kz_i) = (d / λ) · (n_s cos θ_s - n_i cos θ_i),

which is Gibson & Lanni's optical path difference (J. Opt. Soc. Am. A 8, 1601
(1991); the form written in Aguet's thesis, EPFL 2009, Eq. 3.45, with
``t_g = t_g*``, ``n_g = n_g*``, ``n_i = n_i*``) once the coverslip and
immersion are at design values; the stage term of their formula is the
ordinary defocus ``z · kz_i`` that the widefield model already applies per plane.
A constant ``d (n_s - n_i) / λ`` (a piston) is dropped.

Axis convention: the PSF's ``z`` is the *focal (stage) coordinate*: the
position of the objective's nominal focal plane minus the emitter depth,
measured along the optical axis towards the objective (``z > 0``: the
nominal focus lies shallower than the emitter). Paraxially the actual focus of
a nominal focus ``f`` below the coverslip lies at ``f · n_s / n_i``, so the
brightest plane is at ``z ≈ -d (n_i / n_s - 1)``
(:func:`paraxial_focal_shift_um`): negative (the stage must focus deeper than
the emitter) when ``n_s < n_i``, e.g. water sample under an oil objective.

Supercritical light: for ``NA > n_s`` the pupil part with ``|k| > n_s / λ``
(beyond the critical angle) would be fed only by the evanescent near field of
the emitter, which has decayed at any depth of more than a fraction of a
wavelength; it carries no propagating light and is masked to zero
(:func:`critical_angle_aperture`). Fresnel transmission factors of the
interfaces are not modelled (the amplitude is that of a matched sample).
"""

from __future__ import annotations

import math

import torch

from .pupil import PupilGrid

#: Largest ``sin θ_s`` used to bound the ray displacement for the pupil sizing (tan θ_s diverges at 1).
_MAX_SIN_FOR_SIZING = 0.98
#: Largest change of the mismatch phase between neighbouring pupil samples (waves). The
#: pupil's edge ramp treats each edge cell as having one phase; with 0.25 waves per
#: sample the PSF stays within ~0.2-0.7 % of the peak of a converged computation.
_MAX_PHASE_STEP_WAVES = 0.25


def grid_na_frequency(grid: PupilGrid) -> torch.Tensor:
    """``NA / λ`` (cycles/µm, float64, carrying the NA gradient) recovered from the grid's spacing."""
    du = 2.0 / (grid.n_samples - 2)  # normalised spacing of :func:`.pupil.normalised_pupil_coordinates`
    return grid.dk / du


def lateral_frequency_squared(grid: PupilGrid) -> torch.Tensor:
    """``kx² + ky²`` on the grid (cycles²/µm², float64, ``(Nk, Nk)`` indexed ``[ky, kx]``), with the NA gradient."""
    k = grid.k.to(torch.float64)
    return k[:, None] ** 2 + k[None, :] ** 2


def axial_frequency(grid: PupilGrid, wavelength_um: float, index: float) -> torch.Tensor:
    """``kz = sqrt((n/λ)² - k²)`` in a medium of index ``n`` (float64, 0 where evanescent, finite gradient)."""
    argument = (index / wavelength_um) ** 2 - lateral_frequency_squared(grid)
    evanescent = argument <= 0
    return torch.where(evanescent, torch.zeros_like(argument), torch.sqrt(torch.where(evanescent, 1.0, argument)))


def critical_angle_aperture(grid: PupilGrid, wavelength_um: float, sample_index: float) -> torch.Tensor:
    """Amplitude mask (float64, ``[0, 1]``) keeping ``|k| < n_s / λ``: the light that propagates in the sample.

    Same one-sample linear edge ramp as the pupil's own aperture, so the cut is
    sampled as an area fraction; all ones when ``NA < n_s`` (the mask edge then
    lies outside the pupil disc).
    """
    rho_critical = (sample_index / wavelength_um) / grid_na_frequency(grid)
    du = 2.0 / (grid.n_samples - 2)
    return torch.clamp(0.5 + (rho_critical - grid.rho.to(torch.float64)) / du, 0.0, 1.0)


def index_mismatch_phase_waves(
    grid: PupilGrid, wavelength_um: float, immersion_index: float, sample_index: float, depth_um: float
) -> torch.Tensor:
    """Pupil phase ``Ψ = d (kz_s - kz_i)`` (waves, float64, ``(Nk, Nk)``) of an emitter ``d`` µm deep in the sample.

    Formed from the two ``kz - n/λ`` differences, so the large ``d n / λ``
    terms cancel analytically (no float cancellation at large depths); exactly
    zero when ``sample_index == immersion_index``. Zero where the sample wave
    is evanescent (those samples are masked by :func:`critical_angle_aperture`).
    """
    kz_sample_rel = axial_frequency(grid, wavelength_um, sample_index) - sample_index / wavelength_um
    kz_immersion_rel = axial_frequency(grid, wavelength_um, immersion_index) - immersion_index / wavelength_um
    phase = depth_um * (kz_sample_rel - kz_immersion_rel)
    propagating = lateral_frequency_squared(grid) < (sample_index / wavelength_um) ** 2
    return torch.where(propagating, phase, torch.zeros_like(phase))


def index_mismatch_factor(
    grid: PupilGrid, wavelength_um: float, immersion_index: float, sample_index: float, depth_um: float
) -> torch.Tensor:
    """Complex pupil factor ``mask · exp(i2π Ψ)`` in the grid's complex dtype (see the module docstring)."""
    phase = (2.0 * math.pi) * index_mismatch_phase_waves(grid, wavelength_um, immersion_index, sample_index, depth_um)
    mask = critical_angle_aperture(grid, wavelength_um, sample_index)
    complex_dtype = torch.complex128 if grid.rho.dtype == torch.float64 else torch.complex64
    return torch.polar(mask, phase).to(complex_dtype)


def mismatch_ray_displacement_um(na: float, immersion_index: float, sample_index: float, depth_um: float) -> float:
    """Largest lateral displacement ``d |tan θ_s - tan θ_i|`` (µm) of a ray at the focal plane, for pupil sizing.

    ``∇_k Ψ`` is the lateral ray offset a pupil phase causes; the marginal ray
    gives the largest. ``sin θ_s`` is capped at 0.98 because near the critical
    angle the displacement diverges while those rays carry little light.
    """
    if depth_um == 0.0 or sample_index == immersion_index:
        return 0.0
    sin_i = min(na / immersion_index, _MAX_SIN_FOR_SIZING)
    sin_s = min(na / sample_index, _MAX_SIN_FOR_SIZING)
    tan_i = sin_i / math.sqrt(1.0 - sin_i**2)
    tan_s = sin_s / math.sqrt(1.0 - sin_s**2)
    return abs(depth_um) * abs(tan_s - tan_i)


def mismatch_pupil_samples(na: float, wavelength_um: float, ray_displacement_um: float) -> int:
    """Pupil samples (a multiple of 8) keeping the mismatch phase step per sample under 0.25 waves.

    ``∇_k Ψ`` (waves per cycle/µm) is the ray displacement ``D``; across one
    sample ``dk = 2 (NA/λ) / (Nk - 2)`` the phase changes by ``D · dk``. The
    period rule of :func:`.pupil.pupil_samples_for` only keeps wrapped light out
    of the output; this one keeps the steep edge of a deep mismatch resolved.
    Returns 0 when there is no displacement.
    """
    if ray_displacement_um <= 0.0:
        return 0
    samples = math.ceil(2.0 * (na / wavelength_um) * ray_displacement_um / _MAX_PHASE_STEP_WAVES) + 2
    return int(8 * math.ceil(samples / 8))


def paraxial_focal_shift_um(depth_um: float, immersion_index: float, sample_index: float) -> float:
    """Stage coordinate ``z`` of the paraxial focus on an emitter ``depth_um`` deep: ``-d (n_i / n_s - 1)``.

    Derivation: a paraxial ray aimed at the nominal depth ``f`` refracts at
    the coverslip (``n_i θ_i = n_s θ_s``) and crosses the axis at ``f n_s / n_i``;
    focusing on the emitter needs ``f = d n_i / n_s``, i.e. ``z = d - f`` in the
    convention of this module (towards the objective). High-NA rays focus
    elsewhere (spherical aberration), so the real intensity maximum lies
    between this and the marginal-ray value.
    """
    return -depth_um * (immersion_index / sample_index - 1.0)
