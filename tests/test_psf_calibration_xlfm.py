"""XLFM calibration: view centres from white and bead frames, matching to the nominal layout, view crops, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from napari_lfrecon.cli import main
from napari_lfrecon.io.tiff import read_tiff, write_tiff
from napari_lfrecon.physics.xlfm import XLFMProjector
from napari_lfrecon.psf.calibrate_xlfm import (
    _focal_groups,
    calibrate_xlfm,
    crop_views,
    largest_view_size,
    synthetic_white,
)
from napari_lfrecon.psf.xlfm import XLFMOptics, default_lenslet_layout, windows_overlap, xlfm_psf

SENSOR = (96, 96)
VIEW = (25, 25)
PUPIL = default_lenslet_layout(7)


def optics(centres=None) -> XLFMOptics:
    """7 hex-packed lenslets on a 96² sensor (the nominal optics; ``centres`` = the true ones)."""
    return XLFMOptics(
        na=0.9,
        immersion_index=1.33,
        wavelength_um=0.5,
        pixel_um=0.5,
        sensor_shape=SENSOR,
        view_size=VIEW,
        lenslet_pupil_centres=PUPIL,
        supersample=3,
        centres_px=centres,
    )


def moved(nominal: np.ndarray, shift=(0.37, -0.61), rotation_deg=1.0, scale=1.0) -> np.ndarray:
    """Nominal centres rotated (from +x towards +y), scaled about the sensor centre, then shifted."""
    theta = math.radians(rotation_deg)
    # (y, x) rows: y' = cos·y + sin·x, x' = -sin·y + cos·x turns +x towards +y by theta
    rotation = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    origin = np.array([SENSOR[0] // 2, SENSOR[1] // 2], dtype=np.float64)
    return scale * (nominal - origin) @ rotation.T + origin + np.asarray(shift)


@pytest.fixture(scope="module")
def nominal() -> XLFMOptics:
    return optics()


@pytest.fixture(scope="module")
def truth(nominal) -> np.ndarray:
    return moved(np.asarray(nominal.centres_px))


@pytest.fixture(scope="module")
def bead_frame(truth) -> np.ndarray:
    """An in-focus bead through the XLFM model with the true (shifted, rotated) centres, Poisson noise."""
    psf = xlfm_psf(optics(truth), [0.0])
    return np.random.default_rng(0).poisson(psf.array[0] * 2e5 + 10.0).astype(np.float32)


def test_bead_frame_centres_are_recovered_to_a_tenth_of_a_pixel(nominal, truth, bead_frame):
    calibration = calibrate_xlfm(bead_frame, optics=nominal)
    assert calibration.n_lenslets == 7
    # matched to the nominal layout: same order as the optics' lenslets
    assert calibration.nominal_index.tolist() == list(range(7)) and calibration.missing == []
    assert np.abs(calibration.centres - truth).max() < 0.1
    assert calibration.view_size == VIEW
    transform = calibration.transform
    assert transform["rotation_deg"] == pytest.approx(1.0, abs=0.05)
    assert transform["shift_px"] == pytest.approx([0.37, -0.61], abs=0.05)
    assert transform["scale"] == pytest.approx(1.0, abs=0.002)
    assert any("rotation" in note for note in calibration.notes)  # a 1° rotation is reported


def test_white_frame_centres_are_recovered_without_optics(truth):
    image = synthetic_white(SENSOR, truth, 10.0, seed=1)
    calibration = calibrate_xlfm(image)
    distance = np.linalg.norm(calibration.centres[:, None] - truth[None], axis=-1)
    assert calibration.n_lenslets == 7
    assert distance.min(axis=1).max() < 0.1
    # ordered like the default layout: the centre view first
    assert np.argmin(distance[0]) == 0
    assert calibration.nominal_index is None
    assert not windows_overlap(calibration.centres, calibration.view_size)


def test_a_dark_frame_is_subtracted_and_must_match(truth):
    image = synthetic_white(SENSOR, truth, 10.0, seed=2)
    dark = np.linspace(0, 200, SENSOR[1], dtype=np.float32)[None].repeat(SENSOR[0], 0)
    calibration = calibrate_xlfm(image + dark, dark=dark)
    assert np.linalg.norm(calibration.centres[:, None] - truth[None], axis=-1).min(axis=1).max() < 0.1
    with pytest.raises(ValueError, match="dark frame is"):
        calibrate_xlfm(image, dark=dark[:10])


def test_cropped_views_match_the_projector_crops(nominal, bead_frame):
    calibration = calibrate_xlfm(bead_frame, optics=nominal)
    views = calibration.crop(bead_frame)
    projector = XLFMProjector(
        np.zeros((1, *SENSOR), np.float32), calibration.centres, calibration.view_size, (1, *VIEW)
    )
    expected = projector.views(torch.as_tensor(bead_frame)[None])[0].numpy()
    assert views.shape == (7, *VIEW)
    np.testing.assert_array_equal(views, expected)
    # and the crop is the literal window round(c) - size // 2 of the frame
    top, left = np.round(calibration.centres[3]).astype(int) - np.array(VIEW) // 2
    np.testing.assert_array_equal(views[3], bead_frame[top : top + VIEW[0], left : left + VIEW[1]])


def test_missing_and_extra_views_are_reported(nominal, truth):
    image = synthetic_white(SENSOR, np.vstack([truth[:6], [[8.0, 88.0]]]), 6.0, seed=3)
    calibration = calibrate_xlfm(image, optics=nominal, view_size=(11, 11))
    assert calibration.missing == [6]
    assert calibration.nominal_index.tolist() == [0, 1, 2, 3, 4, 5, -1]
    assert any("no view near nominal lenslet(s) [6]" in note for note in calibration.notes)
    assert any("match no nominal view" in note for note in calibration.notes)


def test_largest_view_size_is_the_non_overlapping_limit():
    centres = np.array([[20.0, 20.0], [20.0, 41.0], [45.0, 30.0]])
    size = largest_view_size(centres, (70, 70))
    assert size == (21, 21)  # the closest pair is 21 px apart along x
    assert crop_views(np.zeros((70, 70)), centres, size).shape == (3, 21, 21)


def test_focal_groups_split_bimodal_spot_sizes_only():
    assert _focal_groups(np.array([1.5, 1.52, 1.49, 2.6, 2.62, 1.51, 2.58])).tolist() == [0, 0, 0, 1, 1, 0, 1]
    assert _focal_groups(np.array([1.5, 1.52, 1.49, 1.55, 1.47, 1.51])).tolist() == [0] * 6


def test_bad_frames_are_refused(truth):
    with pytest.raises(ValueError, match="no lenslet views found"):
        calibrate_xlfm(np.random.default_rng(0).normal(100.0, 1.0, SENSOR))
    with pytest.raises(ValueError, match="too small"):
        calibrate_xlfm(np.ones((5, 40)))
    with pytest.raises(ValueError, match="2-D"):
        calibrate_xlfm(np.ones((3, 40, 40)))
    image = synthetic_white(SENSOR, truth, 10.0, seed=4)
    with pytest.raises(ValueError, match="overlap"):
        calibrate_xlfm(image, view_size=(40, 40))
    # a view touching the border: its window cannot lie on the frame
    edge = synthetic_white((60, 60), np.array([[30.0, 30.0], [30.0, 4.0]]), 3.0, seed=5)
    with pytest.raises(ValueError, match="leaves the"):
        calibrate_xlfm(edge, view_size=(15, 15))


def test_cli_writes_calibration_and_views_with_json(tmp_path, capsys, nominal, truth, bead_frame):
    frame = write_tiff(tmp_path / "bead.tif", bead_frame)
    optics_file = tmp_path / "optics.json"
    optics_file.write_text(json.dumps(nominal.to_dict() | {"centres_px": np.asarray(nominal.centres_px).tolist()}))
    argv = ["calibrate", "xlfm", str(frame), "--optics", str(optics_file), "--out", str(tmp_path / "cal"), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_lenslets"] == 7 and summary["view_size"] == list(VIEW)
    assert np.abs(np.asarray(summary["centres"]) - truth).max() < 0.1
    views = read_tiff(tmp_path / "cal_views.tif").data
    assert views.shape == (7, *VIEW)
    saved = json.loads((tmp_path / "cal.xlfmcal.json").read_text())
    assert saved["centres"] == summary["centres"]


def test_cli_flags_come_from_the_engine_params(tmp_path, capsys, truth, bead_frame):
    """``--view-height``/``--view-width`` are the xlfm-calibrate engine's Params; ``--view-size`` still works."""
    frame = write_tiff(tmp_path / "bead.tif", bead_frame)
    base = ["calibrate", "xlfm", str(frame), "--out", str(tmp_path / "cal"), "--json"]
    assert main([*base, "--view-height", "9", "--view-width", "11", "--smooth-sigma", "0.8"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["view_size"] == [9, 11]
    assert main([*base, "--view-size", "7", "7"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["view_size"] == [7, 7]
    assert main([*base, "--smooth-sigma", "-1"]) == 2
    assert "smooth_sigma" in capsys.readouterr().err


def test_cli_refuses_a_frame_without_views_and_writes_nothing(tmp_path, capsys):
    frame = write_tiff(tmp_path / "flat.tif", np.random.default_rng(1).normal(50, 1, (64, 64)).astype(np.float32))
    assert main(["calibrate", "xlfm", str(frame), "--out", str(tmp_path / "cal")]) == 2
    assert "no lenslet views found" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.tif"]


# ---------------------------------------------------------------- light-field CLI additions (cli_calibrate.py)
def _lightfield_files(tmp_path, pitch=9.37):
    from napari_lfrecon.psf.calibrate_lightfield import synthetic_radiometry

    white = synthetic_radiometry((60, 64), pitch, 0.5, (30.2, 31.7), seed=1)
    raw = 0.5 * white
    return write_tiff(tmp_path / "lf.tif", raw), write_tiff(tmp_path / "white.tif", white)


def test_cli_lightfield_with_complete_optics_writes_the_implied_psf(tmp_path, capsys):
    from napari_lfrecon.psf.model import PSF

    lf, white = _lightfield_files(tmp_path)
    optics = ["--lenslet-pitch", "60", "--lenslet-focal-length", "1200", "--camera-pixel", "6.4"]
    optics += ["--magnification", "20", "--na", "0.5", "--wavelength", "0.52", "--medium-index", "1.0"]
    depth = ["--z-range", "-2", "2", "--z-step", "2", "--supersample", "1"]
    argv = ["calibrate", "lightfield", str(lf), "--radiometry", str(white), *optics, *depth]
    assert main([*argv, "--out", str(tmp_path / "cal"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    psf = PSF.load(tmp_path / "cal.psf.safetensors")
    assert psf.modality == "lfm" and psf.array.shape[:2] == (81, 3)
    np.testing.assert_allclose(psf.z_planes_um, [-2.0, 0.0, 2.0])
    # the rectified pixel (pitch / Nnum), not the camera pixel, is what the PSF samples
    assert psf.optics["camera_pixel_um"] == pytest.approx(60 / 9)
    compared = summary["measured_vs_nominal"]
    assert compared["pitch_px"]["nominal"] == pytest.approx(60 / 6.4)
    assert compared["pitch_px"]["measured"] == pytest.approx(9.37, abs=0.02)
    assert compared["relay_magnification"]["measured"] == pytest.approx(summary["pitch_px"] * 6.4 / 60)
    assert summary["psf"].endswith("cal.psf.safetensors")
    assert not list(tmp_path.glob(".*tmp"))


def test_cli_lightfield_refuses_optics_that_contradict_the_pitch(tmp_path, capsys):
    lf, white = _lightfield_files(tmp_path)
    argv = ["calibrate", "lightfield", str(lf), "--radiometry", str(white), "--lenslet-pitch", "100"]
    assert main([*argv, "--camera-pixel", "6.5", "--out", str(tmp_path / "cal")]) == 2
    err = capsys.readouterr().err
    assert "measured pitch 9.3" in err and "expected 15.385" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lf.tif", "white.tif"]


def test_napari_lf_metadata_is_read_in_micrometres(tmp_path):
    from napari_lfrecon.io.calibration_files import read_lightfield_metadata, z_planes

    document = {
        "calibrate": {
            "ulens_pitch": 100.0,
            "pixel_size": 6.5,
            "ulens_focal_length": 2500.0,
            "objective_magnification": 60,
            "objective_na": 1.2,
            "center_wavelength": 593.0,
            "medium_index": 1.35,
            "supersample": 3,
            "num_slices": 5,
            "um_per_slice": 2.0,
            "z_center": 1.0,
            "radiometry_frame_file": "white.tif",
        }
    }
    path = tmp_path / "metadata.txt"
    path.write_text(json.dumps(document))
    values = read_lightfield_metadata(path)
    assert values["wavelength_um"] == pytest.approx(0.593)
    assert values["lenslet_pitch_um"] == 100.0 and values["camera_pixel_um"] == 6.5
    assert values["supersample"] == 3 and values["radiometry_file"] == "white.tif"
    np.testing.assert_allclose(values["z_planes_um"], [-3.0, -1.0, 1.0, 3.0, 5.0])
    np.testing.assert_allclose(z_planes((-1.0, 1.0), 0.5), [-1.0, -0.5, 0.0, 0.5, 1.0])
    path.write_text("{}")
    with pytest.raises(ValueError, match="calibrate"):
        read_lightfield_metadata(path)
