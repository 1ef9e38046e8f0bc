"""XLFM (Fourier light-field) calibration: find the view centres on the sensor and crop the views.

An XLFM frame holds one elemental image (a *view*) per lenslet. A white
(uniform fluorescent) frame shows each view as a bright disc (the field stop),
an in-focus bead as one spot per view; either way the view centre is the
centre of symmetry of one bright blob. The procedure:

1. Subtract the dark frame (when given), estimate the background and its noise
   robustly (median and median absolute deviation of the whole frame: views
   never cover most of an XLFM sensor… and when they do, the lower quantiles
   still sit on the gaps), smooth lightly and threshold at a level between the
   background and the bright tail (:data:`THRESHOLD_FRACTION`).
2. Connected regions of the mask above a minimum area are the candidate views;
   each gives a coarse centre (intensity-weighted centroid of the region).
3. Refine: in each view's *territory* (the pixels nearer to its coarse centre
   than to any other, within a radius), the centroid of ``max(I - level, 0)``
   where ``level`` is the background plus a few noise sigmas. A blob that is
   symmetric about its centre stays symmetric after subtracting a constant and
   clipping, so this is unbiased up to pixel sampling (≪ 0.1 px for discs and
   spots a few pixels wide); the centroid is iterated on the territory
   recentred at the new estimate.
4. With nominal optics (:class:`~napari_lfrecon.psf.xlfm.XLFMOptics`), the
   detected centres are matched to the nominal ones by a similarity transform
   (shift, rotation, scale) fitted by iterated nearest neighbours; missing or
   extra views and the fitted transform are *reported* in ``notes``. Matched
   centres are returned in the nominal (lenslet) order, so they pair with the
   optics' ``lenslet_pupil_centres``.
5. Without an explicit view size, the largest square window with no two views
   sharing a pixel and every window on the sensor.

Optional focal groups (the original XLFM interleaves two lenslet focal lengths,
which makes one group's bead spots larger): the RMS radius of each blob is
measured and split into two groups when the sizes are clearly bimodal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..jobs.protocol import Update, result_of
from .xlfm import XLFMOptics, view_windows, windows_overlap

#: The detection threshold sits this fraction of the way from the background to the bright tail.
THRESHOLD_FRACTION = 0.25
#: The bright tail: this percentile of the (smoothed, background-subtracted) frame.
BRIGHT_PERCENTILE = 99.9
#: Regions smaller than this many pixels are noise, not views.
MIN_AREA_PX = 4
#: Gaussian smoothing (px) before thresholding: suppresses shot noise without moving symmetric blobs.
SMOOTH_SIGMA_PX = 1.0
#: The refinement level: background + this many noise sigmas (keeps noise out of the centroid).
LEVEL_SIGMAS = 3.0
#: Centroid refinement passes.
REFINE_PASSES = 4
#: A detected centre farther than this fraction of the nominal spacing from its nominal centre is unmatched.
MATCH_FRACTION = 0.4
#: Focal groups are split only if the gap between the two size clusters exceeds this many within-cluster spreads.
GROUP_SEPARATION = 4.0
#: Smallest frame side the calibration accepts (px).
MIN_FRAME_PX = 8


@dataclass
class XLFMCalibration:
    """View centres measured on an XLFM sensor.

    Attributes
    ----------
    centres:
        ``(N, 2)`` ``(y, x)`` view centres in pixels (sub-pixel), in the nominal
        lenslet order when optics were given, else ordered by radius from the
        frame centre, then by angle (the order of
        :func:`~napari_lfrecon.psf.xlfm.default_lenslet_layout`).
    view_size:
        ``(h, w)`` of the view windows (``round(c) - view_size // 2`` is the corner).
    image_shape:
        ``(H, W)`` of the frame it was measured on.
    spot_radius_px:
        ``(N,)`` RMS radius of each view's blob above the level (px).
    focal_group:
        ``(N,)`` 0/1 focal group per view (all 0 when the sizes are not bimodal).
    nominal_index:
        ``(N,)`` index of each centre in the nominal layout (``-1`` = no nominal
        counterpart); ``None`` without optics.
    missing:
        Nominal lenslet indices with no detected view.
    transform:
        The fitted nominal → measured similarity: ``shift_px`` (y, x),
        ``rotation_deg``, ``scale`` and the ``rms_px`` residual of the matched
        centres; empty without optics.
    notes:
        Human-readable remarks (mismatches with the optics).
    """

    centres: np.ndarray
    view_size: tuple[int, int]
    image_shape: tuple[int, int]
    spot_radius_px: np.ndarray
    focal_group: np.ndarray
    background: float
    nominal_index: np.ndarray | None = None
    missing: list[int] = field(default_factory=list)
    transform: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n_lenslets(self) -> int:
        """Number of detected views."""
        return int(len(self.centres))

    def windows(self) -> np.ndarray:
        """Top-left corner ``(N, 2)`` of each view window."""
        return view_windows(self.centres, self.view_size)

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The views ``(…, N, h, w)`` of ``image`` (``(…, H, W)``, same size as the calibration frame)."""
        image = np.asarray(image)
        if tuple(image.shape[-2:]) != self.image_shape:
            raise ValueError(
                f"the frame is {tuple(image.shape[-2:])} but the calibration was measured on {self.image_shape}; "
                "expected frames of the same size"
            )
        return crop_views(image, self.centres, self.view_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (the CLI's ``--json`` line and the saved calibration file)."""
        out: dict[str, Any] = {
            "centres": np.asarray(self.centres, dtype=np.float64).tolist(),
            "n_lenslets": self.n_lenslets,
            "view_size": [int(v) for v in self.view_size],
            "image_shape": [int(v) for v in self.image_shape],
            "spot_radius_px": np.asarray(self.spot_radius_px, dtype=np.float64).tolist(),
            "focal_group": np.asarray(self.focal_group, dtype=int).tolist(),
            "background": float(self.background),
            "notes": list(self.notes),
        }
        if self.nominal_index is not None:
            out["nominal_index"] = np.asarray(self.nominal_index, dtype=int).tolist()
            out["missing"] = [int(i) for i in self.missing]
            out["transform"] = dict(self.transform)
        return out


# --------------------------------------------------------------------------- cropping
def crop_views(image: np.ndarray, centres: np.ndarray, view_size: tuple[int, int]) -> np.ndarray:
    """Views ``(…, N, h, w)`` cut from ``image`` (``(…, H, W)``) at windows ``round(c) - view_size // 2``.

    The same windows as :class:`~napari_lfrecon.physics.xlfm.XLFMProjector`;
    every window must lie on the frame.
    """
    image = np.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"expected an image (…, H, W), got shape {image.shape}")
    h, w = (int(v) for v in view_size)
    if h < 1 or w < 1:
        raise ValueError(f"view_size must be two positive integers, got {view_size!r}")
    corners = view_windows(np.asarray(centres, dtype=np.float64), (h, w))
    height, width = image.shape[-2:]
    if corners.min() < 0 or np.any(corners[:, 0] + h > height) or np.any(corners[:, 1] + w > width):
        raise ValueError(f"a view window of size {(h, w)} around the centres leaves the {(height, width)} frame")
    views = [image[..., top : top + h, left : left + w] for top, left in corners]
    return np.stack(views, axis=-3).astype(np.float32)


# --------------------------------------------------------------------------- detection
def _robust_background(image: np.ndarray) -> tuple[float, float]:
    """Background level and noise sigma from the lower half of the frame's values (views are the bright part)."""
    values = np.sort(image.ravel())
    lower = values[: max(values.size // 2, 1)]
    level = float(np.median(lower))
    sigma = 1.4826 * float(np.median(np.abs(lower - level)))
    return level, max(sigma, 1e-6 * max(abs(float(values[-1])), 1.0))


def _detect_regions(image: np.ndarray, background: float, smooth_sigma: float) -> tuple[np.ndarray, int, float]:
    """Label image of the bright blobs, their count and the threshold used."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(image, smooth_sigma) if smooth_sigma > 0 else image
    tail = float(np.percentile(smooth, BRIGHT_PERCENTILE))
    threshold = background + THRESHOLD_FRACTION * (tail - background)
    labels, count = ndimage.label(smooth > threshold)
    if count:
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        small = areas < MIN_AREA_PX
        small[0] = False
        labels[small[labels]] = 0
        labels, count = ndimage.label(labels > 0)
    return labels, int(count), threshold


def _refine(
    image: np.ndarray, coarse: np.ndarray, level: float, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sub-pixel centroids in each view's territory; return centres, RMS radii and total signal."""
    height, width = image.shape
    weights = np.clip(image - level, 0.0, None)
    centres = coarse.astype(np.float64).copy()
    r = int(math.ceil(radius))
    sizes = np.zeros(len(centres))
    totals = np.zeros(len(centres))
    for _ in range(REFINE_PASSES):
        new = centres.copy()
        for k, (cy, cx) in enumerate(centres):
            y0, y1 = max(int(round(cy)) - r, 0), min(int(round(cy)) + r + 1, height)
            x0, x1 = max(int(round(cx)) - r, 0), min(int(round(cx)) + r + 1, width)
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
            # territory: nearer to this centre than to any other (a Voronoi cell), and within the radius
            d2 = (yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2
            mine = (np.argmin(d2, axis=-1) == k) & (d2[..., k] <= radius**2)
            wk = np.where(mine, weights[y0:y1, x0:x1], 0.0)
            total = wk.sum()
            if total <= 0:
                continue
            new[k] = ((wk * yy).sum() / total, (wk * xx).sum() / total)
            sizes[k] = math.sqrt(((wk * ((yy - new[k, 0]) ** 2 + (xx - new[k, 1]) ** 2)).sum()) / total)
            totals[k] = total
        centres = new
    return centres, sizes, totals


def _order_by_shells(centres: np.ndarray, origin: np.ndarray, spacing: float) -> np.ndarray:
    """Indices sorting centres by radius shell (tolerance a quarter spacing), then angle (as the default layout)."""
    rel = centres - origin
    radius = np.hypot(rel[:, 0], rel[:, 1])
    angle = np.mod(np.arctan2(rel[:, 0], rel[:, 1]), 2 * np.pi)
    order = np.argsort(radius)
    shell = np.zeros(len(centres), dtype=int)
    current, last = 0, None
    for i in order:
        if last is not None and radius[i] - last > 0.25 * spacing:
            current += 1
        shell[i], last = current, radius[i]
    return np.lexsort((angle, shell))


def _min_spacing(centres: np.ndarray) -> float:
    if len(centres) < 2:
        return math.inf
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    gaps[np.diag_indices_from(gaps)] = np.inf
    return float(gaps.min())


def largest_view_size(centres: np.ndarray, image_shape: tuple[int, int]) -> tuple[int, int]:
    """Largest square ``(s, s)`` window with no two views sharing a pixel and every window on the frame."""
    centres = np.asarray(centres, dtype=np.float64)
    rounded = np.round(centres)
    size = math.inf
    if len(centres) > 1:
        dy = np.abs(rounded[:, None, 0] - rounded[None, :, 0])
        dx = np.abs(rounded[:, None, 1] - rounded[None, :, 1])
        sep = np.maximum(dy, dx)
        sep[np.diag_indices_from(sep)] = np.inf
        size = float(sep.min())  # windows of side s starting s//2 before the centres clash iff both gaps < s
    height, width = image_shape
    # a window of side s covers [c - s//2, c - s//2 + s - 1]: it fits iff s//2 ≤ c and s - 1 - s//2 ≤ H - 1 - c
    edge = np.minimum.reduce([rounded[:, 0], rounded[:, 1], height - 1 - rounded[:, 0], width - 1 - rounded[:, 1]])
    s = int(min(size, 2 * float(edge.min()) + 1))
    while s > 0 and (windows_overlap(centres, (s, s)) or _outside(centres, (s, s), image_shape)):
        s -= 1
    if s < 1:
        raise ValueError("the views touch the frame border or each other: no view window fits")
    return s, s


def _outside(centres: np.ndarray, view_size: tuple[int, int], image_shape: tuple[int, int]) -> bool:
    corners = view_windows(centres, view_size)
    return bool(
        corners.min() < 0
        or np.any(corners[:, 0] + view_size[0] > image_shape[0])
        or np.any(corners[:, 1] + view_size[1] > image_shape[1])
    )


def _focal_groups(sizes: np.ndarray) -> np.ndarray:
    """0/1 group per view by spot size: a 1D two-means split kept only when the clusters are well separated."""
    groups = np.zeros(len(sizes), dtype=int)
    if len(sizes) < 4:
        return groups
    order = np.sort(sizes)
    best = None
    for cut in range(2, len(order) - 1):
        low, high = order[:cut], order[cut:]
        cost = low.var() * len(low) + high.var() * len(high)
        if best is None or cost < best[0]:
            best = (cost, cut)
    assert best is not None
    low, high = order[: best[1]], order[best[1] :]
    spread = math.sqrt(best[0] / len(order)) + 1e-3 * float(order.mean() + 1e-12)
    if high.mean() - low.mean() > GROUP_SEPARATION * spread:
        groups[sizes >= high.min()] = 1
    return groups


# --------------------------------------------------------------------------- matching
def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares ``dst ≈ s R src + t`` (Umeyama); returns ``(s, R, t)``."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    if len(src) < 2 or float((a**2).sum()) == 0:
        return 1.0, np.eye(2), mu_d - mu_s
    u, sv, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    fix = np.diag([1.0, d])
    rotation = u @ fix @ vt
    scale = float((sv * np.diag(fix)).sum() / (a**2).sum())
    return scale, rotation, mu_d - scale * rotation @ mu_s


def _match(detected: np.ndarray, nominal: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """For each nominal centre, the index of its detected view (``-1`` if none), and the fitted similarity.

    The similarity is about ``origin`` (the optical axis), so its shift is the axis' displacement.
    """
    detected, nominal = detected - origin, nominal - origin
    spacing = _min_spacing(nominal)
    spacing = spacing if math.isfinite(spacing) else float(max(np.ptp(detected, axis=0).max(), 1.0))
    scale, rotation, shift = 1.0, np.eye(2), np.zeros(2)
    pairs = np.full(len(nominal), -1)
    for _ in range(6):
        predicted = scale * nominal @ rotation.T + shift
        d = np.linalg.norm(predicted[:, None] - detected[None], axis=-1)
        nearest = np.argmin(d, axis=1)
        ok = d[np.arange(len(nominal)), nearest] <= MATCH_FRACTION * spacing * scale
        # one detection per nominal centre: keep the closest claim
        pairs = np.full(len(nominal), -1)
        for i in np.argsort(d[np.arange(len(nominal)), nearest]):
            if ok[i] and nearest[i] not in pairs:
                pairs[i] = nearest[i]
        used = pairs >= 0
        if used.sum() < 2:
            break
        scale, rotation, shift = _similarity(nominal[used], detected[pairs[used]])
    predicted = scale * nominal @ rotation.T + shift
    used = pairs >= 0
    rms = float(np.sqrt(np.mean(np.sum((predicted[used] - detected[pairs[used]]) ** 2, axis=1)))) if used.any() else 0
    transform = {
        "shift_px": [float(v) for v in shift],  # of the optical axis (the frame centre)
        # (y, x) coordinates: the angle from +x towards +y
        "rotation_deg": float(math.degrees(math.atan2(rotation[0, 1], rotation[1, 1]))),
        "scale": float(scale),
        "rms_px": rms,
    }
    return pairs, transform


# --------------------------------------------------------------------------- entry point
def calibrate_xlfm(
    image: np.ndarray,
    *,
    dark: np.ndarray | None = None,
    optics: XLFMOptics | None = None,
    view_size: tuple[int, int] | None = None,
    smooth_sigma: float = SMOOTH_SIGMA_PX,
) -> XLFMCalibration:
    """Find the XLFM view centres in a white (or bead) frame ``image`` ``(H, W)``.

    ``optics`` (nominal geometry) orders the centres like its lenslets and
    reports mismatches; ``view_size`` (else the optics', else the largest
    non-overlapping square) sets the crop windows. Raises ``ValueError`` for a
    frame with no views, views whose windows overlap or leave the frame, or a
    frame too small to calibrate.
    """
    stream = calibrate_xlfm_stream(image, dark=dark, optics=optics, view_size=view_size, smooth_sigma=smooth_sigma)
    return result_of(stream)


def calibrate_xlfm_stream(
    image: np.ndarray,
    *,
    dark: np.ndarray | None = None,
    optics: XLFMOptics | None = None,
    view_size: tuple[int, int] | None = None,
    smooth_sigma: float = SMOOTH_SIGMA_PX,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[Update]:
    """:func:`calibrate_xlfm` as a stream: ``progress`` after detection, refinement and matching.

    The last update is ``result`` with the :class:`XLFMCalibration`;
    ``should_stop()`` is checked before every step and ends the stream without a result.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"the XLFM calibration frame must be a 2-D (Y, X) image, got shape {image.shape}")
    if min(image.shape) < MIN_FRAME_PX:
        raise ValueError(f"the frame {image.shape} is too small; expected at least {MIN_FRAME_PX} px per side")
    if not np.all(np.isfinite(image)):
        raise ValueError("the XLFM calibration frame contains NaN or Inf values")
    if dark is not None:
        dark = np.asarray(dark, dtype=np.float64)
        if dark.shape != image.shape:
            raise ValueError(f"the dark frame is {dark.shape} but the image is {image.shape}; expected the same size")
        image = image - dark
    shape = (int(image.shape[0]), int(image.shape[1]))
    if optics is not None and tuple(optics.sensor_shape) != shape:
        raise ValueError(f"the optics describe a {tuple(optics.sensor_shape)} sensor but the frame is {shape}")
    if should_stop():
        return
    background, sigma = _robust_background(image)
    labels, count, threshold = _detect_regions(image, background, smooth_sigma)
    yield Update("progress", 1 / 3, f"XLFM views: {count} bright regions above the background")
    if should_stop():
        return
    if count == 0 or threshold - background <= 3 * sigma:
        raise ValueError(
            f"no lenslet views found: expected bright discs or spots well above the background "
            f"(background {background:.4g} ± {sigma:.3g}, brightest {float(image.max()):.4g})"
        )
    from scipy import ndimage

    signal = np.clip(image - background, 0.0, None)
    coarse = np.asarray(ndimage.center_of_mass(signal, labels, range(1, count + 1)), dtype=np.float64).reshape(-1, 2)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    spacing = _min_spacing(coarse)
    # the territory reaches half-way to the farthest a blob of this area extends, capped by the spacing
    blob_radius = float(np.sqrt(areas.max() / np.pi))
    radius = min(2.0 * blob_radius + 3.0, spacing if math.isfinite(spacing) else np.inf, max(shape) / 2)
    level = background + LEVEL_SIGMAS * sigma
    centres, sizes, totals = _refine(image, coarse, level, radius)
    keep = totals > 0
    centres, sizes = centres[keep], sizes[keep]
    yield Update("progress", 2 / 3, f"XLFM views: {len(centres)} centres refined")
    if should_stop():
        return
    notes: list[str] = []
    nominal_index = None
    missing: list[int] = []
    transform: dict[str, Any] = {}
    if optics is not None:
        nominal = np.asarray(optics.centres_px, dtype=np.float64)
        origin = np.array([shape[0] // 2, shape[1] // 2], dtype=np.float64)
        pairs, transform = _match(centres, nominal, origin)
        matched = pairs >= 0
        missing = [int(i) for i in np.flatnonzero(~matched)]
        extra = sorted(set(range(len(centres))) - set(int(p) for p in pairs[matched]))
        order = list(pairs[matched]) + extra
        nominal_index = np.array([int(i) for i in np.flatnonzero(matched)] + [-1] * len(extra))
        centres, sizes = centres[order], sizes[order]
        if missing:
            notes.append(
                f"found {int(matched.sum())} of the {len(nominal)} views the optics describe; "
                f"no view near nominal lenslet(s) {missing}"
            )
        if extra:
            where = np.round(centres[-len(extra) :], 1).tolist()
            notes.append(f"{len(extra)} bright region(s) match no nominal view (at {where})")
        moved = max(abs(v) for v in transform["shift_px"]) > 1.0
        if (
            moved
            or abs(transform["scale"] - 1) > 0.01
            or abs(transform["rotation_deg"]) > 0.5
            or transform["rms_px"] > 1
        ):
            notes.append(
                f"the measured centres differ from the nominal layout by a shift of "
                f"({transform['shift_px'][0]:.2f}, {transform['shift_px'][1]:.2f}) px, a rotation of "
                f"{transform['rotation_deg']:.3f}° and a scale of {transform['scale']:.4f} "
                f"(residual {transform['rms_px']:.2f} px RMS); the measured centres are used"
            )
        if view_size is None:
            view_size = tuple(optics.view_size)  # type: ignore[assignment]
    else:
        origin = np.array([shape[0] // 2, shape[1] // 2], dtype=np.float64)
        order = _order_by_shells(centres, origin, _min_spacing(centres) if len(centres) > 1 else 1.0)
        centres, sizes = centres[order], sizes[order]
    if view_size is None:
        view_size = largest_view_size(centres, shape)
    view = (int(view_size[0]), int(view_size[1]))
    if min(view) < 1:
        raise ValueError(f"view_size must be two positive integers, got {view_size!r}")
    if windows_overlap(centres, view):
        raise ValueError(
            f"view windows of {view} px overlap: the closest views are {_min_spacing(centres):.1f} px apart; "
            f"expected a view size of at most {largest_view_size(centres, shape)}"
        )
    if _outside(centres, view, shape):
        raise ValueError(
            f"a view window of {view} px around the measured centres leaves the {shape} frame "
            "(a view touches the border); expected a smaller view size or a frame with every view inside"
        )
    calibration = XLFMCalibration(
        centres=centres,
        view_size=view,
        image_shape=shape,
        spot_radius_px=sizes,
        focal_group=_focal_groups(sizes),
        background=background,
        nominal_index=nominal_index,
        missing=missing,
        transform=transform,
        notes=notes,
    )
    yield Update("result", 1.0, f"{calibration.n_lenslets} XLFM views", calibration)


def synthetic_white(
    shape: tuple[int, int],
    centres: np.ndarray,
    radius_px: float,
    *,
    level: float = 1000.0,
    background: float = 20.0,
    edge_px: float = 1.5,
    seed: int | None = 0,
) -> np.ndarray:
    """A white-image-like frame: one smooth disc of ``radius_px`` per view centre (for tests and demos).

    Discs have a raised-cosine edge ``edge_px`` wide; Poisson noise when ``seed`` is not ``None``.
    """
    height, width = (int(s) for s in shape)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.full((height, width), float(background))
    for cy, cx in np.asarray(centres, dtype=np.float64):
        distance = np.hypot(yy - cy, xx - cx)
        ramp = np.clip((radius_px + edge_px - distance) / (2 * edge_px), 0.0, 1.0)
        image += level * (0.5 - 0.5 * np.cos(np.pi * ramp))
    if seed is not None:
        image = np.random.default_rng(seed).poisson(image).astype(np.float64)
    return image.astype(np.float32)


def xlfm_optics_from_dict(values: dict[str, Any], centres: np.ndarray | None = None) -> XLFMOptics:
    """Nominal :class:`XLFMOptics` from a dict (an XLFM PSF's ``optics`` or a JSON file); extra keys are ignored."""
    names = ("na", "immersion_index", "wavelength_um", "pixel_um", "sensor_shape", "view_size")
    missing = [n for n in names if n not in values]
    if missing:
        raise ValueError(f"the XLFM optics are missing {missing}; expected the fields of an XLFM PSF's optics")
    kwargs: dict[str, Any] = {n: values[n] for n in names}
    if values.get("lenslet_pupil_centres") is not None:
        kwargs["lenslet_pupil_centres"] = np.asarray(values["lenslet_pupil_centres"], dtype=np.float64)
    if values.get("lenslet_radius") is not None:
        kwargs["lenslet_radius"] = np.asarray(values["lenslet_radius"], dtype=np.float64)
    if values.get("supersample") is not None:
        kwargs["supersample"] = int(values["supersample"])
    if values.get("magnification") is not None:
        kwargs["magnification"] = float(values["magnification"])
    given = centres if centres is not None else values.get("centres_px", values.get("centres"))
    if given is not None:
        kwargs["centres_px"] = np.asarray(given, dtype=np.float64)
    return XLFMOptics(**kwargs)
