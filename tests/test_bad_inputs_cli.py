"""Bad input to ``lfrecon reconstruct`` costs nothing: one line on stderr, exit code 2, nothing created.

Also: the data's voxel size is honoured the same way for every output format
(issue 13, item 22), a whole-in-memory run too large for the machine is refused
before reading a pixel (item 19) and an interrupted chunked run says how many
chunks it kept (item 14).
"""

from pathlib import Path

import numpy as np
import pytest

from napari_lfrecon import cli
from napari_lfrecon.api import reconstruct
from napari_lfrecon.batch import guard
from napari_lfrecon.batch import run as batch_run
from napari_lfrecon.io.tiff import read_tiff, write_tiff
from napari_lfrecon.io.zarr_io import read_zarr, write_ome_zarr
from napari_lfrecon.psf import PSF
from napari_lfrecon.psf.resample import resample_psf

DATA_VOXEL = (0.4, 0.2, 0.2)
PSF_VOXEL = (0.2, 0.1, 0.1)


def gaussian_psf(voxel=PSF_VOXEL, shape=(9, 13, 13), sigma_um=(0.5, 0.2, 0.2)):
    grids = np.meshgrid(*[(np.arange(n) - n // 2) * v for n, v in zip(shape, voxel, strict=True)], indexing="ij")
    array = np.exp(-sum(g**2 / (2 * s**2) for g, s in zip(grids, sigma_um, strict=True)))
    return PSF((array / array.sum()).astype(np.float32), "widefield", voxel)


def beads(shape=(8, 32, 32), n=6, seed=0):
    rng = np.random.default_rng(seed)
    data = np.full(shape, 2.0, np.float32)
    for _ in range(n):
        data[tuple(rng.integers(0, s) for s in shape)] += 500.0
    return data


@pytest.fixture
def files(tmp_path):
    """An input TIFF at DATA_VOXEL and a PSF file at PSF_VOXEL (half the data's sampling)."""
    inp = write_tiff(tmp_path / "in.tif", beads(), voxel_size=DATA_VOXEL)
    psf_file = gaussian_psf().save(tmp_path / "p.psf.safetensors")
    return tmp_path, Path(inp), Path(psf_file)


def refused(capsys, argv, *, contains):
    """Run the CLI, expect exit code 2 and exactly one line on stderr containing ``contains``."""
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("lfrecon: error: ") and contains in err[0], err
    return err[0]


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_bad_scheduler_address_creates_nothing(files, capsys):
    tmp, inp, psf = files
    before = listing(tmp)
    for address in ("not an address", "ftp://host:1", "host:99999"):
        argv = ["reconstruct", "--psf", str(psf), "--scheduler", address, str(inp), str(tmp / "o.zarr")]
        refused(capsys, argv, contains="--scheduler")
    assert listing(tmp) == before


def test_unreachable_scheduler_creates_nothing(files, capsys, monkeypatch):
    tmp, inp, psf = files
    monkeypatch.setattr(batch_run, "CONNECT_TIMEOUT_S", 1.0)
    before = listing(tmp)
    argv = ["reconstruct", "--psf", str(psf), "--scheduler", "tcp://127.0.0.1:9", str(inp), str(tmp / "o.zarr")]
    refused(capsys, argv, contains="could not reach the dask scheduler")
    assert listing(tmp) == before


def test_nan_input_in_a_chunked_run_creates_nothing(files, capsys):
    tmp, _, psf = files
    data = beads()
    data[3, 4, 5] = np.nan
    inp = write_tiff(tmp / "nan.tif", data, voxel_size=DATA_VOXEL)
    before = listing(tmp)
    refused(capsys, ["reconstruct", "--psf", str(psf), str(inp), str(tmp / "o.zarr")], contains="1 NaN or Inf")
    assert listing(tmp) == before


def test_too_many_workers_are_refused_with_the_estimate(files, capsys):
    tmp, inp, psf = files
    before = listing(tmp)
    line = refused(
        capsys, ["reconstruct", "--psf", str(psf), "--workers", "1000", str(inp), str(tmp / "o.zarr")], contains="1000"
    )
    assert "available" in line and ("per process" in line or "per CPU core" in line)
    assert listing(tmp) == before


def test_workers_beyond_the_cores_are_refused_even_with_memory_to_spare(monkeypatch):
    monkeypatch.setattr(guard, "available_memory", lambda: 2**50)
    monkeypatch.setattr(guard.os, "cpu_count", lambda: 2)
    guard.check_workers(4, 2**20)
    with pytest.raises(guard.EngineInputError, match="per CPU core"):
        guard.check_workers(5, 2**20)


def test_a_tiff_output_too_large_for_memory_is_refused_before_reading(tmp_path, capsys):
    import zarr

    # A 256 GiB lazy image: metadata only, every chunk reads as the fill value.
    big = write_ome_zarr(tmp_path / "big.zarr", np.zeros((1, 1, 1), np.float32), DATA_VOXEL, {}, axes="ZYX")
    zarr.open_group(str(big), mode="r+").create_array(
        "0",
        shape=(64, 32768, 32768),
        chunks=(64, 1024, 1024),
        dtype=np.float32,
        fill_value=5.0,
        chunk_key_encoding={"name": "v2", "separator": "/"},
        overwrite=True,
    )
    psf = gaussian_psf(DATA_VOXEL).save(tmp_path / "p.psf.safetensors")
    before = listing(tmp_path)
    line = refused(
        capsys, ["reconstruct", "--psf", str(psf), str(big), str(tmp_path / "out.tif")], contains="whole in memory"
    )
    assert "GiB" in line and "available" in line and ".zarr" in line
    assert listing(tmp_path) == before


def test_tiff_and_zarr_outputs_honour_the_data_voxel_size_alike(files, capsys):
    tmp, inp, psf_file = files
    common = ["reconstruct", "--psf", str(psf_file), "--iterations", "4"]
    assert cli.main([*common, str(inp), str(tmp / "o.tif")]) == 0
    assert cli.main([*common, str(inp), str(tmp / "o.zarr")]) == 0
    tif, zarr_image = read_tiff(tmp / "o.tif"), read_zarr(tmp / "o.zarr")
    assert tuple(tif.voxel_size) == tuple(zarr_image.voxel_size) == DATA_VOXEL
    np.testing.assert_allclose(np.asarray(tif.data), np.asarray(zarr_image.data), rtol=1e-5, atol=1e-4)
    # --voxel-size overrides the file's for both outputs the same way.
    override = ["--voxel-size", "0.3", "0.15", "0.15"]
    assert cli.main([*common, *override, str(inp), str(tmp / "v.tif")]) == 0
    assert cli.main([*common, *override, str(inp), str(tmp / "v.zarr")]) == 0
    assert (
        tuple(read_tiff(tmp / "v.tif").voxel_size) == tuple(read_zarr(tmp / "v.zarr").voxel_size) == (0.3, 0.15, 0.15)
    )
    capsys.readouterr()


def test_input_without_voxel_size_is_refused_for_both_outputs(tmp_path, capsys):
    bare = write_tiff(tmp_path / "bare.tif", beads())
    psf = gaussian_psf().save(tmp_path / "p.psf.safetensors")
    before = listing(tmp_path)
    for out in ("o.tif", "o.zarr"):
        refused(capsys, ["reconstruct", "--psf", str(psf), str(bare), str(tmp_path / out)], contains="--voxel-size")
    assert listing(tmp_path) == before


def test_api_resamples_a_psf_file_to_the_voxel_size_given(files):
    _, _, psf_file = files
    data = beads()
    volume = reconstruct("rl", data, psf_file, voxel_size=DATA_VOXEL, iterations=4)
    assert volume.voxel_size == DATA_VOXEL
    explicit = reconstruct("rl", data, resample_psf(PSF.load(psf_file), DATA_VOXEL), iterations=4)
    np.testing.assert_allclose(volume.data, explicit.data, rtol=1e-5)
    unresampled = reconstruct("rl", data, PSF.load(psf_file), iterations=4)
    assert not np.allclose(volume.data, unresampled.data, rtol=1e-3)


def test_api_refuses_a_resampled_psf_of_absurd_size(files):
    _, _, psf_file = files
    with pytest.raises(guard.EngineInputError, match="check the voxel sizes"):
        reconstruct("rl", beads(), psf_file, voxel_size=(0.0002, 0.0001, 0.0001), iterations=1)


def test_ctrl_c_in_a_chunked_run_says_how_many_chunks_were_kept(files, capsys, monkeypatch):
    tmp, inp, psf = files
    real = batch_run.reconstruct_tile
    calls = {"n": 0}

    def interrupted_after_two(job, psf_obj, tile):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(job, psf_obj, tile)

    monkeypatch.setattr(batch_run, "reconstruct_tile", interrupted_after_two)
    argv = ["reconstruct", "--psf", str(psf), "--iterations", "2", "--tile", "16", str(inp), str(tmp / "o.zarr")]
    assert cli.main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "lfrecon: interrupted; 2 of 4 chunks kept, run the same command to resume"
    monkeypatch.setattr(batch_run, "reconstruct_tile", real)
    assert cli.main(argv) == 0
    assert "2 chunks computed, 2 already done" in capsys.readouterr().out


def test_a_raw_light_field_with_a_pixel_size_reconstructs_to_tiff_and_zarr_alike(tmp_path, capsys):
    """A raw LFM frame states a 2-D pixel size: it is no voxel size, and both outputs take the PSF's volume grid."""
    assert cli.main(["sample", "lfm", str(tmp_path / "lfm.tif")]) == 0
    common = ["reconstruct", "--psf", str(tmp_path / "lfm.psf.safetensors"), "--iterations", "2"]
    assert cli.main([*common, str(tmp_path / "lfm.tif"), str(tmp_path / "o.tif")]) == 0
    assert cli.main([*common, str(tmp_path / "lfm.tif"), str(tmp_path / "o.zarr")]) == 0
    tif, zarr_image = read_tiff(tmp_path / "o.tif"), read_zarr(tmp_path / "o.zarr")
    assert (
        tuple(tif.voxel_size)
        == tuple(zarr_image.voxel_size)
        == tuple(PSF.load(tmp_path / "lfm.psf.safetensors").voxel_size)
    )
    np.testing.assert_allclose(np.asarray(tif.data), np.asarray(zarr_image.data), rtol=1e-5, atol=1e-5)
    capsys.readouterr()


def test_nan_voxel_size_and_a_background_above_the_data_are_refused(tmp_path, capsys):
    import napari_lfrecon as nl
    from napari_lfrecon.cli import main
    from napari_lfrecon.jobs import EngineInputError

    sample = nl.load_sample("widefield")
    inp = tmp_path / "w.tif"
    write_tiff(inp, sample["data"], voxel_size=sample["voxel_size"])
    psf = tmp_path / "w.psf.safetensors"
    sample["psf"].save(psf)
    for voxel in (["nan", "0.1", "0.1"], ["inf", "0.1", "0.1"]):
        code = main(["reconstruct", "--psf", str(psf), "--voxel-size", *voxel, str(inp), str(tmp_path / "o.tif")])
        assert code == 2 and "positive finite" in capsys.readouterr().err
    assert not (tmp_path / "o.tif").exists()
    with pytest.raises(EngineInputError, match="at or above every data value"):
        nl.reconstruct("rl", sample["data"], sample["psf"], background=float(sample["data"].max()) + 1, iterations=1)
