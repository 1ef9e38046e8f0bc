"""``lfrecon calibrate bead|lightfield|xlfm``: the calibration sub-commands (no Qt, no napari).

Kept out of :mod:`.cli` so that file only gains a parser hook and a dispatch
entry; it never imports :mod:`.cli` (the progress bar is handed in). The light-field and
XLFM calibrations run as the ``lightfield-calibrate`` and ``xlfm-calibrate``
engines through :func:`napari_lfrecon.jobs.run_job`; the files they write come
from :mod:`napari_lfrecon.io.calibration_files` (shared with the Calibrate
widget). Each command computes everything first and writes its files only at
the end, all or nothing; with ``--json`` the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .io.calibration_files import (
    DEFAULT_SUPERSAMPLE,
    DEFAULT_Z_RANGE_UM,
    DEFAULT_Z_STEP_UM,
    LF_CALIBRATION_SUFFIX,
    LFM_OPTICS_KEYS,
    XLFM_CALIBRATION_SUFFIX,
    implied_lfm_optics,
    lightfield_paths,
    lightfield_summary,
    read_lightfield_metadata,
    read_xlfm_optics,
    write_lightfield_calibration,
    write_xlfm_calibration,
    z_planes,
)
from .psf.model import PSF_FILE_SUFFIX

#: A progress display: ``progress(fraction in [0, 1], message)``.
Progress = Callable[[float, str], None]


def _no_progress(fraction: float, message: str) -> None:
    """The progress display when the caller gives none."""


def add_calibrate_parser(sub: Any, engine_flags: Callable[[Any, str], list[str]] | None = None) -> None:
    """Add ``calibrate bead``, ``calibrate lightfield`` and ``calibrate xlfm`` to the ``lfrecon`` sub-parsers.

    ``engine_flags(parser, engine_name)`` (the CLI's generator of flags from an
    engine's ``Params``) adds the calibration engines' parameters as flags.
    """
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
    if engine_flags is not None:
        engine_flags(lf, "lightfield-calibrate")

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
    if engine_flags is not None:
        engine_flags(xl, "xlfm-calibrate")


def cmd_calibrate(args: argparse.Namespace, progress: Progress | None = None) -> int:
    """Dispatch ``lfrecon calibrate KIND``; ``progress(fraction, message)`` draws the progress (the CLI's bar)."""
    bar = progress or _no_progress
    if args.calibrate_kind == "bead":
        return _calibrate_bead(args, bar)
    if args.calibrate_kind == "xlfm":
        return _calibrate_xlfm(args, bar)
    return _calibrate_lightfield(args, bar)


def _run_engine(name: str, inputs: Any, bar: Progress, args: argparse.Namespace, **params: Any) -> Any:
    """Run calibration engine ``name`` to completion through the one runner, drawing its progress.

    Its parameters are the flags made from its ``Params`` (when the parser has
    them), overridden by ``params``.
    """
    from . import engines
    from .device import select_device
    from .jobs import make_params, param_specs, run_job

    engine = engines.get(name)
    flags = {s["name"]: getattr(args, s["name"]) for s in param_specs(engine.Params) if hasattr(args, s["name"])}
    params = {**flags, **params}

    def show(update: Any) -> None:
        if update.kind == "progress":
            bar(update.fraction, update.message)

    return run_job(engine, inputs, make_params(engine.Params, params), device=select_device(None), on_update=show)


def _read(path: str) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    from .io.tiff import read_tiff

    image = read_tiff(Path(path))
    return np.asarray(image.data), image.voxel_size


def _calibrate_bead(args: argparse.Namespace, bar: Progress) -> int:
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


# --------------------------------------------------------------------------- light field
def _calibrate_lightfield(args: argparse.Namespace, bar: Progress) -> int:
    from .jobs import CalibrateInputs
    from .physics.lightfield import raw_to_views
    from .psf.calibrate_lightfield import rectify

    raw, _ = _read(args.lightfield)
    radiometry, _ = _read(args.radiometry)
    dark = _read(args.dark)[0] if args.dark else None
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
    frames = {"radiometry": radiometry} if dark is None else {"radiometry": radiometry, "dark": dark}
    inputs = CalibrateInputs(data=raw, optics=optics, frames=frames)
    calibration = _run_engine("lightfield-calibrate", inputs, bar, args)
    nnum = args.pixels_per_lenslet or calibration.pixels_per_lenslet()
    rectified = rectify(raw, calibration, pixels_per_lenslet=nnum, dark=dark)
    views = raw_to_views(rectified, nnum)
    summary = lightfield_summary(calibration, nnum, optics)
    psf = None
    supersample = args.supersample or int(meta.get("supersample", DEFAULT_SUPERSAMPLE))
    lfm_optics = None if args.no_psf else implied_lfm_optics(calibration, nnum, optics, supersample)
    if lfm_optics is not None:
        from .psf.lfm import lfm_psf

        depths = z_planes(args.z_range, args.z_step, meta.get("z_planes_um"))
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
def _calibrate_xlfm(args: argparse.Namespace, bar: Progress) -> int:
    from .engines.calibrate_xlfm import OPTICS_OBJECT_KEY
    from .jobs import CalibrateInputs

    image, _ = _read(args.image)
    dark = _read(args.dark)[0] if args.dark else None
    optics = {OPTICS_OBJECT_KEY: read_xlfm_optics(args.optics)} if args.optics else {}
    view = {"view_height": args.view_size[0], "view_width": args.view_size[1]} if args.view_size else {}
    inputs = CalibrateInputs(data=image, optics=optics, frames={} if dark is None else {"dark": dark})
    calibration = _run_engine("xlfm-calibrate", inputs, bar, args, **view)
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
