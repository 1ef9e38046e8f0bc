"""The PSF editor's Qt-free half: sections, cost estimates, panel geometry (no display needed)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_lfrecon.controllers import psf_editor as compute
from napari_lfrecon.controllers.psf_editor import (
    MAX_ESTIMATED_BYTES,
    MAX_ESTIMATED_SECONDS,
    N_MODES,
    EditorSettings,
    Estimate,
    Panel,
    compute_sections,
    estimate_widefield,
    estimate_xlfm,
    place_panels,
    sensor_panels,
    widefield_key,
    widefield_panels,
    xlfm_stack,
    z_planes,
    zernike_values,
)
from napari_lfrecon.psf.model import PSF

#: 100× with 6.5 µm pixels: 65 nm object-space pixels, about 5 per Airy FWHM at NA 0.8, λ 0.52 µm.
SETTINGS = EditorSettings(n_z=9, n_xy=32, dz_um=0.4, magnification=100.0)


@pytest.fixture(scope="module")
def sections():
    return compute_sections(SETTINGS)


def test_the_module_imports_no_qt_and_no_napari():
    # In a fresh interpreter: pytest's Qt plugin has already imported Qt into this one.
    code = (
        f"import sys, {compute.__name__}; "
        "bad = [m for m in sys.modules if m.startswith(('qtpy', 'PyQt', 'PySide', 'napari.'))]; "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_widefield_panels_have_the_section_shapes_and_micrometre_scales(sections):
    dz, dx = 0.4, 6.5 / 100.0
    panels = widefield_panels(sections)
    assert [p.data.shape for p in panels] == [(32, 32), (9, 32), (9, 32), (9, 32)]
    for panel, scale in zip(panels, [(dx, dx), (dz, dx), (dz, dx), (dz, dx)], strict=True):
        assert panel.scale == pytest.approx(scale)
    assert [p.colormap for p in panels] == ["magma", "magma", "magma", "viridis"]
    assert all(p.data.dtype == np.float32 for p in panels)


def test_the_xy_section_is_the_in_focus_plane_with_the_airy_width(sections):
    array = sections.psf.array
    peaks = array.reshape(array.shape[0], -1).max(axis=1)
    assert int(np.argmax(peaks)) == 4 and sections.xy.max() == pytest.approx(array.max())
    # An aberration-free, index-matched PSF is symmetric about focus.
    np.testing.assert_allclose(sections.xz, sections.xz[::-1], atol=1e-5 * array.max())
    # Lateral FWHM of the in-focus plane ≈ 0.514 λ / NA (Airy pattern).
    row = sections.xy[16].astype(np.float64)
    half = row.max() / 2
    above = np.flatnonzero(row >= half)
    left = above[0] - (row[above[0]] - half) / (row[above[0]] - row[above[0] - 1])
    right = above[-1] + (row[above[-1]] - half) / (row[above[-1]] - row[above[-1] + 1])
    fwhm = (right - left) * 6.5 / 100.0
    assert fwhm == pytest.approx(0.514 * 0.52 / 0.8, rel=0.05)


def test_the_otf_section_is_band_limited_at_two_na_over_lambda(sections):
    kx = np.fft.fftshift(np.fft.fftfreq(32, d=6.5 / 100.0))  # cycles / µm
    cutoff = 2 * 0.8 / 0.52
    in_focus_row = sections.otf[4]  # kz = 0
    assert in_focus_row.min() >= -6.0 - 1e-6 and in_focus_row.max() == pytest.approx(0.0, abs=1e-6)
    assert in_focus_row[np.abs(kx) < 0.75 * cutoff].min() > -1.5
    assert in_focus_row[np.abs(kx) > 1.3 * cutoff].max() < -3.0


def test_the_cost_estimate_refuses_a_huge_request_and_grows_with_the_size():
    small = estimate_widefield(SETTINGS)
    assert small.refusal() is None
    huge = estimate_widefield(EditorSettings(n_z=257, n_xy=512))
    message = huge.refusal()
    assert message is not None and "too large" in message
    assert huge.bytes > MAX_ESTIMATED_BYTES and huge.seconds > 100 * small.seconds
    assert Estimate(seconds=MAX_ESTIMATED_SECONDS * 1.01, bytes=0).refusal() is not None
    assert Estimate(seconds=MAX_ESTIMATED_SECONDS, bytes=MAX_ESTIMATED_BYTES).refusal() is None


def test_the_xlfm_estimate_grows_linearly_with_the_depth_count():
    from napari_lfrecon.psf.xlfm import XLFMOptics, default_lenslet_layout

    optics = XLFMOptics(sensor_shape=(64, 64), view_size=(16, 16), lenslet_pupil_centres=default_lenslet_layout(3))
    one, ten = estimate_xlfm(optics, np.zeros(1)), estimate_xlfm(optics, np.zeros(10))
    assert ten.seconds == pytest.approx(10 * one.seconds)
    assert ten.bytes == 10 * one.bytes
    assert estimate_xlfm(optics, np.linspace(-500, 500, 20001)).refusal() is not None


def test_z_planes_include_the_end_within_half_a_step_and_reject_bad_ranges():
    np.testing.assert_allclose(z_planes(-1.0, 1.0, 0.5), [-1.0, -0.5, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(z_planes(0.0, 1.2, 0.5), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(z_planes(0.0, 1.3, 0.5), [0.0, 0.5, 1.0, 1.5])
    with pytest.raises(ValueError, match="positive"):
        z_planes(0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="must not be below"):
        z_planes(1.0, 0.0, 0.5)


def test_panels_are_laid_side_by_side_with_a_gap_and_saturated_limits():
    first = Panel(np.arange(12, dtype=np.float32).reshape(3, 4), (1.0, 0.5))  # 2 µm wide
    second = Panel(np.full((2, 5), 3.0, np.float32), (1.0, 2.0), "viridis", saturate=0.3)  # constant
    third = Panel(np.array([[1.0, 11.0]], np.float32), (1.0, 1.0), saturate=0.3)
    a, b, c = place_panels([first, second, third])
    gap = 0.1 * 4 * 0.5
    assert a.translate == (0.0, 0.0)
    assert b.translate == pytest.approx((0.0, 2.0 + gap))
    assert c.translate == pytest.approx((0.0, 2.0 + gap + 10.0 + gap))
    assert a.contrast_range == (0.0, 11.0) and a.contrast_limits == (0.0, 11.0)
    assert b.contrast_range == (3.0, 4.0)  # a flat panel still gets a non-empty range
    assert c.contrast_limits == pytest.approx((1.0, 4.0))  # 30 % of the way up
    assert (a.gamma, b.gamma, c.gamma) == (0.5, 1.0, 0.5)
    assert place_panels([]) == []


def _xlfm_psf() -> PSF:
    """A synthetic XLFM PSF: 2 depths, views at rows 10 (×1) and 30 (×3); one bright pixel per view and depth."""
    centres = np.array([[10.0, 20.0], [30.0, 8.0], [30.0, 20.0], [30.0, 38.0]])
    sensor = np.zeros((2, 40, 44), np.float32)
    for d in range(2):
        for y, x in centres.astype(int):
            sensor[d, y, x + d] = 1.0 + d  # the second depth twice as bright, shifted by one pixel
    return PSF(
        sensor,
        "xlfm",
        (2.0, 0.5, 0.5),
        optics={"view_size": [6, 8]},
        z_planes_um=[-1.0, 1.0],
        arrays={"centres": centres},
    )


def test_xlfm_panels_follow_the_fullest_row_and_zoom_on_its_outermost_view():
    stack = xlfm_stack(_xlfm_psf())
    assert stack.row == 30  # three views on row 30, one on row 10
    # the outermost view from the sensor's centre column 22: column 38 (16 px away), not column 8 (14 px)
    assert stack.zoom == (30 - 3, 38 - 4, 6, 8)
    panels = sensor_panels(stack, 1)
    assert len(panels) == 3
    assert panels[0].scale == (0.5, 0.5) and panels[1].scale == (2.0, 0.5)
    np.testing.assert_array_equal(panels[0].data, stack.sensor[1])
    row = panels[1].data
    assert row.shape == (2, 44) and row.max(axis=1) == pytest.approx([1.0, 1.0])  # each depth at its own peak
    assert panels[2].data.shape == (6, 8) and panels[2].data[3, 5] == 2.0  # the view's spot, shifted at depth 1
    np.testing.assert_array_equal(sensor_panels(stack, 99)[0].data, stack.sensor[1])  # the depth is clipped
    with pytest.raises(ValueError, match="XLFM"):
        xlfm_stack(PSF(np.zeros((3, 4, 4), np.float32), "widefield", (1.0, 1.0, 1.0)))


def test_zernike_values_and_keys():
    values = zernike_values({4: 0.2, 99: 1.0, -1: 1.0})
    assert values.shape == (N_MODES,) and values[4] == 0.2 and np.count_nonzero(values) == 1
    np.testing.assert_array_equal(zernike_values(np.ones(30))[:N_MODES], np.ones(N_MODES))
    np.testing.assert_array_equal(zernike_values([0.1, 0.2])[:3], [0.1, 0.2, 0.0])
    same = EditorSettings(n_z=9, n_xy=32, dz_um=0.4, magnification=100.0)
    assert widefield_key(same) == widefield_key(SETTINGS)
    changed = EditorSettings(n_z=9, n_xy=32, dz_um=0.4, magnification=100.0, zernike=values)
    assert widefield_key(changed) != widefield_key(SETTINGS)
    hash(widefield_key(changed))
