"""Widefield forward model: 3D convolution with the PSF, as a linear operator with an exact adjoint."""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
import torch

from .base import LinearOperator
from .fft_util import kernel_to_origin, next_fast_len

Boundary = Literal["circular", "padded"]


class Convolve3D(LinearOperator):
    """``y = x ⊛ h`` for a centred PSF ``h`` (centre at ``shape // 2``), computed with real FFTs.

    ``boundary="circular"``: the volume has the data's shape and the
    convolution wraps around (cheapest; what most RL tools do).
    ``boundary="padded"``: the volume extends the data by the PSF support
    (``volume_shape = data_shape + psf_shape - 1``, with ``psf_shape - 1 - c``
    voxels before and ``c = psf_shape // 2`` after, per axis) and the data is
    the exact linear convolution cropped to the data grid: light from objects
    just outside the field of view is modelled instead of wrapping round.
    ``data_offset`` tells where the data grid starts inside the volume.

    Inputs are batched ``(B, Z, Y, X)`` (an unbatched ``(Z, Y, X)`` also works);
    the device and dtype follow the input. The PSF is normalised to sum 1.
    """

    def __init__(
        self,
        psf: np.ndarray | torch.Tensor,
        data_shape: tuple[int, int, int],
        boundary: Boundary = "circular",
    ) -> None:
        super().__init__()
        kernel = torch.as_tensor(np.asarray(psf, dtype=np.float64) if not torch.is_tensor(psf) else psf)
        kernel = kernel.detach().to(torch.float64)
        if kernel.ndim != 3:
            raise ValueError(f"Convolve3D needs a 3D (Z, Y, X) PSF, got shape {tuple(kernel.shape)}")
        if len(data_shape) != 3:
            raise ValueError(f"Convolve3D needs a 3D (Z, Y, X) data shape, got {data_shape}")
        total = float(kernel.sum())
        if not np.isfinite(total) or total <= 0:
            raise ValueError("the PSF must be finite and have a positive sum")
        self.data_shape = tuple(int(n) for n in data_shape)
        self.boundary = boundary
        psf_shape = tuple(kernel.shape)
        if boundary == "circular":
            if any(p > d for p, d in zip(psf_shape, self.data_shape, strict=True)):
                raise ValueError(
                    f"the PSF {psf_shape} is larger than the data {self.data_shape} on some axis; "
                    "crop the PSF (napari_lfrecon.physics.fft_util.crop_centred) or use boundary='padded'"
                )
            self.volume_shape = self.data_shape
            self.data_offset = (0, 0, 0)
            self.fft_shape = self.data_shape
        elif boundary == "padded":
            self.volume_shape = tuple(d + p - 1 for d, p in zip(self.data_shape, psf_shape, strict=True))
            self.data_offset = tuple(p - 1 - p // 2 for p in psf_shape)
            # An FFT grid of at least the volume's size is alias-free on the data grid (see tests).
            self.fft_shape = tuple(next_fast_len(v) for v in self.volume_shape)
        else:
            raise ValueError(f"boundary must be 'circular' or 'padded', got {boundary!r}")
        self.register_buffer("psf", (kernel / total).to(torch.float32), persistent=False)
        self._psf64 = kernel / total
        self._spectra: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    # The transfer function is cached per dtype/device so float64 tests and float32 runs share code.
    def transfer_function(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The rFFT of the origin-centred kernel on ``fft_shape`` (cached)."""
        key = (dtype, device)
        if key not in self._spectra:
            kernel = kernel_to_origin(self._psf64.to(device=device), self.fft_shape).to(dtype)
            self._spectra[key] = torch.fft.rfftn(kernel, dim=(-3, -2, -1))
        return self._spectra[key]

    def _convolve(self, x: torch.Tensor, conjugate: bool) -> torch.Tensor:
        spectrum = self.transfer_function(x.dtype, x.device)
        if conjugate:
            spectrum = self._conjugate_transfer_function(x.dtype, x.device)
        if _use_scipy_fft(x, self.fft_shape):
            return _scipy_convolve(x, spectrum, self.fft_shape)
        xf = torch.fft.rfftn(x, s=self.fft_shape, dim=(-3, -2, -1))
        xf.mul_(spectrum)
        return torch.fft.irfftn(xf, s=self.fft_shape, dim=(-3, -2, -1))

    def _conjugate_transfer_function(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        # Materialised once: a lazy .conj() view costs an extra pass over the spectrum every call.
        key = (dtype, device, "conj")
        if key not in self._spectra:
            self._spectra[key] = self.transfer_function(dtype, device).conj().resolve_conj()  # type: ignore[index]
        return self._spectra[key]  # type: ignore[index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Volume ``(B, *volume_shape)`` → data ``(B, *data_shape)``."""
        _check_shape(x, self.volume_shape, "volume")
        y = self._convolve(x, conjugate=False)
        return _window(y, self.data_offset, self.data_shape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Data ``(B, *data_shape)`` → volume ``(B, *volume_shape)``: correlation with the PSF."""
        _check_shape(y, self.data_shape, "data")
        if self.boundary == "padded":
            # Zero-embed the data on the FFT grid; rfftn(s=...) pads only at the end, so place it by hand.
            grid = y.new_zeros(y.shape[:-3] + self.fft_shape)
            grid[(...,) + tuple(slice(o, o + n) for o, n in zip(self.data_offset, self.data_shape, strict=True))] = y
            y = grid
        x = self._convolve(y, conjugate=True)
        return _window(x, (0, 0, 0), self.volume_shape)

    def crop_to_data(self, volume: torch.Tensor) -> torch.Tensor:
        """The part of a volume that lies on the data grid (identity for circular boundaries)."""
        return _window(volume, self.data_offset, self.data_shape)


#: Set ``LFRECON_TORCH_FFT=1`` to force torch's FFT on the CPU for every grid (same maths).
_FORCE_TORCH_FFT = os.environ.get("LFRECON_TORCH_FFT", "") == "1"
_FFT_WORKERS = int(os.environ.get("LFRECON_FFT_WORKERS", "0"))


def _use_scipy_fft(x: torch.Tensor, fft_shape: tuple[int, ...]) -> bool:
    """Whether to use scipy's pocketfft instead of torch's CPU FFT (MKL) for this grid.

    Measured side by side in ``benchmarks/bench_foundation.py`` on this machine's CPU: MKL wins on
    power-of-two grids (64×256×256: 0.114 vs 0.143 s per RL iteration), pocketfft on the mixed-radix
    grids of padded mode (96×320×320: 0.354 vs 0.451 s). Only usable without autograd.
    """
    if _FORCE_TORCH_FFT or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False
    if all(n & (n - 1) == 0 for n in fft_shape):
        return False
    if x.requires_grad and torch.is_grad_enabled():
        return False
    return _scipy_fft() is not None


def _scipy_fft():
    try:
        import scipy.fft as scipy_fft
    except ImportError:  # scipy is optional: torch's FFT is the fallback
        return None
    return scipy_fft


def _scipy_convolve(x: torch.Tensor, spectrum: torch.Tensor, fft_shape: tuple[int, ...]) -> torch.Tensor:
    fft = _scipy_fft()
    workers = _FFT_WORKERS or max(torch.get_num_threads(), 1)
    xf = fft.rfftn(x.detach().contiguous().numpy(), s=fft_shape, axes=(-3, -2, -1), workers=workers)
    # numpy's in-place multiply, not torch's: a torch op here wakes its OpenMP pool, whose spinning
    # threads then compete with pocketfft's workers (measured: ~15 % slower per RL iteration).
    np.multiply(xf, spectrum.numpy(), out=xf)
    out = fft.irfftn(xf, s=fft_shape, axes=(-3, -2, -1), workers=workers, overwrite_x=True)
    return torch.from_numpy(out)


def _window(x: torch.Tensor, offset: tuple[int, ...], shape: tuple[int, ...]) -> torch.Tensor:
    return x[(...,) + tuple(slice(o, o + n) for o, n in zip(offset, shape, strict=True))]


def _check_shape(x: torch.Tensor, expected: tuple[int, ...], what: str) -> None:
    if tuple(x.shape[-len(expected) :]) != tuple(expected):
        raise ValueError(f"expected a {what} of shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
