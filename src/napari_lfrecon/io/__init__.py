"""Image files that keep their voxel size: TIFF (ImageJ/OME) and zarr/OME-Zarr.

``read_image`` / ``write_image`` pick the format from the path; every reader
returns an :class:`ImageData` whose ``voxel_size`` is ``None`` when the file
does not state one (never guessed). No Qt or napari imports here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .image import ImageData, default_axes, to_jsonable
from .tiff import read_tiff, write_tiff
from .zarr_io import read_zarr, write_ome_zarr

TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIXES = (".zarr",)  # ".ome.zarr" ends in ".zarr" too


def read_image(path: str | Path, *, lazy: bool = False) -> ImageData:
    """Read a TIFF (``.tif``/``.tiff``) or zarr (``.zarr``/``.ome.zarr``) image; zarr is always lazy."""
    suffix = Path(path).suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return read_tiff(path, lazy=lazy)
    if suffix in ZARR_SUFFIXES:
        return read_zarr(path)
    raise ValueError(f"expected a .tif, .tiff, .zarr or .ome.zarr path, got {str(path)!r}")


def write_image(
    path: str | Path,
    data: Any,
    voxel_size: Sequence[float] | None = None,
    metadata: Mapping[str, Any] | None = None,
    *,
    axes: str | None = None,
) -> Path:
    """Write ``data`` to a TIFF or OME-Zarr chosen by the suffix of ``path``; return the path."""
    suffix = Path(path).suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return write_tiff(path, data, voxel_size, metadata, axes=axes)
    if suffix in ZARR_SUFFIXES:
        return write_ome_zarr(path, data, voxel_size, metadata, axes=axes)
    raise ValueError(f"expected a .tif, .tiff, .zarr or .ome.zarr path, got {str(path)!r}")


__all__ = [
    "ImageData",
    "default_axes",
    "read_image",
    "read_tiff",
    "read_zarr",
    "to_jsonable",
    "write_image",
    "write_ome_zarr",
    "write_tiff",
]
