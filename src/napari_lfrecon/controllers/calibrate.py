"""The Calibrate widget's decisions without Qt: optics typed as text, what a result says, the PSF computation.

The widget (:mod:`napari_lfrecon.gui.calibrate_widget`) is a view over these:
it reads its fields, calls a function here, and shows what comes back.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Mapping
from typing import Any

import numpy as np

from ..psf.zernike import ZERNIKE_NAMES
from .streams import stream_callbacks

#: The light-field optics fields: our name → (label, tooltip).
LF_OPTICS_FIELDS: dict[str, tuple[str, str]] = {
    "lenslet_pitch_um": ("lenslet pitch (µm)", "microlens pitch"),
    "lenslet_focal_um": ("lenslet focal (µm)", "microlens focal length"),
    "camera_pixel_um": ("camera pixel (µm)", "physical camera pixel"),
    "relay_magnification": ("relay magnification", "relay between the lenslets and the camera (1 if none)"),
    "magnification": ("objective magnification", "objective (with tube lens) magnification"),
    "na": ("NA", "objective numerical aperture"),
    "wavelength_um": ("wavelength (µm)", "emission wavelength"),
    "immersion_index": ("medium index", "refractive index of the immersion / sample medium"),
}


def parse_optics(texts: Mapping[str, str]) -> dict[str, float]:
    """The optics typed in the form (empty fields left out); ``ValueError`` for non-numbers and non-positive values."""
    optics: dict[str, float] = {}
    for name, raw in texts.items():
        text = raw.strip()
        if not text:
            continue
        label = LF_OPTICS_FIELDS[name][0]
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{label} must be a number, got {text!r}") from None
        if not value > 0:
            raise ValueError(f"{label} must be positive, got {value}")
        optics[name] = value
    return optics


def missing_psf_optics(optics: Mapping[str, Any], required: tuple[str, ...]) -> list[str]:
    """Labels of the ``required`` optics the form lacks (why no PSF was computed)."""
    return [LF_OPTICS_FIELDS[k][0] for k in required if k not in optics]


def depth_range(z_planes_um: list[float]) -> tuple[float, float, float | None]:
    """``(first, last, step)`` of a list of PSF depths (step ``None`` for a single depth)."""
    step = float(z_planes_um[1] - z_planes_um[0]) if len(z_planes_um) > 1 else None
    return float(z_planes_um[0]), float(z_planes_um[-1]), step


def grid_report(calibration: Any) -> str:
    """What a measured lenslet grid says: pitch, rotation, offset, lenslets, tile size, nominal pitch, notes."""
    nnum = calibration.pixels_per_lenslet()
    lines = [
        f"pitch {calibration.pitch_px:.4f} px (rows {calibration.pitch_yx_px[0]:.4f}, "
        f"columns {calibration.pitch_yx_px[1]:.4f}); rotation {calibration.rotation_deg:+.4f}°; "
        f"offset ({calibration.offset_px[0]:.2f}, {calibration.offset_px[1]:.2f}) px; "
        f"{len(calibration.lenslet_centres())} lenslets; rectify to {nnum} px per lenslet"
    ]
    nominal = calibration.nominal_pitch_px
    if nominal is not None:
        lines.append(f"nominal pitch from the optics: {nominal:.4f} px (ratio {calibration.pitch_px / nominal:.4f})")
    lines += [f"note: {note}" for note in calibration.notes]
    return "\n".join(lines)


def xlfm_report(calibration: Any) -> str:
    """What found XLFM views say: how many, their size, the spot radius, focal groups, notes."""
    lines = [
        f"{calibration.n_lenslets} views of {calibration.view_size[0]}×{calibration.view_size[1]} px; "
        f"spot radius {float(np.median(calibration.spot_radius_px)):.2f} px (median)"
    ]
    if int(np.max(calibration.focal_group, initial=0)) > 0:
        lines.append(f"two focal groups: {int(np.sum(calibration.focal_group))} views with larger spots")
    lines += [f"note: {note}" for note in calibration.notes]
    return "\n".join(lines)


def bead_rows(calibration: Any) -> list[tuple[str, str, str]]:
    """The coefficient table of a bead fit: ``(mode, name, waves)`` per fitted Zernike mode."""
    fit = calibration.fit
    return [(str(j), ZERNIKE_NAMES.get(j, f"Z{j}"), f"{float(fit.zernike[j]):+.4f}") for j in fit.modes]


def bead_chi2_text(calibration: Any) -> str:
    """χ² of the unaberrated and the fitted model, and the RMS aberration."""
    fit = calibration.fit
    rms = float(np.sqrt(np.sum(fit.zernike[list(fit.modes)] ** 2)))
    return (
        f"χ² unaberrated {calibration.chi2_unaberrated:.4g} → fitted {calibration.chi2_fit:.4g} "
        f"(RMS aberration {rms:.3f} waves)"
    )


def lfm_psf_updates(optics: Any, depths: np.ndarray, stop: threading.Event) -> Generator[float, None, Any]:
    """Compute the LFM PSF, yielding its progress fractions; returns the PSF, ``None`` when stopped, or the error.

    This generator is what the widget hands to the worker layer (``RunPanel.start_work``);
    errors are returned, never raised in the worker thread (napari would raise them again in the event loop).
    """
    from ..psf.lfm import PSFComputationStopped, lfm_psf

    def compute(report: Any) -> Any:
        try:
            return lfm_psf(optics, depths, progress=report, should_stop=stop.is_set)
        except PSFComputationStopped:
            return None

    stream = stream_callbacks(compute)
    while True:
        try:
            (fraction,) = next(stream)
        except StopIteration as end:
            return end.value
        except Exception as exc:  # reported by the widget, never a traceback
            return exc
        yield float(fraction)


def rectify_lightfield(
    raw: np.ndarray,
    calibration: Any,
    optics: dict[str, float],
    *,
    dark: np.ndarray | None = None,
    supersample: int,
    z_range: tuple[float, float],
    z_step: float,
) -> dict[str, Any]:
    """Rectify a raw light field with a measured grid, and what that implies.

    Returns ``rectified`` ``(Ny·Nnum, Nx·Nnum)``, ``views``, the JSON
    ``summary``, ``lfm_optics`` (``None`` when the optics are incomplete),
    the PSF ``depths`` and the rectified ``pixel_um`` in object space (1 without optics).
    """
    from ..io import calibration_files as files
    from ..physics.lightfield import raw_to_views
    from ..psf.calibrate_lightfield import rectify

    nnum = calibration.pixels_per_lenslet()
    rectified = rectify(raw, calibration, pixels_per_lenslet=nnum, dark=dark)
    lfm_optics = files.implied_lfm_optics(calibration, nnum, optics, supersample)
    return {
        "rectified": rectified,
        "views": raw_to_views(rectified, nnum),
        "summary": files.lightfield_summary(calibration, nnum, optics),
        "lfm_optics": lfm_optics,
        "depths": files.z_planes(z_range, z_step),
        # the rectified pixel is one lenslet pitch (in object space) over the tile size
        "pixel_um": lfm_optics.lenslet_pitch_object_um / nnum if lfm_optics is not None else 1.0,
        "missing_optics": missing_psf_optics(optics, files.LFM_OPTICS_KEYS),
    }
