"""SeReNet's self-supervised losses on re-projected views: mixed Poisson–Gaussian NLL, and L2.

Camera model (photo-electrons): a pixel with expected signal ``λ`` records
``y = k + n`` with ``k ~ Poisson(λ)`` and ``n ~ Normal(0, σ²)`` (read noise), so

    p(y | λ) = Σ_{k ≥ 0} Poisson(k; λ) · N(y; k, σ²).

:func:`nll_mpg` is ``−log p(y | λ)`` evaluated as a log-sum-exp over a grid of
integer ``k`` around the summand's peak (found by Newton steps; it is ``y`` when
``λ ≈ y`` and moves towards ``λ`` otherwise). The summand's log is concave in
``k`` with curvature at least ``1/σ²``, so it has fallen by ``n²/2`` within
``n·σ`` counts of the peak: a window of ``±(8σ + 1)`` counts holds all of the
sum that matters), with ``log k!`` in Stirling's form with its series
correction (exact to ~3e-4 at ``k = 1``, better above; ``0! = 1`` exactly).

As ``σ → 0`` the Gaussian becomes a spike at the integer nearest ``y``, and
``−log p = −log Poisson(round(y); λ) + ½·log(2πσ²)`` for integer ``y``: the
Poisson NLL plus a constant that does not depend on ``λ`` (it diverges, since
a density of a continuous ``y`` is compared with a probability). Gradients in
``λ`` are therefore those of the Poisson NLL in that limit.
"""

from __future__ import annotations

import math

import torch

#: Half-width of the k window in read-noise standard deviations (Gaussian tail e^(−n²/2) below 1e-14 at 8).
_WINDOW_SIGMAS = 8.0
#: Smallest expected signal allowed inside the logarithm (a model value of 0 with a count would give −inf).
_MIN_RATE = 1e-6
#: Newton steps for the peak of the summand (quadratic convergence; 12 is ample from any start).
_NEWTON_STEPS = 12
#: Read noise below this is treated as this (a zero-width Gaussian has no density to evaluate).
_MIN_READ_NOISE = 1e-3


def log_factorial_stirling(k: torch.Tensor) -> torch.Tensor:
    """``log k!`` for integer-valued ``k ≥ 0`` in Stirling's form with its first correction terms.

    ``k log k − k + ½ log(2πk) + 1/(12k) − 1/(360k³) + 1/(1260k⁵)``; 0 at ``k = 0``.
    """
    safe = torch.clamp(k, min=1.0)
    inv = 1.0 / safe
    value = (
        safe * torch.log(safe)
        - safe
        + 0.5 * torch.log(2 * math.pi * safe)
        + inv / 12.0
        - inv**3 / 360.0
        + inv**5 / 1260.0
    )
    return torch.where(k >= 1, value, torch.zeros_like(value))


def _summand_peak(lam: torch.Tensor, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """The count ``k*`` where ``Poisson(k; λ)·N(y; k, σ²)`` peaks (≥ 0), by Newton steps in ``u = log k``.

    Stationarity (Stirling's ``d log k!/dk ≈ log k``): ``log λ − log k − (k − y)/σ² = 0``.
    When λ is far from y the peak lies many σ from y (the Poisson factor pulls
    it towards λ), so the summation window is centred here, not on y. The
    function of ``u`` is concave and decreasing, so Newton steps converge.
    """
    log_lam = torch.log(lam)
    u = torch.log(torch.clamp(torch.maximum(y, lam), min=1.0))
    inv_var = 1.0 / sigma**2
    for _ in range(_NEWTON_STEPS):
        k = torch.exp(u)
        g = log_lam - u - (k - y) * inv_var
        u = u + g / (1.0 + k * inv_var)
        u = torch.clamp(u, min=math.log(_MIN_RATE), max=math.log(float(torch.finfo(lam.dtype).max)) - 1)
    return torch.exp(u)


def nll_mpg(
    rate: torch.Tensor,
    measured: torch.Tensor,
    read_noise: float,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mixed Poisson–Gaussian negative log-likelihood ``−log Σ_k Poisson(k; λ)·N(y; k, σ²)``.

    ``rate`` is the model's expected photo-electrons ``λ`` (clamped to ≥ 1e-6),
    ``measured`` the recorded ``y`` (may be negative from read noise), same
    shape; ``read_noise`` is ``σ`` in electrons RMS. ``reduction``: ``"mean"``,
    ``"sum"`` or ``"none"`` (per pixel). Differentiable in ``rate``.
    """
    if rate.shape != measured.shape:
        raise ValueError(
            f"rate and measured must have the same shape, got {tuple(rate.shape)} and {tuple(measured.shape)}"
        )
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    sigma = max(float(read_noise), _MIN_READ_NOISE)
    half = int(math.ceil(_WINDOW_SIGMAS * sigma)) + 1
    offsets = torch.arange(-half, half + 1, device=rate.device, dtype=rate.dtype)
    y = measured.detach().to(rate.dtype)
    lam = torch.clamp(rate, min=_MIN_RATE)
    centre = torch.round(_summand_peak(lam.detach(), y, sigma))
    k = centre.unsqueeze(-1) + offsets  # (..., K)
    valid = k >= 0
    k = torch.clamp(k, min=0.0)
    lam = lam.unsqueeze(-1)
    log_poisson = k * torch.log(lam) - lam - log_factorial_stirling(k)
    log_gauss = -0.5 * ((y.unsqueeze(-1) - k) / sigma) ** 2 - 0.5 * math.log(2 * math.pi * sigma**2)
    terms = torch.where(valid, log_poisson + log_gauss, torch.full_like(log_poisson, -math.inf))
    nll = -torch.logsumexp(terms, dim=-1)
    if reduction == "mean":
        return nll.mean()
    if reduction == "sum":
        return nll.sum()
    return nll


def l2_loss(rate: torch.Tensor, measured: torch.Tensor, *, scale: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """Mean squared error ``((λ − y) / scale)²`` (``scale`` makes it independent of the photon level)."""
    if rate.shape != measured.shape:
        raise ValueError(
            f"rate and measured must have the same shape, got {tuple(rate.shape)} and {tuple(measured.shape)}"
        )
    err = ((rate - measured.to(rate.dtype)) / float(scale)) ** 2
    if reduction == "mean":
        return err.mean()
    if reduction == "sum":
        return err.sum()
    if reduction == "none":
        return err
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def non_negativity_penalty(volume: torch.Tensor, *, scale: float = 1.0) -> torch.Tensor:
    """Mean of ``(min(x, 0) / scale)²``: pushes the predicted fluorophore density to be ≥ 0."""
    return (torch.clamp(volume, max=0.0) / float(scale)).pow(2).mean()


__all__ = ["l2_loss", "log_factorial_stirling", "nll_mpg", "non_negativity_penalty"]
