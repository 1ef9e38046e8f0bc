"""The in-memory result of reading an image file, and the helpers every reader/writer shares.

Axis letters follow tifffile / OME: ``T`` time, ``C`` channel, ``Z`` ``Y`` ``X``
space, ``S`` samples (RGB). Readers return axes in the canonical order
``T C Z Y X S`` (any other letters first, in file order), so a volume is always
``ZYX`` and a multi-channel volume ``CZYX`` whatever order the file used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Letters of the spatial axes, in the order voxel sizes are given.
SPATIAL_AXES = "ZYX"
#: Canonical order of the named axes; unknown letters go first.
CANONICAL_ORDER = "TCZYXS"
#: The attribute / JSON key under which this package stores its own metadata in files.
METADATA_KEY = "napari_lfrecon"
#: Version of the JSON document stored under ``METADATA_KEY``.
FORMAT_VERSION = 1

# Length units a file may name, as micrometres per unit. Keys are lower case.
_UM_PER_UNIT: dict[str, float] = {
    "micrometer": 1.0,
    "micrometre": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "µm": 1.0,  # micro sign U+00B5
    "μm": 1.0,  # Greek mu U+03BC
    "um": 1.0,
    "u": 1.0,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "nm": 1e-3,
    "angstrom": 1e-4,
    "å": 1e-4,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "mm": 1e3,
    "centimeter": 1e4,
    "centimetre": 1e4,
    "cm": 1e4,
    "meter": 1e6,
    "metre": 1e6,
    "m": 1e6,
}


@dataclass
class ImageData:
    """An image read from disk with what the file says about its geometry.

    Attributes
    ----------
    data:
        The pixels: a numpy array, a read-only ``numpy.memmap`` or a dask array
        (``lazy`` is True for the last two). Axes as in ``axes``.
    voxel_size:
        Micrometres per pixel along the spatial axes present in ``axes``, in
        ``Z, Y, X`` order (``(dz, dy, dx)`` for a volume, ``(dy, dx)`` for a 2D
        image); ``None`` when the file does not state all of them. Never guessed.
    axes:
        One letter per dimension of ``data``, e.g. ``"ZYX"``, ``"CZYX"``, ``"YX"``.
    metadata:
        The JSON document this package stored with the image (e.g. the run's
        engine and parameters), exactly as written; empty for foreign files.
    file_info:
        Everything else the file says that may matter (format, where the voxel
        size came from, ImageJ/OME keys, vendor hints such as a bounding box).
    lazy:
        True when ``data`` is memory-mapped or a dask array rather than loaded.
    """

    data: Any
    voxel_size: tuple[float, ...] | None
    axes: str
    metadata: dict[str, Any] = field(default_factory=dict)
    file_info: dict[str, Any] = field(default_factory=dict)
    lazy: bool = False

    def __post_init__(self) -> None:
        if len(self.axes) != len(self.data.shape):
            raise ValueError(f"axes {self.axes!r} must have one letter per dimension of data shape {self.data.shape}")
        if self.voxel_size is not None:
            self.voxel_size = check_voxel_size(self.voxel_size, self.axes)

    @property
    def spatial_axes(self) -> str:
        """The spatial axis letters present, in ``Z, Y, X`` order."""
        return spatial_axes(self.axes)

    @property
    def voxel_size_known(self) -> bool:
        """True when the file stated the voxel size."""
        return self.voxel_size is not None


def spatial_axes(axes: str) -> str:
    """The letters of ``axes`` that are spatial (``Z``, ``Y``, ``X``), in that order."""
    return "".join(a for a in SPATIAL_AXES if a in axes)


def default_axes(ndim: int) -> str:
    """Axis letters assumed for an array of ``ndim`` dimensions when nobody says otherwise.

    2 → ``YX``, 3 → ``ZYX``, 4 → ``CZYX`` (the package's channel-first volumes),
    5 → ``TCZYX``.
    """
    table = {2: "YX", 3: "ZYX", 4: "CZYX", 5: "TCZYX"}
    if ndim not in table:
        raise ValueError(f"expected an image with 2 to 5 dimensions (YX … TCZYX), got {ndim}; pass axes explicitly")
    return table[ndim]


def check_axes(axes: str | None, ndim: int) -> str:
    """Validate ``axes`` for an array of ``ndim`` dimensions (``None`` → :func:`default_axes`)."""
    if axes is None:
        return default_axes(ndim)
    axes = axes.upper()
    if len(axes) != ndim:
        raise ValueError(f"axes {axes!r} must have one letter per dimension ({ndim})")
    if len(set(axes)) != len(axes):
        raise ValueError(f"axes {axes!r} repeat a letter")
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"axes {axes!r} must contain Y and X")
    return axes


def check_voxel_size(voxel_size: Sequence[float], axes: str) -> tuple[float, ...]:
    """Validate a voxel size against ``axes``: one positive finite number (µm) per spatial axis."""
    spatial = spatial_axes(axes)
    try:
        values = tuple(float(v) for v in voxel_size)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"voxel_size must be numbers in micrometres, got {voxel_size!r}") from exc
    if len(values) != len(spatial):
        raise ValueError(
            f"voxel_size must have one value per spatial axis {tuple(spatial)} of axes {axes!r}, got {values}"
        )
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"voxel_size must be positive finite micrometres, got {values}")
    return values


def um_per_unit(unit: str | None) -> float | None:
    """Micrometres in one ``unit`` (e.g. ``"nm"`` → 0.001); ``None`` when the unit is absent or not a length."""
    if unit is None:
        return None
    key = str(unit).strip().replace("\\u00B5", "µ").replace("\\u00b5", "µ").lower()
    return _UM_PER_UNIT.get(key)


def canonical_order(axes: str) -> tuple[str, list[int]]:
    """The canonical axis string for ``axes`` and the permutation that takes data there."""
    others = [i for i, a in enumerate(axes) if a not in CANONICAL_ORDER]
    named = sorted(
        (i for i, a in enumerate(axes) if a in CANONICAL_ORDER), key=lambda i: CANONICAL_ORDER.index(axes[i])
    )
    perm = others + named
    return "".join(axes[i] for i in perm), perm


def to_jsonable(metadata: Mapping[str, Any] | None, *, strict: bool = True, max_list: int = 10_000) -> dict[str, Any]:
    """A JSON-serialisable copy of ``metadata``.

    numpy scalars become Python numbers and small numpy arrays lists (at most
    ``max_list`` elements); tuples become lists. With ``strict`` a value that
    cannot be stored raises ``ValueError`` naming its key; otherwise it is
    dropped (what a napari writer wants for layer metadata holding objects).
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be a mapping of str to JSON-able values, got {type(metadata).__name__}")
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        try:
            out[str(key)] = _jsonable_value(value, max_list, f"metadata[{key!r}]")
        except ValueError:
            if strict:
                raise
    return out


def _jsonable_value(value: Any, max_list: int, where: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.size > max_list or value.dtype.kind not in "biuf":
            raise ValueError(f"{where} is an array of {value.size} {value.dtype} values: too large or not numeric")
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable_value(v, max_list, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable_value(v, max_list, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{where} of type {type(value).__name__} cannot be stored as JSON")


def dumps(document: Mapping[str, Any]) -> str:
    """Serialise a metadata document; floats keep ``repr`` precision so round trips are exact."""
    return json.dumps(document, ensure_ascii=False, allow_nan=True)


def document_voxel(document: Mapping[str, Any] | None) -> dict[str, float]:
    """The voxel size stored in this package's JSON document, as ``{axis letter: µm}`` (empty when absent)."""
    if not document or document.get("voxel_size_um") is None or not isinstance(document.get("axes"), str):
        return {}
    spatial = spatial_axes(document["axes"])
    values = document["voxel_size_um"]
    if not isinstance(values, list) or len(values) != len(spatial):
        return {}
    return {a: float(v) for a, v in zip(spatial, values, strict=True)}
