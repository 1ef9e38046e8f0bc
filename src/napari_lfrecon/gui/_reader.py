"""napari reader contribution: TIFF, zarr / OME-Zarr and napari-lfrecon PSF files.

Leaf module for the npe2 manifest: importing it imports neither Qt nor napari.
Layers get the file's voxel size as ``scale``; when the file states none, the
layer has no ``scale`` and its metadata says so (``voxel_size_known`` False and
a ``voxel_size_note``): nothing is invented.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

LayerData = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[Any], list[LayerData]]

TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIX = ".zarr"
PSF_SUFFIX = ".psf.safetensors"  # same as napari_lfrecon.psf.model.PSF_FILE_SUFFIX, kept literal to import nothing
SPATIAL_UNIT = "µm"  # same as napari_lfrecon.controllers.layers.SPATIAL_UNIT, kept literal to import nothing
#: Keys the reader puts into layer metadata; the writer does not store them back as the image's own metadata.
READER_KEYS = ("voxel_size", "voxel_size_known", "voxel_size_note", "axes", "source", "psf")
NO_VOXEL_NOTE = "file carries no voxel size"
#: TIFFs larger than this are opened memory-mapped / lazily rather than loaded.
LAZY_TIFF_BYTES = 512 * 2**20


def _kind(path: Any) -> str | None:
    """Which of our formats ``path`` names, from its suffix only (``None`` for anything else)."""
    if not isinstance(path, (str, os.PathLike)):
        return None
    name = os.fspath(path).rstrip("/\\").lower()
    if name.endswith(PSF_SUFFIX):
        return "psf"
    if name.endswith(TIFF_SUFFIXES):
        return "tiff"
    if name.endswith(ZARR_SUFFIX):
        return "zarr"
    return None


def get_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """Return :func:`read_paths` when every path is a TIFF, zarr/OME-Zarr or PSF file, else ``None``.

    Decides from the file names only and never raises.
    """
    try:
        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        if not paths or any(_kind(p) is None for p in paths):
            return None
    except Exception:  # napari may hand us anything; not ours then
        return None
    return read_paths


def read_paths(path: str | Sequence[str]) -> list[LayerData]:
    """Read one path or a list of paths into napari layer-data tuples (one image layer per file or channel)."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        kind = _kind(p)
        if kind == "psf":
            layers.append(_psf_layer(Path(p)))
        elif kind in ("tiff", "zarr"):
            layers.append(_image_layer(Path(os.fspath(p).rstrip("/\\")), kind))
        else:
            raise ValueError(f"expected a .tif, .tiff, .zarr, .ome.zarr or {PSF_SUFFIX} path, got {p!r}")
    return layers


def _layer_name(path: Path) -> str:
    name = path.name
    for suffix in (PSF_SUFFIX, ".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _image_layer(path: Path, kind: str) -> LayerData:
    from napari_lfrecon.io import read_tiff, read_zarr

    if kind == "tiff":
        image = read_tiff(path, lazy=path.stat().st_size > LAZY_TIFF_BYTES)
    else:
        image = read_zarr(path)

    axes = image.axes
    kwargs: dict[str, Any] = {"name": _layer_name(path)}
    channel_axis = axes.index("C") if "C" in axes and image.data.shape[axes.index("C")] > 1 else None
    layer_axes = axes.replace("C", "") if channel_axis is not None else axes
    if channel_axis is not None:
        kwargs["channel_axis"] = channel_axis
    # Only an explicit samples axis is colour; a ZYX stack with 3 columns must not be taken for RGB.
    kwargs["rgb"] = layer_axes.endswith("S")
    kwargs["axis_labels"] = tuple(a.lower() for a in layer_axes if a != "S")

    metadata: dict[str, Any] = dict(image.metadata)
    metadata.update(
        {
            "axes": layer_axes,
            "voxel_size": list(image.voxel_size) if image.voxel_size is not None else None,
            "voxel_size_known": image.voxel_size is not None,
            "source": {**image.file_info, "file_axes_canonical": axes},
        }
    )
    if image.voxel_size is not None:
        size_of = dict(zip(image.spatial_axes, image.voxel_size, strict=True))
        kwargs["scale"] = tuple(size_of.get(a, 1.0) for a in layer_axes if a != "S")
        # the spatial axes are in µm (scale bar, sliders); others (time, views) keep napari's default
        kwargs["units"] = tuple(SPATIAL_UNIT if a in size_of else "pixel" for a in layer_axes if a != "S")
    else:
        metadata["voxel_size_note"] = NO_VOXEL_NOTE
    kwargs["metadata"] = metadata
    return image.data, kwargs, "image"


def _psf_layer(path: Path) -> LayerData:
    """The PSF array as an image layer; the PSF object itself is in ``metadata["psf"]``."""
    from napari_lfrecon.psf.model import PSF

    psf = PSF.load(path)
    dz, dy, dx = psf.voxel_size
    metadata: dict[str, Any] = {"psf": psf, "modality": psf.modality, "optics": dict(psf.optics)}
    kwargs: dict[str, Any] = {"name": _layer_name(path), "rgb": False, "colormap": "magma"}
    if psf.modality == "widefield":
        kwargs["scale"] = (dz, dy, dx)
        kwargs["axis_labels"] = ("z", "y", "x")
    elif psf.modality == "lfm":
        kwargs["scale"] = (1.0, dz, dy, dx)  # (A, D, h, w): kernels live on the volume grid
        kwargs["axis_labels"] = ("view", "z", "y", "x")
    else:
        # XLFM kernels are sensor images: their lateral sampling is the camera pixel in object space.
        pixel, magnification = psf.optics.get("camera_pixel_um"), psf.optics.get("magnification")
        kwargs["axis_labels"] = ("z", "y", "x")
        if pixel and magnification:
            lateral = float(pixel) / float(magnification)
            kwargs["scale"] = (dz, lateral, lateral)
        else:
            metadata["voxel_size_note"] = "PSF optics lack camera_pixel_um/magnification: sensor sampling unknown"
    metadata["voxel_size_known"] = "scale" in kwargs
    metadata["voxel_size"] = list(kwargs["scale"][-3:]) if "scale" in kwargs else None
    if "scale" in kwargs:
        kwargs["units"] = ("pixel",) * (len(kwargs["scale"]) - 3) + (SPATIAL_UNIT,) * 3
    metadata["source"] = {"format": "psf", "path": str(path), "description": psf.describe()}
    kwargs["metadata"] = metadata
    return psf.array, kwargs, "image"
