"""zarr and OME-Zarr (OME-NGFF v0.4) reading and writing that keeps the voxel size.

Written stores are NGFF v0.4: a zarr v2-format group whose ``multiscales``
attribute has one level (array ``"0"``), axes with ``type`` and, for space,
``unit: micrometer``, and a ``scale`` coordinate transformation equal to the
voxel size (1 on time/channel axes). This package's JSON document (exact voxel
size, axes, the caller's metadata) is the group attribute ``napari_lfrecon``.
An image with no known voxel size is written with unit-less space axes and
scale 1, and reads back with ``voxel_size=None``.

Works with zarr-python 2 and 3; reading also understands NGFF v0.5 (attributes
under ``"ome"``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..jobs.protocol import DamagedFile
from . import damage
from .damage import GuardedArray, declared_bytes, describe, reading
from .image import (
    FORMAT_VERSION,
    METADATA_KEY,
    SPATIAL_AXES,
    ImageData,
    canonical_order,
    check_axes,
    check_voxel_size,
    document_voxel,
    spatial_axes,
    to_jsonable,
    um_per_unit,
)

NGFF_VERSION = "0.4"
_AXIS_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
#: Target chunk size when the caller gives none: whole YX planes, a few MB per chunk.
_TARGET_CHUNK_BYTES = 8 * 2**20


def _zarr_major() -> int:
    import zarr

    return int(zarr.__version__.split(".")[0])


def write_ome_zarr(
    path: str | Path,
    data: Any,
    voxel_size: Sequence[float] | None,
    metadata: Mapping[str, Any] | None = None,
    chunks: Sequence[int] | None = None,
    *,
    axes: str | None = None,
) -> Path:
    """Write ``data`` as a one-level OME-Zarr (NGFF v0.4) image at ``path``; return the path.

    Parameters
    ----------
    data:
        numpy or dask array (a dask array is written chunk by chunk, never whole
        in memory); not modified. The dtype is kept.
    voxel_size:
        Micrometres per pixel along the spatial axes in ``Z, Y, X`` order, or
        ``None`` when unknown (then stored without units, scale 1).
    metadata:
        JSON-able mapping returned by :func:`read_zarr` as ``ImageData.metadata``.
    chunks:
        Chunk shape; default whole ``YX`` planes grouped to ~8 MB.
    axes:
        Letters from ``TCZYX`` in that order; default by dimensionality.
    """
    import zarr

    path = Path(path)
    array = data if hasattr(data, "dask") else np.asarray(data)
    axes = check_axes(axes, array.ndim)
    if any(a not in _AXIS_TYPES for a in axes) or canonical_order(axes)[0] != axes:
        raise ValueError(f"OME-Zarr axes must be letters of 'TCZYX' in that order, got {axes!r}")
    if voxel_size is not None:
        voxel_size = check_voxel_size(voxel_size, axes)
    user_meta = to_jsonable(metadata, strict=True)
    chunks = _check_chunks(chunks, array.shape) if chunks is not None else _default_chunks(array)

    scale_of = dict(zip(spatial_axes(axes), voxel_size, strict=True)) if voxel_size is not None else {}
    ngff_axes = []
    for a in axes:
        entry: dict[str, Any] = {"name": a.lower(), "type": _AXIS_TYPES[a]}
        if a in SPATIAL_AXES and voxel_size is not None:
            entry["unit"] = "micrometer"
        ngff_axes.append(entry)
    multiscales = [
        {
            "version": NGFF_VERSION,
            "name": path.name.removesuffix(".zarr").removesuffix(".ome"),
            "axes": ngff_axes,
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [scale_of.get(a, 1.0) for a in axes]}],
                }
            ],
        }
    ]
    document = {
        "format_version": FORMAT_VERSION,
        "axes": axes,
        "voxel_size_um": list(voxel_size) if voxel_size is not None else None,
        "metadata": user_meta,
    }

    # NGFF v0.4 is defined on the zarr v2 format, so zarr-python 3 is asked for it explicitly.
    v3 = _zarr_major() >= 3
    group = zarr.open_group(str(path), mode="w", **({"zarr_format": 2} if v3 else {}))
    if v3:
        target = group.create_array(
            "0",
            shape=array.shape,
            chunks=chunks,
            dtype=array.dtype,
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )
    else:
        target = group.create_dataset("0", shape=array.shape, chunks=chunks, dtype=array.dtype, dimension_separator="/")
    if hasattr(array, "dask"):
        import dask.array as da

        da.store(array.rechunk(chunks), target, lock=False)
    else:
        target[...] = array
    # zarr stores no chunk equal to the fill value; the count lets read_zarr tell such chunks from lost ones
    document[STORED_CHUNKS_KEY] = int(target.nchunks_initialized)
    group.attrs.update({"multiscales": multiscales, METADATA_KEY: document})
    return path


def read_zarr(path: str | Path, *, count_chunks: bool = True) -> ImageData:
    """Read an OME-Zarr image (first multiscale, full resolution) or a plain zarr array, lazily as dask.

    OME-Zarr space axes with a length unit give ``voxel_size`` (µm); a plain
    array, or space axes without a unit, give ``voxel_size=None``.

    Damaged metadata raises :class:`~napari_lfrecon.jobs.DamagedFile`, and so
    does a chunk that fails to decode when the dask array is computed. Chunks
    are counted when the store is opened (see :func:`check_chunks`): a store
    this package wrote that lost chunks is refused; other stores with chunks
    missing (zarr stores no chunk equal to the fill value, and an unfinished
    chunked run has not written them yet) give a :class:`MissingChunksWarning`
    naming how many. ``count_chunks=False`` skips that count (for a reader that
    already checked the store when it opened it and now reads one region).
    """
    import zarr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no zarr store at {path}")
    with reading(path):
        try:
            node = zarr.open(str(path), mode="r")
        except Exception as exc:  # zarr raises several types for "not a store"
            raise DamagedFile(path, f"not a zarr array or group ({describe(exc)})") from exc
        return _read_node(path, node, count_chunks)


def _read_node(path: Path, node: Any, count_chunks: bool) -> ImageData:
    file_info: dict[str, Any] = {"format": "zarr", "path": str(path)}
    attrs = dict(node.attrs)
    document = attrs.get(METADATA_KEY) if isinstance(attrs.get(METADATA_KEY), dict) else None
    metadata = (document or {}).get("metadata", {})
    if not isinstance(metadata, dict):
        raise DamagedFile(path, f"its '{METADATA_KEY}' metadata is not a mapping")
    if hasattr(node, "shape"):  # a bare array: no geometry is stated
        axes = _fallback_axes(len(node.shape))
        if count_chunks:
            file_info.update(check_chunks(path, node, document))
        file_info["voxel_size_source"] = None
        return ImageData(_lazy_array(path, node), None, axes, metadata, file_info, lazy=True)

    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else {}
    multiscales = attrs.get("multiscales") or ome.get("multiscales")
    if not multiscales:
        raise DamagedFile(path, "a zarr group without OME-NGFF 'multiscales' metadata; open its array instead")
    ms = multiscales[0]
    if not isinstance(ms, dict) or not ms.get("datasets") or not isinstance(ms["datasets"][0], dict):
        raise DamagedFile(path, "its OME-NGFF 'multiscales' metadata names no dataset")
    file_info["ngff_version"] = ms.get("version") or ome.get("version")
    dataset = ms["datasets"][0]
    array = node[str(dataset["path"])]
    if not hasattr(array, "shape"):
        raise DamagedFile(path, f"its dataset {dataset['path']!r} is a group, not an array")
    entries = [ax if isinstance(ax, dict) else {"name": str(ax)} for ax in ms.get("axes", [])]
    if len(entries) != len(array.shape):
        # Axes that do not match the array say nothing reliable, units included.
        entries = [{"name": a.lower()} for a in _fallback_axes(len(array.shape))]
    axes = "".join(
        str(e.get("name", "")).upper() if str(e.get("name", "")).upper() in _AXIS_TYPES else "Q" for e in entries
    )

    scale = np.ones(len(axes))
    for transforms in (dataset.get("coordinateTransformations", []), ms.get("coordinateTransformations", [])):
        for t in transforms:
            if t.get("type") == "scale" and len(t.get("scale", ())) == len(axes):
                scale = scale * np.asarray(t["scale"], dtype=float)
    declared: dict[str, float] = {}
    for letter, entry, s in zip(axes, entries, scale, strict=True):
        factor = um_per_unit(entry.get("unit"))
        if letter in SPATIAL_AXES and factor is not None and np.isfinite(s) and s > 0:
            declared[letter] = float(s) * factor

    ours = document_voxel(document)
    if ours and all(abs(ours.get(a, np.inf) - v) <= 1e-9 * abs(v) for a, v in declared.items()):
        declared = {**declared, **ours}  # same numbers, but exactly as the writer had them

    canonical, perm = canonical_order(axes)
    spatial = spatial_axes(canonical)
    voxel_size = tuple(declared[a] for a in spatial) if spatial and all(a in declared for a in spatial) else None
    file_info["voxel_size_source"] = "ome-ngff" if voxel_size is not None else None
    if count_chunks:
        file_info.update(check_chunks(path, array, document))
    data = _lazy_array(path, array)
    if perm != list(range(len(perm))):
        data = data.transpose(perm)
    return ImageData(data, voxel_size, canonical, metadata, file_info, lazy=True)


class MissingChunksWarning(UserWarning):
    """A zarr array has fewer chunks stored than its grid: the missing ones read as the fill value."""


#: Above this many chunks in the grid the stored ones are not counted at open time (listing would take long).
MAX_CHUNKS_COUNTED = 200_000
#: Document field: how many chunks the writer stored (zarr skips chunks equal to the fill value).
STORED_CHUNKS_KEY = "stored_chunks"


def check_chunks(path: Path, array: Any, document: Mapping[str, Any] | None) -> dict[str, Any]:
    """Count the stored chunks of ``array`` against its grid; refuse lost chunks, warn of missing ones.

    A store this package wrote records how many chunks it stored; fewer now
    means chunk files were deleted or lost, and the store is refused
    (:class:`DamagedFile`, naming how many); exactly that many is a complete
    store. Any other shortfall against the grid is legitimate in zarr (unwritten chunks read as the fill value) but
    may be damage too, so it is warned about loudly. Returns what goes into
    ``file_info``.
    """
    chunks = tuple(int(c) for c in array.chunks)
    chunk_bytes = declared_bytes(chunks, array.dtype)
    within = declared_bytes([min(c, int(n)) for c, n in zip(chunks, array.shape, strict=True)], array.dtype)
    if chunk_bytes > max(within, damage.SMALL_SEGMENT_BYTES):
        # every chunk read decodes into a buffer of the whole chunk shape, however little of it is the array
        raise DamagedFile(
            path, f"declares chunks of shape {chunks} ({chunk_bytes} bytes each) for an array of shape {array.shape}"
        )
    expected = int(array.nchunks)
    if expected > MAX_CHUNKS_COUNTED:
        return {"chunks": {"expected": expected, "stored": None}}
    stored = int(array.nchunks_initialized)
    info: dict[str, Any] = {"chunks": {"expected": expected, "stored": stored}}
    recorded = (document or {}).get(STORED_CHUNKS_KEY)
    if isinstance(recorded, int) and not isinstance(recorded, bool) and stored < recorded:
        raise DamagedFile(
            path,
            f"{recorded - stored} of the {recorded} chunks written to array '{array.path}' are missing "
            "(deleted or lost); the image cannot be read whole",
        )
    if stored == recorded:
        return info  # exactly the chunks the writer stored; the rest equal the fill value
    if stored < expected:
        warnings.warn(
            MissingChunksWarning(
                f"{path}: {expected - stored} of the {expected} chunks of array '{array.path}' are not stored; "
                f"they read as the fill value {array.fill_value} (an unfinished write, lost chunk files, "
                "or chunks equal to the fill value that zarr did not store)"
            ),
            stacklevel=4,
        )
        info["chunks"]["missing"] = expected - stored
    return info


def _lazy_array(path: Path, array: Any) -> Any:
    """A dask array over the zarr ``array`` whose chunk reads raise :class:`DamagedFile` on damage."""
    import dask.array as da
    from dask.base import tokenize

    name = f"read-zarr-{tokenize(str(path.resolve()), array.path, array.shape, array.chunks, str(array.dtype))}"
    guarded = GuardedArray(array, path, _blosc_header_check(path, array))
    return da.from_array(guarded, chunks=array.chunks, name=name, inline_array=True)


#: Bytes of a blosc chunk header, and where in it the uncompressed size is (little-endian uint32).
_BLOSC_HEADER_BYTES = 16
_BLOSC_NBYTES = slice(4, 8)


def _blosc_header_check(path: Path, array: Any) -> Any:
    """For a local zarr v2 blosc array: a check that refuses a chunk whose header declares a wrong size.

    The blosc decoder allocates the uncompressed size its header declares
    (up to 2 GiB) before it finds the data damaged; a chunk of this array
    holds exactly ``prod(chunks) × itemsize`` bytes, so any other declared size
    is damage. Returns ``None`` (no check) for other codecs, filters or stores.
    """
    metadata = array.metadata
    compressor = getattr(metadata, "compressor", None)
    root = getattr(array.store, "root", None)
    if getattr(compressor, "codec_id", None) != "blosc" or getattr(metadata, "filters", None) or root is None:
        return None
    chunks = tuple(int(c) for c in array.chunks)
    chunk_bytes = math.prod(chunks) * np.dtype(array.dtype).itemsize
    folder = Path(root) / array.path

    def check(key: Any) -> None:
        if not isinstance(key, tuple) or not all(isinstance(k, slice) for k in key) or len(key) != len(chunks):
            return
        coords = tuple((k.start or 0) // c for k, c in zip(key, chunks, strict=True))
        try:
            with open(folder / metadata.encode_chunk_key(coords), "rb") as handle:
                header = handle.read(_BLOSC_HEADER_BYTES)
        except FileNotFoundError:
            return  # not stored: read as the fill value
        if len(header) < _BLOSC_HEADER_BYTES:
            raise DamagedFile(path, f"chunk {coords} of array '{array.path}' is cut off ({len(header)} bytes)")
        declared = int.from_bytes(header[_BLOSC_NBYTES], "little")
        if declared != chunk_bytes:
            raise DamagedFile(
                path, f"chunk {coords} of array '{array.path}' declares {declared} bytes; a chunk holds {chunk_bytes}"
            )

    return check


def _fallback_axes(ndim: int) -> str:
    """Axes for an array nobody labelled: the package defaults, or generic ``Q`` then ``YX``."""
    try:
        return check_axes(None, ndim)
    except ValueError:
        return "Q" * (ndim - 2) + "YX" if ndim >= 2 else "X"


def _check_chunks(chunks: Sequence[int], shape: tuple[int, ...]) -> tuple[int, ...]:
    chunks = tuple(int(c) for c in chunks)
    if len(chunks) != len(shape) or any(c < 1 for c in chunks):
        raise ValueError(f"chunks must be one positive integer per dimension of shape {shape}, got {chunks}")
    return tuple(min(c, max(s, 1)) for c, s in zip(chunks, shape, strict=True))


def _default_chunks(array: Any) -> tuple[int, ...]:
    """Whole YX planes, stacked along the axis before Y until ~8 MB, so napari slicing reads one chunk per plane."""
    shape = tuple(int(s) for s in array.shape)
    plane = max(1, shape[-1] * shape[-2] * np.dtype(array.dtype).itemsize)
    chunks = [1] * (len(shape) - 2) + [max(shape[-2], 1), max(shape[-1], 1)]
    if len(shape) >= 3:
        chunks[-3] = int(min(max(shape[-3], 1), max(1, _TARGET_CHUNK_BYTES // plane)))
    return tuple(chunks)
