"""The headless ``lfrecon`` command: reconstruct, sample, psf, errors, and no Qt on its import path."""

import json
import subprocess
import sys

import numpy as np
import pytest

from napari_lfrecon.cli import main
from napari_lfrecon.io.tiff import read_tiff, write_tiff
from napari_lfrecon.psf import PSF


@pytest.fixture
def stack_and_psf(tmp_path):
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in (5, 7, 7)], indexing="ij")
    psf = np.exp(-sum(g**2 for g in grids) / 3.0).astype(np.float32)
    data = np.ones((10, 20, 20), np.float32)
    data[5, 10, 10] = 50
    data_path = write_tiff(tmp_path / "stack.tif", data, voxel_size=(0.4, 0.2, 0.2))
    psf_tif = write_tiff(tmp_path / "psf.tif", psf)
    return data_path, psf_tif, psf


def test_reconstruct_with_tiff_psf_keeps_voxel_size(tmp_path, stack_and_psf, capsys):
    data_path, psf_tif, _ = stack_and_psf
    out = tmp_path / "out.tif"
    code = main(["reconstruct", "--psf", str(psf_tif), "--iterations", "3", "--json", str(data_path), str(out)])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["voxel_size_um"] == [0.4, 0.2, 0.2]
    image = read_tiff(out)
    assert image.data.shape == (10, 20, 20)
    assert np.allclose(image.voxel_size, (0.4, 0.2, 0.2))
    assert image.metadata["engine"] == "rl" and image.metadata["params"]["iterations"] == 3


def test_reconstruct_to_zarr_with_psf_file(tmp_path, stack_and_psf):
    data_path, _, psf = stack_and_psf
    psf_file = PSF(psf, "widefield", (0.4, 0.2, 0.2)).save(tmp_path / "w.psf.safetensors")
    out = tmp_path / "out.zarr"
    assert main(["reconstruct", "--psf", str(psf_file), "--iterations", "2", str(data_path), str(out)]) == 0
    from napari_lfrecon.io.zarr_io import read_zarr

    image = read_zarr(out)
    assert np.allclose(image.voxel_size, (0.4, 0.2, 0.2))


def test_voxel_size_flag_overrides_and_missing_voxel_size_is_refused(tmp_path, stack_and_psf, capsys):
    _, psf_tif, _ = stack_and_psf
    bare = write_tiff(tmp_path / "bare.tif", np.ones((6, 12, 12), np.float32))
    code = main(["reconstruct", "--psf", str(psf_tif), str(bare), str(tmp_path / "o.tif")])
    assert code == 2 and "voxel size" in capsys.readouterr().err
    code = main(
        [
            "reconstruct",
            "--psf",
            str(psf_tif),
            "--voxel-size",
            "1",
            "0.5",
            "0.5",
            "--iterations",
            "1",
            str(bare),
            str(tmp_path / "o.tif"),
        ]
    )
    assert code == 0 and np.allclose(read_tiff(tmp_path / "o.tif").voxel_size, (1, 0.5, 0.5))


def test_clear_errors(tmp_path, stack_and_psf, capsys):
    data_path, psf_tif, _ = stack_and_psf
    assert main(["reconstruct", "--engine", "nope", str(data_path), str(tmp_path / "o.tif")]) == 2
    assert "unknown engine 'nope'" in capsys.readouterr().err
    assert main(["reconstruct", "--psf", str(psf_tif), str(tmp_path / "missing.tif"), str(tmp_path / "o.tif")]) == 2
    assert "not found" in capsys.readouterr().err
    nan = np.full((6, 12, 12), np.nan, np.float32)
    bad = write_tiff(tmp_path / "nan.tif", nan, voxel_size=(1, 1, 1))
    assert main(["reconstruct", "--psf", str(psf_tif), str(bad), str(tmp_path / "o.tif")]) == 2
    assert "NaN" in capsys.readouterr().err


def test_psf_command_writes_a_loadable_psf(tmp_path):
    out = tmp_path / "wf"
    assert main(["psf", "widefield", str(out), "--depths", "9", "--size", "16", "--na", "0.5", "--dz", "1"]) == 0
    psf = PSF.load(tmp_path / "wf.psf.safetensors")
    assert psf.modality == "widefield" and psf.array.shape == (9, 16, 16)


def test_sample_command(tmp_path):
    assert main(["sample", "widefield", str(tmp_path / "wf.tif")]) == 0
    assert read_tiff(tmp_path / "wf.tif").voxel_size is not None
    assert PSF.load(tmp_path / "wf.psf.safetensors").modality == "widefield"
    assert (tmp_path / "wf_ground_truth.tif").exists()


def test_cli_import_path_has_no_qt_or_napari():
    code = (
        "import sys, napari_lfrecon.cli, napari_lfrecon.api, napari_lfrecon.samples, napari_lfrecon.engines as e;"
        "e.available();"
        "qt=('qtpy','napari','PyQt6','PyQt5','PySide6','magicgui','superqt');"
        "bad=[m for m in sys.modules if m.split('.')[0] in qt];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "napari_lfrecon.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "reconstruct" in result.stdout
