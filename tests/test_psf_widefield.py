"""Zernike polynomials and the scalar-pupil widefield PSF, checked against definitions and analytic results."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import j1

from napari_lfrecon.psf import PSF
from napari_lfrecon.psf.pupil import centred_coordinates, make_pupil_grid
from napari_lfrecon.psf.widefield import widefield_psf, widefield_psf_torch
from napari_lfrecon.psf.zernike import (
    ZERNIKE_NAMES,
    ansi_to_nm,
    nm_to_ansi,
    zernike,
    zernike_basis,
)


# ----------------------------------------------------------------- helpers
def fwhm(profile: np.ndarray, spacing: float) -> float:
    """Full width at half maximum of a single-peaked 1-D profile, linearly interpolated at both flanks."""
    p = np.asarray(profile, dtype=np.float64)
    peak = int(np.argmax(p))
    half = p[peak] / 2
    right = peak
    while p[right + 1] > half:
        right += 1
    left = peak
    while p[left - 1] > half:
        left -= 1
    right_pos = right + (p[right] - half) / (p[right] - p[right + 1])
    left_pos = left - (p[left] - half) / (p[left] - p[left - 1])
    return (right_pos - left_pos) * spacing


def second_moments(plane: np.ndarray) -> tuple[float, float]:
    """Intensity-weighted variances along y and x (in pixels²) about the array centre."""
    ny, nx = plane.shape
    y = np.arange(ny) - ny // 2
    x = np.arange(nx) - nx // 2
    total = plane.sum()
    return float((plane.sum(axis=1) * y**2).sum() / total), float((plane.sum(axis=0) * x**2).sum() / total)


def disc_quadrature(n_rho: int = 40, n_theta: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes and weights integrating polynomials in (x, y) exactly over the unit disc, normalised to mean."""
    nodes, weights = np.polynomial.legendre.leggauss(n_rho)
    rho = (nodes + 1) / 2
    w_rho = weights / 2 * rho  # dA = rho d rho d theta
    theta = np.arange(n_theta) * 2 * np.pi / n_theta
    rr, tt = np.meshgrid(rho, theta, indexing="ij")
    ww = np.repeat(w_rho[:, None], n_theta, axis=1) * (2 * np.pi / n_theta)
    return rr, tt, ww / np.pi


# ----------------------------------------------------------------- Zernike
def test_ansi_indices_known_values_and_round_trip():
    known = {0: (0, 0), 1: (1, -1), 2: (1, 1), 3: (2, -2), 4: (2, 0), 5: (2, 2), 7: (3, -1), 12: (4, 0), 24: (6, 0)}
    for j, nm in known.items():
        assert ansi_to_nm(j) == nm
    for j in range(200):
        n, m = ansi_to_nm(j)
        assert abs(m) <= n and (n - m) % 2 == 0
        assert nm_to_ansi(n, m) == j
    assert ansi_to_nm(np.int64(4)) == (2, 0)
    with pytest.raises(ValueError):
        ansi_to_nm(-1)
    with pytest.raises(ValueError):
        nm_to_ansi(2, 1)


def test_zernike_names_cover_first_22_modes():
    assert set(range(22)) <= set(ZERNIKE_NAMES)
    assert ZERNIKE_NAMES[4] == "defocus"
    assert ZERNIKE_NAMES[5] == "vertical astigmatism"
    assert ZERNIKE_NAMES[8] == "horizontal coma"
    assert ZERNIKE_NAMES[12] == "primary spherical"


def test_zernike_explicit_formulas():
    rng = np.random.default_rng(0)
    rho = torch.from_numpy(rng.uniform(0, 1, 50))
    theta = torch.from_numpy(rng.uniform(-np.pi, np.pi, 50))
    r, t = rho.numpy(), theta.numpy()
    expected = {
        0: np.ones_like(r),
        1: 2 * r * np.sin(t),
        2: 2 * r * np.cos(t),
        3: math.sqrt(6) * r**2 * np.sin(2 * t),
        4: math.sqrt(3) * (2 * r**2 - 1),
        5: math.sqrt(6) * r**2 * np.cos(2 * t),
        7: math.sqrt(8) * (3 * r**3 - 2 * r) * np.sin(t),
        8: math.sqrt(8) * (3 * r**3 - 2 * r) * np.cos(t),
        12: math.sqrt(5) * (6 * r**4 - 6 * r**2 + 1),
        24: math.sqrt(7) * (20 * r**6 - 30 * r**4 + 12 * r**2 - 1),
    }
    basis = zernike_basis(25, rho, theta).numpy()
    for j, values in expected.items():
        np.testing.assert_allclose(zernike(j, rho, theta).numpy(), values, atol=1e-12)
        np.testing.assert_allclose(basis[j], values, atol=1e-12)


def test_zernike_basis_orthonormal_on_disc():
    # Exact polar quadrature: the mean of Z_i Z_j over the disc is the identity.
    rr, tt, ww = disc_quadrature()
    basis = zernike_basis(45, torch.from_numpy(rr), torch.from_numpy(tt)).numpy().reshape(45, -1)
    gram = (basis * ww.ravel()) @ basis.T
    np.testing.assert_allclose(gram, np.eye(45), atol=1e-10)
    # And on a fine Cartesian grid (what a pupil sees), to the grid's edge accuracy.
    n = 401
    c = (np.arange(n) - n // 2) / (n // 2)
    yy, xx = np.meshgrid(c, c, indexing="ij")
    inside = np.hypot(yy, xx) <= 1
    modes = zernike_basis(
        15, torch.from_numpy(np.hypot(yy, xx)[inside]), torch.from_numpy(np.arctan2(yy, xx)[inside])
    ).numpy()
    np.testing.assert_allclose(modes @ modes.T / inside.sum(), np.eye(15), atol=2e-2)


# ------------------------------------------------------- widefield: optics
# Reference widths: lateral FWHM of the Airy pattern 0.51 λ/NA (Born & Wolf,
# Principles of Optics, §8.5.2: (2 J1(v)/v)² has FWHM 0.514 λ/NA) and axial FWHM
# 0.88 λ / (n - sqrt(n² - NA²)) for a conventional widefield microscope (Amos,
# McConnell & Wilson, "Confocal microscopy", Comprehensive Biophysics vol. 2,
# Elsevier 2012, ch. 2, eq. 3; also Cole et al., Nat. Protoc. 6, 1929 (2011), Table 1).
OPTICS = [(0.8, 0.52, 1.0), (1.2, 0.6, 1.33)]


@pytest.mark.parametrize("na, wavelength, n", OPTICS)
def test_lateral_fwhm_matches_airy_width(na, wavelength, n):
    dx = wavelength / na / 12
    psf = widefield_psf_torch((1, 25, 25), (0.1, dx, dx), na, wavelength, n, dtype=torch.float64).numpy()
    width = fwhm(psf[0, 12, :], dx)
    assert width == pytest.approx(0.51 * wavelength / na, rel=0.10)
    assert fwhm(psf[0, :, 12], dx) == pytest.approx(width, rel=1e-9)


@pytest.mark.parametrize("na, wavelength, n", OPTICS)
def test_axial_fwhm_matches_widefield_formula(na, wavelength, n):
    expected = 0.88 * wavelength / (n - math.sqrt(n**2 - na**2))
    dz = expected / 15
    dx = wavelength / na / 12
    psf = widefield_psf_torch((61, 3, 3), (dz, dx, dx), na, wavelength, n, dtype=torch.float64).numpy()
    assert fwhm(psf[:, 1, 1], dz) == pytest.approx(expected, rel=0.10)


def test_in_focus_plane_is_the_airy_pattern():
    na, wavelength, n = 0.9, 0.5, 1.0
    dx = 0.04
    psf = widefield_psf_torch((1, 31, 30), (0.1, dx, dx), na, wavelength, n, dtype=torch.float64).numpy()[0]
    y = centred_coordinates(31, dx).numpy()
    x = centred_coordinates(30, dx).numpy()
    v = 2 * np.pi * na / wavelength * np.hypot(y[:, None], x[None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        airy = np.where(v == 0, 1.0, (2 * j1(v) / np.where(v == 0, 1, v)) ** 2)
    np.testing.assert_allclose(psf / psf.max(), airy, atol=2e-3)


def test_on_axis_intensity_matches_closed_form():
    # E(0, z) = ∫_disc exp(i2π z kz) d²k = 2π ∫_{kz_min}^{n/λ} exp(i2π z u) u du (since k dk = -kz dkz),
    # and ∫ u e^{iau} du = e^{iau} (u / (ia) + 1 / a²).
    na, wavelength, n = 1.0, 0.5, 1.33
    dz = 0.05
    psf = widefield_psf_torch((81, 1, 1), (dz, 0.05, 0.05), na, wavelength, n, dtype=torch.float64).numpy()[:, 0, 0]
    z = centred_coordinates(81, dz).numpy()
    lo, hi = math.sqrt(n**2 - na**2) / wavelength, n / wavelength
    a = 2 * np.pi * np.where(z == 0, 1.0, z)

    def antiderivative(u):
        return np.exp(1j * a * u) * (u / (1j * a) + 1 / a**2)

    field = antiderivative(hi) - antiderivative(lo)
    field = np.where(z == 0, (hi**2 - lo**2) / 2, field)
    expected = np.abs(field) ** 2
    np.testing.assert_allclose(psf / psf.max(), expected / expected.max(), atol=3e-3)


# ------------------------------------------------ widefield: conventions
@pytest.mark.parametrize("shape", [(7, 9, 11), (8, 10, 12), (6, 9, 10), (5, 16, 15)])
def test_peak_at_shape_half_for_odd_and_even(shape):
    psf = widefield_psf_torch(shape, (0.3, 0.08, 0.08), 1.0, 0.5, 1.33).numpy()
    assert np.unravel_index(np.argmax(psf), psf.shape) == tuple(s // 2 for s in shape)
    assert psf.dtype == np.float32
    assert psf.sum() == pytest.approx(1.0, rel=1e-5)
    assert psf.min() >= 0


@pytest.mark.parametrize("n_z", [9, 10])
def test_unaberrated_psf_is_symmetric_in_z_and_laterally(n_z):
    psf = widefield_psf_torch((n_z, 11, 11), (0.25, 0.07, 0.07), 1.1, 0.55, 1.33, dtype=torch.float64).numpy()
    valid = psf[1:] if n_z % 2 == 0 else psf  # the planes whose mirror z -> -z is on the grid
    np.testing.assert_allclose(valid, valid[::-1], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(psf, psf[:, :, ::-1], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(psf, psf.transpose(0, 2, 1), rtol=1e-9, atol=1e-15)
    assert not np.allclose(psf[n_z // 2], psf[n_z // 2 + 2])  # it does change with z


def test_oversample_integrates_over_voxels():
    # oversample = 3 must equal point sampling at dx/3 on a 3x finer grid, binned 3x3.
    na, wavelength, n, dx = 1.2, 0.6, 1.33, 0.12
    coarse = widefield_psf_torch((3, 5, 7), (0.2, dx, dx), na, wavelength, n, oversample=3, pupil_samples=64)
    fine = widefield_psf_torch((3, 15, 21), (0.2, dx / 3, dx / 3), na, wavelength, n, pupil_samples=64)
    binned = fine.reshape(3, 5, 3, 7, 3).sum(dim=(2, 4))
    np.testing.assert_allclose(coarse.numpy(), (binned / binned.sum()).numpy(), rtol=1e-4, atol=1e-8)


def test_automatic_pupil_sampling_is_converged_far_from_focus():
    # Strong defocus and coma on a wide field: the automatic pupil grid must give the
    # same PSF as a grid twice as fine (no wrapped-around light, pupil phase resolved).
    from napari_lfrecon.psf.pupil import pupil_samples_for

    shape, voxel, optics = (9, 48, 47), (1.0, 0.1, 0.1), (1.2, 0.6, 1.33)
    coefficients = [0, 0, 0, 0, 0, 0, 0, 0, 0.4]
    automatic = pupil_samples_for(*optics, 2.4, 4.0, coefficients)
    psf = widefield_psf_torch(shape, voxel, *optics, coefficients, dtype=torch.float64)
    reference = widefield_psf_torch(
        shape, voxel, *optics, coefficients, pupil_samples=2 * automatic, dtype=torch.float64
    )
    # (what remains, < 0.5 % of the peak, is the pupil-edge discretisation near the focus)
    np.testing.assert_allclose(psf, reference, atol=1e-2 * float(reference.max()))
    # ...while a grid that is too coarse visibly aliases (the check above can fail).
    coarse = widefield_psf_torch(shape, voxel, *optics, coefficients, pupil_samples=automatic // 3, dtype=torch.float64)
    assert float((coarse - reference).abs().max()) > 5e-2 * float(reference.max())


def test_too_large_pupil_grid_warns():
    from napari_lfrecon.psf.pupil import MAX_PUPIL_SAMPLES, pupil_samples_for

    with pytest.warns(RuntimeWarning, match="capped"):
        assert pupil_samples_for(1.3, 0.5, 1.33, 50.0, 200.0) == MAX_PUPIL_SAMPLES


# ---------------------------------------------------- widefield: aberrations
def test_gradients_match_finite_differences():
    shape, voxel, optics = (5, 9, 9), (0.3, 0.08, 0.08), (1.0, 0.5, 1.33)
    rng = np.random.default_rng(1)
    weights = torch.from_numpy(rng.uniform(0, 1, shape))
    c0 = torch.from_numpy(rng.normal(0, 0.1, 12))

    def loss(coefficients, na):
        psf = widefield_psf_torch(shape, voxel, na, *optics[1:], coefficients, pupil_samples=64, dtype=torch.float64)
        return (psf * weights).sum()

    c = c0.clone().requires_grad_(True)
    na = torch.tensor(optics[0], dtype=torch.float64, requires_grad=True)
    loss(c, na).backward()
    eps = 1e-6
    for j in range(1, 12):  # piston (j = 0) has zero gradient by construction
        step = torch.zeros(12, dtype=torch.float64)
        step[j] = eps
        numeric = (loss(c0 + step, optics[0]) - loss(c0 - step, optics[0])) / (2 * eps)
        assert float(c.grad[j]) == pytest.approx(float(numeric), rel=1e-5, abs=1e-12)
    assert abs(float(c.grad[0])) < 1e-12
    assert torch.count_nonzero(c.grad[1:]) == 11
    numeric_na = (loss(c0, optics[0] + eps) - loss(c0, optics[0] - eps)) / (2 * eps)
    assert float(na.grad) == pytest.approx(float(numeric_na), rel=1e-5)


def _best_focus_from_wavefront(coefficient, na, wavelength, n):
    """z that minimises the RMS of ``c·Z4 + z (kz - n/λ)`` over the pupil (Maréchal), by exact quadrature."""
    rr, tt, ww = disc_quadrature(n_rho=200, n_theta=8)
    k = rr * na / wavelength
    kz = np.sqrt((n / wavelength) ** 2 - k**2)
    z4 = math.sqrt(3) * (2 * rr**2 - 1)
    kz_centred = kz - (kz * ww).sum()
    return -coefficient * (kz * z4 * ww).sum() / (kz_centred**2 * ww).sum()


@pytest.mark.parametrize("coefficient", [0.25, -0.25])
def test_defocus_coefficient_moves_the_focus(coefficient):
    na, wavelength, n, dz = 0.5, 0.5, 1.0, 0.1
    expected = _best_focus_from_wavefront(coefficient, na, wavelength, n)
    paraxial = 4 * math.sqrt(3) * coefficient * n * wavelength / na**2
    assert expected == pytest.approx(paraxial, rel=0.10)  # the two predictions agree at this NA
    zernike_waves = [0, 0, 0, 0, coefficient]
    psf = widefield_psf_torch((101, 3, 3), (dz, 0.1, 0.1), na, wavelength, n, zernike_waves, dtype=torch.float64)
    axial = psf.numpy()[:, 1, 1]
    peak = int(np.argmax(axial))
    # Sub-plane peak position by a parabola through the three top samples.
    offset = 0.5 * (axial[peak - 1] - axial[peak + 1]) / (axial[peak - 1] - 2 * axial[peak] + axial[peak + 1])
    z_peak = (peak + offset - 101 // 2) * dz
    assert np.sign(z_peak) == np.sign(coefficient)
    assert z_peak == pytest.approx(expected, rel=0.02)


def test_vertical_astigmatism_gives_perpendicular_focal_lines():
    na, wavelength, n, dx = 0.8, 0.52, 1.0, 0.06
    z_line = 4 * math.sqrt(3) * (0.3 / math.sqrt(2)) * n * wavelength / na**2  # paraxial focal-line distance
    dz = z_line / 2
    psf = widefield_psf_torch((5, 33, 33), (dz, dx, dx), na, wavelength, n, [0, 0, 0, 0, 0, 0.3]).numpy()
    above_vy, above_vx = second_moments(psf[4])  # z = +z_line
    below_vy, below_vx = second_moments(psf[0])  # z = -z_line
    focus_vy, focus_vx = second_moments(psf[2])
    # cos 2θ astigmatism focuses x-rays beyond the y-rays: a line along y above focus, along x below.
    assert above_vy > 1.5 * above_vx
    assert below_vx > 1.5 * below_vy
    assert focus_vy == pytest.approx(focus_vx, rel=0.05)  # the circle of least confusion
    # Oblique astigmatism (j = 3) has no such x/y preference.
    oblique = widefield_psf_torch((5, 33, 33), (dz, dx, dx), na, wavelength, n, [0, 0, 0, 0.3]).numpy()
    vy, vx = second_moments(oblique[4])
    assert vy == pytest.approx(vx, rel=0.02)


# --------------------------------------------------------- API and errors
def test_widefield_psf_object_records_the_optics():
    psf = widefield_psf(
        (6, 8, 8), (0.3, 0.1, 0.1), 1.1, 0.55, 1.33, [0, 0, 0, 0, 0.1], magnification=40, camera_pixel_um=6.5
    )
    assert isinstance(psf, PSF)
    assert psf.modality == "widefield"
    assert psf.array.shape == (6, 8, 8) and psf.array.dtype == np.float32
    assert psf.array.sum() == pytest.approx(1.0, rel=1e-5)
    assert psf.voxel_size == (0.3, 0.1, 0.1)
    assert psf.optics["na"] == 1.1 and psf.optics["wavelength_um"] == 0.55
    assert psf.optics["immersion_index"] == 1.33 and psf.optics["magnification"] == 40.0
    assert psf.optics["camera_pixel_um"] == 6.5
    np.testing.assert_array_equal(psf.zernike, [0, 0, 0, 0, 0.1])
    np.testing.assert_allclose(psf.z_planes_um, [-0.9, -0.6, -0.3, 0.0, 0.3, 0.6])
    same = widefield_psf_torch((6, 8, 8), (0.3, 0.1, 0.1), 1.1, 0.55, 1.33, [0, 0, 0, 0, 0.1], dtype=torch.float64)
    np.testing.assert_allclose(psf.array, same.numpy(), rtol=1e-4, atol=1e-6 * float(same.max()))
    assert "camera_pixel_um" not in widefield_psf((2, 4, 4), (0.3, 0.1, 0.1), 1.1, 0.55, 1.33).optics


def test_pupil_grid_is_symmetric_and_covers_the_disc():
    grid = make_pupil_grid(1.2, 0.6, 1.33, 40, dtype=torch.float64)
    np.testing.assert_allclose(grid.k.numpy(), -grid.k.numpy()[::-1], atol=1e-12)
    area = float(grid.aperture.sum()) * grid.dk**2
    assert area == pytest.approx(math.pi * (1.2 / 0.6) ** 2, rel=5e-3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape_zyx": (4, 8)},
        {"shape_zyx": (4, 0, 8)},
        {"voxel_size_um": (0.1, -0.1, 0.1)},
        {"na": 1.4},  # above the immersion index
        {"na": 0.0},
        {"wavelength_um": 0.0},
        {"zernike_waves": [[0.1, 0.2]]},
        {"zernike_waves": [0.0, float("nan")]},
        {"oversample": 0},
    ],
)
def test_bad_input_raises_value_error(kwargs):
    arguments = {
        "shape_zyx": (4, 8, 8),
        "voxel_size_um": (0.2, 0.1, 0.1),
        "na": 0.8,
        "wavelength_um": 0.5,
        "immersion_index": 1.0,
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError):
        widefield_psf_torch(**arguments)
