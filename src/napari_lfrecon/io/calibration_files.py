"""Light-field and XLFM calibration files: napari-LF metadata, the optics a calibration implies, writing results.

Shared by ``lfrecon calibrate`` and the Calibrate widget, so both read and
write the same files. Each writer computes nothing: it writes every file to a
temporary name and renames all of them into place only when all were written
(:func:`write_atomically`), so a failure leaves nothing half-written.

Light-field PSF and the measured pitch: rectification resamples the sensor so
that one lenslet pitch is exactly ``Nnum`` pixels, so the rectified pixel is
``lenslet_pitch / Nnum`` at the lenslet plane whatever the camera pixel and
relay are. The implied LFM PSF therefore uses ``camera_pixel_um =
lenslet_pitch / Nnum``; the measured pitch (in camera pixels) fixes the
*effective* relay magnification ``pitch_px · camera_pixel / lenslet_pitch``,
which is reported next to the nominal one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..jobs.protocol import DamagedFile
from ..psf.model import PSF_FILE_SUFFIX
from .damage import describe, reading

#: Suffix of a light-field calibration file (JSON: grid, optics, notes).
LF_CALIBRATION_SUFFIX = ".lfcal.json"
#: Suffix of an XLFM calibration file (JSON: view centres, view size, notes).
XLFM_CALIBRATION_SUFFIX = ".xlfmcal.json"
#: Default depths of the implied LFM PSF (µm): the GUV data set's 15 slices of 1 µm around focus.
DEFAULT_Z_RANGE_UM = (-7.0, 7.0)
DEFAULT_Z_STEP_UM = 1.0
#: Default volume voxels per lenslet pitch for the implied LFM PSF (the GUV data set's choice).
DEFAULT_SUPERSAMPLE = 3
#: The optics an LFM PSF needs, by the CLI's names (see :func:`implied_lfm_optics`).
LFM_OPTICS_KEYS = (
    "lenslet_pitch_um",
    "lenslet_focal_um",
    "camera_pixel_um",
    "magnification",
    "na",
    "wavelength_um",
    "immersion_index",
)


def write_atomically(writers: list[tuple[Path, Callable[[Path], Any]]]) -> list[Path]:
    """Run each ``writer(temporary_path)`` and, only when all succeeded, rename every file into place.

    On any failure the temporary files are removed and the exception propagates:
    no destination is touched unless every file could be written.
    """
    written: list[tuple[Path, Path]] = []
    try:
        for final, writer in writers:
            final.parent.mkdir(parents=True, exist_ok=True)
            temporary = final.with_name(f".{final.name}.{os.getpid()}.tmp")
            written.append((temporary, final))
            writer(temporary)
    except BaseException:
        for temporary, _ in written:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, final in written:
        os.replace(temporary, final)
    return [final for _, final in written]


#: napari-LF metadata keys → our optics names (and a unit factor to µm where needed).
_METADATA_KEYS = {
    "ulens_pitch": "lenslet_pitch_um",
    "ulens_focal_length": "lenslet_focal_um",
    "pixel_size": "camera_pixel_um",
    "objective_magnification": "magnification",
    "objective_na": "na",
    "center_wavelength": "wavelength_um",
    "medium_index": "immersion_index",
    "supersample": "supersample",
}
#: Most PSF slices a metadata file may declare (a damaged one could ask for billions).
MAX_METADATA_SLICES = 10_000
#: A wavelength above this is taken to be in nanometres (napari-LF writes 593 for 593 nm).
_WAVELENGTH_NM_ABOVE = 20.0


def read_lightfield_metadata(path: str | Path) -> dict[str, Any]:
    """Optics (and frame file names, PSF depths) from a napari-LF style ``metadata.txt`` (JSON).

    Returns our names: ``lenslet_pitch_um``, ``lenslet_focal_um``,
    ``camera_pixel_um``, ``magnification``, ``na``, ``wavelength_um`` (nm
    converted to µm), ``immersion_index``, ``supersample``, ``z_planes_um``
    (from ``num_slices``, ``um_per_slice``, ``z_center``) and, when named,
    ``radiometry_file`` / ``dark_file`` / ``lightfield_file``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no metadata file at {path}")
    with reading(path):
        try:
            document = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DamagedFile(path, f"not a readable JSON metadata file ({describe(exc)})") from exc
        section = document.get("calibrate") if isinstance(document, dict) else None
        if not isinstance(section, dict):
            raise DamagedFile(path, "no 'calibrate' section; expected a napari-LF metadata.txt")
        return _metadata_optics(path, document, section)


def _metadata_optics(path: Path, document: dict[str, Any], section: dict[str, Any]) -> dict[str, Any]:
    optics: dict[str, Any] = {}
    for key, name in _METADATA_KEYS.items():
        value = section.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            optics[name] = float(value)
    if "wavelength_um" in optics and optics["wavelength_um"] > _WAVELENGTH_NM_ABOVE:
        optics["wavelength_um"] /= 1000.0
    if "supersample" in optics:
        optics["supersample"] = int(optics["supersample"])
    slices, step = section.get("num_slices"), section.get("um_per_slice")
    if isinstance(slices, int) and slices > 0 and isinstance(step, (int, float)) and step > 0:
        if slices > MAX_METADATA_SLICES:
            raise DamagedFile(path, f"declares {slices} PSF slices; more than {MAX_METADATA_SLICES} are not read")
        centre = float(section.get("z_center", 0.0) or 0.0)
        optics["z_planes_um"] = [centre + (i - (slices - 1) / 2) * float(step) for i in range(slices)]
    for key, name in (("radiometry_frame_file", "radiometry_file"), ("dark_frame_file", "dark_file")):
        if section.get(key):
            optics[name] = str(section[key])
    rectify = document.get("rectify", {})
    if isinstance(rectify, dict) and rectify.get("input_file"):
        optics["lightfield_file"] = str(rectify["input_file"])
    return optics


def implied_lfm_optics(
    calibration: Any, nnum: int, optics: dict[str, Any], supersample: int = DEFAULT_SUPERSAMPLE
) -> Any:
    """The :class:`~napari_lfrecon.psf.lfm.LFMOptics` of the rectified light field, or ``None`` if optics are missing.

    The rectified pixel is ``lenslet_pitch / nnum`` (the measured pitch was
    resampled to exactly ``nnum`` pixels), so that is the camera pixel the PSF uses.
    """
    from ..psf.lfm import LFMOptics

    if any(not optics.get(k) for k in LFM_OPTICS_KEYS):
        return None
    return LFMOptics(
        magnification=float(optics["magnification"]),
        na=float(optics["na"]),
        immersion_index=float(optics["immersion_index"]),
        wavelength_um=float(optics["wavelength_um"]),
        lenslet_pitch_um=float(optics["lenslet_pitch_um"]),
        lenslet_focal_um=float(optics["lenslet_focal_um"]),
        camera_pixel_um=float(optics["lenslet_pitch_um"]) / int(nnum),
        pixels_per_lenslet=int(nnum),
        supersample=int(supersample),
    )


def lightfield_summary(calibration: Any, nnum: int, optics: dict[str, Any]) -> dict[str, Any]:
    """The JSON summary of a light-field calibration: grid, optics and what was measured vs nominal."""
    summary = calibration.to_dict()
    summary["pixels_per_lenslet"] = int(nnum)
    summary["optics"] = {k: v for k, v in optics.items() if v is not None and not k.endswith("_file")}
    pitch, pixel = optics.get("lenslet_pitch_um"), optics.get("camera_pixel_um")
    comparison: dict[str, Any] = {"pitch_px": {"measured": calibration.pitch_px, "nominal": None}}
    if pitch:
        # The rectified pixel is the lenslet pitch divided by the tile size (what an LFM PSF must use).
        summary["rectified_pixel_um"] = pitch / nnum
    if pitch and pixel:
        relay = float(optics.get("relay_magnification") or 1.0)
        comparison["pitch_px"]["nominal"] = pitch * relay / pixel
        comparison["relay_magnification"] = {"measured": calibration.pitch_px * pixel / pitch, "nominal": relay}
    summary["measured_vs_nominal"] = comparison
    return summary


def lightfield_paths(prefix: Path) -> dict[str, Path]:
    """Where a light-field calibration with output ``prefix`` writes each file."""
    return {
        "calibration": prefix.with_name(prefix.name + LF_CALIBRATION_SUFFIX),
        "rectified": prefix.with_name(prefix.name + "_rectified.tif"),
        "views": prefix.with_name(prefix.name + "_views.tif"),
        "psf": prefix.with_name(prefix.name + PSF_FILE_SUFFIX),
    }


def write_lightfield_calibration(
    prefix: str | Path, summary: dict[str, Any], rectified: np.ndarray, views: np.ndarray, psf: Any = None
) -> list[Path]:
    """Write the calibration JSON, the rectified frame, the views and (when given) the PSF, all or nothing."""
    from .tiff import write_tiff

    paths = lightfield_paths(Path(prefix))
    summary = dict(summary)
    if psf is not None:
        summary["psf"] = str(paths["psf"])
    text = json.dumps(summary, indent=2)
    writers: list[tuple[Path, Callable[[Path], Any]]] = [
        (paths["calibration"], lambda p: p.write_text(text)),
        (paths["rectified"], lambda p: write_tiff(p, rectified, metadata={"lightfield_calibration": summary})),
        (paths["views"], lambda p: write_tiff(p, views, axes="AYX", metadata={"lightfield_calibration": summary})),
    ]
    if psf is not None:
        writers.append((paths["psf"], psf.save))
    return write_atomically(writers)


def xlfm_paths(prefix: Path) -> dict[str, Path]:
    """Where an XLFM calibration with output ``prefix`` writes each file."""
    return {
        "calibration": prefix.with_name(prefix.name + XLFM_CALIBRATION_SUFFIX),
        "views": prefix.with_name(prefix.name + "_views.tif"),
    }


def write_xlfm_calibration(prefix: str | Path, summary: dict[str, Any], views: np.ndarray) -> list[Path]:
    """Write the XLFM calibration JSON and the cropped views ``(A, h, w)``, all or nothing."""
    from .tiff import write_tiff

    paths = xlfm_paths(Path(prefix))
    text = json.dumps(summary, indent=2)
    return write_atomically(
        [
            (paths["calibration"], lambda p: p.write_text(text)),
            (paths["views"], lambda p: write_tiff(p, views, axes="AYX", metadata={"xlfm_calibration": summary})),
        ]
    )


def z_planes(z_range: Any, z_step: float | None, fallback: Any = None) -> np.ndarray:
    """PSF depths from ``--z-range``/``--z-step`` (inclusive ends), else ``fallback``, else the GUV default."""
    if z_range is None and z_step is None and fallback is not None:
        return np.asarray(fallback, dtype=np.float64)
    low, high = z_range if z_range is not None else DEFAULT_Z_RANGE_UM
    step = DEFAULT_Z_STEP_UM if z_step is None else float(z_step)
    if step <= 0 or high < low:
        raise ValueError(f"expected --z-range LOW HIGH with LOW ≤ HIGH and a positive --z-step; got {z_range} {step}")
    count = int(math.floor((high - low) / step + 1e-9)) + 1
    return low + step * np.arange(count, dtype=np.float64)


def read_xlfm_optics(path: str | Path) -> Any:
    """Nominal :class:`~napari_lfrecon.psf.xlfm.XLFMOptics` from an XLFM PSF file or a JSON file of its fields."""
    from ..psf.calibrate_xlfm import xlfm_optics_from_dict
    from ..psf.model import PSF

    path = Path(path)
    if path.name.endswith(".safetensors"):
        psf = PSF.load(path)
        if psf.modality != "xlfm":
            raise ValueError(f"{path} is a {psf.modality} PSF; expected an XLFM PSF for --optics")
        return xlfm_optics_from_dict(psf.optics, psf.arrays.get("centres"))
    if not path.is_file():
        raise FileNotFoundError(f"no XLFM optics file at {path}")
    with reading(path):
        try:
            values = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DamagedFile(path, f"neither an XLFM PSF file nor a JSON optics file ({describe(exc)})") from exc
        if not isinstance(values, dict):
            raise DamagedFile(path, f"the XLFM optics must be a JSON object, got {type(values).__name__}")
        return xlfm_optics_from_dict(values)
