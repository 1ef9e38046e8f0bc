"""napari writer contribution: one image layer to TIFF (ImageJ) or OME-Zarr, voxel size kept.

Leaf module for the npe2 manifest: importing it imports neither Qt nor napari.
The layer's ``scale`` becomes the voxel size unless the layer says its voxel
size is unknown (or has napari's default scale of all ones without saying it
is known): writing "1 µm" for an uncalibrated image would invent a size.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ._reader import READER_KEYS

TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIX = ".zarr"


def write_single_image(path: str, data: Any, meta: Mapping[str, Any]) -> list[str]:
    """Write one image layer (``data`` and its attributes ``meta``) to ``path``; return ``[path]``.

    ``.tif``/``.tiff`` give an ImageJ hyperstack, ``.zarr``/``.ome.zarr`` an
    OME-Zarr. The JSON-able entries of ``meta["metadata"]`` (e.g. a run's
    engine and parameters) are stored with the image; objects such as a PSF are
    left out. ``data`` is not modified.
    """
    from napari_lfrecon.io import write_ome_zarr, write_tiff
    from napari_lfrecon.io.image import check_axes, default_axes, to_jsonable

    name = os.fspath(path).rstrip("/\\")
    lower = name.lower()
    if not lower.endswith((*TIFF_SUFFIXES, ZARR_SUFFIX)):
        raise ValueError(f"expected a path ending in .tif, .tiff, .zarr or .ome.zarr, got {path!r}")
    if meta.get("multiscale") and isinstance(data, (list, tuple)):
        data = data[0]  # full resolution level

    layer_meta = dict(meta.get("metadata") or {})
    ndim = len(data.shape)
    rgb = bool(meta.get("rgb", False))
    axes = layer_meta.get("axes")
    try:
        axes = check_axes(axes, ndim) if isinstance(axes, str) else None
    except ValueError:
        axes = None  # stale or foreign "axes" entry: fall back to the defaults below
    if axes is None:
        axes = default_axes(ndim - 1) + "S" if rgb else default_axes(ndim)

    voxel_size = _voxel_size_from_layer(meta.get("scale"), layer_meta, axes)
    user_meta = to_jsonable({k: v for k, v in layer_meta.items() if k not in READER_KEYS}, strict=False)
    if meta.get("name"):
        user_meta.setdefault("layer_name", str(meta["name"]))

    if lower.endswith(ZARR_SUFFIX):
        write_ome_zarr(name, data, voxel_size, user_meta, axes=axes)
    else:
        write_tiff(name, data, voxel_size, user_meta, axes=axes)
    return [name]


def _voxel_size_from_layer(scale: Any, layer_meta: Mapping[str, Any], axes: str) -> tuple[float, ...] | None:
    """The spatial entries of the layer's ``scale`` (µm), or ``None`` when the size is unknown."""
    from napari_lfrecon.io.image import spatial_axes

    if scale is None or layer_meta.get("voxel_size_known") is False:
        return None
    layer_axes = axes.replace("S", "")  # napari's scale has no entry for the colour samples
    scale = [float(s) for s in scale]
    if len(scale) != len(layer_axes):
        return None
    if all(s == 1.0 for s in scale) and layer_meta.get("voxel_size_known") is not True:
        return None  # napari's default scale: nobody set a voxel size
    size_of = dict(zip(layer_axes, scale, strict=True))
    return tuple(size_of[a] for a in spatial_axes(axes))
