"""XLFM PSF and XLFMProjector: checked against definitions, not against their own output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_lfrecon import modalities
from napari_lfrecon.physics.xlfm import XLFMProjector, view_windows
from napari_lfrecon.psf.model import PSF
from napari_lfrecon.psf.xlfm import (
    XLFMOptics,
    default_lenslet_layout,
    default_lenslet_radius,
    windows_overlap,
    xlfm_psf,
)

RNG = np.random.default_rng(1234)


def small_optics(**kw) -> XLFMOptics:
    """7 hex-packed lenslets on a 96² sensor with odd 25-pixel views: fast and symmetric."""
    base = dict(
        na=0.9,
        immersion_index=1.33,
        wavelength_um=0.5,
        pixel_um=0.5,
        sensor_shape=(96, 96),
        view_size=(25, 25),
        lenslet_pupil_centres=default_lenslet_layout(7),
        supersample=3,
    )
    base.update(kw)
    return XLFMOptics(**base)


def rel_inner(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> float:
    lhs = float(torch.sum(a * b))
    rhs = float(torch.sum(c * d))
    return abs(lhs - rhs) / max(abs(lhs), abs(rhs))


# ------------------------------------------------------------------ layout


def test_default_layout_27_disjoint_inside_pupil() -> None:
    centres = default_lenslet_layout(27)
    radius = default_lenslet_radius(centres)
    assert centres.shape == (27, 2)
    assert np.all(np.hypot(centres[:, 0], centres[:, 1]) + radius <= 1 + 1e-12)
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[~np.eye(27, dtype=bool)]
    assert gaps.min() >= 2 * radius - 1e-12
    # hex packing of 27 equal discs reaches a radius well above a naive 1/sqrt(27) area split / 2
    assert radius > 0.16
    # closed shell: the layout has the hexagonal lattice's 3-fold symmetry about the optical axis
    rot = np.array([[np.cos(2 * np.pi / 3), -np.sin(2 * np.pi / 3)], [np.sin(2 * np.pi / 3), np.cos(2 * np.pi / 3)]])
    turned = centres @ rot.T
    assert np.max(np.min(np.linalg.norm(turned[:, None] - centres[None], axis=-1), axis=1)) < 1e-9


def test_default_optics_views_fit_and_do_not_overlap() -> None:
    optics = XLFMOptics()
    assert optics.n_lenslets == 27
    assert not windows_overlap(optics.centres_px, optics.view_size)
    assert np.all(optics.centres_px == np.round(optics.centres_px))


def test_bad_optics_raise() -> None:
    with pytest.raises(ValueError, match="NA"):
        XLFMOptics(na=1.5, immersion_index=1.33)
    with pytest.raises(ValueError, match="sensor"):
        XLFMOptics(sensor_shape=(64, 64), view_size=(56, 56), centres_px=np.zeros((27, 2)))
    with pytest.raises(ValueError, match="odd"):
        small_optics(supersample=2)


# --------------------------------------------------------------------- PSF


@pytest.fixture(scope="module")
def psf_pm() -> tuple[XLFMOptics, PSF]:
    optics = small_optics()
    return optics, xlfm_psf(optics, np.array([-6.0, -3.0, 0.0, 3.0, 6.0]))


def test_psf_object_and_per_depth_normalisation(psf_pm, tmp_path) -> None:
    optics, psf = psf_pm
    assert psf.modality == "xlfm"
    assert psf.array.shape == (5, 96, 96) and psf.array.dtype == np.float32
    np.testing.assert_allclose(psf.array.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert psf.array.min() >= 0
    assert psf.voxel_size == (3.0, 0.5, 0.5)
    np.testing.assert_array_equal(psf.arrays["centres"], optics.centres_px)
    assert psf.arrays["centres"].dtype == np.float64
    assert json.loads(json.dumps(psf.optics))["view_size"] == [25, 25]
    back = PSF.load(psf.save(tmp_path / "x.psf.safetensors"))
    np.testing.assert_array_equal(back.array, psf.array)
    np.testing.assert_array_equal(back.arrays["centres"], psf.arrays["centres"])


def test_psf_pixel_values_match_direct_sum() -> None:
    """Shift, crop and pixel binning against a direct (non-FFT) sum over the sub-aperture's samples."""
    h = w = 7
    s = 3
    pupil = np.array([[0.0, 0.0], [0.3, -0.45]])
    optics = small_optics(
        lenslet_pupil_centres=pupil,
        lenslet_radius=0.25,
        sensor_shape=(20, 20),
        view_size=(h, w),
        centres_px=np.array([[4.0, 5.0], [13.3, 12.8]]),  # second centre fractional
        pixel_um=0.6,
        supersample=s,
    )
    z = 2.5
    psf = xlfm_psf(optics, np.array([z]))
    cutoff = optics.na / optics.wavelength_um
    dx = optics.pixel_um / s
    n_fine = 2 * h * s  # the field grid (twice the window) fixes the pupil sampling step
    kap = np.fft.fftfreq(n_fine, d=dx)
    ky, kx = np.meshgrid(kap, kap, indexing="ij")
    direct = np.zeros((20, 20))
    for (rho_y, rho_x), (cy, cx) in zip(pupil, optics.centres_px, strict=True):
        ay, ax = ky + rho_y * cutoff, kx + rho_x * cutoff
        keep = (ky**2 + kx**2 <= (0.25 * cutoff) ** 2) & (ay**2 + ax**2 <= cutoff**2)
        kz = np.sqrt((optics.immersion_index / optics.wavelength_um) ** 2 - ay[keep] ** 2 - ax[keep] ** 2)
        amp = np.exp(2j * np.pi * z * kz)
        for r in range(round(cy) - h // 2, round(cy) - h // 2 + h):
            for c in range(round(cx) - w // 2, round(cx) - w // 2 + w):
                for sy in range(s):
                    for sx in range(s):
                        # object-space offset of this sub-pixel from the view's optical axis c_k
                        y = (r - cy) * optics.pixel_um + (sy - s // 2) * dx
                        x = (c - cx) * optics.pixel_um + (sx - s // 2) * dx
                        field = np.sum(amp * np.exp(2j * np.pi * (ky[keep] * y + kx[keep] * x)))
                        direct[r, c] += abs(field) ** 2
    direct /= direct.sum()
    np.testing.assert_allclose(psf.array[0], direct, atol=1e-6 * direct.max() + 1e-7)


def test_infocus_point_peaks_at_lenslet_centres(psf_pm) -> None:
    optics, psf = psf_pm
    proj = XLFMProjector(psf.array, psf.arrays["centres"], optics.view_size, (5, 25, 25))
    vol = torch.zeros(1, 5, 25, 25)
    vol[0, 2, 12, 12] = 1.0  # z = 0, volume centre
    views = proj.views(proj(vol))[0].numpy()
    h, w = optics.view_size
    for view in views:
        assert np.unravel_index(np.argmax(view), view.shape) == (h // 2, w // 2)
    raw = proj(vol)[0].numpy()
    peaks = raw[optics.centres_px[:, 0].astype(int), optics.centres_px[:, 1].astype(int)]
    assert peaks.min() > 0.5 * raw.max()


def _centroids(views: np.ndarray) -> np.ndarray:
    h, w = views.shape[-2:]
    yy, xx = np.mgrid[:h, :w]
    total = views.sum(axis=(-2, -1))
    return np.stack([(views * yy).sum((-2, -1)) / total - h // 2, (views * xx).sum((-2, -1)) / total - w // 2], -1)


def test_parallax_opposite_along_rho_and_proportional_to_z(psf_pm) -> None:
    optics, psf = psf_pm
    proj = XLFMProjector(psf.array.astype(np.float64), psf.arrays["centres"], optics.view_size, (5, 25, 25))
    shifts = {}
    for iz in range(5):
        vol = torch.zeros(1, 5, 25, 25, dtype=torch.float64)
        vol[0, iz, 12, 12] = 1.0
        shifts[iz] = _centroids(proj.forward_views(vol)[0].numpy())
    # intensity at -z is the point reflection of the one at +z (conjugate pupil phase): odd views make it exact
    np.testing.assert_allclose(shifts[4], -shifts[0], atol=2e-3)
    np.testing.assert_allclose(shifts[3], -shifts[1], atol=2e-3)
    np.testing.assert_allclose(shifts[2], 0.0, atol=2e-3)
    expected = optics.parallax_per_um()  # pixels per µm, along +rho_k
    for iz, z in ((3, 3.0), (4, 6.0)):
        off_axis = np.hypot(*optics.lenslet_pupil_centres.T) > 0.1
        np.testing.assert_allclose(shifts[iz][off_axis], z * expected[off_axis], rtol=0.03, atol=0.05)
        direction = np.sum(shifts[iz] * optics.lenslet_pupil_centres, axis=1)
        assert np.all(direction[off_axis] > 0)  # z > 0 moves views outwards
    # the 6 µm shift is twice the 3 µm shift
    np.testing.assert_allclose(shifts[4], 2 * shifts[3], rtol=0.05, atol=0.05)


# --------------------------------------------------------------- projector


def direct_forward(vol: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """raw[p] = Σ_z Σ_j vol[z, j] · H[z, p - j + Y//2] (origins at Y//2 and H//2), kernel zero outside."""
    d, y, x = vol.shape
    _, hh, ww = psf.shape
    raw = np.zeros((hh, ww))
    for z in range(d):
        for jy in range(y):
            for jx in range(x):
                for py in range(hh):
                    for px in range(ww):
                        ky, kx = py - jy + y // 2, px - jx + x // 2
                        if 0 <= ky < hh and 0 <= kx < ww:
                            raw[py, px] += vol[z, jy, jx] * psf[z, ky, kx]
    return raw


@pytest.mark.parametrize(("sensor", "vol_yx"), [((9, 8), (5, 4)), ((7, 6), (8, 9)), ((6, 7), (3, 3))])
def test_forward_matches_direct_linear_convolution(sensor, vol_yx) -> None:
    psf = RNG.random((2, *sensor))
    vol = RNG.random((2, *vol_yx))
    proj = XLFMProjector(psf, np.array([[sensor[0] // 2, sensor[1] // 2]]), (3, 3), (2, *vol_yx))
    out = proj(torch.as_tensor(vol)[None])[0].numpy()
    np.testing.assert_allclose(out, direct_forward(vol, psf), rtol=1e-10, atol=1e-12)


def direct_forward_field_stop(
    vol: np.ndarray, psf: np.ndarray, corners: np.ndarray, view: tuple[int, int]
) -> np.ndarray:
    """raw = Σ_k W_k ⊙ (vol ⊛ H_k) with H_k = H ⊙ W_k, evaluated pixel by pixel with :func:`direct_forward`."""
    raw = np.zeros(psf.shape[1:])
    for top, left in corners:
        window = np.zeros(psf.shape[1:], dtype=bool)
        window[top : top + view[0], left : left + view[1]] = True
        raw += window * direct_forward(vol, psf * window)
    return raw


@pytest.mark.parametrize("vol_yx", [(5, 4), (8, 9)])
def test_field_stop_forward_matches_direct_evaluation(vol_yx) -> None:
    psf = RNG.random((2, 12, 11))
    centres, view = np.array([[3, 3], [3, 8], [9, 5]]), (5, 4)
    vol = RNG.random((2, *vol_yx))
    proj = XLFMProjector(psf, centres, view, (2, *vol_yx), field_stop=True)
    out = proj(torch.as_tensor(vol)[None])[0].numpy()
    np.testing.assert_allclose(out, direct_forward_field_stop(vol, psf, view_windows(centres, view), view), atol=1e-12)
    views = proj.forward_views(torch.as_tensor(vol)[None])
    torch.testing.assert_close(views, proj.views(torch.as_tensor(out)[None]), rtol=1e-12, atol=1e-12)


def test_field_stop_blocks_the_leak_into_a_neighbouring_view() -> None:
    # lenslet 0's lobe is a point at its view centre (column 3, window columns 1..5); a volume point
    # 4 px right of the axis images at column 7, inside view 1's window (columns 7..11): without a
    # field stop it leaks into view 1, with one it is blocked
    psf = np.zeros((1, 7, 14))
    psf[0, 3, 3] = 1.0
    centres, view = np.array([[3, 3], [3, 9]]), (5, 5)
    vol = np.zeros((1, 1, 9, 9))
    vol[0, 0, 4, 8] = 1.0  # 4 px right of the axis
    vol_t = torch.as_tensor(vol)
    open_views = XLFMProjector(psf, centres, view, (1, 9, 9)).forward_views(vol_t)[0]
    stopped = XLFMProjector(psf, centres, view, (1, 9, 9), field_stop=True)
    assert open_views[1].sum() == pytest.approx(1.0)  # the leak
    assert float(stopped(vol_t).abs().max()) < 1e-12
    vol[0, 0, 4, 8], vol[0, 0, 4, 5] = 0.0, 1.0  # 1 px right: inside view 0's window, seen by both models
    torch.testing.assert_close(
        stopped(torch.as_tensor(vol)), XLFMProjector(psf, centres, view, (1, 9, 9))(torch.as_tensor(vol))
    )


def test_field_stop_needs_disjoint_windows() -> None:
    with pytest.raises(ValueError, match="non-overlapping"):
        XLFMProjector(np.ones((1, 10, 10)), np.array([[4, 4], [5, 5]]), (4, 4), (1, 3, 3), field_stop=True)


def test_views_adjoint_sums_overlapping_windows() -> None:
    proj = XLFMProjector(np.ones((1, 10, 10)), np.array([[4, 4], [5, 5]]), (4, 4), (1, 3, 3))
    assert proj.views_overlap
    frame = proj.views_adjoint(torch.ones(1, 2, 4, 4, dtype=torch.float64))[0]
    assert frame[3:6, 3:6].eq(2).all() and frame.sum() == 32
    y = torch.as_tensor(RNG.standard_normal((1, 10, 10)))
    v = torch.as_tensor(RNG.standard_normal((1, 2, 4, 4)))
    assert rel_inner(proj.views(y), v, y, proj.views_adjoint(v)) < 1e-12


def test_float32_matches_float64_and_keeps_dtype() -> None:
    psf = RNG.random((2, 16, 16)).astype(np.float32)
    proj = XLFMProjector(psf, np.array([[8, 8]]), (5, 5), (2, 6, 6))
    x = torch.as_tensor(RNG.random((1, 2, 6, 6)))
    out32, out64 = proj(x.float()), proj(x)
    assert out32.dtype == torch.float32 and out64.dtype == torch.float64
    torch.testing.assert_close(out32.double(), out64, rtol=1e-5, atol=1e-6)
    assert proj.adjoint(out32).dtype == torch.float32


def test_projector_bad_input_raises() -> None:
    psf = np.ones((2, 16, 16))
    with pytest.raises(ValueError, match="depths"):
        XLFMProjector(psf, np.array([[8, 8]]), (5, 5), (3, 6, 6))
    with pytest.raises(ValueError, match="sensor"):
        XLFMProjector(psf, np.array([[1, 8]]), (5, 5), (2, 6, 6))
    proj = XLFMProjector(psf, np.array([[8, 8]]), (5, 5), (2, 6, 6))
    with pytest.raises(ValueError, match="volume"):
        proj(torch.zeros(1, 2, 7, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="raw"):
        proj.adjoint(torch.zeros(1, 15, 16, dtype=torch.float64))


def test_projector_of_a_psf_uses_view_size(psf_pm) -> None:
    optics, psf = psf_pm
    proj = modalities.get("xlfm").projector(psf)  # PSF objects become operators in modalities/, not physics/
    assert proj.volume_shape == (5, 25, 25) and proj.n_views == 7
    # disjoint windows: each lenslet's field stop is modelled, one kernel spectrum per depth and view
    assert proj.field_stop
    assert proj.memory_bytes() == 5 * 7 * proj.fft_shape[0] * (proj.fft_shape[1] // 2 + 1) * 8
    open_proj = modalities.get("xlfm").projector(psf, field_stop=False)
    assert not open_proj.field_stop
    assert open_proj.memory_bytes() == 5 * open_proj.fft_shape[0] * (open_proj.fft_shape[1] // 2 + 1) * 8
