"""The Calibrate widget's decisions without Qt: optics typed as text, what a result says, the PSF computation.

The widget (:mod:`napari_lfrecon.gui.calibrate_widget`) is a view over these:
it reads its fields, calls a function here, and shows what comes back.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..psf.zernike import ZERNIKE_NAMES
from .layers import axes_kwargs
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


def frame_2d(layer: Any, what: str) -> np.ndarray:
    """An image layer's data (its finest level when multiscale), checked to be one 2-D ``(Y, X)`` frame."""
    data = np.asarray(layer.data[0] if layer.multiscale else layer.data)
    if data.ndim != 2:
        raise ValueError(f"the {what} layer {layer.name!r} has shape {data.shape}; expected one 2-D (Y, X) frame")
    return data


def residual_translate(
    input_translate: Sequence[float] | None, crop_origin: Sequence[int], voxel: Sequence[float]
) -> tuple[float, ...]:
    """World origin of a bead fit's residual: the bead layer's translate plus the crop origin in world units."""
    base = input_translate or (0.0,) * len(voxel)
    return tuple(float(t) + o * v for t, o, v in zip(base, crop_origin, voxel, strict=True))


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


def check_same_size(raw: np.ndarray, others: Mapping[str, np.ndarray | None]) -> None:
    """``ValueError`` unless every given frame (radiometry, dark) has the light field's size."""
    for what, frame in others.items():
        if frame is not None and frame.shape != raw.shape:
            raise ValueError(
                f"the {what} frame is {frame.shape} but the light field is {raw.shape}; expected the same size"
            )


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
    the PSF ``depths``, the rectified ``pixel_um`` in object space (1 without
    the lenslet pitch and magnification) and the layer's ``axes`` (units, labels).
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
        "pixel_um": rectified_pixel_um(calibration, optics) or 1.0,
        # napari units of the rectified layer: µm once the pixel is known in object space
        "axes": axes_kwargs(2, 2) if rectified_pixel_um(calibration, optics) else {},
        "missing_optics": missing_psf_optics(optics, files.LFM_OPTICS_KEYS),
    }


# --------------------------------------------------------------------------- frames in object space
def rectified_pixel_um(calibration: Any, optics: Mapping[str, float]) -> float | None:
    """Object-space size (µm) of a rectified pixel, or ``None`` without the lenslet pitch and the magnification.

    A lenslet tile is resampled to ``Nnum`` pixels, so a rectified pixel is the
    lenslet pitch in object space (pitch / magnification) over ``Nnum``.
    """
    pitch, magnification = optics.get("lenslet_pitch_um"), optics.get("magnification")
    if not pitch or not magnification:
        return None
    return float(pitch) / float(magnification) / calibration.pixels_per_lenslet()


def raw_frame_placement(calibration: Any, optics: Mapping[str, float]) -> dict[str, Any] | None:
    """napari ``scale``, ``translate``, ``units`` and ``axis_labels`` that put a raw frame under its rectified frame.

    The rectified layer is drawn with scale :func:`rectified_pixel_um` from the
    origin (and the volume reconstructed from it lies over it); this places the
    raw, white and dark frames (same size) in the same object-space µm. The scale
    per axis is the rectified pixel times the tile size over the measured pitch
    (object µm per camera pixel); the translate makes the middle of the rectified
    frame land on the raw pixel it was resampled from. ``None`` without the optics.
    A lattice rotation (scale and translate cannot rotate) leaves a residual
    offset of ``distance from the middle × sin(rotation)`` away from the middle.
    """
    from ..psf.calibrate_lightfield import rectify

    pixel_um = rectified_pixel_um(calibration, optics)
    if pixel_um is None:
        return None
    # Rectify the raw pixel coordinates themselves: rectification is linear
    # interpolation, exact on a ramp, so this reads off where each rectified pixel came from.
    ramps = np.indices(calibration.frame_shape, dtype=np.float64)
    source = rectify(ramps, calibration, pixels_per_lenslet=calibration.pixels_per_lenslet()).astype(np.float64)
    rows, cols = source.shape[1:]
    origin = source[:, 0, 0]
    per_row = (source[:, -1, 0] - origin) / max(rows - 1, 1)  # raw (y, x) per rectified row
    per_col = (source[:, 0, -1] - origin) / max(cols - 1, 1)  # raw (y, x) per rectified column
    scale = np.array([pixel_um / np.linalg.norm(per_row), pixel_um / np.linalg.norm(per_col)])
    middle = np.array([(rows - 1) / 2, (cols - 1) / 2])
    raw_middle = origin + middle[0] * per_row + middle[1] * per_col
    translate = pixel_um * middle - scale * raw_middle
    return {
        "scale": (float(scale[0]), float(scale[1])),
        "translate": (float(translate[0]), float(translate[1])),
        **axes_kwargs(2, 2),
    }


# --------------------------------------------------------------------------- input roles
#: Words in a layer's name or metadata that give its role among the light-field inputs.
LF_ROLE_WORDS: dict[str, tuple[str, ...]] = {
    "radiometry": ("white", "radiometry", "flat"),
    "dark": ("dark",),
    "lightfield": ("raw", "light"),
}
#: Metadata keys of layers made by this plugin (rectified frames, PSFs, results) or sample answers.
DERIVED_KEYS = ("psf", "lightfield_calibration", "xlfm_calibration", "engine", "bead_fit", "ground_truth")


def _role_text(name: str, metadata: Mapping[str, Any]) -> str:
    """The layer's name and its metadata's text values, lower case (where role words are looked for)."""
    words = [name, *(str(k) for k in metadata), *(v for v in metadata.values() if isinstance(v, str))]
    return " ".join(words).lower()


def guess_lightfield_roles(
    layers: Sequence[tuple[str, Mapping[str, Any], int]], chosen: Mapping[str, str | None] | None = None
) -> dict[str, str | None]:
    """Default layer of each light-field input role: ``lightfield``, ``radiometry``, ``dark``.

    ``layers`` are ``(name, metadata, ndim)`` of the image layers in viewer
    order; ``chosen`` are the roles the user already chose (kept as they are).
    Only 2-D layers not made by the plugin are candidates. A name or metadata
    with "white"/"radiometry"/"flat" → radiometry, "dark" → dark, and the light
    field is the remaining frame (one saying "raw"/"light" first). No layer is
    given two roles; a role with no candidate is ``None``.
    """
    roles: dict[str, str | None] = dict(chosen or {})
    candidates = [
        (name, _role_text(name, metadata))
        for name, metadata, ndim in layers
        if ndim == 2 and not any(key in metadata for key in DERIVED_KEYS)
    ]

    def take(role: str, fallback: bool) -> None:
        if role in roles:
            return
        free = [(name, text) for name, text in candidates if name not in roles.values()]
        others = [w for r, words in LF_ROLE_WORDS.items() if r != role for w in words]
        said = [name for name, text in free if any(w in text for w in LF_ROLE_WORDS[role])]
        # a frame saying another role ("dark") is that role's, never this one's fallback
        plain = [name for name, text in free if not any(w in text for w in others)]
        roles[role] = (said or (plain if fallback else []) or [None])[0]

    take("radiometry", fallback=False)
    take("dark", fallback=False)
    take("lightfield", fallback=True)
    return {role: roles[role] for role in LF_ROLE_WORDS}


class LightFieldRoles:
    """The light-field input roles the user chose, and the defaults (:func:`guess_lightfield_roles`) of the others.

    The widget calls :meth:`choose` whenever a picker's selection changes
    (``select()`` included), and :meth:`defaults` inside :meth:`guessing` when
    the layers change, so its own selections do not count as choices.
    """

    def __init__(self) -> None:
        self.chosen: dict[str, str | None] = {}
        self._guessing = False

    def choose(self, role: str, name: str | None) -> None:
        """Record that ``role`` was set to layer ``name`` (ignored while the defaults are being applied)."""
        if not self._guessing:
            self.chosen[role] = name

    @contextmanager
    def guessing(self) -> Iterator[None]:
        """While applying :meth:`defaults`: selection changes are not the user's choices."""
        self._guessing = True
        try:
            yield
        finally:
            self._guessing = False

    def defaults(
        self, layers: Sequence[tuple[str, Mapping[str, Any], int]], current: Mapping[str, str | None]
    ) -> dict[str, str | None]:
        """The selections to make: each role not chosen (or whose chosen layer is gone) → its default.

        ``current`` is what each picker shows; a choice it no longer shows (the
        layer was removed or renamed) is forgotten. The light field, which cannot
        be empty, is left out when there is no candidate.
        """
        self.chosen = {role: name for role, name in self.chosen.items() if current.get(role) == name}
        guessed = guess_lightfield_roles(layers, self.chosen)
        return {
            role: name
            for role, name in guessed.items()
            if role not in self.chosen and (name is not None or role != "lightfield")
        }
