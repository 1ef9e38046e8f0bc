"""``lfrecon calibrate bead`` and ``lfrecon calibrate lightfield`` end to end on tiny synthetic files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_lfrecon.cli import main
from napari_lfrecon.io.tiff import read_tiff, write_tiff
from napari_lfrecon.psf.calibrate_lightfield import synthetic_radiometry
from napari_lfrecon.psf.model import PSF
from napari_lfrecon.psf.widefield import widefield_psf


def test_calibrate_bead_writes_a_psf_and_prints_json(tmp_path, capsys):
    zernike = np.zeros(13)
    zernike[12] = 0.08
    bead = widefield_psf((12, 28, 28), (0.3, 0.13, 0.13), 0.85, 0.52, 1.0, zernike).array
    stack = np.random.default_rng(0).poisson(12 * 4000.0 * bead + 30.0).astype(np.uint16)
    path = write_tiff(tmp_path / "bead.tif", stack)  # no voxel size in the file, like the real one
    argv = ["calibrate", "bead", str(path), "--na", "0.85", "--wavelength", "0.52", "--immersion-index", "1.0"]
    assert main(argv) == 2  # the voxel size is unknown
    assert "voxel-size" in capsys.readouterr().err
    out = tmp_path / "fitted.psf.safetensors"
    code = main(
        [
            *argv,
            "--voxel-size",
            "0.3",
            "0.13",
            "0.13",
            "--modes",
            "12",
            "--iterations",
            "4",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["chi2_fit"] < summary["chi2_unaberrated"]
    assert summary["zernike_waves"]["12"] == pytest.approx(0.08, abs=0.02)
    psf = PSF.load(summary["psf"])
    assert summary["psf"] == str(out)
    assert psf.modality == "widefield" and psf.voxel_size == (0.3, 0.13, 0.13)
    assert psf.zernike[12] == pytest.approx(summary["zernike_waves"]["12"])


def test_calibrate_bead_refuses_an_empty_stack_and_writes_nothing(tmp_path, capsys):
    path = write_tiff(tmp_path / "empty.tif", np.random.default_rng(1).poisson(50.0, (8, 24, 24)).astype(np.uint16))
    argv = ["calibrate", "bead", str(path), "--na", "0.85", "--wavelength", "0.52", "--immersion-index", "1.0"]
    assert main([*argv, "--voxel-size", "0.3", "0.13", "0.13"]) == 2
    assert "no bead" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.tif"]


def test_calibrate_lightfield_prints_grid_and_writes_views(tmp_path, capsys):
    white = synthetic_radiometry((160, 170), 15.37, 0.4, (80.2, 84.9))
    dark = np.full(white.shape, 10.0, dtype=np.float32)
    raw = 0.5 * white + dark
    paths = {
        name: write_tiff(tmp_path / f"{name}.tif", image)
        for name, image in (("lf", raw), ("white", white + dark), ("dark", dark))
    }
    argv = [
        "calibrate",
        "lightfield",
        str(paths["lf"]),
        "--radiometry",
        str(paths["white"]),
        "--dark",
        str(paths["dark"]),
        "--lenslet-pitch",
        "100",
        "--camera-pixel",
        "6.5",
        "--out",
        str(tmp_path / "cal"),
        "--json",
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["pitch_px"] == pytest.approx(15.37, abs=0.05)
    assert summary["rotation_deg"] == pytest.approx(0.4, abs=0.05)
    assert summary["pixels_per_lenslet"] == 15
    assert len(summary["offset_px"]) == 2
    views = read_tiff(tmp_path / "cal_views.tif")
    assert views.data.shape[0] == 225
    saved = json.loads((tmp_path / "cal.lfcal.json").read_text())
    assert saved["pitch_px"] == pytest.approx(summary["pitch_px"])


def test_calibrate_lightfield_refuses_a_radiometry_frame_of_another_size(tmp_path, capsys):
    white = synthetic_radiometry((90, 90), 15.0, 0.0, (45.0, 45.0))
    lf = write_tiff(tmp_path / "lf.tif", white)
    small = write_tiff(tmp_path / "white.tif", white[:60])
    assert main(["calibrate", "lightfield", str(lf), "--radiometry", str(small)]) == 2
    assert "same size" in capsys.readouterr().err
    assert not list(tmp_path.glob("*views*"))
