"""Light-field lenslet grid calibration from a radiometry frame, rectification and views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_lfrecon.psf.calibrate_lightfield import (
    calibrate_lightfield,
    rectified_views,
    rectify,
    synthetic_radiometry,
)

GUV = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "lightfield_GUV_experimental"


def _lattice_phase_error(calibration, centre_true) -> np.ndarray:
    """Distance (in lenslets) from the true lattice: 0 when the found centre is any true lenslet centre."""
    inverse = np.linalg.inv(calibration.lattice.T)
    fractional = inverse @ (np.asarray(calibration.centre_px) - np.asarray(centre_true))
    return fractional - np.round(fractional)


@pytest.mark.parametrize(
    ("pitch", "rotation", "centre"),
    [(15.37, 0.6, (203.3, 207.8)), (12.81, -1.3, (100.2, 99.7)), (15.4, 0.0, (3.0, 4.0))],
)
def test_grid_with_known_non_integer_pitch_rotation_and_offset_is_found(pitch, rotation, centre):
    frame = synthetic_radiometry((300, 320), pitch, rotation, centre, seed=1)
    dark = np.full(frame.shape, 20.0, dtype=np.float32)
    calibration = calibrate_lightfield(frame + dark, dark)
    row, col = calibration.pitch_yx_px
    assert abs(row - pitch) < 0.05 and abs(col - pitch) < 0.05
    assert abs(calibration.pitch_px - pitch) < 0.01
    assert calibration.rotation_deg == pytest.approx(rotation, abs=0.05)
    # The found centre is a true lenslet centre to a few hundredths of a pixel.
    assert np.all(np.abs(_lattice_phase_error(calibration, centre) * pitch) < 0.05)
    assert calibration.pixels_per_lenslet() == (13 if pitch < 13 else 15)
    summary = calibration.to_dict()
    assert {"pitch_px", "rotation_deg", "offset_px", "pixels_per_lenslet"} <= set(summary)


def test_nominal_pitch_is_reported_not_used():
    frame = synthetic_radiometry((200, 200), 15.37, 0.3, (100.0, 100.0))
    agreeing = calibrate_lightfield(frame, nominal_pitch_px=15.38)
    assert agreeing.notes == []
    disagreeing = calibrate_lightfield(frame, nominal_pitch_px=14.0)
    assert disagreeing.pitch_px == pytest.approx(15.37, abs=0.02)
    assert any("disagrees" in note for note in disagreeing.notes)


def test_bad_frames_are_refused():
    frame = synthetic_radiometry((120, 120), 15.0, 0.0, (60.0, 60.0))
    with pytest.raises(ValueError, match="same size"):
        calibrate_lightfield(frame, np.zeros((100, 120)))
    with pytest.raises(ValueError, match="no lenslet lattice"):
        calibrate_lightfield(np.full((120, 120), 5.0))
    calibration = calibrate_lightfield(frame)
    with pytest.raises(ValueError, match="same size"):
        rectify(np.zeros((100, 100)), calibration)


def test_rectified_tiles_are_centred_and_views_have_the_lenslet_grid_shape():
    pitch, rotation, centre = 15.37, 0.8, (97.4, 101.6)
    frame = synthetic_radiometry((200, 210), pitch, rotation, centre, seed=None)
    calibration = calibrate_lightfield(frame)
    nnum = 15
    rectified = rectify(frame, calibration, pixels_per_lenslet=nnum)
    assert rectified.shape[0] % nnum == 0 and rectified.shape[1] % nnum == 0
    ny, nx = rectified.shape[0] // nnum, rectified.shape[1] // nnum
    assert ny >= 11 and nx >= 11  # ~200 / 15.37 = 13 lenslets, minus partial edge tiles
    tiles = rectified.reshape(ny, nnum, nx, nnum).transpose(0, 2, 1, 3).reshape(-1, nnum, nnum)
    # Each rectified tile is a centred disc: its centroid is the tile centre (index nnum // 2).
    yy, xx = np.mgrid[0:nnum, 0:nnum]
    weights = tiles.sum(axis=(1, 2))
    cy = (tiles * yy).sum(axis=(1, 2)) / weights
    cx = (tiles * xx).sum(axis=(1, 2)) / weights
    assert np.abs(cy - nnum // 2).max() < 0.1 and np.abs(cx - nnum // 2).max() < 0.1
    views = rectified_views(frame, calibration, pixels_per_lenslet=nnum)
    assert views.shape == (nnum * nnum, ny, nx)
    # The centre view looks through every lenslet centre (bright); a corner view sees the dark gaps.
    assert views[(nnum // 2) * nnum + nnum // 2].mean() > 20 * views[0].mean()


@pytest.mark.skipif(not GUV.is_dir(), reason="real data absent")
def test_real_guv_light_field_calibrates_and_rectifies():
    import tifffile

    radiometry = tifffile.imread(GUV / "Radiometry_GUVExperim1.tif")
    dark = tifffile.imread(GUV / "DarkFrame_GUVExperim1.tif")
    raw = tifffile.imread(GUV / "Lightfield_GUVExperim1.tif")
    calibration = calibrate_lightfield(radiometry, dark, nominal_pitch_px=100.0 / 6.5)
    assert calibration.pitch_px == pytest.approx(15.4, abs=0.1)
    assert abs(calibration.rotation_deg) < 1.0
    assert calibration.pixels_per_lenslet() == 15
    views = rectified_views(raw, calibration, dark=dark)
    assert views.shape[0] == 225 and min(views.shape[1:]) >= 25
    # The centre view of the radiometry frame is bright and nearly flat: the grid was hit on every lenslet.
    white = rectified_views(radiometry, calibration, dark=dark)
    centre = white[112]
    assert centre.min() > 0.5 * np.median(centre)
    assert white[0].mean() < centre.mean()


def test_a_lattice_in_pure_noise_is_refused_with_its_confidence():
    """Noise has spectral peaks too (about 4× the background): they must not pass for a lenslet grid."""
    rng = np.random.default_rng(7)
    for noise in (rng.normal(100.0, 10.0, (256, 256)), rng.poisson(5.0, (180, 220)).astype(np.float32)):
        with pytest.raises(ValueError, match=r"no lenslet lattice found.*only \d+\.\d× above"):
            calibrate_lightfield(noise)


def test_found_lattices_report_a_confidence_far_above_the_threshold():
    from napari_lfrecon.psf.calibrate_lightfield import MIN_LATTICE_CONTRAST

    bright = calibrate_lightfield(synthetic_radiometry((200, 200), 15.0, 3.0, (100.0, 100.0)))
    assert bright.contrast > 20 * MIN_LATTICE_CONTRAST
    assert bright.to_dict()["contrast"] == bright.contrast
    # 5 photons per lenslet plateau on a small frame: still well above the threshold
    dim = calibrate_lightfield(synthetic_radiometry((200, 200), 15.0, 3.0, (100.0, 100.0), level=5.0))
    assert dim.contrast > 2 * MIN_LATTICE_CONTRAST


@pytest.mark.skipif(not GUV.is_dir(), reason="the real GUV light-field frames are not available")
def test_real_guv_radiometry_has_a_confident_lattice():
    import tifffile

    from napari_lfrecon.psf.calibrate_lightfield import MIN_LATTICE_CONTRAST

    radiometry = tifffile.imread(GUV / "Radiometry_GUVExperim1.tif")
    dark = tifffile.imread(GUV / "DarkFrame_GUVExperim1.tif")
    assert calibrate_lightfield(radiometry, dark).contrast > 50 * MIN_LATTICE_CONTRAST


def test_cli_calibrate_lightfield_on_noise_exits_2_and_writes_nothing(tmp_path, capsys):
    from napari_lfrecon.cli import main
    from napari_lfrecon.io.tiff import write_tiff

    rng = np.random.default_rng(3)
    raw = write_tiff(tmp_path / "raw.tif", rng.poisson(20.0, (160, 160)).astype(np.float32))
    white = write_tiff(tmp_path / "white.tif", rng.poisson(20.0, (160, 160)).astype(np.float32))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["calibrate", "lightfield", str(raw), "--radiometry", str(white)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no lenslet lattice found" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
