"""Vectorial (Richards–Wolf) and index-mismatch (Gibson–Lanni) widefield PSFs, checked against direct integrals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.optimize import brentq
from scipy.special import jv

from napari_lfrecon.psf.index_mismatch import paraxial_focal_shift_um
from napari_lfrecon.psf.pupil import make_pupil_grid
from napari_lfrecon.psf.vectorial import polarisation_factors
from napari_lfrecon.psf.widefield import widefield_psf, widefield_psf_torch


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


def complex_quad(function, a: float, b: float) -> complex:
    """``∫ f`` of a complex integrand with scipy's adaptive quadrature (real and imaginary parts apart)."""
    real = quad(lambda t: function(t).real, a, b, limit=200, epsabs=1e-13, epsrel=1e-11)[0]
    imag = quad(lambda t: function(t).imag, a, b, limit=200, epsabs=1e-13, epsrel=1e-11)[0]
    return complex(real, imag)


def richards_wolf_unpolarised(r_um: float, z_um: float, na: float, wavelength: float, n: float) -> float:
    """Direct Richards–Wolf intensity ``|I0|² + 2|I1|² + |I2|²`` of an unpolarised, aplanatic focus.

    ``I_m = ∫_0^α sqrt(cos θ) sin θ g_m(θ) J_m(k r sin θ) exp(i k z cos θ) dθ`` with
    ``g_0 = 1 + cos θ``, ``g_1 = sin θ``, ``g_2 = 1 - cos θ`` (Richards & Wolf 1959),
    averaged over x and y input polarisation (the azimuthal terms cancel).
    """
    k = 2 * math.pi * n / wavelength
    alpha = math.asin(na / n)

    def integral(order: int, g) -> complex:
        return complex_quad(
            lambda t: (
                math.sqrt(math.cos(t))
                * math.sin(t)
                * g(t)
                * jv(order, k * r_um * math.sin(t))
                * np.exp(1j * k * z_um * math.cos(t))
            ),
            0.0,
            alpha,
        )

    i0 = integral(0, lambda t: 1 + math.cos(t))
    i1 = integral(1, math.sin)
    i2 = integral(2, lambda t: 1 - math.cos(t))
    return abs(i0) ** 2 + 2 * abs(i1) ** 2 + abs(i2) ** 2


# ------------------------------------------------ vectorial vs definitions
def test_polarisation_factors_match_the_textbook_angle_form():
    # Novotny & Hecht (ch. 3) written with angles: Mxx = cos θ cos² φ + sin² φ,
    # Mxy = (cos θ - 1) sin φ cos φ, Mzx = -sin θ cos φ (and x <-> y); columns have unit norm.
    grid = make_pupil_grid(1.3, 0.55, 1.518, 24, dtype=torch.float64)
    factors = polarisation_factors(grid, 0.55, 1.518).numpy()
    ky, kx = np.meshgrid(grid.k.numpy(), grid.k.numpy(), indexing="ij")
    sin_theta = np.hypot(kx, ky) / (1.518 / 0.55)
    cos_theta = np.sqrt(np.clip(1 - sin_theta**2, 0, None))  # grid corners lie beyond n/λ
    phi = np.arctan2(ky, kx)
    inside = grid.aperture.numpy() > 0
    expected = [
        cos_theta * np.cos(phi) ** 2 + np.sin(phi) ** 2,
        cos_theta * np.sin(phi) ** 2 + np.cos(phi) ** 2,
        (cos_theta - 1) * np.sin(phi) * np.cos(phi),
        -sin_theta * np.cos(phi),
        -sin_theta * np.sin(phi),
    ]
    for ours, theirs in zip(factors, expected, strict=True):
        np.testing.assert_allclose(ours[inside], theirs[inside], atol=1e-12)
    xx, yy, xy, zx, zy = factors
    np.testing.assert_allclose((xx**2 + xy**2 + zx**2)[inside], 1.0, atol=1e-12)
    np.testing.assert_allclose((xy**2 + yy**2 + zy**2)[inside], 1.0, atol=1e-12)


def test_low_na_vectorial_matches_scalar():
    # At NA 0.3 in water sin θ <= 0.23: the z component (a ring carrying ~ sin²θ / 4 ~ 1 % of
    # the energy) and the apodisation (1/sqrt(cos θ) <= 1.013) change the PSF by ~1 % of its peak.
    args = ((9, 33, 33), (0.4, 0.1, 0.1), 0.3, 0.6, 1.33)
    scalar = widefield_psf_torch(*args, dtype=torch.float64).numpy()
    vectorial = widefield_psf_torch(*args, dtype=torch.float64, model="vectorial").numpy()
    assert np.abs(vectorial - scalar).max() < 2e-2 * scalar.max()
    # ... but not identical: the vectorial terms are really there.
    assert np.abs(vectorial - scalar).max() > 1e-4 * scalar.max()


def test_high_na_vectorial_profile_matches_direct_richards_wolf_integral():
    na, wavelength, n, dx = 1.4, 0.6, 1.518, 0.03
    shape, dz = (3, 33, 33), 0.3  # planes at z = -0.3, 0, 0.3 µm
    psf = widefield_psf_torch(shape, (dz, dx, dx), na, wavelength, n, dtype=torch.float64, model="vectorial").numpy()
    centre = 16
    steps = np.array([0, 3, 5, 7, 10, 14])
    radii = steps * dx
    for plane, z in ((1, 0.0), (2, dz)):
        ours = psf[plane, centre, centre + steps]
        # Also along y: the unpolarised PSF is rotationally symmetric.
        ours_y = psf[plane, centre + steps, centre]
        direct = np.array([richards_wolf_unpolarised(r, z, na, wavelength, n) for r in radii])
        reference = richards_wolf_unpolarised(0.0, 0.0, na, wavelength, n)
        scale = psf[1, centre, centre]
        np.testing.assert_allclose(ours / scale, direct / reference, atol=5e-3)
        np.testing.assert_allclose(ours_y / scale, direct / reference, atol=5e-3)


def test_high_na_vectorial_fwhm_is_wider_than_scalar_and_matches_direct_integral():
    na, wavelength, n, dx = 1.4, 0.6, 1.518, 0.01
    args = ((1, 65, 65), (0.1, dx, dx), na, wavelength, n)
    scalar = widefield_psf_torch(*args, dtype=torch.float64).numpy()[0, 32]
    vectorial = widefield_psf_torch(*args, dtype=torch.float64, model="vectorial").numpy()[0, 32]
    peak = richards_wolf_unpolarised(0.0, 0.0, na, wavelength, n)
    half_radius = brentq(lambda r: richards_wolf_unpolarised(r, 0.0, na, wavelength, n) - peak / 2, 0.05, 0.25)
    assert fwhm(vectorial, dx) == pytest.approx(2 * half_radius, rel=0.01)
    # Scalar is the Airy width 0.5145 λ/NA; the vectorial one is several % wider at NA 1.4 oil.
    assert fwhm(scalar, dx) == pytest.approx(0.5145 * wavelength / na, rel=0.01)
    assert fwhm(vectorial, dx) > 1.05 * fwhm(scalar, dx)


def one_period_spacing(samples: int, na: float, wavelength: float) -> float:
    """Lateral step making ``samples`` output pixels span exactly one period ``1/dk`` of the computed field.

    With ``N >= Nk`` samples over one period each plane's sample sum equals the continuous
    plane energy (the intensity is a trigonometric polynomial of degree ``Nk - 1``), with no
    light lost at the edges.
    """
    du = 2.0 / (samples - 2)  # normalised pupil spacing of the pupil grid
    return 1.0 / (samples * du * na / wavelength)


@pytest.mark.parametrize(
    ("model", "na", "options"),
    [
        ("vectorial", 1.3, {"zernike_waves": [0, 0, 0, 0.1, 0, 0.05, 0, 0, 0, 0, 0, 0.1]}),
        ("vectorial", 1.45, {"sample_index": 1.33, "depth_um": 4.0}),  # with the supercritical mask
        ("scalar", 1.2, {"sample_index": 1.40, "depth_um": 20.0}),
    ],
)
def test_every_plane_carries_the_same_energy(model, na, options):
    # Parseval: defocus, aberrations and the mismatch are pure phases (the mask is fixed), so the
    # planes' energies are equal, and the whole array sums to 1.
    samples, wavelength = 64, 0.55
    dx = one_period_spacing(samples, na, wavelength)
    psf = widefield_psf_torch(
        (5, samples, samples), (0.4, dx, dx), na, wavelength, 1.518, dtype=torch.float64, model=model,
        pupil_samples=samples, **options,
    ).numpy()  # fmt: skip
    assert psf.sum() == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(psf.sum(axis=(1, 2)), 0.2, rtol=1e-9)


def test_vectorial_peak_to_energy_ratio_matches_direct_integrals():
    # Peak / plane energy of the in-focus plane = |∫ A Mxx d²k|² / ∫ A² d²k
    # = π kn² (∫ sqrt(cos θ) sin θ (1 + cos θ) dθ)² / (2 (1 - cos α)) for the aplanatic unpolarised focus.
    na, wavelength, n, samples = 1.3, 0.55, 1.518, 192
    dx = one_period_spacing(samples, na, wavelength)
    plane = widefield_psf_torch(
        (1, samples, samples), (0.4, dx, dx), na, wavelength, n, dtype=torch.float64, model="vectorial",
        pupil_samples=samples,
    ).numpy()[0]  # fmt: skip
    alpha = math.asin(na / n)
    k_medium = n / wavelength
    amplitude = quad(lambda t: math.sqrt(math.cos(t)) * math.sin(t) * (1 + math.cos(t)), 0, alpha)[0]
    expected = math.pi * k_medium**2 * amplitude**2 / (2 * (1 - math.cos(alpha)))
    # Residue: the pupil's one-sample edge ramp is an amplitude, so the edge samples' energy is
    # under-counted (ramp², not ramp): -0.5 % of ∫ A² at Nk = 192, shrinking as 1 / Nk.
    assert plane[samples // 2, samples // 2] / (plane.sum() * dx * dx) == pytest.approx(expected, rel=7e-3)


@pytest.mark.parametrize("shape", [(5, 16, 16), (4, 15, 17)])
def test_vectorial_focus_at_shape_half_and_symmetric(shape):
    psf = widefield_psf_torch(shape, (0.2, 0.05, 0.05), 1.2, 0.5, 1.33, dtype=torch.float64, model="vectorial")
    array = psf.numpy()
    assert np.unravel_index(int(np.argmax(array)), array.shape) == tuple(s // 2 for s in shape)
    if shape[1] % 2 == 1:  # odd lateral sizes: mirror symmetry about the centre sample
        np.testing.assert_allclose(array[:, ::-1, :], array, rtol=1e-9, atol=1e-12)


def test_vectorial_gradients_match_finite_differences():
    shape, voxel, optics = (3, 9, 9), (0.3, 0.08, 0.08), (1.2, 0.55, 1.33)
    target = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def loss(coefficients: torch.Tensor, na: torch.Tensor | float) -> torch.Tensor:
        psf = widefield_psf_torch(
            shape, voxel, na, *optics[1:], coefficients, pupil_samples=48, dtype=torch.float64, model="vectorial",
            sample_index=1.45, depth_um=3.0,
        )  # fmt: skip
        return (psf * target).sum()

    c0 = torch.tensor([0.0, 0.0, 0.0, 0.1, 0.05, -0.08, 0.0, 0.06], dtype=torch.float64)
    coefficients = c0.clone().requires_grad_(True)
    na = torch.tensor(optics[0], dtype=torch.float64, requires_grad=True)
    loss(coefficients, na).backward()
    eps = 1e-6
    for j in (4, 5, 7):
        step = torch.zeros_like(c0)
        step[j] = eps
        numeric = (loss(c0 + step, optics[0]) - loss(c0 - step, optics[0])) / (2 * eps)
        assert float(coefficients.grad[j]) == pytest.approx(float(numeric), rel=1e-5, abs=1e-12)
    numeric_na = (loss(c0, optics[0] + eps) - loss(c0, optics[0] - eps)) / (2 * eps)
    assert float(na.grad) == pytest.approx(float(numeric_na), rel=1e-4, abs=1e-12)


# ----------------------------------------------------- index mismatch (GL)
@pytest.mark.parametrize("model", ["scalar", "vectorial"])
@pytest.mark.parametrize("depth", [0.0, 7.0, 50.0])
def test_matched_sample_index_changes_nothing(model, depth):
    args = ((7, 16, 16), (0.3, 0.1, 0.1), 1.2, 0.55, 1.33, [0, 0, 0, 0, 0, 0.1])
    matched = widefield_psf_torch(*args, dtype=torch.float64, model=model).numpy()
    same_index = widefield_psf_torch(*args, dtype=torch.float64, model=model, sample_index=1.33, depth_um=depth)
    np.testing.assert_allclose(same_index.numpy(), matched, rtol=1e-12, atol=1e-15)


def test_low_na_mismatch_moves_the_focus_by_the_predicted_shift():
    na, wavelength, n_i, n_s, depth, dz = 0.3, 0.6, 1.518, 1.33, 20.0, 0.05
    psf = widefield_psf_torch(
        (121, 17, 17), (dz, 0.1, 0.1), na, wavelength, n_i, dtype=torch.float64, sample_index=n_s, depth_um=depth
    ).numpy()
    axial = psf[:, 8, 8]
    i = int(np.argmax(axial))
    offset = 0.5 * (axial[i - 1] - axial[i + 1]) / (axial[i - 1] - 2 * axial[i] + axial[i + 1])
    peak_z = (i - 60 + offset) * dz
    # Paraxial optics: a nominal focus f deep actually focuses at f n_s / n_i, so the stage must
    # sit at f = d n_i / n_s, i.e. z = d - f = -d (n_i / n_s - 1) (z positive towards the objective).
    paraxial = -depth * (n_i / n_s - 1)
    assert paraxial_focal_shift_um(depth, n_i, n_s) == pytest.approx(paraxial, rel=1e-12)
    assert peak_z < 0
    assert peak_z == pytest.approx(paraxial, rel=0.05)
    # Beyond paraxial: the best focus cancels the defocus content of the mismatch phase
    # (least-squares over the uniform pupil, Maréchal): z* = -Cov(Ψ, kz_i) / Var(kz_i).
    k_na = na / wavelength

    def kz(n: float, rho: float) -> float:
        return math.sqrt((n / wavelength) ** 2 - (k_na * rho) ** 2)

    def mean(f) -> float:
        return quad(lambda rho: 2 * rho * f(rho), 0, 1)[0]

    def psi(rho: float) -> float:
        return depth * (kz(n_s, rho) - kz(n_i, rho))

    covariance = mean(lambda r: psi(r) * kz(n_i, r)) - mean(psi) * mean(lambda r: kz(n_i, r))
    variance = mean(lambda r: kz(n_i, r) ** 2) - mean(lambda r: kz(n_i, r)) ** 2
    assert peak_z == pytest.approx(-covariance / variance, abs=0.2 * dz)


def test_mismatch_lowers_the_peak_and_makes_the_psf_axially_asymmetric():
    na, wavelength, n_i, n_s, dz = 1.2, 0.55, 1.518, 1.33, 0.1
    shape, voxel, window = (121, 24, 24), (dz, 0.08, 0.08), 20  # z in ±6 µm; asymmetry over ±2 µm
    strehl, asymmetry = [], []
    reference = widefield_psf_torch(shape, voxel, na, wavelength, n_i).numpy().max()
    for depth in (0.0, 4.0, 10.0):
        psf = widefield_psf_torch(shape, voxel, na, wavelength, n_i, sample_index=n_s, depth_um=depth).numpy()
        strehl.append(psf.max() / reference)
        axial = psf[:, 12, 12]
        peak = int(np.argmax(axial))
        assert window <= peak < len(axial) - window
        above, below = axial[peak + 1 : peak + window + 1], axial[peak - 1 - np.arange(window)]
        asymmetry.append(np.abs(above - below).sum() / (above + below).sum())
    assert strehl[0] == pytest.approx(1.0, rel=1e-3)  # NA < n_s: nothing masked, no phase at depth 0
    assert strehl[0] > strehl[1] > strehl[2]
    assert strehl[2] < 0.9
    assert asymmetry[0] < 1e-3
    assert asymmetry[0] < asymmetry[1] < asymmetry[2]
    assert asymmetry[2] > 0.1


def test_automatic_pupil_sampling_resolves_a_deep_mismatch():
    # 20 µm deep in water under an NA 1.2 oil objective: the mismatch phase is steep at the pupil
    # edge (rays displaced by ~16 µm); the automatic grid (0.25 waves per sample, Nk = 288 here)
    # must still be within 1 % of the peak of a much finer one (measured: 0.7 %; 6.6 % with
    # Nk = 96 from the period rule alone).
    args = ((9, 32, 32), (0.3, 0.06, 0.06), 1.2, 0.55, 1.518)
    options = {"dtype": torch.float64, "sample_index": 1.33, "depth_um": 20.0}
    automatic = widefield_psf_torch(*args, **options).numpy()
    fine = widefield_psf_torch(*args, **options, pupil_samples=448).numpy()
    assert np.abs(automatic - fine).max() < 1e-2 * fine.max()


def test_light_beyond_the_critical_angle_is_masked():
    # NA 1.45 oil on a water sample at depth 0: the pupil beyond k = n_s/λ carries no light,
    # so the PSF is that of an objective with NA = n_s = 1.33 (same cut-off frequency).
    args = ((5, 33, 33), (0.2, 0.04, 0.04))
    masked = widefield_psf_torch(*args, 1.45, 0.55, 1.518, dtype=torch.float64, sample_index=1.33).numpy()
    cut = widefield_psf_torch(*args, 1.33 - 1e-9, 0.55, 1.518, dtype=torch.float64).numpy()
    assert np.abs(masked - cut).max() < 1e-2 * cut.max()
    full = widefield_psf_torch(*args, 1.45, 0.55, 1.518, dtype=torch.float64).numpy()
    assert fwhm(masked[2, 16], 0.04) > 1.05 * fwhm(full[2, 16], 0.04)


# --------------------------------------------------------- API and errors
def test_psf_object_records_the_new_options():
    psf = widefield_psf((4, 8, 8), (0.3, 0.1, 0.1), 1.2, 0.55, 1.518, model="vectorial", sample_index=1.33, depth_um=12)
    assert psf.optics["psf_model"] == "vectorial"
    assert psf.optics["sample_index"] == 1.33 and psf.optics["depth_um"] == 12.0
    default = widefield_psf((4, 8, 8), (0.3, 0.1, 0.1), 1.2, 0.55, 1.518)
    assert default.optics["psf_model"] == "scalar-pupil"
    assert default.optics["sample_index"] == 1.518 and default.optics["depth_um"] == 0.0
    same = widefield_psf_torch(
        (4, 8, 8), (0.3, 0.1, 0.1), 1.2, 0.55, 1.518, model="vectorial", sample_index=1.33, depth_um=12
    )
    np.testing.assert_allclose(psf.array, same.numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": "vector"},
        {"model": "vectorial", "na": 1.6},  # above the immersion index
        {"depth_um": -1.0},
        {"depth_um": float("nan")},
        {"sample_index": 0.0},
        {"sample_index": -1.33},
        {"sample_index": float("inf")},
    ],
)
def test_bad_options_raise_value_error(kwargs):
    arguments = {
        "shape_zyx": (4, 8, 8),
        "voxel_size_um": (0.2, 0.1, 0.1),
        "na": 1.2,
        "wavelength_um": 0.5,
        "immersion_index": 1.518,
        "sample_index": 1.33,
        "depth_um": 5.0,
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError):
        widefield_psf_torch(**arguments)
    with pytest.raises(ValueError):
        widefield_psf(**arguments)
