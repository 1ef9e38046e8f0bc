"""``lfrecon calibrate bead|lightfield``: the calibration sub-commands (no Qt, no napari).

Kept out of :mod:`.cli` so that file only gains a parser hook and a dispatch
entry. Each command computes everything first and writes its files only at
the end, so a bad input leaves nothing half-written; with ``--json`` the last
stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from .psf.model import PSF_FILE_SUFFIX

#: Suffix of a light-field calibration file (JSON: grid, optics, notes).
LF_CALIBRATION_SUFFIX = ".lfcal.json"


def add_calibrate_parser(sub: Any) -> None:
    """Add ``calibrate bead`` and ``calibrate lightfield`` to the ``lfrecon`` sub-parsers."""
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
        "--out",
        help=f"output prefix (default: LF stem); writes PREFIX{LF_CALIBRATION_SUFFIX}, "
        "PREFIX_rectified.tif and PREFIX_views.tif",
    )
    lf.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Dispatch ``lfrecon calibrate KIND``."""
    if args.calibrate_kind == "bead":
        return _calibrate_bead(args)
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


def _calibrate_lightfield(args: argparse.Namespace) -> int:
    from .io.tiff import write_tiff
    from .physics.lightfield import raw_to_views
    from .psf.calibrate_lightfield import calibrate_lightfield, nominal_pitch_px, rectify

    raw, _ = _read(args.lightfield)
    radiometry, _ = _read(args.radiometry)
    dark = _read(args.dark)[0] if args.dark else None
    if raw.ndim != 2:
        raise ValueError(f"{args.lightfield} has shape {raw.shape}; expected one raw light-field frame (Y, X)")
    if radiometry.shape != raw.shape:
        raise ValueError(
            f"the radiometry frame is {radiometry.shape} but the light field is {raw.shape}; expected the same size"
        )
    nominal = None
    if args.lenslet_pitch and args.camera_pixel:
        nominal = nominal_pitch_px(args.lenslet_pitch, args.camera_pixel, args.relay_magnification)
    calibration = calibrate_lightfield(radiometry, dark, nominal_pitch_px=nominal)
    nnum = args.pixels_per_lenslet or calibration.pixels_per_lenslet()
    rectified = rectify(raw, calibration, pixels_per_lenslet=nnum, dark=dark)
    views = raw_to_views(rectified, nnum)
    summary = calibration.to_dict()
    summary["pixels_per_lenslet"] = int(nnum)
    optics = {
        "lenslet_pitch_um": args.lenslet_pitch,
        "lenslet_focal_um": args.lenslet_focal_length,
        "camera_pixel_um": args.camera_pixel,
        "relay_magnification": args.relay_magnification,
        "magnification": args.magnification,
        "na": args.na,
        "wavelength_um": args.wavelength,
        "immersion_index": args.medium_index,
    }
    summary["optics"] = {k: v for k, v in optics.items() if v is not None}
    if args.lenslet_pitch:
        # The rectified pixel is the lenslet pitch divided by the tile size (what an LFM PSF must use).
        summary["rectified_pixel_um"] = args.lenslet_pitch / nnum
    prefix = Path(args.out) if args.out else Path(args.lightfield).with_suffix("")
    calibration_path = prefix.with_name(prefix.name + LF_CALIBRATION_SUFFIX)
    rectified_path = prefix.with_name(prefix.name + "_rectified.tif")
    views_path = prefix.with_name(prefix.name + "_views.tif")
    for note in calibration.notes:
        print(f"note: {note}")
    print(
        f"lenslet pitch {calibration.pitch_px:.4f} px, rotation {calibration.rotation_deg:+.4f}°, "
        f"offset {calibration.offset_px[0]:.3f}, {calibration.offset_px[1]:.3f} px; rectified to {nnum} px per "
        f"lenslet: {views.shape[1]}×{views.shape[2]} lenslets"
    )
    calibration_path.write_text(json.dumps(summary, indent=2))
    write_tiff(rectified_path, rectified, metadata={"lightfield_calibration": summary})
    write_tiff(views_path, views, axes="AYX", metadata={"lightfield_calibration": summary})
    for path in (calibration_path, rectified_path, views_path):
        print(f"wrote {path}")
    if args.json:
        print(json.dumps(summary))
    return 0
