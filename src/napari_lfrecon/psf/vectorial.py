"""High-NA vectorial pupil factors (Richards–Wolf), in the Cartesian pupil coordinates of :mod:`.pupil`.

Model. Richards & Wolf (Proc. R. Soc. A 253, 358 (1959)) write the focal
field of an aplanatic objective as an integral over the solid angle of the
aperture with the apodisation ``sqrt(cos θ)``. With ``d²k = (n/λ)² cos θ dΩ``
the same integral over the lateral frequencies ``k`` of the pupil grid reads

    E(r) = ∫ A(k) M(k) e0 exp(i2π k·r) d²k,    A(k) = P(k) / sqrt(cos θ_i),

(the ``1/sqrt(cos θ)`` "sine-condition" pupil of Hanser et al., J. Microsc.
216, 32 (2004)), where ``P`` is the scalar pupil (aperture, Zernike phase,
defocus, index-mismatch phase), ``e0`` the transverse polarisation in the pupil
and ``M`` maps it onto the three field components at the focus
(Novotny & Hecht, *Principles of Nano-Optics*, ch. 3), with
``s = k / (n/λ) = sin θ (cos φ, sin φ)`` and ``c = cos θ``:

    M = [[1 - sx²/(1+c),   -sx sy/(1+c)],
         [-sx sy/(1+c),    1 - sy²/(1+c)],
         [-sx,             -sy          ]]

(the familiar ``cos θ cos² φ + sin² φ`` etc. written without the azimuth, so
there is no singularity at ``k = 0``; each column has unit norm).

Unpolarised emitter. The intensity is the incoherent sum over two orthogonal
input polarisations, ``I = Σ_{e0 ∈ {x, y}} Σ_{i ∈ {x,y,z}} |E_i|²``. By
reciprocity this is also the image of a freely rotating (isotropic) dipole
seen through a polarisation-insensitive camera (sum over three dipole
orientations and two camera polarisations of the same six Green's-function
entries). Because ``M`` is symmetric in its transverse block only five
distinct pupils are transformed: ``|Mxx|² + |Myy|² + 2|Mxy|² + |Mzx|² + |Mzy|²``.

With an index mismatch the angles in ``M`` are those in the sample (where the
dipole radiates) and the apodisation uses the immersion angle (the objective
is aplanatic in its design medium); Fresnel transmission factors are not
modelled.
"""

from __future__ import annotations

import torch

from .index_mismatch import axial_frequency
from .pupil import PupilGrid

#: Multiplicity of each of the five transformed polarisation pupils ``(xx, yy, xy, zx, zy)`` in the intensity.
POLARISATION_WEIGHTS: tuple[float, ...] = (1.0, 1.0, 2.0, 1.0, 1.0)


def aplanatic_apodisation(grid: PupilGrid, wavelength_um: float, immersion_index: float) -> torch.Tensor:
    """``1 / sqrt(cos θ_i)`` inside the aperture, 0 outside (grid's real dtype, NA gradient kept).

    ``sqrt(cos θ)`` per solid angle (Richards–Wolf) becomes ``1 / sqrt(cos θ)`` per
    ``d²k``; since ``NA < n_i``, ``cos θ_i >= sqrt(1 - (NA/n_i)²) > 0`` inside the disc.
    """
    cos_theta = axial_frequency(grid, wavelength_um, immersion_index) * (wavelength_um / immersion_index)
    inside = grid.aperture > 0
    safe = torch.where(inside, cos_theta, torch.ones_like(cos_theta))
    return torch.where(inside, torch.rsqrt(safe), torch.zeros_like(safe)).to(grid.rho.dtype)


def polarisation_factors(
    grid: PupilGrid, wavelength_um: float, medium_index: float, *, weighted: bool = False
) -> torch.Tensor:
    """The five distinct entries ``(Mxx, Myy, Mxy, Mzx, Mzy)`` of ``M``, ``(5, Nk, Nk)`` in the grid's real dtype.

    Angles are those of the medium the emitter sits in (index ``medium_index``);
    where its wave would be evanescent ``cos θ`` is taken as 0 (those samples
    are masked by the caller). ``weighted=True`` multiplies each entry by the
    square root of its :data:`POLARISATION_WEIGHTS`, so the intensity is the
    plain sum ``Σ_c |E_c|²`` (:func:`summed_intensity`, one pass, no weights).
    """
    k = grid.k.to(torch.float64)
    k_medium = medium_index / wavelength_um
    sy = (k / k_medium)[:, None].expand(grid.n_samples, grid.n_samples)  # rows are ky
    sx = (k / k_medium)[None, :].expand(grid.n_samples, grid.n_samples)
    cos_theta = axial_frequency(grid, wavelength_um, medium_index) / k_medium
    one_plus_cos = 1.0 + cos_theta
    factors = torch.stack(
        (
            1.0 - sx * sx / one_plus_cos,
            1.0 - sy * sy / one_plus_cos,
            -sx * sy / one_plus_cos,
            -sx,
            -sy,
        )
    )
    if weighted:
        roots = torch.tensor(POLARISATION_WEIGHTS, dtype=torch.float64, device=factors.device).sqrt()
        factors = factors * roots[:, None, None]
    return factors.to(grid.rho.dtype)


def summed_intensity(fields: torch.Tensor) -> torch.Tensor:
    """``Σ_c |E_c|²`` over the leading axis, for fields of :func:`polarisation_factors` with ``weighted=True``."""
    # Plain element-wise squares and one reduction over the contiguous leading axis: several
    # times faster on the CPU than reducing a view_as_real over (0, -1) or using abs().
    return (fields.real**2 + fields.imag**2).sum(dim=0)
