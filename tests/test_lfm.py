"""Light-field microscopy: the phase-space PSF, the PhaseSpaceLF operator, raw <-> views."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import j0

from napari_lfrecon.physics.lightfield import raw_to_views, views_to_raw
from napari_lfrecon.physics.phase_space import PhaseSpaceLF
from napari_lfrecon.psf.lfm import LFMOptics, PSFComputationStopped, lfm_psf
from napari_lfrecon.psf.model import PSF

# 20×/0.5 water, λ 0.52 µm, f-number matched lenslets (f_ml = p / (2 NA/M)), Nnum 7.
SMALL = {
    "magnification": 20.0,
    "na": 0.5,
    "immersion_index": 1.33,
    "wavelength_um": 0.52,
    "lenslet_pitch_um": 45.5,
    "lenslet_focal_um": 910.0,
    "camera_pixel_um": 6.5,
    "pixels_per_lenslet": 7,
}
DEPTHS = np.array([-6.0, -3.0, 0.0, 3.0, 6.0])
FOCUS = 2  # index of z = 0 in DEPTHS


# ----------------------------------------------------------------- raw <-> views
def test_raw_to_views_layout_and_inverse() -> None:
    nnum, ny, nx = 3, 4, 5
    raw = np.random.default_rng(0).random((2, ny * nnum, nx * nnum)).astype(np.float32)
    views = raw_to_views(raw, nnum)
    assert views.shape == (2, nnum * nnum, ny, nx)
    # pixel (u, v) of lenslet (j, l) is view u·Nnum + v at (j, l)
    for u, v, j, l in [(0, 0, 0, 0), (2, 1, 3, 4), (1, 2, 2, 0)]:
        assert views[1, u * nnum + v, j, l] == raw[1, j * nnum + u, l * nnum + v]
    np.testing.assert_array_equal(views_to_raw(views, nnum), raw)
    tviews = raw_to_views(torch.from_numpy(raw), nnum)
    np.testing.assert_array_equal(tviews.numpy(), views)
    np.testing.assert_array_equal(views_to_raw(tviews, nnum).numpy(), raw)


def test_raw_to_views_rejects_misaligned_frames() -> None:
    with pytest.raises(ValueError, match="lenslets"):
        raw_to_views(np.zeros((10, 9)), 3)
    with pytest.raises(ValueError, match="views must be"):
        views_to_raw(np.zeros((8, 2, 2)), 3)


# ----------------------------------------------------------------- the operator
def direct_forward(kernels: np.ndarray, s: int, vol: np.ndarray) -> np.ndarray:
    """views[a, j, l] = Σ_z,y,x vol[z, y, x] H[a, z][c + s·j + s//2 - y, c + s·l + s//2 - x], by explicit shift-add."""
    n_views, depth, kh, kw = kernels.shape
    _, height, width = vol.shape
    ny, nx = height // s, width // s
    out = np.zeros((n_views, ny, nx))
    for a in range(n_views):
        for z in range(depth):
            for ty in range(kh):
                for tx in range(kw):
                    # voxel feeding lenslet (j, l) through kernel tap (ty, tx)
                    for j in range(ny):
                        y = kh // 2 + s * j + s // 2 - ty
                        if not 0 <= y < height:
                            continue
                        for l in range(nx):
                            x = kw // 2 + s * l + s // 2 - tx
                            if 0 <= x < width:
                                out[a, j, l] += vol[z, y, x] * kernels[a, z, ty, tx]
    return out


CASES = [
    # (s, kernel h, kernel w, volume shape)
    (1, 5, 3, (2, 6, 5)),
    (1, 4, 6, (3, 4, 7)),  # even kernel sizes keep the shape // 2 centre too
    (3, 9, 15, (2, 9, 6)),
    (3, 7, 10, (2, 12, 9)),
]


@pytest.mark.parametrize("budget", [2**31, 1], ids=["precomputed", "on-the-fly"])
@pytest.mark.parametrize("case", CASES, ids=[f"s{c[0]}-k{c[1]}x{c[2]}" for c in CASES])
def test_forward_matches_direct_sum(case: tuple, budget: int) -> None:
    s, kh, kw, shape = case
    rng = np.random.default_rng(1)
    kernels = rng.random((3, shape[0], kh, kw))
    vol = rng.random((2, *shape))
    op = PhaseSpaceLF(kernels, s, shape, max_spectra_bytes=budget)
    got = op(torch.from_numpy(vol)).numpy()
    assert got.shape == (2, 3, shape[1] // s, shape[2] // s)
    for b in range(2):
        want = direct_forward(kernels, s, vol[b])
        np.testing.assert_allclose(got[b], want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("budget", [2**31, 1], ids=["precomputed", "on-the-fly"])
def test_forward_of_a_view_subset_matches_the_direct_sum(budget: int) -> None:
    s, kh, kw, shape = CASES[3]
    rng = np.random.default_rng(4)
    kernels = rng.random((5, shape[0], kh, kw))
    vol = rng.random((1, *shape))
    op = PhaseSpaceLF(kernels, s, shape, max_spectra_bytes=budget)
    subset = [4, 1]
    got = op(torch.from_numpy(vol), views=subset).numpy()
    assert got.shape == (1, 2, shape[1] // s, shape[2] // s)
    np.testing.assert_allclose(got[0], direct_forward(kernels[subset], s, vol[0]), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="view indices"):
        op(torch.from_numpy(vol), views=[5])


def test_chunked_path_equals_precomputed_and_is_chunked() -> None:
    rng = np.random.default_rng(3)
    kernels = rng.random((5, 2, 9, 9)).astype(np.float32)
    shape = (2, 12, 12)
    fast = PhaseSpaceLF(kernels, 3, shape)
    per_view = fast.spectra_bytes(torch.float32) // 5
    slow = PhaseSpaceLF(kernels, 3, shape, max_spectra_bytes=4 * per_view)
    assert len(slow._angle_chunks(torch.float32)) > 1
    vol = torch.from_numpy(rng.random((1, *shape)).astype(np.float32))
    np.testing.assert_allclose(slow(vol).numpy(), fast(vol).numpy(), rtol=1e-5, atol=1e-6)
    views = fast(vol)
    np.testing.assert_allclose(slow.adjoint(views).numpy(), fast.adjoint(views).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        fast.ones_adjoint().numpy(), fast.adjoint(torch.ones(fast.views_shape)).numpy(), rtol=1e-6
    )


def test_no_wrap_around_at_the_edges() -> None:
    # a bright voxel at the left edge must not light lenslets at the right edge
    kernels = np.ones((1, 1, 7, 7))
    op = PhaseSpaceLF(kernels, 1, (1, 10, 10))
    vol = torch.zeros((1, 1, 10, 10), dtype=torch.float64)
    vol[0, 0, 5, 0] = 1.0
    views = op(vol)[0, 0]
    assert views[2:9, :4].sum() == pytest.approx(28.0)  # rows 2..8, columns 0..3 see it (kernel half-width 3)
    assert views[:, 4:].abs().max() < 1e-12


def test_operator_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="multiple of supersample"):
        PhaseSpaceLF(np.ones((2, 1, 3, 3)), 3, (1, 10, 9))
    with pytest.raises(ValueError, match="depths"):
        PhaseSpaceLF(np.ones((2, 2, 3, 3)), 1, (3, 9, 9))
    op = PhaseSpaceLF(np.ones((2, 1, 3, 3)), 1, (1, 4, 4))
    with pytest.raises(ValueError, match="volume must be"):
        op(torch.zeros((1, 1, 5, 4)))
    assert op(torch.zeros((1, 4, 4))).shape == (2, 4, 4)  # unbatched input gives unbatched output


# ----------------------------------------------------------------- the PSF
@pytest.fixture(scope="module")
def psf3() -> PSF:
    return lfm_psf(LFMOptics(**SMALL, supersample=3), DEPTHS, device="cpu")


def test_psf_object_and_normalisation(psf3: PSF, tmp_path) -> None:
    nnum, s = 7, 3
    assert psf3.modality == "lfm"
    n_views, depth, kh, kw = psf3.array.shape
    assert (n_views, depth) == (nnum * nnum, DEPTHS.size)
    assert kh == kw and kh % 2 == 1 and kh % s == 0
    assert psf3.array.dtype == np.float32
    assert psf3.optics["views_shape"] == [nnum, nnum]
    assert psf3.voxel_size == pytest.approx((3.0, 45.5 / 20 / 3, 45.5 / 20 / 3))
    # flux-preserving: every voxel sends 1 in total, the kernel holds s² sub-lenslet positions
    np.testing.assert_allclose(psf3.array.sum(axis=(0, 2, 3)), s * s, rtol=1e-5)
    assert np.all(psf3.arrays["captured_fraction"] > 0.99)
    # the back-aperture image (radius f_ml·NA/M = 3.5 px) covers the inner views only
    mask = psf3.arrays["view_mask"].reshape(nnum, nnum)
    assert mask[3, 3] and mask[3, 0] and mask[0, 3] and not mask[0, 0] and mask.sum() == 37
    loaded = PSF.load(psf3.save(tmp_path / "lfm.psf.safetensors"))
    np.testing.assert_array_equal(loaded.array, psf3.array)
    assert loaded.optics == psf3.optics


def test_psf_kernel_centre_and_symmetry(psf3: PSF) -> None:
    kernels = psf3.array.astype(np.float64)
    c = kernels.shape[-1] // 2
    # the centre view of an axial point is symmetric about the kernel centre: no half-pixel drift
    centre_view = kernels[24]
    np.testing.assert_allclose(centre_view, centre_view[:, ::-1, :], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(centre_view, centre_view[:, :, ::-1], rtol=1e-4, atol=1e-7)
    # point reflection maps view a to the opposite view: H[A-1-a](-t) = H[a](t)
    np.testing.assert_allclose(kernels[::-1, :, ::-1, ::-1], kernels, rtol=1e-4, atol=1e-6 * kernels.max())
    # summed over views, the in-focus kernel peaks at zero offset and sits in the centre lenslet
    total = kernels[:, FOCUS].sum(0)
    assert np.unravel_index(total.argmax(), total.shape) == (c, c)
    assert total[c - 1 : c + 2, c - 1 : c + 2].sum() / total.sum() > 0.8


def test_in_focus_point_lands_under_its_lenslet_across_the_views(psf3: PSF) -> None:
    s = 3
    kernels = psf3.array.astype(np.float64)
    c = kernels.shape[-1] // 2
    # a source on the centre lenslet's axis (q = 0) reaches lenslet n through taps c + s·n
    lenslets = kernels[:, :, c % s :: s, c % s :: s]  # (A, D, 2R+1, 2R+1)
    r = lenslets.shape[-1] // 2
    per_lenslet = lenslets.sum(0)
    in_focus = per_lenslet[FOCUS, r, r] / per_lenslet[FOCUS].sum()
    assert in_focus > 0.9
    defocused = per_lenslet[[0, -1], r, r] / per_lenslet[[0, -1]].sum(axis=(1, 2))
    assert np.all(defocused < in_focus - 0.2)  # defocus spreads light to neighbouring lenslets
    # under that lenslet, the light fills the back-aperture image: every view inside it gets a share
    views = lenslets[:, FOCUS, r, r]
    mask = psf3.arrays["view_mask"]
    assert views[mask].min() > 0.1 * views.max()
    assert views[~mask].mean() < views[mask].mean() / 3


def test_defocus_parallax(psf3: PSF) -> None:
    optics = LFMOptics(**SMALL, supersample=3)
    kernels = psf3.array.astype(np.float64)
    c = kernels.shape[-1] // 2
    offset = np.arange(kernels.shape[-1]) - c
    tangents = optics.view_angles()
    for du, dv, axis in [(0, 2, 1), (2, 0, 0), (0, 1, 1)]:
        plus, minus = (3 + du) * 7 + (3 + dv), (3 - du) * 7 + (3 - dv)
        slopes = []
        for a in (plus, minus):
            profile = kernels[a].sum(axis=2 - axis)  # (D, taps) along the parallax axis
            centroid = (profile * offset).sum(-1) / profile.sum(-1)
            slope, intercept = np.polyfit(DEPTHS, centroid, 1)
            residual = centroid - (slope * DEPTHS + intercept)
            assert np.abs(residual).max() < 0.15 * abs(slope) * DEPTHS.max()  # linear in z
            slopes.append(slope)
        # opposite views move in opposite directions; a view at +u sees the source at x0 - z tan θ (z > 0 towards
        # the objective), within the spread of a diffraction-broadened, pixel-wide view
        assert slopes[0] < 0 < slopes[1]
        geometric = -tangents[plus, axis] / optics.voxel_xy_um
        assert 0.6 < slopes[0] / geometric < 1.2


def _direct_lfm_image(optics: LFMOptics, z: float, radius: int, guard: int = 1, sub: int = 5, per_px: int = 4):
    """Sensor image of an on-axis point by direct quadrature (no FFT): Debye NIP field by the midpoint rule in θ,
    then each lenslet's Fresnel diffraction integral to the sensor (lens at its own focal length), summed over
    lenslets, intensity integrated over pixels with ``sub``² samples each. Normalised to sum 1."""
    nnum, p, f = optics.nnum, optics.lenslet_pitch_um, optics.lenslet_focal_um
    k = 2 * np.pi / optics.wavelength_um
    kn = k * optics.immersion_index
    alpha = np.arcsin(optics.na / optics.immersion_index)
    n_sim = 2 * (radius + guard) + 1
    per_lenslet = nnum * per_px
    xi = (np.arange(n_sim * per_lenslet) + 0.5) * (p / per_lenslet) - n_sim * p / 2
    n_theta = 800
    theta = (np.arange(n_theta) + 0.5) * alpha / n_theta
    weights = np.sqrt(np.cos(theta)) * np.sin(theta) * np.exp(-1j * kn * z * np.cos(theta)) * alpha / n_theta
    radii, inverse = np.unique(np.hypot(xi[:, None], xi[None, :]).round(9), return_inverse=True)
    field = (j0(kn * radii[:, None] / optics.magnification * np.sin(theta)) @ weights)[inverse.reshape(-1)]
    field = field.reshape(xi.size, xi.size)
    n_kept = 2 * radius + 1
    xs = (np.arange(n_kept * nnum * sub) + 0.5) * (p / nnum / sub) - n_kept * p / 2
    sensor = np.zeros((xs.size, xs.size), complex)
    centres = (np.arange(n_sim) - n_sim // 2) * p
    for iy, cy in enumerate(centres):
        for ix, cx in enumerate(centres):
            block = field[iy * per_lenslet : (iy + 1) * per_lenslet, ix * per_lenslet : (ix + 1) * per_lenslet]
            ay = np.exp(-1j * k * np.outer(xs - cy, xi[iy * per_lenslet : (iy + 1) * per_lenslet]) / f)
            ax = np.exp(-1j * k * np.outer(xs - cx, xi[ix * per_lenslet : (ix + 1) * per_lenslet]) / f)
            chirp = np.exp(1j * k * (xs[:, None] ** 2 + xs[None, :] ** 2 - cy**2 - cx**2) / (2 * f))
            sensor += chirp * (ay @ block @ ax.T)
    pixels = (np.abs(sensor) ** 2).reshape(n_kept * nnum, sub, n_kept * nnum, sub).sum(axis=(1, 3))
    return pixels / pixels.sum()


@pytest.mark.parametrize("z", [0.0, 3.0, -3.0])
def test_psf_matches_direct_fresnel_quadrature(z: float) -> None:
    optics = LFMOptics(20, 0.5, 1.33, 0.52, 32.5, 650, 6.5, 5, supersample=1)
    psf = lfm_psf(optics, [z], kernel_lenslets=1, oversampling=5, device="cpu")
    kernels = psf.array[:, 0].astype(np.float64)  # (A, 3, 3): pixel a under lenslet n
    image = kernels.reshape(5, 5, 3, 3).transpose(2, 0, 3, 1).reshape(15, 15)
    want = _direct_lfm_image(optics, z, radius=1)
    np.testing.assert_allclose(image / image.sum(), want, atol=0.01 * want.max())


def test_psf_converged_in_propagation_grid_and_radial_table(monkeypatch: pytest.MonkeyPatch) -> None:
    # the default periodic domain (simulated lenslets + a quarter pitch) and radial table (128 samples per λ/NA)
    # must agree with a generous domain (3 extra pitches, guard 2 lenslets) and a 4× finer table
    import napari_lfrecon.psf.lfm as lfm

    optics = LFMOptics(**SMALL, supersample=3)
    depths = [-6.0, 0.0, 4.0]
    default = lfm_psf(optics, depths, device="cpu").array.astype(np.float64)
    monkeypatch.setattr(lfm, "_WRAP_MARGIN_LENSLETS", 3.0)
    monkeypatch.setattr(lfm, "_GUARD_LENSLETS", 2.0)
    monkeypatch.setattr(lfm, "_RADIAL_SAMPLES_PER_RES", 512)
    generous = lfm_psf(optics, depths, device="cpu").array.astype(np.float64)
    error = np.abs(default - generous).sum(axis=(0, 2, 3)) / generous.sum(axis=(0, 2, 3))
    assert np.all(error < 1e-3), error  # measured ~2.5e-4; the oversampling error at the default is ~1 %


def test_progress_and_stop() -> None:
    optics = LFMOptics(**SMALL)
    seen: list[float] = []
    psf = lfm_psf(optics, [0.0, 2.0], progress=seen.append, device="cpu")
    assert psf.array.shape[:2] == (49, 2) and seen and seen[-1] == 1.0
    with pytest.raises(PSFComputationStopped):
        lfm_psf(optics, [0.0], should_stop=lambda: True, device="cpu")


def test_optics_validation() -> None:
    with pytest.raises(ValueError, match="odd"):
        LFMOptics(**{**SMALL, "pixels_per_lenslet": 8, "lenslet_pitch_um": 52.0})
    with pytest.raises(ValueError, match="pitch"):
        LFMOptics(**{**SMALL, "camera_pixel_um": 5.0})
    with pytest.raises(ValueError, match="supersample"):
        LFMOptics(**SMALL, supersample=2)
    with pytest.raises(ValueError, match="NA"):
        LFMOptics(**{**SMALL, "na": 1.4})
    with pytest.raises(ValueError, match="z_planes_um"):
        lfm_psf(LFMOptics(**SMALL), [])
    optics = LFMOptics(**SMALL, supersample=3)
    assert LFMOptics.from_dict(lfm_psf(optics, [0.0], device="cpu").optics) == optics


def test_psf_drives_the_operator(psf3: PSF) -> None:
    # flux preservation end to end: an interior point's views sum to its brightness
    op = PhaseSpaceLF(psf3.array, 3, (DEPTHS.size, 33, 33))
    vol = torch.zeros((1, DEPTHS.size, 33, 33))
    vol[0, 1, 16, 17] = 2.0
    views = op(vol)
    assert views.shape == (1, 49, 11, 11)
    assert views.sum().item() == pytest.approx(2.0, rel=1e-4)
