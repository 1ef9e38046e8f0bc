"""The PSF object: an array plus the optics that made it, saved without pickle.

File format: one ``safetensors`` file. Tensors: ``array`` (float32, or whatever
dtype was given), ``zernike`` (float64, waves, ANSI/OSA order), ``z_planes_um``
(float64) and, for modalities that have them, extra named arrays (e.g. XLFM
lenslet ``centres``). The safetensors metadata holds one JSON document under
the key ``napari_lfrecon.psf`` with the modality, voxel size and optics.
Floats in JSON are written with ``repr`` precision, so a save/load round trip
is exact.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..jobs.protocol import DamagedFile

Modality = Literal["widefield", "lfm", "xlfm"]
MODALITIES: tuple[str, ...] = ("widefield", "lfm", "xlfm")
PSF_FILE_SUFFIX = ".psf.safetensors"
_META_KEY = "napari_lfrecon.psf"
_FORMAT_VERSION = 1

#: Expected dimensionality of ``PSF.array`` per modality, and what the axes are.
ARRAY_AXES: dict[str, str] = {
    "widefield": "(Z, Y, X) on the volume grid",
    "lfm": "(A, D, h, w): one lateral kernel per angular view and depth, on the volume grid",
    "xlfm": "(D, H, W): the sensor image of an on-axis point per depth",
}
_ARRAY_NDIM = {"widefield": 3, "lfm": 4, "xlfm": 3}


def register_psf_layout(modality: str, ndim: int, axes: str) -> None:
    """Let PSF objects of a new ``modality`` hold ``ndim``-dimensional arrays laid out as ``axes``.

    Called by :func:`napari_lfrecon.modalities.register` for modalities whose PSF
    layout this module does not know yet (``psf`` must not import the modality
    registry, which sits above it). Refuses to change a known layout.
    """
    known = _ARRAY_NDIM.get(modality)
    if known is not None and known != int(ndim):
        raise ValueError(f"the {modality} PSF layout is already {ARRAY_AXES[modality]} ({known} dimensions)")
    _ARRAY_NDIM[modality] = int(ndim)
    ARRAY_AXES.setdefault(modality, axes)


def psf_modalities() -> tuple[str, ...]:
    """Every modality a PSF object may have (the built-in ones plus registered layouts)."""
    return tuple(_ARRAY_NDIM)


@dataclass(eq=False)
class PSF:
    """A point-spread function with its optics metadata.

    Attributes
    ----------
    array:
        The PSF itself; its axes depend on ``modality`` (see ``ARRAY_AXES``).
        The centre of every lateral kernel is at index ``shape // 2``.
    modality:
        ``"widefield"``, ``"lfm"`` or ``"xlfm"``.
    voxel_size:
        ``(dz, dy, dx)`` in micrometres of the *volume* grid this PSF maps from
        (object space). For widefield it is also the PSF array's own sampling.
    optics:
        Plain JSON-able values: ``na``, ``wavelength_um``, ``immersion_index``,
        ``magnification``, ``camera_pixel_um`` and modality-specific fields
        (LFM: ``lenslet_pitch_um``, ``lenslet_focal_um``, ``pixels_per_lenslet``,
        ``supersample``, ``views_shape``; XLFM: ``view_size``, ...).
    zernike:
        Zernike coefficients in waves, ANSI/OSA order (index j = 0 is piston).
    z_planes_um:
        Axial positions of the PSF planes (object space, µm, 0 = focus).
    arrays:
        Extra named arrays (e.g. ``"centres"``: XLFM lenslet centres ``(N, 2)``
        in sensor pixels; ``"view_mask"``: LFM angular views in use).
    """

    array: np.ndarray
    modality: str
    voxel_size: tuple[float, float, float]
    optics: dict[str, Any] = field(default_factory=dict)
    zernike: np.ndarray = field(default_factory=lambda: np.zeros(0))
    z_planes_um: np.ndarray = field(default_factory=lambda: np.zeros(0))
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.modality not in _ARRAY_NDIM:
            raise ValueError(f"PSF modality must be one of {psf_modalities()}, got {self.modality!r}")
        self.array = np.asarray(self.array)
        expected = _ARRAY_NDIM[self.modality]
        if self.array.ndim != expected:
            raise ValueError(
                f"a {self.modality} PSF array must be {ARRAY_AXES[self.modality]} "
                f"({expected} dimensions), got shape {self.array.shape}"
            )
        if not np.all(np.isfinite(self.array)):
            raise ValueError("the PSF array contains NaN or Inf values")
        self.voxel_size = tuple(float(v) for v in self.voxel_size)  # type: ignore[assignment]
        if len(self.voxel_size) != 3 or min(self.voxel_size) <= 0:
            raise ValueError(f"PSF voxel_size must be three positive numbers (dz, dy, dx), got {self.voxel_size}")
        self.zernike = np.asarray(self.zernike, dtype=np.float64).ravel()
        self.z_planes_um = np.asarray(self.z_planes_um, dtype=np.float64).ravel()
        self.arrays = {str(k): np.asarray(v) for k, v in self.arrays.items()}

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write this PSF to ``path`` (one safetensors file, no pickle); return the path."""
        from safetensors.numpy import save_file

        path = Path(path)
        tensors = {
            "array": np.ascontiguousarray(self.array),
            "zernike": np.ascontiguousarray(self.zernike),
            "z_planes_um": np.ascontiguousarray(self.z_planes_um),
        }
        for name, value in self.arrays.items():
            tensors[f"arrays.{name}"] = np.ascontiguousarray(value)
        header = {
            "format_version": _FORMAT_VERSION,
            "modality": self.modality,
            "voxel_size": list(self.voxel_size),
            "optics": self.optics,
        }
        save_file(tensors, str(path), metadata={_META_KEY: json.dumps(header)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> PSF:
        """Read a PSF written by :meth:`save`.

        Raises :class:`~napari_lfrecon.jobs.DamagedFile` (a ``ValueError``) for
        another kind of file or a damaged one: a header that is not a JSON
        object, missing ``array`` / ``zernike`` / ``z_planes_um`` tensors, wrong
        dtypes or shapes, truncated tensors.
        """
        from safetensors import safe_open
        from safetensors.numpy import load_file

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no PSF file at {path}")
        try:
            with safe_open(str(path), framework="numpy") as handle:
                metadata = handle.metadata() or {}
        except Exception as exc:  # safetensors raises its own error types
            raise DamagedFile(path, f"not a napari-lfrecon PSF file ({_describe(exc)})") from exc
        if _META_KEY not in metadata:
            raise DamagedFile(path, f"a safetensors file but not a napari-lfrecon PSF (no '{_META_KEY}' header)")
        try:
            header = json.loads(metadata[_META_KEY])
        except (json.JSONDecodeError, TypeError) as exc:
            raise DamagedFile(path, f"the PSF header is not JSON ({_describe(exc)})") from exc
        if not isinstance(header, dict):
            raise DamagedFile(path, f"the PSF header must be a JSON object, got {type(header).__name__}")
        try:
            tensors = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for truncated or mangled tensors
            raise DamagedFile(path, f"its tensors cannot be read ({_describe(exc)})") from exc
        fields = _checked_fields(path, header, tensors)
        try:
            return cls(**fields)
        except (ValueError, TypeError) as exc:
            raise DamagedFile(path, str(exc)) from exc

    # ---------------------------------------------------------------- helpers
    def normalised(self) -> PSF:
        """A copy whose array is float32 and non-negative (per-modality normalisation is the operator's job)."""
        return PSF(
            array=np.clip(self.array.astype(np.float32), 0, None),
            modality=self.modality,
            voxel_size=self.voxel_size,
            optics=dict(self.optics),
            zernike=self.zernike.copy(),
            z_planes_um=self.z_planes_um.copy(),
            arrays={k: v.copy() for k, v in self.arrays.items()},
        )

    def describe(self) -> str:
        """One line naming the modality, shape, voxel size and key optics."""
        na = self.optics.get("na")
        wl = self.optics.get("wavelength_um")
        optics = f", NA {na}, λ {wl} µm" if na is not None and wl is not None else ""
        dz, dy, dx = self.voxel_size
        return f"{self.modality} PSF {self.array.shape}, voxel {dz:g}×{dy:g}×{dx:g} µm{optics}"


#: Tensors every PSF file holds, and the dimensionality each must have (``array``'s depends on the modality).
_REQUIRED_TENSORS = {"array": None, "zernike": 1, "z_planes_um": 1}


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond any float
        return False


def _checked_fields(path: Path, header: dict[str, Any], tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    """The :class:`PSF` fields of a loaded file, or :class:`DamagedFile` saying which one is wrong."""
    for name, ndim in _REQUIRED_TENSORS.items():
        if name not in tensors:
            raise DamagedFile(path, f"the PSF file has no '{name}' tensor")
        value = tensors[name]
        if value.dtype.kind not in "fiu":
            raise DamagedFile(path, f"the PSF '{name}' tensor must hold real numbers, got dtype {value.dtype}")
        if ndim is not None and value.ndim != ndim:
            raise DamagedFile(path, f"the PSF '{name}' tensor must be one-dimensional, got shape {value.shape}")
    modality = header.get("modality")
    if not isinstance(modality, str):
        raise DamagedFile(path, f"the PSF header's 'modality' must be one of {psf_modalities()}, got {modality!r}")
    voxel_size = header.get("voxel_size")
    if not isinstance(voxel_size, list) or len(voxel_size) != 3 or not all(_finite_number(v) for v in voxel_size):
        expected = "three finite numbers (dz, dy, dx)"
        raise DamagedFile(path, f"the PSF header's 'voxel_size' must be {expected}, got {voxel_size!r}")
    optics = header.get("optics", {})
    if not isinstance(optics, dict):
        raise DamagedFile(path, f"the PSF header's 'optics' must be a JSON object, got {type(optics).__name__}")
    return {
        "array": tensors["array"],
        "modality": modality,
        "voxel_size": tuple(voxel_size),
        "optics": optics,
        "zernike": tensors["zernike"],
        "z_planes_um": tensors["z_planes_um"],
        "arrays": {k.removeprefix("arrays."): v for k, v in tensors.items() if k.startswith("arrays.")},
    }
