"""Zernike polynomials in ANSI/OSA single-index order, unit-RMS over the unit disc.

Conventions (used by every pupil model in the package):

- Single index ``j`` (ANSI Z80.28 / OSA): ``j = (n (n + 2) + m) / 2``, so ``j = 0``
  is piston, 1 and 2 are tilts, 3 oblique astigmatism, 4 defocus, 5 vertical
  astigmatism, 12 primary spherical, ...
- ``Z_j(rho, theta) = N_n^m R_n^|m|(rho) cos(m theta)`` for ``m >= 0`` and
  ``N_n^m R_n^|m|(rho) sin(|m| theta)`` for ``m < 0``.
- Normalisation ``N_n^m = sqrt(2 (n + 1))`` for ``m != 0`` and ``sqrt(n + 1)`` for
  ``m = 0`` (Noll's), so every mode has unit RMS over the unit disc and the modes
  are orthonormal under the disc average: a coefficient of 1 is one wave RMS
  when the pupil phase is ``2 pi sum_j c_j Z_j``.
- ``theta`` is measured from the +x axis towards +y (array axis ``Y``) in the
  pupil plane; ``rho`` is the pupil radius normalised to 1 at the NA edge.

The polynomials are evaluated everywhere they are asked for, including
``rho > 1``; masking to the disc is the caller's job (it keeps the values smooth,
which matters when the pupil radius itself is being differentiated).
"""

from __future__ import annotations

import math
import operator
from functools import lru_cache

import torch

#: Common names of the first ANSI/OSA modes (j = 0..27, radial orders n = 0..6).
ZERNIKE_NAMES: dict[int, str] = {
    0: "piston",
    1: "vertical tilt",
    2: "horizontal tilt",
    3: "oblique astigmatism",
    4: "defocus",
    5: "vertical astigmatism",
    6: "vertical trefoil",
    7: "vertical coma",
    8: "horizontal coma",
    9: "oblique trefoil",
    10: "oblique quadrafoil",
    11: "oblique secondary astigmatism",
    12: "primary spherical",
    13: "vertical secondary astigmatism",
    14: "vertical quadrafoil",
    15: "vertical pentafoil",
    16: "vertical secondary trefoil",
    17: "vertical secondary coma",
    18: "horizontal secondary coma",
    19: "oblique secondary trefoil",
    20: "oblique pentafoil",
    21: "oblique hexafoil",
    22: "oblique secondary quadrafoil",
    23: "oblique tertiary astigmatism",
    24: "secondary spherical",
    25: "vertical tertiary astigmatism",
    26: "vertical secondary quadrafoil",
    27: "vertical hexafoil",
}


def _as_index(value: int, what: str) -> int:
    """``value`` as a Python int >= 0 (numpy integers accepted), else ``ValueError``."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer >= 0, got {value!r}")
    try:
        index = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be an integer >= 0, got {value!r}") from None
    if index < 0:
        raise ValueError(f"{what} must be an integer >= 0, got {value!r}")
    return index


def ansi_to_nm(j: int) -> tuple[int, int]:
    """Radial order ``n`` and azimuthal frequency ``m`` of the ANSI/OSA mode ``j`` (``j >= 0``)."""
    j = _as_index(j, "a Zernike ANSI index")
    # n is the largest order whose first index n(n+1)/2 does not exceed j.
    n = (math.isqrt(8 * j + 1) - 1) // 2
    m = 2 * j - n * (n + 2)
    return n, m


def nm_to_ansi(n: int, m: int) -> int:
    """ANSI/OSA single index of the mode with radial order ``n`` and azimuthal frequency ``m``."""
    if n < 0 or abs(m) > n or (n - m) % 2 != 0:
        raise ValueError(f"Zernike (n, m) needs n >= 0, |m| <= n and n - m even, got ({n}, {m})")
    return (n * (n + 2) + m) // 2


def zernike_norm(n: int, m: int) -> float:
    """Noll's normalisation factor making ``Z_n^m`` unit-RMS over the unit disc."""
    return math.sqrt(2.0 * (n + 1)) if m != 0 else math.sqrt(n + 1.0)


@lru_cache(maxsize=256)
def _radial_coefficients(n: int, m_abs: int) -> tuple[tuple[int, int], ...]:
    """``(power, coefficient)`` pairs of the radial polynomial ``R_n^|m|`` (exact integers)."""
    terms = []
    for k in range((n - m_abs) // 2 + 1):
        coefficient = (-1) ** k * math.factorial(n - k)
        coefficient //= math.factorial(k) * math.factorial((n + m_abs) // 2 - k) * math.factorial((n - m_abs) // 2 - k)
        terms.append((n - 2 * k, coefficient))
    return tuple(terms)


def radial_polynomial(n: int, m: int, rho: torch.Tensor) -> torch.Tensor:
    """The (unnormalised) Zernike radial polynomial ``R_n^|m|(rho)``."""
    if n < 0 or abs(m) > n or (n - m) % 2 != 0:
        raise ValueError(f"Zernike (n, m) needs n >= 0, |m| <= n and n - m even, got ({n}, {m})")
    result = torch.zeros_like(rho)
    for power, coefficient in _radial_coefficients(n, abs(m)):
        result = result + coefficient * rho**power
    return result


def zernike(j: int, rho: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The unit-RMS Zernike mode ``j`` (ANSI/OSA) at polar pupil coordinates ``(rho, theta)``.

    ``rho`` and ``theta`` are broadcastable real tensors; the result has their
    broadcast shape and dtype. Values outside the unit disc are not masked.
    """
    n, m = ansi_to_nm(j)
    radial = zernike_norm(n, m) * radial_polynomial(n, m, rho)
    if m > 0:
        return radial * torch.cos(m * theta)
    if m < 0:
        return radial * torch.sin(-m * theta)
    return radial * torch.ones_like(theta)


def zernike_basis(n_modes: int, rho: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The first ``n_modes`` ANSI/OSA modes stacked: shape ``(n_modes, *broadcast(rho, theta).shape)``.

    Powers of ``rho`` and the angular harmonics are computed once and shared by
    all modes, which matters when the basis is rebuilt for every PSF update.
    """
    n_modes = _as_index(n_modes, "n_modes")
    rho, theta = torch.broadcast_tensors(rho, theta)
    if n_modes == 0:
        return rho.new_zeros((0, *rho.shape))
    n_max = ansi_to_nm(n_modes - 1)[0]
    powers = [torch.ones_like(rho)]
    for _ in range(n_max):
        powers.append(powers[-1] * rho)
    cos_m = {m: torch.cos(m * theta) for m in range(1, n_max + 1)}
    sin_m = {m: torch.sin(m * theta) for m in range(1, n_max + 1)}
    modes = []
    for j in range(n_modes):
        n, m = ansi_to_nm(j)
        radial = torch.zeros_like(rho)
        for power, coefficient in _radial_coefficients(n, abs(m)):
            radial = radial + coefficient * powers[power]
        radial = zernike_norm(n, m) * radial
        if m > 0:
            radial = radial * cos_m[m]
        elif m < 0:
            radial = radial * sin_m[-m]
        modes.append(radial)
    return torch.stack(modes)


def zernike_name(j: int) -> str:
    """A human-readable name for mode ``j``: the common name when known, else ``"Z(n,m)"``."""
    if j in ZERNIKE_NAMES:
        return ZERNIKE_NAMES[j]
    n, m = ansi_to_nm(j)
    return f"Z(n={n}, m={m})"
