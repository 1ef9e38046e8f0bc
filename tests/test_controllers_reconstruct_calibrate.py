"""The Qt-free controllers behind the Reconstruct and Calibrate widgets (no display needed)."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from napari_lfrecon.controllers import calibrate as calibrate_control
from napari_lfrecon.controllers import reconstruct as control
from napari_lfrecon.controllers.streams import stream_callbacks
from napari_lfrecon.psf.calibrate_lightfield import calibrate_lightfield, synthetic_radiometry
from napari_lfrecon.psf.lfm import LFMOptics
from napari_lfrecon.psf.model import PSF

VOXEL = (0.4, 0.1, 0.1)


def gaussian_psf(shape=(5, 7, 7), sigma=(1.0, 0.8, 0.8)) -> PSF:
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    array = np.exp(-sum(g**2 / (2 * s**2) for g, s in zip(grids, sigma, strict=True))).astype(np.float32)
    return PSF(array / array.sum(), "widefield", VOXEL)


def test_controllers_import_no_qt():
    code = (
        "import sys, napari_lfrecon.controllers.reconstruct, napari_lfrecon.controllers.calibrate, "
        "napari_lfrecon.controllers.streams; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt6', 'napari', 'magicgui')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_defaults_and_names():
    assert control.DEFAULT_ENGINE in [name for name, _ in control.engine_choices()]
    assert control.default_input(["a", "b"], "a", ["b"]) == "a", "the current input stays"
    assert control.default_input(["a", "b", "gt"], None, ["a", "b"]) == "b", "else the newest measurement"
    assert control.default_input(["x", "y"], "gone", []) == "y"
    assert control.default_input([], None, []) is None
    assert control.hinted_params({"engine": "rl", "params": {"iterations": 3}}) == ("rl", {"iterations": 3})
    assert control.hinted_params({"engine": "no-such-engine"}) is None and control.hinted_params(None) is None
    assert control.frame_name("movie", 2) == "movie t=2"
    assert control.zarr_path("/tmp/out") == "/tmp/out.zarr" and control.zarr_path("a.zarr") == "a.zarr"


def test_series_layout_and_frame_index():
    psf = gaussian_psf()
    assert control.series_layout((3, 6, 14, 14), psf, "rl") == (True, 3)
    assert control.series_layout((6, 14, 14), psf, "rl") == (False, 3)
    assert control.series_layout((3, 6, 14, 14), None, "rl") == (True, 3), "without a PSF the engine decides"
    assert control.frame_index(2.6, 0.0, 1.0, 5) == 3
    assert control.frame_index(99.0, 0.0, 1.0, 5) == 4 and control.frame_index(-3.0, 0.0, 1.0, 5) == 0
    assert control.frame_index(5.0, 1.0, 2.0, 5) == 2


def test_camera_and_output_checks():
    assert control.camera_from(0.0, 1.0, 0.0) is None
    camera = control.camera_from(100.0, 0.5, 1.5)
    assert (camera.offset, camera.gain, camera.read_noise) == (100.0, 0.5, 1.5)
    with pytest.raises(ValueError, match="choose an output"):
        control.batch_output("  ")
    with pytest.raises(ValueError, match="must be a .zarr"):
        control.batch_output("out.tif")
    assert control.batch_output(" run.zarr ") == "run.zarr"
    assert control.batch_axes("lfm", 3) == "TAYX" and control.batch_axes("widefield", 3) == "TZYX"
    assert control.batch_axes("xlfm", 2) == "TYX"


def _drain(generator):
    yielded = []
    while True:
        try:
            yielded.append(next(generator))
        except StopIteration as end:
            return yielded, end.value


def test_stream_callbacks_yields_reports_in_order_and_returns_or_raises():
    def compute(report):
        for i in range(3):
            report(i / 2, f"step {i}")
        return "done"

    assert _drain(stream_callbacks(compute)) == ([(0.0, "step 0"), (0.5, "step 1"), (1.0, "step 2")], "done")

    def broken(report):
        report(0.1, "before")
        raise RuntimeError("boom")

    generator = stream_callbacks(broken)
    assert next(generator) == (0.1, "before")
    with pytest.raises(RuntimeError, match="boom"):
        next(generator)


def test_batch_updates_streams_chunks_and_stops_between_them(tmp_path):
    data = np.random.default_rng(0).uniform(1, 2, (3, 6, 14, 14)).astype(np.float32)
    options = {"engine": "rl", "params": {"iterations": 2}, "voxel_size": VOXEL}
    updates, (summary, error) = _drain(
        control.batch_updates(data, "TZYX", tmp_path / "a.zarr", gaussian_psf(), threading.Event(), **options)
    )
    assert error is None and summary.chunks_computed == summary.chunks_total == 3
    chunks = [(f, m) for f, m in updates if m.startswith("chunk")]
    assert chunks == [(pytest.approx(1 / 3), "chunk 1/3"), (pytest.approx(2 / 3), "chunk 2/3"), (1.0, "chunk 3/3")]

    stop = threading.Event()
    generator = control.batch_updates(data, "TZYX", tmp_path / "b.zarr", gaussian_psf(), stop, **options)
    while next(generator)[1] != "chunk 1/3":
        pass
    stop.set()
    rest, (summary, error) = _drain(generator)
    # the helper thread may have reported the chunk in flight before the flag was set, never a later one
    assert summary is None and isinstance(error, control.BatchCancelled)
    assert [m for _, m in rest] in ([], ["chunk 2/3"])
    message = control.cancelled_message(error)
    assert message.startswith("cancelled after chunk") and "resume" in message


def test_calibrate_controller_parses_optics_and_reports_the_grid():
    optics = calibrate_control.parse_optics({"na": " 0.5 ", "magnification": "", "lenslet_pitch_um": "100"})
    assert optics == {"na": 0.5, "lenslet_pitch_um": 100.0}
    with pytest.raises(ValueError, match="NA must be a number"):
        calibrate_control.parse_optics({"na": "x"})
    with pytest.raises(ValueError, match="must be positive"):
        calibrate_control.parse_optics({"na": "-1"})
    assert calibrate_control.depth_range([-2.0, 0.0, 2.0]) == (-2.0, 2.0, 2.0)
    assert calibrate_control.depth_range([1.0]) == (1.0, 1.0, None)
    white = synthetic_radiometry((120, 130), 9.37, 0.6, (60.3, 64.8), seed=2)
    calibration = calibrate_lightfield(white, nominal_pitch_px=9.375)
    report = calibrate_control.grid_report(calibration)
    assert report.startswith("pitch 9.3") and "nominal pitch from the optics: 9.3750" in report
    made = calibrate_control.rectify_lightfield(white, calibration, {}, supersample=3, z_range=(-1.0, 1.0), z_step=1.0)
    assert made["lfm_optics"] is None and made["pixel_um"] == 1.0 and "NA" in made["missing_optics"]
    assert made["rectified"].shape[0] % 9 == 0 and made["views"].shape[0] == 81
    np.testing.assert_allclose(made["depths"], [-1.0, 0.0, 1.0])


def test_lfm_psf_updates_returns_none_when_stopped_and_the_error_otherwise():
    optics = LFMOptics(
        magnification=20,
        na=0.5,
        immersion_index=1.0,
        wavelength_um=0.52,
        lenslet_pitch_um=60,
        lenslet_focal_um=1200,
        camera_pixel_um=60 / 9,
        pixels_per_lenslet=9,
        supersample=1,
    )
    stop = threading.Event()
    stop.set()
    assert _drain(calibrate_control.lfm_psf_updates(optics, np.array([0.0]), stop)) == ([], None)
    _, outcome = _drain(calibrate_control.lfm_psf_updates(optics, np.array([np.nan]), threading.Event()))
    assert isinstance(outcome, ValueError) and "finite" in str(outcome)
