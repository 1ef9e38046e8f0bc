"""Small FFT helpers shared by the operators: fast sizes and centred-kernel placement."""

from __future__ import annotations

import torch


def next_fast_len(n: int, primes: tuple[int, ...] = (2, 3, 5, 7)) -> int:
    """The smallest integer ≥ ``n`` whose only prime factors are in ``primes`` (fast for pocketfft/cuFFT).

    The default (2, 3, 5, 7) is what the widefield and light-field operators use; the XLFM
    operator and the LFM PSF's propagation grid use (2, 3, 5), as they always have, so their
    FFT grids (and the LFM PSFs compared against references) stay exactly the same.
    """
    n = max(int(n), 1)
    while True:
        m = n
        for p in primes:
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def kernel_to_origin(kernel: torch.Tensor, fft_shape: tuple[int, ...]) -> torch.Tensor:
    """Embed a centred kernel (centre at ``shape // 2``) in a zero array of ``fft_shape`` with its centre at index 0.

    Works on the trailing ``len(fft_shape)`` axes; leading axes are kept. The
    result, transformed with an FFT, is the transfer function of a
    convolution that does not shift (odd and even kernel sizes alike).
    """
    nd = len(fft_shape)
    ksize = kernel.shape[-nd:]
    if any(k > f for k, f in zip(ksize, fft_shape, strict=True)):
        raise ValueError(f"kernel of shape {tuple(ksize)} does not fit an FFT grid of shape {tuple(fft_shape)}")
    out = kernel.new_zeros(kernel.shape[:-nd] + tuple(fft_shape))
    out[(...,) + tuple(slice(0, k) for k in ksize)] = kernel
    shifts = tuple(-(k // 2) for k in ksize)
    return torch.roll(out, shifts=shifts, dims=tuple(range(-nd, 0)))


def crop_centred(array: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Crop the trailing axes of a centred kernel to ``shape`` keeping index ``n // 2`` as the centre."""
    nd = len(shape)
    slices = []
    for n, m in zip(array.shape[-nd:], shape, strict=True):
        m = min(m, n)
        start = n // 2 - m // 2
        slices.append(slice(start, start + m))
    return array[(...,) + tuple(slices)]
