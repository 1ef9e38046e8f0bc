"""Quality metrics (no Qt): PSNR, SSIM, Fourier-PSNR and its sweep, FSC/FRC, half-data splitting.

Every function accepts numpy arrays or torch tensors (any device) and takes an
explicit data range where one matters. Public, stable names:

* ``psnr(pred, ref, data_range)`` and ``ssim(pred, ref, data_range)`` (2D and 3D);
* ``fourier_psnr(pred, ref, radius, data_range=1.0, axes=(-2, -1))`` and
  ``fourier_psnr_sweep(pred, ref, radii=None, *, data_range, axes, n_radii)``
  (niiv's definition; pass ``axes=NIIV_AXES`` for its xz + yz planes);
* ``fsc(a, b, voxel_size, threshold="1/7")`` (``frc`` is the same function) →
  ``frequency`` (µm⁻¹), ``curve``, ``threshold``, ``resolution_um``, …;
* ``binomial_split`` / ``odd_even_split`` to make independent half data sets;
* ``compare`` for every readout at once.
"""

from .basic import psnr, ssim
from .fourier import NIIV_AXES, fourier_psnr, fourier_psnr_sweep
from .fsc import THRESHOLDS, frc, fsc, threshold_curve
from .halves import binomial_split, odd_even_split
from .report import compare, fit_scale

__all__ = [
    "NIIV_AXES",
    "THRESHOLDS",
    "binomial_split",
    "compare",
    "fit_scale",
    "fourier_psnr",
    "fourier_psnr_sweep",
    "frc",
    "fsc",
    "odd_even_split",
    "psnr",
    "ssim",
    "threshold_curve",
]
