"""TIFF / OME-Zarr IO keeps data, voxel size and metadata; the napari reader/writer glue."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_lfrecon.gui._reader import NO_VOXEL_NOTE, get_reader
from napari_lfrecon.gui._writer import write_single_image
from napari_lfrecon.io import read_image, read_tiff, read_zarr, write_image, write_ome_zarr, write_tiff

REAL = Path("/work/shared/data/real")
VOXEL_3D = (0.3, 0.13, 0.1)
META = {"engine": "rl", "params": {"iterations": 7, "psf": "bead", "sizes": [1, 2]}, "seconds": 1.25}


@pytest.fixture
def volume() -> np.ndarray:
    return np.random.default_rng(0).random((4, 5, 6), dtype=np.float32)


# ----------------------------------------------------------------------------- TIFF
def test_tiff_round_trip_3d(tmp_path, volume):
    original = volume.copy()
    path = write_tiff(tmp_path / "v.tif", volume, VOXEL_3D, META)
    assert path == tmp_path / "v.tif"
    np.testing.assert_array_equal(volume, original)  # writing does not touch the input

    image = read_tiff(path)
    assert image.axes == "ZYX"
    assert image.data.dtype == np.float32
    np.testing.assert_array_equal(image.data, volume)
    assert image.voxel_size == VOXEL_3D
    assert image.metadata == META


def test_tiff_is_a_calibrated_imagej_hyperstack(tmp_path, volume):
    """Check the file against the ImageJ/TIFF conventions directly, not through our reader."""
    path = write_tiff(tmp_path / "v.tif", volume, VOXEL_3D)
    with tifffile.TiffFile(path) as tif:
        ij = tif.imagej_metadata
        page = tif.pages[0]
        x_num, x_den = page.tags["XResolution"].value
        y_num, y_den = page.tags["YResolution"].value
        assert tif.series[0].axes == "ZYX"
    assert ij["unit"] == "um"
    assert ij["slices"] == 4
    assert float(ij["spacing"]) == pytest.approx(0.3, rel=1e-9)
    assert x_den / x_num == pytest.approx(0.1, rel=1e-7)  # pixels per µm → µm per pixel
    assert y_den / y_num == pytest.approx(0.13, rel=1e-7)


def test_tiff_round_trip_2d(tmp_path):
    image2d = np.arange(35, dtype=np.float32).reshape(5, 7)
    path = write_tiff(tmp_path / "p.tiff", image2d, (0.2, 0.1), {"note": "two-d"})
    image = read_tiff(path)
    assert image.axes == "YX"
    assert image.voxel_size == (0.2, 0.1)
    assert image.metadata == {"note": "two-d"}
    np.testing.assert_array_equal(image.data, image2d)


def test_tiff_channels_come_back_channel_first(tmp_path):
    data = np.random.default_rng(1).random((2, 3, 4, 5)).astype(np.float32)  # C, Z, Y, X
    path = write_tiff(tmp_path / "c.tif", data, VOXEL_3D, axes="CZYX")
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "ZCYX"  # ImageJ's own order on disk
        assert tif.imagej_metadata["channels"] == 2
    image = read_tiff(path)
    assert image.axes == "CZYX"
    np.testing.assert_array_equal(image.data, data)
    assert image.voxel_size == VOXEL_3D


def test_tiff_dtypes(tmp_path):
    counts = np.arange(60, dtype=np.uint16).reshape(3, 4, 5)
    assert read_tiff(write_tiff(tmp_path / "u16.tif", counts, VOXEL_3D)).data.dtype == np.uint16
    doubles = np.linspace(0, 1, 60).reshape(3, 4, 5)
    before = doubles.copy()
    image = read_tiff(write_tiff(tmp_path / "f64.tif", doubles, VOXEL_3D))
    assert image.data.dtype == np.float32  # ImageJ has no float64
    np.testing.assert_allclose(image.data, doubles, rtol=1e-7)
    assert doubles.dtype == np.float64 and np.array_equal(doubles, before)


def test_tiff_axes_imagej_cannot_express(tmp_path):
    views = np.random.default_rng(2).random((3, 4, 5)).astype(np.float32)  # light-field views A, Y, X
    path = write_tiff(tmp_path / "views.tif", views, (0.5, 0.25), {"views_shape": [1, 3]}, axes="AYX")
    image = read_tiff(path)
    assert image.axes == "AYX"
    assert image.voxel_size == (0.5, 0.25)
    assert image.metadata == {"views_shape": [1, 3]}
    np.testing.assert_array_equal(image.data, views)


def test_tiff_without_voxel_size_reads_none(tmp_path, volume):
    tifffile.imwrite(tmp_path / "plain.tif", volume, photometric="minisblack")
    image = read_tiff(tmp_path / "plain.tif")
    assert image.voxel_size is None
    assert image.axes == "ZYX"
    np.testing.assert_array_equal(image.data, volume)
    # Our writer without a voxel size also states none.
    assert read_tiff(write_tiff(tmp_path / "ours.tif", volume)).voxel_size is None


def test_tiff_partial_calibration_is_not_completed(tmp_path, volume):
    """ImageJ µm resolution but no z spacing: z is unknown, so no voxel size (ImageJ's 1.0 default is not used)."""
    tifffile.imwrite(
        tmp_path / "xy_only.tif", volume, imagej=True, resolution=(10.0, 10.0), metadata={"unit": "um", "axes": "ZYX"}
    )
    image = read_tiff(tmp_path / "xy_only.tif")
    assert image.voxel_size is None
    assert image.file_info["voxel_size_partial"] == pytest.approx({"Y": 0.1, "X": 0.1})


def test_tiff_foreign_imagej_in_nanometres(tmp_path, volume):
    tifffile.imwrite(
        tmp_path / "nm.tif",
        volume,
        imagej=True,
        resolution=(1 / 130.0, 1 / 100.0),  # pixels per nm
        metadata={"unit": "nm", "spacing": 300.0, "axes": "ZYX"},
    )
    assert read_tiff(tmp_path / "nm.tif").voxel_size == pytest.approx((0.3, 0.1, 0.13), rel=1e-6)


def test_tiff_foreign_ome_xml(tmp_path, volume):
    meta = {"axes": "ZYX", "PhysicalSizeX": 130, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 0.12}
    tifffile.imwrite(tmp_path / "o.ome.tif", volume, ome=True, metadata={**meta, "PhysicalSizeZ": 0.4})
    assert read_tiff(tmp_path / "o.ome.tif").voxel_size == pytest.approx((0.4, 0.12, 0.13))
    tifffile.imwrite(tmp_path / "noz.ome.tif", volume, ome=True, metadata=meta)
    assert read_tiff(tmp_path / "noz.ome.tif").voxel_size is None


def test_tiff_lazy_reads(tmp_path, volume):
    path = write_tiff(tmp_path / "v.tif", volume, VOXEL_3D)
    mapped = read_tiff(path, lazy=True)
    assert mapped.lazy and isinstance(mapped.data, np.memmap)
    assert not mapped.data.flags.writeable  # the user's file cannot be changed through the layer
    np.testing.assert_array_equal(np.asarray(mapped.data), volume)

    tifffile.imwrite(
        tmp_path / "z.tif", volume, compression="zlib", photometric="minisblack"
    )  # compressed: not mappable
    chunked = read_tiff(tmp_path / "z.tif", lazy=True)
    assert hasattr(chunked.data, "dask")
    np.testing.assert_array_equal(chunked.data.compute(), volume)


def test_tiff_bad_input(tmp_path, volume):
    with pytest.raises(ValueError, match="voxel_size"):
        write_tiff(tmp_path / "a.tif", volume, (0.1, 0.1))
    with pytest.raises(ValueError, match="positive"):
        write_tiff(tmp_path / "a.tif", volume, (0.1, 0.0, 0.1))
    with pytest.raises(ValueError, match="JSON"):
        write_tiff(tmp_path / "a.tif", volume, VOXEL_3D, {"psf": object()})
    with pytest.raises(FileNotFoundError):
        read_tiff(tmp_path / "missing.tif")
    (tmp_path / "junk.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(ValueError, match="TIFF"):
        read_tiff(tmp_path / "junk.tif")


# ----------------------------------------------------------------------------- real files
def _real(name: str) -> Path:
    path = REAL / name
    if not path.is_file():
        pytest.skip(f"real data not present: {path}")
    return path


def test_real_widefield_bead_states_no_voxel_size():
    image = read_tiff(_real("bead_widefield_na0.85_wl520_xy130nm_z300nm.tif"))
    assert image.data.shape == (25, 256, 256) and image.data.dtype == np.uint16
    assert image.axes == "ZYX"
    # Resolution tags are 1/1 with no unit and there is no ImageJ/OME calibration.
    assert image.voxel_size is None
    # The vendor BoundingBox is kept as a hint only: z fits 0.3 µm, xy (13.8125/256) does not fit 0.13 µm.
    hint = image.file_info["bounding_box_hint_per_pixel"]
    assert hint["Z"] == pytest.approx(0.3)
    assert hint["X"] == pytest.approx(13.8125 / 256)


def test_real_lattice_bead_bounding_box_hint():
    image = read_tiff(_real("bead_lattice_lightsheet_xy101nm_z100nm.tif"), lazy=True)
    assert image.data.shape == (61, 128, 128)
    assert image.voxel_size is None
    hint = image.file_info["bounding_box_hint_per_pixel"]
    assert hint["Z"] == pytest.approx(0.1)
    assert hint["X"] == pytest.approx(0.101, abs=5e-4)
    assert float(image.data[30].max()) > 1000  # the bead is in the middle plane


# ----------------------------------------------------------------------------- zarr
def test_ome_zarr_round_trip_3d(tmp_path, volume):
    original = volume.copy()
    path = write_ome_zarr(tmp_path / "v.ome.zarr", volume, VOXEL_3D, META)
    np.testing.assert_array_equal(volume, original)
    image = read_zarr(path)
    assert image.lazy and hasattr(image.data, "dask")
    assert image.axes == "ZYX"
    assert image.voxel_size == VOXEL_3D
    assert image.metadata == META
    np.testing.assert_array_equal(image.data.compute(), volume)


def test_ome_zarr_follows_ngff_v04(tmp_path, volume):
    """Read the group attributes as JSON on disk, as any NGFF viewer would."""
    path = write_ome_zarr(tmp_path / "v.ome.zarr", volume, VOXEL_3D, chunks=(2, 5, 6))
    attrs = json.loads((path / ".zattrs").read_text())
    (ms,) = attrs["multiscales"]
    assert ms["version"] == "0.4"
    assert ms["axes"] == [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"]
    (dataset,) = ms["datasets"]
    assert dataset["coordinateTransformations"] == [{"type": "scale", "scale": list(VOXEL_3D)}]
    array_meta = json.loads((path / dataset["path"] / ".zarray").read_text())
    assert array_meta["shape"] == [4, 5, 6] and array_meta["chunks"] == [2, 5, 6]


def test_ome_zarr_2d_channels_and_unknown_size(tmp_path):
    plane = np.arange(12, dtype=np.float32).reshape(3, 4)
    image = read_zarr(write_ome_zarr(tmp_path / "p.zarr", plane, (0.2, 0.1)))
    assert image.axes == "YX" and image.voxel_size == (0.2, 0.1)
    np.testing.assert_array_equal(image.data.compute(), plane)

    stack = np.random.default_rng(3).random((2, 3, 4, 5)).astype(np.float32)
    image = read_zarr(write_ome_zarr(tmp_path / "c.zarr", stack, VOXEL_3D))
    assert image.axes == "CZYX" and image.voxel_size == VOXEL_3D

    image = read_zarr(write_ome_zarr(tmp_path / "u.zarr", stack[0], None))
    assert image.voxel_size is None


def test_ome_zarr_from_dask(tmp_path, volume):
    import dask.array as da

    lazy = da.from_array(volume, chunks=(1, 5, 6))
    image = read_zarr(write_ome_zarr(tmp_path / "d.zarr", lazy, VOXEL_3D, chunks=(2, 5, 6)))
    np.testing.assert_array_equal(image.data.compute(), volume)


def test_plain_zarr_array_has_no_voxel_size(tmp_path, volume):
    import zarr

    arr = zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=volume.shape, dtype=volume.dtype)
    arr[...] = volume
    image = read_zarr(tmp_path / "plain.zarr")
    assert image.voxel_size is None and image.axes == "ZYX"
    np.testing.assert_array_equal(image.data.compute(), volume)


def test_ome_zarr_bad_input(tmp_path, volume):
    with pytest.raises(ValueError, match="TCZYX"):
        write_ome_zarr(tmp_path / "a.zarr", volume, VOXEL_3D, axes="YXZ")
    with pytest.raises(ValueError, match="chunks"):
        write_ome_zarr(tmp_path / "a.zarr", volume, VOXEL_3D, chunks=(1, 2))


def test_read_write_image_dispatch(tmp_path, volume):
    for name in ("a.tif", "a.ome.zarr"):
        image = read_image(write_image(tmp_path / name, volume, VOXEL_3D, {"k": 1}))
        assert image.voxel_size == VOXEL_3D and image.metadata == {"k": 1}
    with pytest.raises(ValueError, match="expected"):
        write_image(tmp_path / "a.png", volume)


# ----------------------------------------------------------------------------- napari reader / writer
@pytest.mark.parametrize("path", ["image.png", "noextension", "data.unknownext", ["a.tif", "b.png"], [], None, 42])
def test_get_reader_declines(path):
    assert get_reader(path) is None


def test_get_reader_reads_tiff_with_scale(tmp_path, volume):
    path = write_tiff(tmp_path / "v.tif", volume, VOXEL_3D, META)
    reader = get_reader(str(path))
    assert callable(reader)
    ((data, kwargs, kind),) = reader(str(path))
    assert kind == "image"
    assert kwargs["name"] == "v"
    assert kwargs["scale"] == VOXEL_3D
    assert kwargs["metadata"]["voxel_size_known"] is True
    assert kwargs["metadata"]["params"] == META["params"]
    np.testing.assert_array_equal(np.asarray(data), volume)


def test_get_reader_says_when_voxel_size_is_unknown(tmp_path, volume):
    tifffile.imwrite(tmp_path / "plain.tif", volume, photometric="minisblack")
    ((_, kwargs, _),) = get_reader(str(tmp_path / "plain.tif"))(str(tmp_path / "plain.tif"))
    assert "scale" not in kwargs
    assert kwargs["metadata"]["voxel_size_known"] is False
    assert kwargs["metadata"]["voxel_size_note"] == NO_VOXEL_NOTE


def test_get_reader_zarr_list_and_channels(tmp_path):
    stack = np.random.default_rng(4).random((2, 3, 4, 5)).astype(np.float32)
    zpath = str(write_ome_zarr(tmp_path / "c.ome.zarr", stack, VOXEL_3D)) + "/"  # napari may pass a trailing slash
    tpath = str(write_tiff(tmp_path / "p.tif", stack[0, 0], (0.2, 0.1)))
    layers = get_reader([zpath, tpath])([zpath, tpath])
    assert len(layers) == 2
    _, zkw, _ = layers[0]
    assert zkw["name"] == "c" and zkw["channel_axis"] == 0 and zkw["scale"] == VOXEL_3D
    assert layers[1][1]["scale"] == (0.2, 0.1)


def test_get_reader_psf_file(tmp_path):
    from napari_lfrecon.psf.model import PSF

    psf = PSF(np.ones((3, 5, 5), np.float32), "widefield", (0.3, 0.1, 0.1), optics={"na": 0.8})
    path = psf.save(tmp_path / "bead.psf.safetensors")
    ((data, kwargs, _),) = get_reader(str(path))(str(path))
    assert kwargs["scale"] == (0.3, 0.1, 0.1)
    assert isinstance(kwargs["metadata"]["psf"], PSF)
    assert kwargs["metadata"]["psf"].optics == {"na": 0.8}
    np.testing.assert_array_equal(data, psf.array)


def test_writer_round_trip_through_layer_attributes(tmp_path, volume):
    original = volume.copy()
    meta = {"name": "recon", "scale": VOXEL_3D, "metadata": {**META, "psf": object(), "voxel_size_known": True}}
    for name in ("out.tif", "out.ome.zarr"):
        written = write_single_image(str(tmp_path / name), volume, meta)
        assert written == [str(tmp_path / name)]
        image = read_image(written[0])
        assert image.voxel_size == VOXEL_3D
        assert image.metadata["params"] == META["params"]  # JSON-able parts kept
        assert "psf" not in image.metadata and "voxel_size_known" not in image.metadata
    np.testing.assert_array_equal(volume, original)


def test_writer_does_not_invent_voxel_size(tmp_path, volume):
    written = write_single_image(str(tmp_path / "u.tif"), volume, {"scale": (1.0, 1.0, 1.0), "metadata": {}})
    assert read_tiff(written[0]).voxel_size is None
    known = {"scale": (1.0, 1.0, 1.0), "metadata": {"voxel_size_known": True}}
    assert read_tiff(write_single_image(str(tmp_path / "k.tif"), volume, known)[0]).voxel_size == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="expected"):
        write_single_image(str(tmp_path / "x.png"), volume, {})


def test_reader_layers_load_into_napari(tmp_path):
    """The layer tuples are valid napari kwargs (no Qt needed for the viewer model)."""
    components = pytest.importorskip("napari.components")
    from napari.layers import Layer

    stack = np.random.default_rng(5).random((2, 3, 4, 5)).astype(np.float32)
    path = str(write_tiff(tmp_path / "c.tif", stack, VOXEL_3D, axes="CZYX"))
    viewer = components.ViewerModel()
    for data, kwargs, kind in get_reader(path)(path):
        viewer._add_layer_from_data(data, kwargs, kind)
    assert len(viewer.layers) == 2
    assert all(isinstance(layer, Layer) and tuple(layer.scale) == VOXEL_3D for layer in viewer.layers)


def test_reader_and_writer_import_no_qt_or_napari():
    code = (
        "import sys, napari_lfrecon.gui._reader, napari_lfrecon.gui._writer, napari_lfrecon.io;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide6')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
