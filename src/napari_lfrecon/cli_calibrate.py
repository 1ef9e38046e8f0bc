"""``lfrecon calibrate bead|lightfield|xlfm``: the calibration sub-commands (no Qt, no napari).

Kept out of :mod:`.cli` so that file only gains a parser hook and a dispatch
entry. Each command computes everything first and writes its files only at
the end, each to a temporary name renamed into place once all are written
(:func:`write_atomically`), so a bad input leaves nothing half-written; with
``--json`` the last stdout line is one JSON object.

The helpers that turn a calibration into files and the optics it implies
(:func:`read_lightfield_metadata`, :func:`implied_lfm_optics`,
:func:`lightfield_summary`, :func:`write_lightfield_calibration`,
:func:`write_xlfm_calibration`) are shared with the Calibrate widget, so the
widget and the command write the same files.

Light-field PSF and the measured pitch: rectification resamples the sensor so
that one lenslet pitch is exactly ``Nnum`` pixels, so the rectified pixel is
``lenslet_pitch / Nnum`` at the lenslet plane whatever the camera pixel and
relay are. The implied LFM PSF therefore uses ``camera_pixel_um =
lenslet_pitch / Nnum``; the measured pitch (in camera pixels) fixes the
*effective* relay magnification ``pitch_px · camera_pixel / lenslet_pitch``,
which is reported next to the nominal one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .psf.model import PSF_FILE_SUFFIX

#: Suffix of a light-field calibration file (JSON: grid, optics, notes).
LF_CALIBRATION_SUFFIX = ".lfcal.json"
#: Suffix of an XLFM calibration file (JSON: view centres, view size, notes).
XLFM_CALIBRATION_SUFFIX = ".xlfmcal.json"
#: Relative pitch disagreement above which the optics are taken to contradict the measurement (an error).
PITCH_CONTRADICTION = 0.10
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


def add_calibrate_parser(sub: Any) -> None:
    """Add ``calibrate bead``, ``calibrate lightfield`` and ``calibrate xlfm`` to the ``lfrecon`` sub-parsers."""
    calibrate = sub.add_parser("calibrate", help="calibrate a PSF from a bead stack or a light-field lenslet grid")
    kinds = calibrate.add_subparsers(dest="calibrate_kind", required=True)

    bead = kinds.add_parser("bead", help="fit position, flux, background and Zernike aberrations to a bead stack")
    bead.add_argument("stack", help="bead stack (TIFF, Z Y X)")
    bead.add_argument("--na", type=float, required=True)
    bead.add_argument("--wavelength", type=float, required=True, help="emission wavelength (µm)")
    bead.add_argument("--immersion-index", type=float, required=True)
    bead.add_argument(
        "--voxel-size", nargs=3, type=float, metavar=("DZ", "DY", "DX"), help="object-space µm (default: the file's)"
    )
    bead.add_argument("--out", help=f"PSF file to write (default: STACK stem + _bead{PSF_FILE_SUFFIX})")
    bead.add_argument("--modes", type=int, nargs="+", help="ANSI Zernike modes to fit (default 3 and 5..14)")
    bead.add_argument("--fit-na", action="store_true", help="also fit the numerical aperture")
    bead.add_argument("--loss", choices=("poisson", "least-squares"), default="poisson")
    bead.add_argument("--iterations", type=int, default=40, help="L-BFGS outer steps per fit")
    bead.add_argument("--half-xy", type=int, help="lateral half-width of the fitted crop (px; default from the optics)")
    bead.add_argument("--measured", action="store_true", help="save the bead itself as the PSF (no model fit)")
    bead.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")

    lf = kinds.add_parser("lightfield", help="measure the lenslet grid, rectify and split a raw light field into views")
    lf.add_argument("lightfield", help="raw light-field frame (TIFF, Y X)")
    lf.add_argument("--radiometry", required=True, help="radiometry (white) frame (TIFF)")
    lf.add_argument("--dark", help="dark frame (TIFF)")
    lf.add_argument("--lenslet-pitch", type=float, help="µm")
    lf.add_argument("--lenslet-focal-length", type=float, help="µm")
    lf.add_argument("--camera-pixel", type=float, help="µm")
    lf.add_argument("--relay-magnification", type=float, default=1.0, help="relay between lenslets and camera")
    lf.add_argument("--magnification", type=float, help="objective magnification")
    lf.add_argument("--na", type=float)
    lf.add_argument("--wavelength", type=float, help="µm")
    lf.add_argument("--medium-index", type=float)
    lf.add_argument("--pixels-per-lenslet", type=int, help="odd rectified tile size (default: nearest odd to pitch)")
    lf.add_argument(
        "--metadata",
        help="napari-LF style metadata.txt (JSON) giving the optics; explicit flags take precedence",
    )
    lf.add_argument(
        "--z-range",
        nargs=2,
        type=float,
        metavar=("UM", "UM"),
        help=f"depths of the implied LFM PSF (default: the metadata's slices, else {DEFAULT_Z_RANGE_UM})",
    )
    lf.add_argument("--z-step", type=float, help=f"µm between PSF depths (default {DEFAULT_Z_STEP_UM})")
    lf.add_argument(
        "--supersample", type=int, help=f"odd volume voxels per lenslet for the PSF (default {DEFAULT_SUPERSAMPLE})"
    )
    lf.add_argument("--no-psf", action="store_true", help="do not compute the implied LFM PSF")
    lf.add_argument(
        "--out",
        help=f"output prefix (default: LF stem); writes PREFIX{LF_CALIBRATION_SUFFIX}, "
        f"PREFIX_rectified.tif, PREFIX_views.tif and, with complete optics, PREFIX{PSF_FILE_SUFFIX}",
    )
    lf.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")

    xl = kinds.add_parser("xlfm", help="find the XLFM view centres in a white or bead frame and crop the views")
    xl.add_argument("image", help="white (uniform) or bead XLFM frame (TIFF, Y X)")
    xl.add_argument("--dark", help="dark frame (TIFF)")
    xl.add_argument(
        "--optics",
        help=f"nominal optics: an XLFM PSF file ({PSF_FILE_SUFFIX}) or a JSON file with XLFMOptics fields; "
        "orders the centres like its lenslets and reports mismatches",
    )
    xl.add_argument(
        "--view-size", nargs=2, type=int, metavar=("H", "W"), help="view window (default: optics' or largest)"
    )
    xl.add_argument(
        "--out",
        help=f"output prefix (default: IMAGE stem); writes PREFIX{XLFM_CALIBRATION_SUFFIX} and PREFIX_views.tif",
    )
    xl.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Dispatch ``lfrecon calibrate KIND``."""
    if args.calibrate_kind == "bead":
        return _calibrate_bead(args)
    if args.calibrate_kind == "xlfm":
        return _calibrate_xlfm(args)
    return _calibrate_lightfield(args)


def _read(path: str) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    from .io.tiff import read_tiff

    image = read_tiff(Path(path))
    return np.asarray(image.data), image.voxel_size


def _calibrate_bead(args: argparse.Namespace) -> int:
    from .psf.calibrate_bead import DEFAULT_MODES, calibrate_bead_stream

    stack, file_voxel = _read(args.stack)
    voxel = tuple(args.voxel_size) if args.voxel_size else file_voxel
    if voxel is None:
        raise ValueError(f"{args.stack} states no voxel size: pass --voxel-size DZ DY DX (µm)")
    if stack.ndim != 3:
        raise ValueError(f"{args.stack} is {stack.ndim}-D with shape {stack.shape}; expected a (Z, Y, X) bead stack")
    out = Path(args.out) if args.out else Path(args.stack).with_name(Path(args.stack).stem + "_bead" + PSF_FILE_SUFFIX)
    if not out.name.endswith(PSF_FILE_SUFFIX):
        out = out.with_name(out.name.removesuffix(out.suffix) + PSF_FILE_SUFFIX)
    optics = {"na": args.na, "wavelength_um": args.wavelength, "immersion_index": args.immersion_index}
    if args.measured:
        from .psf.measured import measured_psf

        psf = measured_psf(stack, voxel, optics=optics)
        psf.save(out)
        summary: dict[str, Any] = {"psf": str(out), "shape": list(psf.array.shape), "voxel_size": list(psf.voxel_size)}
    else:
        from .cli import ProgressBar

        bar = ProgressBar()
        calibration = None
        for update in calibrate_bead_stream(
            stack,
            voxel,
            args.na,
            args.wavelength,
            args.immersion_index,
            modes=tuple(args.modes) if args.modes else DEFAULT_MODES,
            fit_na=args.fit_na,
            loss=args.loss,
            iterations=args.iterations,
            half_xy=args.half_xy,
        ):
            if update.kind == "progress":
                bar(update.fraction, update.message)
            elif update.kind == "result":
                calibration = update.data
        assert calibration is not None
        summary = calibration.summary()
        calibration.psf.optics["bead_fit"] = summary
        calibration.psf.save(out)
        summary["psf"] = str(out)
        print(f"χ² fit {summary['chi2_fit']:.4g} vs unaberrated {summary['chi2_unaberrated']:.4g}")
        for j, value in summary["zernike_waves"].items():
            print(f"  Z{j:>2} {summary['zernike_names'][j]:<32} {value:+.4f} waves")
    print(f"wrote {out}")
    if args.json:
        print(json.dumps(summary))
    return 0


# --------------------------------------------------------------------------- shared helpers
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
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable JSON metadata file ({exc})") from exc
    section = document.get("calibrate") if isinstance(document, dict) else None
    if not isinstance(section, dict):
        raise ValueError(f"{path} has no 'calibrate' section; expected a napari-LF metadata.txt")
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
        centre = float(section.get("z_center", 0.0) or 0.0)
        optics["z_planes_um"] = [centre + (i - (slices - 1) / 2) * float(step) for i in range(slices)]
    for key, name in (("radiometry_frame_file", "radiometry_file"), ("dark_frame_file", "dark_file")):
        if section.get(key):
            optics[name] = str(section[key])
    rectify = document.get("rectify", {})
    if isinstance(rectify, dict) and rectify.get("input_file"):
        optics["lightfield_file"] = str(rectify["input_file"])
    return optics


def check_pitch(calibration: Any, optics: dict[str, Any]) -> float | None:
    """Nominal pitch (px) from the optics; ``ValueError`` when it contradicts the measured pitch by > 10 %.

    Smaller disagreements are only noted by the calibration (the measured pitch is used).
    """
    from .psf.calibrate_lightfield import nominal_pitch_px

    pitch, pixel = optics.get("lenslet_pitch_um"), optics.get("camera_pixel_um")
    if not pitch or not pixel:
        return None
    nominal = nominal_pitch_px(pitch, pixel, float(optics.get("relay_magnification") or 1.0))
    ratio = calibration.pitch_px / nominal
    if abs(ratio - 1) > PITCH_CONTRADICTION:
        raise ValueError(
            f"the optics contradict the measured lenslet grid: measured pitch {calibration.pitch_px:.3f} px, "
            f"expected {nominal:.3f} px from lenslet pitch {pitch:g} µm / ({pixel:g} µm camera pixel ÷ relay "
            f"{float(optics.get('relay_magnification') or 1.0):g}); check the lenslet pitch, camera pixel and "
            "relay magnification"
        )
    return nominal


def implied_lfm_optics(
    calibration: Any, nnum: int, optics: dict[str, Any], supersample: int = DEFAULT_SUPERSAMPLE
) -> Any:
    """The :class:`~napari_lfrecon.psf.lfm.LFMOptics` of the rectified light field, or ``None`` if optics are missing.

    The rectified pixel is ``lenslet_pitch / nnum`` (the measured pitch was
    resampled to exactly ``nnum`` pixels), so that is the camera pixel the PSF uses.
    """
    from .psf.lfm import LFMOptics

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
    from .io.tiff import write_tiff

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
    from .io.tiff import write_tiff

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


# --------------------------------------------------------------------------- light field
def _calibrate_lightfield(args: argparse.Namespace) -> int:
    from .physics.lightfield import raw_to_views
    from .psf.calibrate_lightfield import calibrate_lightfield, rectify

    raw, _ = _read(args.lightfield)
    radiometry, _ = _read(args.radiometry)
    dark = _read(args.dark)[0] if args.dark else None
    if raw.ndim != 2:
        raise ValueError(f"{args.lightfield} has shape {raw.shape}; expected one raw light-field frame (Y, X)")
    if radiometry.shape != raw.shape:
        raise ValueError(
            f"the radiometry frame is {radiometry.shape} but the light field is {raw.shape}; expected the same size"
        )
    if dark is not None and dark.shape != raw.shape:
        raise ValueError(f"the dark frame is {dark.shape} but the light field is {raw.shape}; expected the same size")
    meta = read_lightfield_metadata(args.metadata) if args.metadata else {}
    flags = {
        "lenslet_pitch_um": args.lenslet_pitch,
        "lenslet_focal_um": args.lenslet_focal_length,
        "camera_pixel_um": args.camera_pixel,
        "relay_magnification": args.relay_magnification,
        "magnification": args.magnification,
        "na": args.na,
        "wavelength_um": args.wavelength,
        "immersion_index": args.medium_index,
    }
    optics = {k: v for k, v in meta.items() if k in LFM_OPTICS_KEYS}
    optics.update({k: v for k, v in flags.items() if v is not None})
    calibration = calibrate_lightfield(radiometry, dark)
    nominal = check_pitch(calibration, optics)
    if nominal is not None:
        # re-run the comparison through the library so its note (if any) is the standard one
        calibration = calibrate_lightfield(radiometry, dark, nominal_pitch_px=nominal)
    nnum = args.pixels_per_lenslet or calibration.pixels_per_lenslet()
    rectified = rectify(raw, calibration, pixels_per_lenslet=nnum, dark=dark)
    views = raw_to_views(rectified, nnum)
    summary = lightfield_summary(calibration, nnum, optics)
    psf = None
    supersample = args.supersample or int(meta.get("supersample", DEFAULT_SUPERSAMPLE))
    lfm_optics = None if args.no_psf else implied_lfm_optics(calibration, nnum, optics, supersample)
    if lfm_optics is not None:
        from .cli import ProgressBar
        from .psf.lfm import lfm_psf

        depths = z_planes(args.z_range, args.z_step, meta.get("z_planes_um"))
        bar = ProgressBar()
        psf = lfm_psf(lfm_optics, depths, progress=lambda f: bar(f, "LFM PSF"))
        psf.optics["lightfield_calibration"] = {
            k: summary[k] for k in ("pitch_px", "rotation_deg", "offset_px", "measured_vs_nominal")
        }
        summary["psf_shape"] = list(psf.array.shape)
        summary["psf_z_planes_um"] = [float(z) for z in depths]
        summary["psf_voxel_size"] = list(psf.voxel_size)
    elif not args.no_psf:
        missing = [k for k in LFM_OPTICS_KEYS if not optics.get(k)]
        print(f"note: no LFM PSF written; the optics lack {missing}")
    for note in calibration.notes:
        print(f"note: {note}")
    print(
        f"lenslet pitch {calibration.pitch_px:.4f} px, rotation {calibration.rotation_deg:+.4f}°, "
        f"offset {calibration.offset_px[0]:.3f}, {calibration.offset_px[1]:.3f} px; rectified to {nnum} px per "
        f"lenslet: {views.shape[1]}×{views.shape[2]} lenslets"
    )
    prefix = Path(args.out) if args.out else Path(args.lightfield).with_suffix("")
    for path in write_lightfield_calibration(prefix, summary, rectified, views, psf):
        print(f"wrote {path}")
    if psf is not None:
        summary["psf"] = str(lightfield_paths(prefix)["psf"])
    if args.json:
        print(json.dumps(summary))
    return 0


# --------------------------------------------------------------------------- XLFM
def read_xlfm_optics(path: str | Path) -> Any:
    """Nominal :class:`~napari_lfrecon.psf.xlfm.XLFMOptics` from an XLFM PSF file or a JSON file of its fields."""
    from .psf.calibrate_xlfm import xlfm_optics_from_dict
    from .psf.model import PSF

    path = Path(path)
    if path.name.endswith(".safetensors"):
        psf = PSF.load(path)
        if psf.modality != "xlfm":
            raise ValueError(f"{path} is a {psf.modality} PSF; expected an XLFM PSF for --optics")
        return xlfm_optics_from_dict(psf.optics, psf.arrays.get("centres"))
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is neither an XLFM PSF file nor a JSON optics file ({exc})") from exc
    return xlfm_optics_from_dict(values)


def _calibrate_xlfm(args: argparse.Namespace) -> int:
    from .psf.calibrate_xlfm import calibrate_xlfm

    image, _ = _read(args.image)
    if image.ndim != 2:
        raise ValueError(f"{args.image} has shape {image.shape}; expected one XLFM frame (Y, X)")
    dark = _read(args.dark)[0] if args.dark else None
    optics = read_xlfm_optics(args.optics) if args.optics else None
    calibration = calibrate_xlfm(
        image, dark=dark, optics=optics, view_size=tuple(args.view_size) if args.view_size else None
    )
    source = image if dark is None else np.asarray(image, np.float64) - np.asarray(dark, np.float64)
    views = calibration.crop(source)
    summary = calibration.to_dict()
    for note in calibration.notes:
        print(f"note: {note}")
    print(
        f"{calibration.n_lenslets} views of {calibration.view_size[0]}×{calibration.view_size[1]} px; "
        f"spot radius {float(np.median(calibration.spot_radius_px)):.2f} px (median)"
    )
    prefix = Path(args.out) if args.out else Path(args.image).with_suffix("")
    for path in write_xlfm_calibration(prefix, summary, views):
        print(f"wrote {path}")
    if args.json:
        print(json.dumps(summary))
    return 0
