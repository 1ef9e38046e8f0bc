"""Metrics checked against their definitions (direct evaluation, Parseval, known spectra), not their own output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_lfrecon import metrics
from napari_lfrecon.metrics import (
    NIIV_AXES,
    binomial_split,
    fourier_psnr,
    fourier_psnr_sweep,
    fsc,
    odd_even_split,
    psnr,
    ssim,
)
from napari_lfrecon.metrics.basic import gaussian_window


def rng(seed=0):
    return np.random.default_rng(seed)


# ------------------------------------------------------------------ PSNR / SSIM
def test_psnr_matches_formula_and_accepts_torch():
    a = rng().random((4, 5, 6))
    b = a + 0.1 * rng(1).standard_normal(a.shape)
    expected = 10 * math.log10(2.0**2 / np.mean((a - b) ** 2))
    assert psnr(a, b, 2.0) == pytest.approx(expected, rel=1e-12)
    assert psnr(torch.as_tensor(a), torch.as_tensor(b), 2.0) == pytest.approx(expected, rel=1e-12)
    assert psnr(a, a, 1.0) == math.inf


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_psnr_rejects_bad_range(bad):
    with pytest.raises(ValueError, match="data_range"):
        psnr(np.ones(3), np.zeros(3), bad)


def test_shape_mismatch_is_a_value_error():
    with pytest.raises(ValueError, match="same shape"):
        ssim(np.ones((12, 12)), np.ones((12, 13)), 1.0)


def test_ssim_identity_and_constant_images():
    a = rng().random((16, 16))
    assert ssim(a, a, 1.0) == pytest.approx(1.0, abs=1e-12)
    # Two flat images: variances vanish, SSIM = (2μxμy + C1) / (μx² + μy² + C1).
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * 0.3 * 0.7 + c1) / (0.3**2 + 0.7**2 + c1)
    assert ssim(np.full((14, 14, 14), 0.3), np.full((14, 14, 14), 0.7), 1.0) == pytest.approx(expected, rel=1e-10)


def test_ssim_equals_direct_window_evaluation_2d():
    """On a 13×13 image the interior is 3×3 pixels whose 11×11 windows lie inside: evaluate them by hand."""
    x = rng(2).random((13, 13))
    y = 0.6 * x + 0.3 * rng(3).random((13, 13))
    g = gaussian_window()
    w2 = np.outer(g, g)
    r = len(g) // 2
    c1, c2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2
    values = []
    for i in range(r, 13 - r):
        for j in range(r, 13 - r):
            px, py = x[i - r : i + r + 1, j - r : j + r + 1], y[i - r : i + r + 1, j - r : j + r + 1]
            mx, my = np.sum(w2 * px), np.sum(w2 * py)
            vx, vy = np.sum(w2 * (px - mx) ** 2), np.sum(w2 * (py - my) ** 2)
            cxy = np.sum(w2 * (px - mx) * (py - my))
            values.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    assert ssim(x, y, 1.0) == pytest.approx(np.mean(values), rel=1e-10)


def test_ssim_3d_drops_with_noise_and_is_symmetric():
    a = rng(4).random((12, 14, 14))
    noisy = a + 0.2 * rng(5).standard_normal(a.shape)
    s = ssim(a, noisy, 1.0)
    assert 0 < s < 0.9
    assert ssim(noisy, a, 1.0) == pytest.approx(s, rel=1e-12)
    assert ssim(a, a + 0.05 * rng(5).standard_normal(a.shape), 1.0) > s


# ------------------------------------------------------------------ Fourier-PSNR
@pytest.mark.parametrize("shape, axes", [((3, 10, 12), (-2, -1)), ((7, 9, 11), (-3, -1)), ((7, 9, 11), (0, 1))])
def test_fourier_psnr_full_disc_is_mean_slice_psnr(shape, axes):
    a = rng(6).random(shape)
    b = a + 0.05 * rng(7).standard_normal(shape)
    moved_a = np.moveaxis(a, axes, (-2, -1)).reshape(-1, shape[axes[0]], shape[axes[1]])
    moved_b = np.moveaxis(b, axes, (-2, -1)).reshape(moved_a.shape)
    expected = np.mean([psnr(p, q, 1.5) for p, q in zip(moved_a, moved_b, strict=True)])
    radius = math.hypot(shape[axes[0]], shape[axes[1]]) / 2
    assert fourier_psnr(a, b, radius, data_range=1.5, axes=axes) == pytest.approx(expected, rel=1e-10)
    assert fourier_psnr(a, b, 10 * radius, data_range=1.5, axes=axes) == pytest.approx(expected, rel=1e-10)


def test_fourier_psnr_disc_is_ideal_low_pass_in_index_units():
    """An error made of one frequency at distance 5 from the centre is invisible below r = 5, seen from r = 5."""
    h, w = 16, 16
    yy, xx = np.mgrid[:h, :w]
    error = np.cos(2 * np.pi * (3 * yy / h + 4 * xx / w))  # frequency index (3, 4): distance 5
    ref = np.zeros((h, w))
    assert fourier_psnr(error, ref, 4.9) > 250  # only round-off inside the disc
    full = fourier_psnr(error, ref, 5.0)
    assert full == pytest.approx(psnr(error, ref, 1.0), rel=1e-10)


def test_fourier_psnr_skips_error_free_slices():
    a = rng(24).random((4, 6, 8))
    b = a.copy()
    b[1] += 0.1 * rng(25).standard_normal((6, 8))  # only slice 1 differs
    assert fourier_psnr(a, b, 100.0) == pytest.approx(psnr(a[1], b[1], 1.0), rel=1e-10)
    assert fourier_psnr(a, a, 100.0) == math.inf


def test_fourier_psnr_definition_direct():
    """Direct evaluation with niiv's formula: 20·log10(L·HW) − 10·log10(Σ_disc |ΔF|²)."""
    a, b = rng(8).random((6, 10)), rng(9).random((6, 10))
    spectrum = np.fft.fftshift(np.fft.fft2(a - b))
    yy, xx = np.mgrid[:6, :10]
    disc = (yy - 3) ** 2 + (xx - 5) ** 2 <= 3.0**2
    expected = 20 * math.log10(2.0 * 60) - 10 * math.log10(np.sum(np.abs(spectrum[disc]) ** 2))
    assert fourier_psnr(a, b, 3.0, data_range=2.0) == pytest.approx(expected, rel=1e-10)


def test_fourier_psnr_sweep_niiv_planes_and_torch():
    a = rng(10).random((8, 12, 10))
    b = a + 0.1 * rng(11).standard_normal(a.shape)
    sweep = fourier_psnr_sweep(torch.as_tensor(a), torch.as_tensor(b), data_range=1.0, axes=NIIV_AXES, n_radii=9)
    assert sweep["radius"].shape == sweep["fourier_psnr"].shape == (9,)
    # Growing discs hold more error: the curve never increases.
    assert np.all(np.diff(sweep["fourier_psnr"]) <= 1e-9)
    per_plane = [fourier_psnr(a, b, r, axes=p) for p in NIIV_AXES for r in sweep["radius"][[3]]]
    assert sweep["fourier_psnr"][3] == pytest.approx(np.mean(per_plane), rel=1e-10)


def test_fourier_psnr_bad_axes():
    with pytest.raises(ValueError, match="axes"):
        fourier_psnr(np.ones((4, 4)), np.zeros((4, 4)), 2.0, axes=(0, 0))
    with pytest.raises(ValueError, match="axes"):
        fourier_psnr(np.ones((4, 4)), np.zeros((4, 4)), 2.0, axes=(0, 5))


# ------------------------------------------------------------------ FSC
VOXEL = (0.5, 0.2, 0.2)


def test_fsc_of_a_volume_with_itself_is_one():
    a = rng(12).random((12, 20, 18))
    out = fsc(a, a, VOXEL)
    assert np.allclose(out["curve"], 1.0, atol=1e-12)
    assert not out["crossed"]
    assert out["resolution_um"] == pytest.approx(1 / out["frequency"][-1])
    # Shells stop at the lowest Nyquist frequency, 1 / (2·0.5 µm); width = coarsest step 1/(18·0.2).
    assert out["frequency"][-1] <= 1.0 + 1e-9
    assert out["frequency"][1] == pytest.approx(1 / (18 * 0.2))


def test_fsc_counts_every_dft_sample_once():
    a = rng(13).random((6, 8, 8))
    out = fsc(a, a, 1.0, shell_width=0.01)
    # With isotropic unit voxels and a fine shell width, every sample with |f| ≤ 0.5 is in one shell.
    f = np.sqrt(sum(g**2 for g in np.meshgrid(*[np.fft.fftfreq(n) for n in a.shape], indexing="ij")))
    assert out["n_voxels"].sum() == pytest.approx(np.sum(np.floor(f / 0.01 + 0.5) < len(out["frequency"])))


def test_fsc_of_independent_noise_is_near_zero():
    a, b = rng(14).standard_normal((16, 32, 32)), rng(15).standard_normal((16, 32, 32))
    out = fsc(torch.as_tensor(a), torch.as_tensor(b), VOXEL)
    curve, n = out["curve"][1:], out["n_voxels"][1:]
    assert np.all(np.abs(curve) < 4 * np.sqrt(2 / n))
    assert np.mean(np.abs(curve)) < 0.1


def test_fsc_against_reference_follows_snr():
    """b = a + noise of equal power, both white: FSC = √(S / (S + N)) = 1/√2 in every shell."""
    a = rng(16).standard_normal((16, 32, 32))
    b = a + rng(17).standard_normal(a.shape)
    out = fsc(a, b, VOXEL, threshold="reference")
    assert np.mean(out["curve"][1:]) == pytest.approx(1 / math.sqrt(2), abs=0.02)
    assert np.allclose(out["threshold"], 0.5)


@pytest.mark.parametrize(
    "shape, voxel, shell, threshold",
    [
        ((24, 48, 48), (0.5, 0.2, 0.2), 5, "1/7"),
        ((24, 48, 48), (0.5, 0.2, 0.2), 5, "half-bit"),
        # 2D rings hold few samples: noise correlations reach ~1/√n, the half-bit curve allows for it.
        ((96, 80), (0.1, 0.16), 10, "half-bit"),
    ],
)
def test_fsc_resolution_of_band_limited_signal(shape, voxel, shell, threshold):
    """Two noisy copies of a signal band-limited to |f| < f0 (µm⁻¹, anisotropic voxels): resolution 1/f0.

    f0 sits on the boundary between two shells, so the crossing must fall between their centres.
    """
    step = max(1 / (n * d) for n, d in zip(shape, voxel, strict=True))
    f0 = (shell + 0.5) * step
    freqs = np.meshgrid(*[np.fft.fftfreq(n, d) for n, d in zip(shape, voxel, strict=True)], indexing="ij")
    radius = np.sqrt(sum(f**2 for f in freqs))
    signal = np.real(np.fft.ifftn(np.fft.fftn(rng(18).standard_normal(shape)) * (radius < f0)))
    signal /= signal.std()
    a = signal + 0.05 * rng(19).standard_normal(shape)
    b = signal + 0.05 * rng(20).standard_normal(shape)
    out = fsc(a, b, voxel, threshold=threshold)
    assert out["frequency"][1] == pytest.approx(step)
    assert out["crossed"]
    assert abs(out["crossing_frequency"] - f0) <= step / 2
    assert 1 / (f0 + step / 2) <= out["resolution_um"] <= 1 / (f0 - step / 2)


def test_half_bit_curve_values():
    """van Heel & Schatz: 1 for a one-voxel shell, 0.2071 / 1.2071 for infinitely many voxels."""
    values = metrics.threshold_curve("half-bit", np.array([1.0, 1e12]))
    assert values[0] == pytest.approx(1.0, abs=1e-4)
    assert values[1] == pytest.approx(0.2071 / 1.2071, rel=1e-4)


def test_fsc_thresholds_and_errors():
    a = rng(21).random((8, 8))
    assert np.allclose(fsc(a, a, 0.1, threshold=0.3)["threshold"], 0.3)
    assert np.allclose(fsc(a, a, 0.1)["threshold"], 1 / 7)
    with pytest.raises(ValueError, match="threshold"):
        fsc(a, a, 0.1, threshold="fancy")
    with pytest.raises(ValueError, match="voxel_size"):
        fsc(a, a, (0.1, 0.1, 0.1))
    with pytest.raises(ValueError, match="2D images"):
        fsc(np.ones(8), np.ones(8), 0.1)
    assert metrics.frc is fsc


# ------------------------------------------------------------------ halves and compare
def test_binomial_split_is_exact_and_independent():
    counts = rng(22).poisson(40.0, size=(64, 64)).astype(np.float32)
    h1, h2 = binomial_split(counts, seed=1)
    assert np.array_equal(h1 + h2, counts)
    assert h1.mean() == pytest.approx(20.0, rel=0.03)
    # Poisson thinning: the halves are uncorrelated (a split of one reconstruction would not be).
    assert abs(np.corrcoef(h1.ravel(), h2.ravel())[0, 1]) < 0.05


def test_odd_even_split():
    frames = np.arange(5 * 2 * 2, dtype=np.float32).reshape(5, 2, 2)
    even, odd = odd_even_split(frames)
    assert np.array_equal(even, frames[[0, 2, 4]]) and np.array_equal(odd, frames[[1, 3]])
    with pytest.raises(ValueError, match="2 frames"):
        odd_even_split(frames[:1])


def test_compare_rescales_prediction():
    ref = rng(23).random((10, 16, 16))
    out = metrics.compare(7.0 * ref, ref, (0.5, 0.2, 0.2), radius=5.0)
    assert out["scale"] == pytest.approx(1 / 7.0)
    assert out["psnr"] > 200 and out["ssim"] == pytest.approx(1.0)
    assert np.isfinite(out["resolution_um"])
