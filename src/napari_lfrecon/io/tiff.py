"""TIFF reading and writing that keeps the voxel size.

Writing produces ImageJ hyperstacks (Fiji opens them with the right voxel
size): XResolution/YResolution in pixels per micrometre, ``spacing`` for z and
``unit=um``. This package's own JSON document (exact voxel size, axes and the
caller's metadata, e.g. a run's engine and parameters) goes into the ImageJ
``Info`` property, which Fiji shows under *Image › Show Info* and keeps on
re-save. Arrays whose axes ImageJ cannot express (e.g. light-field views
``AYX``) are written as plain tifffile "shaped" TIFFs with the same JSON in the
ImageDescription.

Reading accepts, in order of trust: the resolution tags with ImageJ ``unit`` and
``spacing``, OME-XML ``PhysicalSize*``, TIFF resolution tags in centimetres, and
our JSON document (used when it agrees with the tags, or when the tags are
silent). A file that states no voxel size gets ``voxel_size=None``.
"""

from __future__ import annotations

import json
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..jobs.protocol import DamagedFile
from .damage import GuardedArray, reading
from .image import (
    FORMAT_VERSION,
    METADATA_KEY,
    ImageData,
    canonical_order,
    check_axes,
    check_voxel_size,
    document_voxel,
    dumps,
    spatial_axes,
    to_jsonable,
    um_per_unit,
)
from .tiff_checks import check_imagej_count, check_tiff_series, scan_ifd_chain

#: Axis order an ImageJ hyperstack stores (a subset of it, in this order).
IMAGEJ_ORDER = "TZCYXS"
#: Data types ImageJ reads natively; others are written as float32.
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
#: Relative tolerance within which our exact JSON voxel size is taken to agree with the
#: (rational, decimal-text) TIFF tags; beyond it the tags win, since the file was re-calibrated elsewhere.
_AGREE_RTOL = 1e-5
#: ImageJ metadata keys that hold arrays (display ranges, LUTs, ROIs): not copied into file_info.
_IMAGEJ_BULKY = {"Ranges", "LUTs", "Labels", "ROI", "Overlays", "Properties", "Info", "Plot"}
#: TIFF ResolutionUnit values.
_RESUNIT_CENTIMETER = 3
_BOUNDING_BOX = re.compile(r"BoundingBox((?:\s+[-+0-9.eE]+){6})")
#: Above this size a classic TIFF's 32-bit offsets overflow; switch to BigTIFF.
_BIGTIFF_BYTES = 2**32 - 2**25


# --------------------------------------------------------------------------- writing
def write_tiff(
    path: str | Path,
    data: Any,
    voxel_size: Sequence[float] | None = None,
    metadata: Mapping[str, Any] | None = None,
    *,
    axes: str | None = None,
) -> Path:
    """Write ``data`` to ``path`` as a TIFF that keeps ``voxel_size`` and ``metadata``; return the path.

    Parameters
    ----------
    data:
        The image; not modified. uint8, uint16 and float32 are written as they are,
        anything else as float32 (ImageJ reads no other types).
    voxel_size:
        Micrometres per pixel along the spatial axes of ``axes`` in ``Z, Y, X``
        order, e.g. ``(dz, dy, dx)``; ``None`` writes an uncalibrated image.
    metadata:
        JSON-able mapping stored with the image and returned by :func:`read_tiff`
        as ``ImageData.metadata`` (tuples come back as lists).
    axes:
        One letter per dimension; default ``YX``/``ZYX``/``CZYX``/``TCZYX`` by
        dimensionality.
    """
    path = Path(path)
    array = np.asarray(data)
    axes = check_axes(axes, array.ndim)
    if voxel_size is not None:
        voxel_size = check_voxel_size(voxel_size, axes)
    user_meta = to_jsonable(metadata, strict=True)
    if array.dtype not in _IMAGEJ_DTYPES:
        array = array.astype(np.float32)  # a new array: the caller's data is untouched

    document = {
        METADATA_KEY: {
            "format_version": FORMAT_VERSION,
            "axes": axes,
            "voxel_size_um": list(voxel_size) if voxel_size is not None else None,
            "metadata": user_meta,
        }
    }
    bigtiff = array.nbytes > _BIGTIFF_BYTES
    resolution = None
    if voxel_size is not None:
        dy, dx = voxel_size[-2], voxel_size[-1]
        resolution = (1.0 / dx, 1.0 / dy)

    # written under a temporary name and renamed: an interrupted write never leaves a corrupt file at ``path``
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        if set(axes) <= set(IMAGEJ_ORDER) and not (("S" in axes) and array.dtype != np.uint8):
            _write_imagej(partial, array, axes, voxel_size, resolution, document, bigtiff)
        else:
            _write_shaped(partial, array, axes, resolution, document, bigtiff)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _write_imagej(
    path: Path,
    array: np.ndarray,
    axes: str,
    voxel_size: tuple[float, ...] | None,
    resolution: tuple[float, float] | None,
    document: dict[str, Any],
    bigtiff: bool,
) -> None:
    import tifffile

    ij_axes = "".join(a for a in IMAGEJ_ORDER if a in axes)
    array = np.transpose(array, [axes.index(a) for a in ij_axes])
    ij_meta: dict[str, Any] = {"axes": ij_axes, "Info": dumps(document)}
    if voxel_size is not None:
        ij_meta["unit"] = "um"
        if "Z" in axes:
            ij_meta["spacing"] = voxel_size[0]
    tifffile.imwrite(
        path,
        array,
        imagej=True,
        resolution=resolution,
        metadata=ij_meta,
        bigtiff=bigtiff,
        photometric="rgb" if "S" in axes else "minisblack",
    )


def _write_shaped(
    path: Path,
    array: np.ndarray,
    axes: str,
    resolution: tuple[float, float] | None,
    document: dict[str, Any],
    bigtiff: bool,
) -> None:
    import tifffile

    # Resolution in pixels per centimetre is the only unit plain TIFF has for metric sizes.
    res_cm = None if resolution is None else (resolution[0] * 1e4, resolution[1] * 1e4)
    tifffile.imwrite(
        path,
        array,
        metadata={"axes": axes, **document},
        resolution=res_cm,
        resolutionunit=_RESUNIT_CENTIMETER if res_cm is not None else None,
        bigtiff=bigtiff,
        photometric="minisblack",
    )


# --------------------------------------------------------------------------- reading
def read_tiff(path: str | Path, *, lazy: bool = False) -> ImageData:
    """Read the first image series of a TIFF file with its voxel size and metadata.

    With ``lazy=True`` the pixels are memory-mapped (read-only) when the file
    layout allows it, else returned as a dask array reading page by page;
    otherwise they are loaded into a numpy array. Axes come back in canonical
    order (``CZYX`` for an ImageJ ``ZCYX`` stack); a plain multi-page stack
    (tifffile axis ``I``) is taken to be ``Z``.
    """
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no TIFF file at {path}")
    with reading(path):
        scan_ifd_chain(path)
        try:
            tif = tifffile.TiffFile(path)
        except tifffile.TiffFileError as exc:
            raise DamagedFile(path, f"not a readable TIFF file ({exc})") from exc
        with tif:
            if not tif.series:
                raise DamagedFile(path, "holds no image series")
            series = tif.series[0]
            check_tiff_series(path, series)
            file_axes = _name_stack_axis(series.axes)
            shape = tuple(series.shape)
            keyframe = series.keyframe
            tags = {tag.name: tag.value for tag in keyframe.tags.values()}
            ij = tif.imagej_metadata
            check_imagej_count(path, ij, shape, file_axes)
            ome = tif.ome_metadata if tif.is_ome else None
            shaped = tif.shaped_metadata
            data = None if lazy else series.asarray()
            if data is not None and data.size != math.prod(shape):
                raise DamagedFile(path, f"holds {data.size} pixels where its series declares shape {shape}")

    file_info: dict[str, Any] = {"format": "tiff", "path": str(path), "file_axes": series.axes}
    document = _our_document(ij, shaped)
    declared: dict[str, float] = {}
    source = None
    if ij is not None:
        file_info["imagej"] = {k: v for k, v in ij.items() if k not in _IMAGEJ_BULKY and _is_plain(v)}
        if isinstance(ij.get("Info"), str) and document is None:
            file_info["imagej_info"] = ij["Info"]
        declared = _imagej_voxel(ij, tags, file_axes)
        source = "imagej" if declared else None
    if not declared and ome:
        declared = _ome_voxel(ome)
        source = "ome-xml" if declared else None
    if not declared:
        declared = _resolution_cm_voxel(tags)
        source = "tiff-resolution-cm" if declared else None
    description = tags.get("ImageDescription")
    if isinstance(description, str):
        _bounding_box_hint(description, file_axes, shape, file_info)

    # Our exact JSON voxel size refines the tags' rounded values when they agree.
    ours = document_voxel(document)
    if ours:
        if not declared:
            declared, source = ours, METADATA_KEY
        elif all(abs(ours[a] - v) <= _AGREE_RTOL * abs(v) for a, v in declared.items() if a in ours) and set(
            declared
        ) <= set(ours):
            declared = {**declared, **ours}
        else:
            file_info["voxel_size_conflict"] = {"tags": declared, METADATA_KEY: ours}

    canonical, perm = canonical_order(file_axes)
    spatial = spatial_axes(canonical)
    voxel_size = tuple(declared[a] for a in spatial) if all(a in declared for a in spatial) else None
    if voxel_size is None and declared:
        file_info["voxel_size_partial"] = {a: declared[a] for a in spatial if a in declared}
    file_info["voxel_size_source"] = source if voxel_size is not None else None

    if data is None:
        with reading(path):
            data = _lazy_pixels(path, tifffile)
    if data.shape != shape:  # tifffile squeezes the same way for both paths; guard anyway
        data = data.reshape(shape)
    if perm != list(range(len(perm))):
        data = data.transpose(perm)
    metadata = document.get("metadata", {}) if document else {}
    return ImageData(
        data=data,
        voxel_size=voxel_size,
        axes=canonical,
        metadata=metadata,
        file_info=file_info,
        lazy=lazy,
    )


def _lazy_pixels(path: Path, tifffile: Any) -> Any:
    """Memory-map the first series when the file is contiguous and uncompressed, else a dask array."""
    try:
        return tifffile.memmap(path, series=0, mode="r")
    except ValueError:
        pass  # compressed, tiled or interleaved with IFDs: fall back to reading chunk by chunk
    import dask.array as da
    import zarr
    from dask.base import tokenize

    store = tifffile.imread(path, aszarr=True, series=0, level=0)
    pixels = zarr.open(store, mode="r")
    # every chunk is decoded inside the reader boundary: a damaged strip is a DamagedFile, not a codec error
    guarded = GuardedArray(pixels, path)
    return da.from_array(guarded, chunks=pixels.chunks, name=f"read-tiff-{tokenize(str(path), _file_stamp(path))}")


def _file_stamp(path: Path) -> tuple[int, int]:
    """Size and modification time: a rewritten file gets new dask keys."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _name_stack_axis(axes: str) -> str:
    """Call a lone generic stack axis (tifffile ``I`` or ``Q``) ``Z`` when the file names no Z."""
    generic = [a for a in axes if a in "IQ"]
    if "Z" not in axes and len(generic) == 1 and "Y" in axes and "X" in axes:
        return axes.replace(generic[0], "Z")
    return axes


def _is_plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def _our_document(ij: dict[str, Any] | None, shaped: Sequence[dict[str, Any]] | None) -> dict[str, Any] | None:
    """Find the JSON document this package wrote (ImageJ Info, or the shaped description)."""
    if ij is not None and isinstance(ij.get("Info"), str):
        try:
            parsed = json.loads(ij["Info"])
        except json.JSONDecodeError:
            parsed = None  # someone else's Info text: kept in file_info by the caller
        if isinstance(parsed, dict) and isinstance(parsed.get(METADATA_KEY), dict):
            return parsed[METADATA_KEY]
    for entry in shaped or ():
        if isinstance(entry, dict) and isinstance(entry.get(METADATA_KEY), dict):
            return entry[METADATA_KEY]
    return None


def _pixel_size(resolution: Any) -> float | None:
    """Units per pixel from a TIFF (numerator, denominator) pixels-per-unit rational."""
    try:
        num, den = resolution
        num, den = float(num), float(den)
    except (TypeError, ValueError):
        return None
    if num <= 0 or den <= 0:
        return None
    return den / num


def _imagej_voxel(ij: dict[str, Any], tags: dict[str, Any], axes: str) -> dict[str, float]:
    """Voxel size from ImageJ: resolution tags are pixels per ``unit``; ``spacing`` is z in ``unit``."""
    scale = um_per_unit(ij.get("unit"))
    if scale is None:
        return {}  # "pixel" or no unit: ImageJ's uncalibrated default
    out: dict[str, float] = {}
    for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
        size = _pixel_size(tags.get(tag))
        if size is not None:
            out[axis] = size * scale
    if "Z" in axes and ij.get("spacing") is not None:
        try:
            spacing = float(ij["spacing"])
        except (TypeError, ValueError):
            spacing = 0.0
        if spacing > 0:
            out["Z"] = spacing * scale
    return out


def _ome_voxel(ome_xml: str) -> dict[str, float]:
    """Voxel size from the first OME ``Pixels`` element (``PhysicalSize*`` with units, default µm)."""
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        return {}
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return {}
    out: dict[str, float] = {}
    for axis in "XYZ":
        value = pixels.get(f"PhysicalSize{axis}")
        scale = um_per_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        if value is None or scale is None:
            continue
        try:
            size = float(value) * scale
        except ValueError:
            continue
        if size > 0:
            out[axis] = size
    return out


def _resolution_cm_voxel(tags: dict[str, Any]) -> dict[str, float]:
    """X/Y pixel size from resolution tags in pixels per centimetre (inches are ignored: usually a dpi default)."""
    if int(tags.get("ResolutionUnit", 0) or 0) != _RESUNIT_CENTIMETER:
        return {}
    out: dict[str, float] = {}
    for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
        size = _pixel_size(tags.get(tag))
        if size is not None:
            out[axis] = size * 1e4
    return out


def _bounding_box_hint(description: str, axes: str, shape: tuple[int, ...], file_info: dict[str, Any]) -> None:
    """Record a vendor ``BoundingBox x0 x1 y0 y1 z0 z1`` description (HHMI LabVIEW acquisition) as a hint only.

    Its unit is not stated and its extents do not always match the known
    sampling, so it never becomes ``voxel_size``; the hint is the extent per
    pixel (xy: extent / n, z: extent / (n - 1), the convention that fits files
    whose sampling is known).
    """
    match = _BOUNDING_BOX.search(description)
    if match is None:
        return
    x0, x1, y0, y1, z0, z1 = (float(v) for v in match.group(1).split())
    file_info["bounding_box"] = [x0, x1, y0, y1, z0, z1]
    hint: dict[str, float] = {}
    if "X" in axes and shape[axes.index("X")] > 0:
        hint["X"] = (x1 - x0) / shape[axes.index("X")]
    if "Y" in axes and shape[axes.index("Y")] > 0:
        hint["Y"] = (y1 - y0) / shape[axes.index("Y")]
    if "Z" in axes and shape[axes.index("Z")] > 1:
        hint["Z"] = (z1 - z0) / (shape[axes.index("Z")] - 1)
    file_info["bounding_box_hint_per_pixel"] = hint
    file_info["bounding_box_note"] = "vendor extent with no stated unit; not used as the voxel size"
