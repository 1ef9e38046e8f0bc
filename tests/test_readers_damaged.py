"""Damaged, truncated and mutated input files: every reader answers with the project's error, quickly and quietly.

A property-based fuzz test feeds ``read_tiff``, ``read_zarr``, ``PSF.load`` and
``read_header`` random bytes and mutated valid files (bit flips, byte edits,
truncation, header edits) and checks that only :class:`LfreconError`\\ s come
out (or a successful read), that each case finishes within a few seconds and
that no large allocation happens (the "small" size allowance is lowered so a
declared size the file cannot justify is refused instead of allocated; the
peak traced allocation is bounded). Explicit tests cover the cases the issue
names: an IFD loop, half-deleted zarr chunks, truncated TIFFs, PSF headers
that are not mappings or lack the array.
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_lfrecon.io import damage, read_tiff, read_zarr, write_ome_zarr, write_tiff
from napari_lfrecon.io.weights import check_tensors, load_weights, read_header, save_weights
from napari_lfrecon.io.zarr_io import MissingChunksWarning
from napari_lfrecon.jobs import DamagedFile, LfreconError
from napari_lfrecon.psf.model import PSF

#: Longest a single damaged file may take to be read or refused (generous: CI machines are slow and shared).
CASE_SECONDS = 5.0
#: Peak traced allocation allowed while reading one small damaged file.
PEAK_BYTES = 96 * 2**20
#: The declared-size allowance during fuzzing: anything above it must be justified by the bytes stored.
FUZZ_SMALL_BYTES = 16 * 2**20
FUZZ = settings(
    max_examples=40,
    deadline=None,  # the per-case time is asserted below, with a margin for a loaded machine
    derandomize=True,  # the same cases in every run: CI never sees a new, flaky example
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ----------------------------------------------------------------------------- valid seed files
@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, Path]:
    """Small valid files of every format the readers take (the fuzz test mutates their bytes)."""
    folder = tmp_path_factory.mktemp("seeds")
    rng = np.random.default_rng(13)
    volume = (rng.random((4, 16, 16)) * 1000).astype(np.uint16)
    paths = {
        "imagej": write_tiff(folder / "imagej.tif", volume, (1.0, 0.5, 0.5)),
        "shaped": write_tiff(folder / "views.tif", volume.astype(np.float32)[:3], axes="AYX"),
    }
    tifffile.imwrite(folder / "zlib.tif", volume, compression="zlib", photometric="minisblack")
    tifffile.imwrite(
        folder / "tiled.tif", volume, tile=(16, 16), compression="zlib", predictor=True, photometric="minisblack"
    )
    paths["zlib"], paths["tiled"] = folder / "zlib.tif", folder / "tiled.tif"
    paths["zarr"] = write_ome_zarr(folder / "image.ome.zarr", volume, (1.0, 0.5, 0.5), chunks=(1, 8, 8))
    psf = PSF(
        array=rng.random((3, 5, 5)).astype(np.float32),
        modality="widefield",
        voxel_size=(1.0, 0.5, 0.5),
        optics={"na": 1.0},
        z_planes_um=np.arange(3.0),
    )
    paths["psf"] = psf.save(folder / "model.psf.safetensors")
    # the first lazy reads import dask and zarr's codecs: done here, not inside a timed and traced case
    np.asarray(read_tiff(paths["zlib"], lazy=True).data)
    np.asarray(read_zarr(paths["zarr"]).data)
    paths["weights"] = save_weights(
        folder / "net.safetensors", {"conv.weight": np.ones((2, 3), np.float32)}, {"engine": "niiv", "version": 1}
    )
    return paths


# ----------------------------------------------------------------------------- mutation strategies
@st.composite
def mutated(draw: st.DrawFn, original: bytes, header_bytes: int = 600) -> bytes:
    """``original`` with a few bit flips, byte or word edits (mostly in the header region) or a truncation."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "byte", "word", "truncate"]))
        if not data:
            break
        region = len(data) if draw(st.booleans()) else min(len(data), header_bytes)
        at = draw(st.integers(0, region - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind == "word":
            words = st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x08\x00\x00\x00"])
            word = draw(words | st.binary(min_size=4, max_size=4))
            data[at : at + 4] = word
        else:
            del data[at:]
    return bytes(data)


def _file_bytes(seed_names: list[str]):
    """A strategy of file contents: random bytes, or a mutation of one of the named seed files."""

    @st.composite
    def strategy(draw: st.DrawFn, seeds: dict[str, Path]) -> bytes:
        if draw(st.integers(0, 5)) == 0:
            return draw(st.binary(max_size=1024))
        seed = seeds[draw(st.sampled_from(seed_names))]
        return draw(mutated(seed.read_bytes()))

    return strategy


def _safetensors_edit(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` (a safetensors file) with its JSON header edited: a key dropped or a value replaced."""
    (length,) = struct.unpack("<Q", original[:8])
    header = json.loads(original[8 : 8 + length])
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=6,
    )
    target = draw(st.sampled_from(sorted(header)))
    meta = header.get("__metadata__", {})
    action = draw(st.sampled_from(["drop", "replace", "metadata"]))
    if action == "drop":
        header.pop(target)
    elif action == "replace":
        header[target] = draw(json_values)
    elif meta:
        key = draw(st.sampled_from(sorted(meta)))
        meta[key] = json.dumps(draw(json_values)) if draw(st.booleans()) else draw(st.text(max_size=12))
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + original[8 + length :]


@st.composite
def safetensors_bytes(draw: st.DrawFn, original: bytes) -> bytes:
    """Random bytes, a byte-level mutation or a header edit of a valid safetensors file."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.binary(max_size=512))
    if choice == 1:
        return draw(mutated(original, header_bytes=len(original)))
    return _safetensors_edit(draw, original)


# ----------------------------------------------------------------------------- the check every case passes
def _read_and_judge(read) -> None:
    """Run ``read()``: it must succeed or raise an LfreconError, within CASE_SECONDS and PEAK_BYTES."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        # a lowered allowance: a size the mutated file cannot justify is refused, not allocated
        with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
            patch.setattr(damage, "SMALL_DECLARED_BYTES", FUZZ_SMALL_BYTES)
            patch.setattr(damage, "SMALL_SEGMENT_BYTES", FUZZ_SMALL_BYTES // 4)
            warnings.simplefilter("ignore", MissingChunksWarning)
            read()
    except LfreconError:
        pass
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < CASE_SECONDS, f"reading took {elapsed:.1f} s"
    assert peak < PEAK_BYTES, f"reading allocated {peak / 2**20:.0f} MiB"


def _write(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


# ----------------------------------------------------------------------------- property-based fuzzing
@FUZZ
@given(data=st.data())
def test_read_tiff_on_damaged_bytes_raises_only_lfrecon_errors(seeds, data):
    content = data.draw(_file_bytes(["imagej", "shaped", "zlib", "tiled"])(seeds))
    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder), "damaged.tif", content)
        _read_and_judge(lambda: read_tiff(path))

        def lazy_read() -> None:
            image = read_tiff(path, lazy=True)
            np.asarray(image.data)

        _read_and_judge(lazy_read)


@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_read_zarr_on_damaged_stores_raises_only_lfrecon_errors(seeds, data):
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "damaged.zarr"
        shutil.copytree(seeds["zarr"], store)
        files = sorted(p for p in store.rglob("*") if p.is_file())
        for _ in range(data.draw(st.integers(1, 3))):
            target = data.draw(st.sampled_from(files))
            if not target.exists():
                continue
            if data.draw(st.integers(0, 4)) == 0:
                target.unlink()
            elif target.name.startswith(".") and data.draw(st.booleans()):
                target.write_bytes(_json_edit(data, target.read_bytes()))
            else:
                target.write_bytes(data.draw(mutated(target.read_bytes(), header_bytes=64)))

        def read() -> None:
            image = read_zarr(store)
            if image.data.nbytes <= FUZZ_SMALL_BYTES:  # the reader is lazy; a consumer reads what fits
                np.asarray(image.data)

        _read_and_judge(read)


def _json_edit(data: st.DataObject, content: bytes) -> bytes:
    """A zarr metadata file with one field replaced by an arbitrary JSON value (or the text mangled)."""
    try:
        document = json.loads(content)
    except ValueError:
        return content
    if not isinstance(document, dict) or not document:
        return content
    key = data.draw(st.sampled_from(sorted(document)))
    document[key] = data.draw(
        st.none()
        | st.integers(-(2**63), 2**63)
        | st.text(max_size=6)
        | st.lists(st.integers(-5, 2**40), max_size=4)
        | st.just({"path": "missing"})
        | st.just([{"datasets": [{"path": 3}], "axes": ["z", 5]}])
    )
    return json.dumps(document).encode()


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_psf_load_on_damaged_files_raises_only_lfrecon_errors(seeds, data):
    content = data.draw(safetensors_bytes(seeds["psf"].read_bytes()))
    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder), "damaged.psf.safetensors", content)
        _read_and_judge(lambda: PSF.load(path))


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_read_header_and_load_weights_on_damaged_files_raise_only_lfrecon_errors(seeds, data):
    content = data.draw(safetensors_bytes(seeds["weights"].read_bytes()))
    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder), "damaged.safetensors", content)
        _read_and_judge(lambda: read_header(path))
        _read_and_judge(lambda: load_weights(path))


# ----------------------------------------------------------------------------- the named cases
def _first_ifd_next_offset(content: bytes) -> tuple[int, int]:
    """(offset of the first IFD, position of its next-IFD pointer) in a little-endian classic TIFF."""
    assert content[:4] == b"II*\x00"
    (first,) = struct.unpack("<I", content[4:8])
    (entries,) = struct.unpack("<H", content[first : first + 2])
    return first, first + 2 + 12 * entries


def test_tiff_whose_page_directories_loop_is_refused_quickly_and_quietly(tmp_path, caplog, capfd):
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.arange(64, dtype=np.uint8).reshape(8, 8))
    content = bytearray(plain.read_bytes())
    first, pointer = _first_ifd_next_offset(bytes(content))
    content[pointer : pointer + 4] = struct.pack("<I", first)  # the only page's "next page" is itself
    looped = tmp_path / "loop.tif"
    looped.write_bytes(bytes(content))
    tifffile_level = logging.getLogger("tifffile").level

    caplog.set_level(logging.DEBUG)
    for lazy in (False, True):
        started = time.perf_counter()
        with pytest.raises(DamagedFile, match=r"damaged or unsupported file: .*loop\.tif: .*loop"):
            read_tiff(looped, lazy=lazy)
        assert time.perf_counter() - started < 2.0
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]
    assert capfd.readouterr().err == ""
    assert logging.getLogger("tifffile").level == tifffile_level  # restored after the read


def test_tiff_whose_later_page_points_to_itself_is_refused(tmp_path):
    """The fuzzer's hang: page 2's next-IFD offset is its own, which tifffile follows forever."""
    two = tmp_path / "two.tif"
    tifffile.imwrite(two, np.zeros((2, 8, 8), np.uint8), metadata=None)
    content = bytearray(two.read_bytes())
    _, pointer = _first_ifd_next_offset(bytes(content))
    (second,) = struct.unpack("<I", content[pointer : pointer + 4])
    (entries,) = struct.unpack("<H", content[second : second + 2])
    content[second + 2 + 12 * entries : second + 6 + 12 * entries] = struct.pack("<I", second)
    two.write_bytes(bytes(content))
    started = time.perf_counter()
    with pytest.raises(DamagedFile, match="page 2 points back to page 1"):
        read_tiff(two)
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("lazy", [False, True])
def test_truncated_tiff_is_refused(tmp_path, compression, lazy):
    volume = np.random.default_rng(0).random((6, 32, 32)).astype(np.float32)
    whole = tmp_path / "whole.tif"
    if compression is None:
        write_tiff(whole, volume, (1.0, 0.5, 0.5))
    else:
        tifffile.imwrite(whole, volume, compression=compression)
    content = whole.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(content[: len(content) * 2 // 3])
    with pytest.raises(DamagedFile, match=r"cut\.tif: truncated"):
        read_tiff(cut, lazy=lazy)
    assert read_tiff(whole, lazy=lazy).data.shape == volume.shape  # the intact file still reads


def test_tiff_declaring_pixels_its_size_cannot_hold_is_refused_before_allocating(tmp_path):
    """A mutated tile length asks for gigabytes per tile of a 2 KB file: refused, naming what was declared."""
    tiled = tmp_path / "tiled.tif"
    tifffile.imwrite(tiled, np.ones((32, 32), np.uint16), tile=(16, 16), compression="zlib")
    content = bytearray(tiled.read_bytes())
    first, _ = _first_ifd_next_offset(bytes(content))
    (entries,) = struct.unpack("<H", content[first : first + 2])
    for i in range(entries):
        at = first + 2 + 12 * i
        tag, kind = struct.unpack("<HH", content[at : at + 4])
        if tag == 323:  # TileLength
            value = struct.pack("<H", 65520) + b"\x00\x00" if kind == 3 else struct.pack("<I", 2**28)
            content[at + 8 : at + 12] = value
    tiled.write_bytes(bytes(content))
    tracemalloc.start()
    try:
        with pytest.raises(DamagedFile, match=r"declares .* of pixels"):
            read_tiff(tiled)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES


def test_declared_size_bound():
    assert damage.check_declared_size("f", (4, 4), np.uint16, stored_bytes=32, compressed=False) == 32
    with pytest.raises(DamagedFile, match="truncated: declares 32 bytes .* holds 31"):
        damage.check_declared_size("f", (4, 4), np.uint16, stored_bytes=31, compressed=False)
    # compressed: anything below the small allowance, beyond it at most MAX_EXPANSION times what is stored
    damage.check_declared_size("f", (2**20,), np.float32, stored_bytes=1, compressed=True)
    with pytest.raises(DamagedFile, match=r"declares 52.2 GiB of pixels \(shape \(1000000, 14000\), float32\)"):
        damage.check_declared_size("f", (10**6, 14000), np.float32, stored_bytes=933, compressed=True)
    with pytest.raises(DamagedFile, match="negative"):
        damage.check_declared_size("f", (-1, 4), np.uint8, stored_bytes=4, compressed=True)


def test_reading_turns_raw_library_errors_into_damaged_file_and_keeps_others():
    import zlib

    for raw in (ZeroDivisionError("x"), struct.error("x"), zlib.error("x"), KeyError("k"), RuntimeError("blosc")):
        with pytest.raises(DamagedFile, match=type(raw).__name__), damage.reading("f.tif"):
            raise raw
    for kept in (FileNotFoundError("gone"), PermissionError("no"), MemoryError()):
        with pytest.raises(type(kept)), damage.reading("f.tif"):
            raise kept


def _chunk_files(store: Path) -> list[Path]:
    return sorted(p for p in (store / "0").rglob("*") if p.is_file() and not p.name.startswith("."))


def test_zarr_with_half_its_chunks_deleted_is_refused(tmp_path):
    volume = np.random.default_rng(1).random((4, 16, 16)).astype(np.float32) + 1
    store = write_ome_zarr(tmp_path / "image.ome.zarr", volume, (1.0, 0.5, 0.5), chunks=(1, 8, 8))
    chunks = _chunk_files(store)
    assert len(chunks) == 16
    for chunk in chunks[::2]:
        chunk.unlink()
    with pytest.raises(DamagedFile, match=r"8 of the 16 chunks written to array '0' are missing"):
        read_zarr(store)


def test_zarr_chunks_equal_to_the_fill_value_are_not_damage(tmp_path):
    """zarr stores no all-zero chunk; the writer records how many it stored, so nothing is reported."""
    volume = np.ones((4, 16, 16), np.float32)
    volume[1] = 0
    store = write_ome_zarr(tmp_path / "image.ome.zarr", volume, (1.0, 0.5, 0.5), chunks=(1, 8, 8))
    assert len(_chunk_files(store)) == 12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_zarr(store)
    np.testing.assert_array_equal(np.asarray(image.data), volume)


def test_foreign_zarr_with_unwritten_chunks_is_read_with_a_loud_warning(tmp_path):
    import zarr

    array = zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=(4, 16), chunks=(1, 16), dtype="f4")
    array[:2] = 1.0  # chunks 2 and 3 never written: zarr reads them as the fill value
    with pytest.warns(MissingChunksWarning, match="2 of the 4 chunks .* are not stored; they read as the fill value"):
        image = read_zarr(tmp_path / "plain.zarr")
    assert image.file_info["chunks"] == {"expected": 4, "stored": 2, "missing": 2}


def test_zarr_chunk_that_fails_to_decode_is_a_damaged_file_when_computed(tmp_path):
    volume = np.random.default_rng(2).random((2, 16, 16)).astype(np.float32)
    store = write_ome_zarr(tmp_path / "image.ome.zarr", volume, (1.0, 0.5, 0.5), chunks=(1, 16, 16))
    chunk = _chunk_files(store)[0]
    chunk.write_bytes(chunk.read_bytes()[:20])  # a cut chunk file: the codec cannot decode it
    image = read_zarr(store)
    with pytest.raises(DamagedFile, match=r"image\.ome\.zarr"):
        np.asarray(image.data)


def test_zarr_with_damaged_metadata_is_refused(tmp_path):
    store = write_ome_zarr(tmp_path / "image.ome.zarr", np.ones((2, 8, 8), np.float32), (1.0, 0.5, 0.5))
    attrs = json.loads((store / ".zattrs").read_text())
    attrs["multiscales"][0]["datasets"] = [{"path": "nowhere"}]
    (store / ".zattrs").write_text(json.dumps(attrs))
    with pytest.raises(DamagedFile, match="damaged or unsupported file"):
        read_zarr(store)
    (store / ".zattrs").write_text(json.dumps({"multiscales": [["not", "a", "mapping"]]}))
    with pytest.raises(DamagedFile, match="names no dataset"):
        read_zarr(store)


def _rewrite_psf_header(path: Path, edit) -> None:
    content = path.read_bytes()
    (length,) = struct.unpack("<Q", content[:8])
    header = json.loads(content[8 : 8 + length])
    edit(header)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + content[8 + length :])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda h: h["__metadata__"].update({"napari_lfrecon.psf": "[1, 2]"}), "must be a JSON object, got list"),
        (lambda h: h["__metadata__"].update({"napari_lfrecon.psf": "{not json"}), "header is not JSON"),
        (lambda h: h["__metadata__"].update({"napari_lfrecon.psf": '{"modality": "lfm"}'}), "voxel_size"),
        (lambda h: h["__metadata__"].update({"napari_lfrecon.psf": '{"voxel_size": [1, 1, 1]}'}), "modality"),
        (
            lambda h: h["__metadata__"].update(
                {"napari_lfrecon.psf": '{"modality": "widefield", "voxel_size": [NaN, 1, 1]}'}
            ),
            "three finite numbers",
        ),
    ],
)
def test_psf_file_with_a_broken_header_is_a_damaged_file(seeds, tmp_path, edit, message):
    path = tmp_path / "broken.psf.safetensors"
    shutil.copy(seeds["psf"], path)
    _rewrite_psf_header(path, edit)
    with pytest.raises(DamagedFile, match=message):
        PSF.load(path)


@pytest.mark.parametrize("missing", ["array", "z_planes_um", "zernike"])
def test_psf_file_without_a_required_tensor_is_a_damaged_file(tmp_path, missing):
    from safetensors.numpy import save_file

    header = json.dumps({"modality": "widefield", "voxel_size": [1, 1, 1]})
    tensors = {"array": np.ones((2, 3, 3), np.float32), "zernike": np.zeros(1), "z_planes_um": np.zeros(2)}
    del tensors[missing]
    save_file(tensors, str(tmp_path / "partial.psf.safetensors"), metadata={"napari_lfrecon.psf": header})
    with pytest.raises(DamagedFile, match=f"no '{missing}' tensor"):
        PSF.load(tmp_path / "partial.psf.safetensors")


def test_psf_tensor_of_the_wrong_dtype_or_shape_is_a_damaged_file(tmp_path):
    from safetensors.numpy import save_file

    header = json.dumps({"modality": "widefield", "voxel_size": [1, 1, 1]})
    tensors = {"array": np.ones((2, 3, 3), np.float32), "zernike": np.zeros(1), "z_planes_um": np.zeros((2, 2))}
    save_file(tensors, str(tmp_path / "shape.psf.safetensors"), metadata={"napari_lfrecon.psf": header})
    with pytest.raises(DamagedFile, match="'z_planes_um' tensor must be one-dimensional"):
        PSF.load(tmp_path / "shape.psf.safetensors")
    tensors = {"array": np.ones((2, 3), np.float32), "zernike": np.zeros(1), "z_planes_um": np.zeros(2)}
    save_file(tensors, str(tmp_path / "ndim.psf.safetensors"), metadata={"napari_lfrecon.psf": header})
    with pytest.raises(DamagedFile, match="3 dimensions"):
        PSF.load(tmp_path / "ndim.psf.safetensors")
    tensors = {"array": np.ones((2, 3, 3), np.complex64), "zernike": np.zeros(1), "z_planes_um": np.zeros(2)}
    save_file(tensors, str(tmp_path / "dtype.psf.safetensors"), metadata={"napari_lfrecon.psf": header})
    with pytest.raises(DamagedFile, match="'array' tensor must hold real numbers"):
        PSF.load(tmp_path / "dtype.psf.safetensors")


def test_weights_header_that_is_not_json_or_not_an_object_is_a_damaged_file(tmp_path):
    from safetensors.numpy import save_file

    for text, message in (("{oops", "not JSON"), ("[1]", "JSON object"), ('{"engine": 3, "version": 1}', "name")):
        path = tmp_path / "w.safetensors"
        save_file({"w": np.ones(2, np.float32)}, str(path), metadata={"napari_lfrecon.weights": text})
        with pytest.raises(DamagedFile, match=message):
            read_header(path)


def test_weights_with_wrong_tensor_names_or_shapes_are_named(tmp_path):
    expected = {"conv.weight": np.zeros((4, 3)), "conv.bias": np.zeros(4)}
    check_tensors("w", {"conv.weight": np.zeros((4, 3)), "conv.bias": np.zeros(4)}, expected)
    with pytest.raises(
        DamagedFile, match=r"missing tensors: conv\.bias; unexpected tensors: head; shapes: conv\.weight"
    ):
        check_tensors("w", {"conv.weight": np.zeros((3, 3)), "head": np.zeros(1)}, expected)


def test_truncated_weights_file_is_a_damaged_file(seeds, tmp_path):
    content = seeds["weights"].read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(content[:-4])
    with pytest.raises(DamagedFile, match="cut.safetensors"):
        load_weights(path)
