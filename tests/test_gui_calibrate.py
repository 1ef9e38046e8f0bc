"""The Calibrate widget (bead, light field, XLFM tabs), driven through a real (Xvfb) napari viewer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pytestqt")

from napari_lfrecon.gui import kit as kit_module  # noqa: E402
from napari_lfrecon.gui import worker as worker_module  # noqa: E402
from napari_lfrecon.gui.calibrate_widget import CalibrateWidget  # noqa: E402
from napari_lfrecon.psf.calibrate_bead import BeadModel  # noqa: E402
from napari_lfrecon.psf.calibrate_lightfield import synthetic_radiometry  # noqa: E402
from napari_lfrecon.psf.calibrate_xlfm import synthetic_white  # noqa: E402
from napari_lfrecon.psf.model import PSF  # noqa: E402

GUV = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "lightfield_GUV_experimental"
TIMEOUT_MS = 60_000
VOXEL = (0.3, 0.13, 0.13)


@pytest.fixture
def errors(monkeypatch):
    """Messages passed to ``show_error`` by the widget and the worker layer."""
    seen: list[str] = []
    monkeypatch.setattr(kit_module, "show_error", seen.append)
    monkeypatch.setattr(worker_module, "show_error", seen.append)
    return seen


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    w = CalibrateWidget(viewer, sync=False)
    viewer.window.add_dock_widget(w, name="Calibrate")
    return w


def finished(widget, qtbot, started):
    """Wait until the widget's run (grid detection, XLFM views, PSF) is over; ``started`` is what the call returned."""
    assert started is not None, "the run was refused"
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)


def small_bead(seed: int = 0) -> np.ndarray:
    """A noisy bead with a little astigmatism and spherical aberration, off-centre by a fraction of a voxel."""
    truth = np.zeros(15)
    truth[[3, 12]] = [0.08, 0.06]
    model = BeadModel((12, 24, 24), VOXEL, 0.85, 0.52, 1.0, (3, 12))
    with torch.no_grad():
        model.coefficients.copy_(torch.as_tensor(truth[[3, 12]]))
        model.shift_vox.copy_(torch.tensor([0.2, -0.3, 0.25]))
        clean = (3000.0 * model.psf() + 40.0).numpy()
    return np.random.default_rng(seed).poisson(clean).astype(np.float32)


@pytest.mark.slow  # 10–20 s on the shared 2-core machine (two L-BFGS fits)
def test_bead_tab_streams_the_fit_and_adds_psf_residual_and_table(widget, qtbot, errors):
    viewer = widget.viewer
    viewer.add_image(small_bead(), name="bead", scale=VOXEL, translate=(1.0, 2.0, 3.0))
    widget.bead_picker.select("bead")
    assert widget.bead_dz.value() == pytest.approx(0.3)
    widget.bead_params.set_values({"iterations": 4, "max_mode": 12})
    losses: list[float] = []
    runner = widget.run_bead()
    assert runner is not None
    runner.metric.connect(lambda name, value: losses.append(value) if name == "loss" else None)
    done: list[str] = []
    runner.finished.connect(lambda status, message: done.append(status))
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT_MS)
    assert done == ["done"], errors
    assert losses and widget.bead_loss.text().startswith("loss: ")
    psf_layer = viewer.layers["bead [bead-fit]"]
    assert isinstance(psf_layer.metadata["psf"], PSF)
    assert psf_layer.metadata["psf"].modality == "widefield"
    residual = viewer.layers["bead [bead-fit residual]"]
    calibration = widget.bead_calibration
    np.testing.assert_allclose(residual.data, calibration.fit.crop - calibration.fit.model, rtol=0, atol=1e-3)
    # the residual sits over the bead: its origin is the crop origin in world units
    expected = [t + o * v for t, o, v in zip((1.0, 2.0, 3.0), calibration.fit.crop_origin, VOXEL, strict=True)]
    np.testing.assert_allclose(residual.translate, expected)
    modes = [int(widget.bead_table.item(r, 0).text()) for r in range(widget.bead_table.rowCount())]
    assert modes == [3, *range(5, 13)]
    astig = float(widget.bead_table.item(0, 2).text())
    assert astig == pytest.approx(float(calibration.fit.zernike[3]), abs=1e-4)
    assert "unaberrated" in widget.bead_chi2.text() and "fitted" in widget.bead_chi2.text()
    assert calibration.chi2_fit < calibration.chi2_unaberrated
    assert "preview" not in " ".join(layer.name for layer in viewer.layers)
    assert errors == []


def test_bead_tab_refuses_a_2d_layer(widget, errors):
    widget.viewer.add_image(np.zeros((20, 20), np.float32), name="flat")
    widget.bead_picker.select("flat")
    assert widget.run_bead() is None
    assert errors and "(Z, Y, X)" in errors[-1]
    assert len(widget.viewer.layers) == 1


def _lightfield_layers(viewer, shape=(120, 130), pitch=9.37, rotation=0.6, centre=(60.3, 64.8)):
    white = synthetic_radiometry(shape, pitch, rotation, centre, seed=2)
    dark = np.full(shape, 10.0, np.float32)
    raw = (0.4 * white + dark).astype(np.float32)
    originals = {"raw": raw.copy(), "white": (white + dark).copy(), "dark": dark.copy()}
    viewer.add_image(raw, name="raw")
    viewer.add_image(white + dark, name="white")
    viewer.add_image(dark, name="dark")
    return originals


def _true_centres(shape, pitch, rotation, centre):
    theta = math.radians(rotation)
    a_col = pitch * np.array([math.sin(theta), math.cos(theta)])
    a_row = pitch * np.array([math.cos(theta), -math.sin(theta)])
    j, l = np.meshgrid(np.arange(-20, 21), np.arange(-20, 21), indexing="ij")
    pts = np.asarray(centre) + j.reshape(-1, 1) * a_row + l.reshape(-1, 1) * a_col
    inside = (pts[:, 0] >= 0) & (pts[:, 0] <= shape[0] - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= shape[1] - 1)
    return pts[inside]


def test_lightfield_tab_detects_the_grid_as_points_and_rectifies(widget, qtbot, errors):
    viewer = widget.viewer
    shape, pitch, rotation, centre = (120, 130), 9.37, 0.6, (60.3, 64.8)
    originals = _lightfield_layers(viewer, shape, pitch, rotation, centre)
    widget.lf_raw.select("raw")
    widget.lf_white.select("white")
    widget.lf_dark.select("dark")
    runner = widget.detect_grid()
    assert widget.busy and not widget.lf_detect.isEnabled(), "the grid is measured off the main thread"
    finished(widget, qtbot, runner)
    calibration = widget.lf_calibration
    assert calibration is not None, errors
    assert widget.progress.value() == widget.progress.maximum()
    points = viewer.layers["raw lenslet centres"]
    truth = _true_centres(shape, pitch, rotation, centre)
    assert len(points.data) == len(truth)
    nearest = np.linalg.norm(points.data[:, None] - truth[None], axis=-1).min(axis=1)
    assert nearest.max() < 0.1
    assert "pitch 9.3" in widget.lf_info.text()
    widget.rectify()  # no optics typed: no PSF, the rectified layer appears at once
    rectified = viewer.layers["raw rectified"]
    nnum = calibration.pixels_per_lenslet()
    assert nnum == 9 and rectified.data.shape[0] % nnum == 0 and rectified.data.shape[1] % nnum == 0
    assert "psf" not in rectified.metadata
    for name, data in originals.items():  # input layers untouched
        np.testing.assert_array_equal(viewer.layers[name].data, data)
    assert errors == []


def test_grid_detection_can_be_cancelled(widget, qtbot, errors):
    """Detect grid runs in the worker layer: Cancel stops it within one step and nothing is added."""
    viewer = widget.viewer
    _lightfield_layers(viewer, shape=(240, 260), centre=(120.3, 129.8))
    widget.lf_raw.select("raw")
    widget.lf_white.select("white")
    runner = widget.detect_grid()
    assert widget.cancel_button.isEnabled()
    widget.cancel_button.click()
    finished(widget, qtbot, runner)
    assert runner.status == "cancelled", runner.message
    assert widget.lf_calibration is None and "raw lenslet centres" not in viewer.layers
    assert widget.lf_detect.isEnabled() and not widget.cancel_button.isEnabled()
    assert errors == []


def test_lightfield_tab_refuses_a_radiometry_frame_of_another_size(widget, errors):
    viewer = widget.viewer
    white = synthetic_radiometry((90, 90), 9.0, 0.0, (45.0, 45.0))
    viewer.add_image(white, name="raw")
    viewer.add_image(white[:60], name="white")
    widget.lf_raw.select("raw")
    widget.lf_white.select("white")
    assert widget.detect_grid() is None
    assert errors and "(60, 90)" in errors[-1] and "(90, 90)" in errors[-1] and "same size" in errors[-1]
    assert [layer.name for layer in viewer.layers] == ["raw", "white"]


def test_lightfield_tab_refuses_optics_that_contradict_the_pitch(widget, qtbot, errors):
    viewer = widget.viewer
    _lightfield_layers(viewer)
    widget.lf_raw.select("raw")
    widget.lf_white.select("white")
    widget.lf_fields["lenslet_pitch_um"].setText("100")
    widget.lf_fields["camera_pixel_um"].setText("6.5")  # nominal 15.4 px, measured 9.37 px
    finished(widget, qtbot, widget.detect_grid())
    assert widget.lf_calibration is None and widget.runner.status == "failed"
    assert errors and "measured pitch 9.3" in errors[-1] and "expected 15.38" in errors[-1]
    assert "raw lenslet centres" not in viewer.layers


def test_lightfield_tab_with_optics_attaches_the_implied_psf(widget, qtbot, errors, tmp_path):
    """Complete optics: the PSF is computed in a worker and rides on the rectified layer; Save writes the files."""
    viewer = widget.viewer
    # 9.37 px lenslets of 60 µm on 6.4 µm pixels: nominal 9.375 px
    _lightfield_layers(viewer, shape=(60, 64), centre=(30.2, 31.7))
    widget.lf_raw.select("raw")
    widget.lf_white.select("white")
    optics = dict(
        lenslet_pitch_um=60,
        lenslet_focal_um=1200,
        camera_pixel_um=6.4,
        magnification=20,
        na=0.5,
        wavelength_um=0.52,
        immersion_index=1.0,
    )
    for name, value in optics.items():
        widget.lf_fields[name].setText(str(value))
    widget.lf_supersample.setValue(1)
    widget.lf_z_from.setValue(-2.0)
    widget.lf_z_to.setValue(2.0)
    widget.lf_z_step.setValue(2.0)
    widget.rectify()
    qtbot.waitUntil(lambda: "raw rectified" in viewer.layers or bool(errors), timeout=TIMEOUT_MS)
    assert errors == []
    layer = viewer.layers["raw rectified"]
    psf = layer.metadata["psf"]
    assert isinstance(psf, PSF) and psf.modality == "lfm"
    assert psf.array.shape[:2] == (81, 3)
    assert psf.optics["camera_pixel_um"] == pytest.approx(60 / 9)  # the rectified pixel, not the camera's
    np.testing.assert_allclose(psf.z_planes_um, [-2.0, 0.0, 2.0])
    assert layer.scale[-1] == pytest.approx(60 / 20 / 9)
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)
    paths = widget.save_lightfield(tmp_path / "cal")
    assert sorted(p.name for p in paths) == [
        "cal.lfcal.json",
        "cal.psf.safetensors",
        "cal_rectified.tif",
        "cal_views.tif",
    ]
    saved = json.loads((tmp_path / "cal.lfcal.json").read_text())
    relay = saved["measured_vs_nominal"]["relay_magnification"]
    assert relay["measured"] == pytest.approx(saved["pitch_px"] * 6.4 / 60)
    assert PSF.load(tmp_path / "cal.psf.safetensors").array.shape == psf.array.shape
    assert not list(tmp_path.glob(".*tmp"))


def test_xlfm_tab_finds_the_view_centres(widget, qtbot, errors):
    viewer = widget.viewer
    truth = np.array([[20.3, 20.6], [20.1, 60.2], [59.7, 40.4], [60.4, 80.1], [21.0, 99.5]])
    image = synthetic_white((84, 124), truth, 7.0, seed=3)
    viewer.add_image(image, name="white")
    widget.xlfm_picker.select("white")
    finished(widget, qtbot, widget.find_xlfm_views())
    calibration = widget.xlfm_calibration
    assert calibration is not None, errors
    points = viewer.layers["white view centres"].data
    nearest = np.linalg.norm(points[:, None] - truth[None], axis=-1).min(axis=1)
    assert len(points) == 5 and nearest.max() < 0.1
    views = viewer.layers["white views"].data
    assert views.shape[0] == 5 and views.shape[1:] == calibration.view_size
    assert errors == []


def test_xlfm_tab_reports_a_frame_without_views(widget, qtbot, errors):
    widget.viewer.add_image(np.random.default_rng(0).normal(100, 1, (64, 64)).astype(np.float32), name="noise")
    widget.xlfm_picker.select("noise")
    finished(widget, qtbot, widget.find_xlfm_views())
    assert widget.xlfm_calibration is None
    assert errors and "no lenslet views found" in errors[-1]


@pytest.mark.skipif(not GUV.is_dir(), reason="the real GUV light field is not available")
def test_real_guv_frame_calibrates_in_the_widget(widget, qtbot, errors):
    import tifffile

    viewer = widget.viewer
    for name, stem in (("raw", "Lightfield"), ("white", "Radiometry"), ("dark", "DarkFrame")):
        viewer.add_image(tifffile.imread(GUV / f"{stem}_GUVExperim1.tif"), name=name)
    widget.lf_raw.select("raw")
    widget.lf_white.select("white")
    widget.lf_dark.select("dark")
    values = widget.load_metadata(GUV / "metadata.txt")
    assert values["wavelength_um"] == pytest.approx(0.593)
    assert widget.lf_fields["lenslet_pitch_um"].text() == "100"
    finished(widget, qtbot, widget.detect_grid())
    calibration = widget.lf_calibration
    assert calibration is not None, errors
    assert calibration.pitch_px == pytest.approx(15.40, abs=0.02)
    assert calibration.pixels_per_lenslet() == 15
    assert len(viewer.layers["raw lenslet centres"].data) > 700  # 28×28 lenslets on the 436² crop
    assert "nominal pitch from the optics: 15.38" in widget.lf_info.text()
    assert errors == []


@pytest.mark.parametrize(
    ("names", "roles"),
    [
        (("GUV raw", "GUV white", "GUV dark"), ("GUV raw", "GUV white", "GUV dark")),
        (("GUV dark", "GUV white", "GUV raw"), ("GUV raw", "GUV white", "GUV dark")),
        (
            ("Lightfield_GUVExperim1", "Radiometry_GUVExperim1", "DarkFrame_GUVExperim1"),
            ("Lightfield_GUVExperim1", "Radiometry_GUVExperim1", "DarkFrame_GUVExperim1"),
        ),
        (("Image", "Image [1]"), ("Image", None, None)),  # no name says radiometry: none, never the light field
    ],
)
def test_lightfield_pickers_default_by_role_and_keep_choices(widget, names, roles):
    viewer = widget.viewer
    for name in names:
        viewer.add_image(np.zeros((20, 20), np.float32), name=name)
    pickers = (widget.lf_raw, widget.lf_white, widget.lf_dark)
    assert tuple(picker.combo.currentData() for picker in pickers) == roles
    widget.lf_white.select(roles[0])  # the user's choice (even against the names) survives new layers
    viewer.add_image(np.zeros((20, 20), np.float32), name="another white")
    assert widget.lf_white.combo.currentData() == roles[0]
    # the light field (not chosen) moves to a frame no role holds when there is one
    assert widget.lf_raw.combo.currentData() == ("Image [1]" if "Image [1]" in names else roles[0])
    viewer.layers.remove(roles[0])  # the chosen layer is gone: the role is guessed again
    assert widget.lf_white.combo.currentData() == (roles[1] or "another white")


def test_lightfield_frames_get_the_object_space_of_the_rectified_frame(widget, qtbot, errors):
    """With the lenslet pitch and magnification, raw/white/dark frames are placed in µm under the rectified frame."""
    viewer = widget.viewer
    originals = _lightfield_layers(viewer, shape=(60, 64), centre=(30.2, 31.7))
    widget.lf_fields["lenslet_pitch_um"].setText("60")
    widget.lf_fields["magnification"].setText("20")
    finished(widget, qtbot, widget.detect_grid())
    assert widget.lf_calibration is not None, errors
    placement = viewer.layers["raw"]
    pitch = widget.lf_calibration.pitch_yx_px
    for name in ("raw", "white", "dark"):
        layer = viewer.layers[name]
        np.testing.assert_allclose(layer.scale, [3.0 / pitch[0], 3.0 / pitch[1]], rtol=1e-3)  # µm per camera pixel
        assert tuple(str(u) for u in layer.units) == ("micrometer", "micrometer")
        np.testing.assert_array_equal(layer.data, originals[name])  # only the placement changed
    centres = viewer.layers["raw lenslet centres"]  # drawn over the placed frame, in the same units
    np.testing.assert_allclose(centres.scale, placement.scale)
    assert centres.units == placement.units
    widget.rectify()  # no PSF (incomplete optics), but the rectified frame is in µm and over the raw frame
    rectified = viewer.layers["raw rectified"]
    assert rectified.scale[-1] == pytest.approx(3.0 / 9)
    raw_extent = np.asarray(viewer.layers["raw"].extent.world)
    rectified_extent = np.asarray(rectified.extent.world)
    assert np.all(rectified_extent[0] >= raw_extent[0]) and np.all(rectified_extent[1] <= raw_extent[1])
    assert errors == []
