"""Convolve3D and AxialDegradation against their definitions (adjointness: tests/test_operators.py)."""

import numpy as np
import pytest
import torch

from napari_lfrecon.physics import AxialDegradation, Convolve3D


def direct_convolve(x: np.ndarray, h: np.ndarray, boundary: str) -> np.ndarray:
    """y[i] = Σ_j x[j] h[i - j + c] by explicit loops over the kernel (no FFT)."""
    c = np.array(h.shape) // 2
    if boundary == "circular":
        y = np.zeros_like(x)
        for k in np.ndindex(h.shape):
            shift = tuple(int(s) for s in np.array(k) - c)
            y += h[k] * np.roll(x, shift, axis=(0, 1, 2))
        return y
    # padded: x lives on the volume grid; data i ↔ volume i + offset
    offset = np.array(h.shape) - 1 - c
    data_shape = tuple(np.array(x.shape) - np.array(h.shape) + 1)
    y = np.zeros(data_shape)
    for i in np.ndindex(data_shape):
        for k in np.ndindex(h.shape):
            j = np.array(i) + offset - (np.array(k) - c)
            if np.all(j >= 0) and np.all(j < x.shape):
                y[i] += h[k] * x[tuple(j)]
    return y


@pytest.mark.parametrize("boundary", ["circular", "padded"])
@pytest.mark.parametrize("psf_shape", [(3, 5, 5), (4, 4, 6), (2, 3, 4)])
def test_fft_equals_direct_convolution(boundary, psf_shape):
    rng = np.random.default_rng(0)
    h = rng.random(psf_shape)
    h /= h.sum()
    for data_shape in [(5, 7, 8), (4, 8, 8)]:
        op = Convolve3D(h, data_shape, boundary=boundary)
        x = rng.random(op.volume_shape)
        y = op(torch.as_tensor(x)[None])[0].numpy()
        np.testing.assert_allclose(y, direct_convolve(x, h, boundary), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("psf_shape", [(5, 5, 5), (4, 6, 6)])
def test_centred_delta_psf_is_identity(psf_shape):
    h = np.zeros(psf_shape)
    h[tuple(s // 2 for s in psf_shape)] = 1
    rng = np.random.default_rng(2)
    x = rng.random((6, 9, 8))
    op = Convolve3D(h, x.shape, boundary="circular")
    np.testing.assert_allclose(op(torch.as_tensor(x)[None])[0].numpy(), x, atol=1e-12)
    op = Convolve3D(h, x.shape, boundary="padded")
    xv = np.zeros(op.volume_shape)
    xv[tuple(slice(o, o + n) for o, n in zip(op.data_offset, x.shape, strict=True))] = x
    np.testing.assert_allclose(op(torch.as_tensor(xv)[None])[0].numpy(), x, atol=1e-12)


def test_float32_and_unbatched_follow_input():
    h = np.ones((3, 3, 3), np.float32)
    op = Convolve3D(h, (4, 5, 6))
    x = torch.rand(4, 5, 6)
    y = op(x)
    assert y.dtype == torch.float32 and y.shape == (4, 5, 6)
    # A constant volume stays constant (PSF normalised to sum 1).
    np.testing.assert_allclose(op(torch.ones(1, 4, 5, 6)).numpy(), 1.0, rtol=1e-5)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="3D"):
        Convolve3D(np.ones((3, 3)), (4, 4, 4))
    with pytest.raises(ValueError, match="larger than the data"):
        Convolve3D(np.ones((9, 3, 3)), (4, 8, 8))
    op = Convolve3D(np.ones((3, 3, 3)), (4, 8, 8))
    with pytest.raises(ValueError, match="expected a volume"):
        op(torch.ones(1, 4, 8, 9))


@pytest.mark.parametrize("kernel", [None, [1.0, 2.0, 1.0], [1.0, 3.0, 2.0, 1.0]])
def test_axial_degradation_definition(kernel):
    # adjointness: tests/test_operators.py
    rng = np.random.default_rng(3)
    op = AxialDegradation(4, axis=-3, kernel=kernel)
    x = torch.as_tensor(rng.standard_normal((2, 16, 5, 6)))
    # Definition: blur (zero-padded, centred) along z, then mean of each group of 4.
    xn = x.numpy()
    k = np.ones(1) if kernel is None else np.asarray(kernel) / np.sum(kernel)
    c = len(k) // 2
    blurred = np.zeros_like(xn)
    for i in range(16):
        for t in range(len(k)):
            j = i - (t - c)
            if 0 <= j < 16:
                blurred[:, i] += k[t] * xn[:, j]
    expected = blurred.reshape(2, 4, 4, 5, 6).mean(2)
    np.testing.assert_allclose(op(x).numpy(), expected, atol=1e-12)
