"""Light-field lenslet-grid calibration from the images alone, rectification and views.

The radiometry (white) frame minus the dark frame is a lattice of bright
lenslet tiles. Its two fundamental spatial frequencies ``k1, k2`` (cycles per
pixel) define the lattice; the lenslet centres are where both fundamentals
are in phase: ``k_i · r + φ_i / 2π ∈ ℤ``.

1. Coarse: the two strongest, roughly orthogonal peaks of the windowed power
   spectrum, located to a fraction of a bin by zero padding and a parabola.
2. Fine (a lattice fit over the whole frame): demodulate the frame at ``k``,
   average the complex result over blocks and fit the block phases with a
   plane ``φ0 + 2π δk · r``; ``k + δk`` is the refined frequency and ``φ0``
   the phase that fixes the offset. Two passes reach ~1e-4 px in pitch on a
   400-pixel frame.

The pitch is ``1 / |k|`` projected on the real-space lattice vectors (their
lengths), the rotation the angle of the lattice vector nearest the +x axis.
The nominal pitch from the optics (lenslet pitch / (camera pixel × relay
magnification)) is only a hint: a disagreement is reported in
``LightFieldCalibration.notes``, never used to override the measurement.

Rectification resamples the frame (bilinear) onto a grid with an odd integer
``Nnum`` pixels per lenslet, lenslet centres at pixel ``Nnum // 2`` of each
tile, lenslet rows along image rows; :func:`napari_lfrecon.physics.lightfield.raw_to_views`
then gives the angular views.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..jobs.protocol import Update, result_of
from ..physics.lightfield import raw_to_views

#: Least lattice contrast (spectral peak over the band's median) accepted as a lenslet grid: pure noise
#: gives about 4 at any frame size, the synthetic radiometry ~200–1100 and the real GUV radiometry frame ~5600.
MIN_LATTICE_CONTRAST = 20.0
#: Relative disagreement between measured and nominal pitch that is reported.
PITCH_DISAGREEMENT = 0.01


@dataclass
class LightFieldCalibration:
    """A lenslet grid measured on the sensor.

    Attributes
    ----------
    lattice:
        ``(2, 2)`` real-space lattice vectors in pixels, rows ``a_row`` (from one
        lenslet to the next lenslet *row*, mostly along +y) and ``a_col`` (to the
        next column, mostly along +x), each as ``(dy, dx)``.
    centre_px:
        ``(y, x)`` of the lenslet centre nearest the frame centre (pixels).
    frame_shape:
        ``(Y, X)`` of the frames it was measured on.
    notes:
        Human-readable remarks (e.g. a nominal pitch that disagrees).
    """

    lattice: np.ndarray
    centre_px: tuple[float, float]
    frame_shape: tuple[int, int]
    nominal_pitch_px: float | None = None
    notes: list[str] = field(default_factory=list)
    #: Confidence of the detection: the lattice's spectral peaks over the spectrum's background (noise ≈ 4).
    contrast: float | None = None

    @property
    def pitch_px(self) -> float:
        """Mean lenslet pitch (pixels) over the two lattice directions."""
        return float(np.mean(np.linalg.norm(self.lattice, axis=1)))

    @property
    def pitch_yx_px(self) -> tuple[float, float]:
        """Pitch along the row and column lattice vectors (pixels)."""
        lengths = np.linalg.norm(self.lattice, axis=1)
        return float(lengths[0]), float(lengths[1])

    @property
    def rotation_deg(self) -> float:
        """Angle of the column lattice vector from the +x axis, towards +y (degrees)."""
        dy, dx = self.lattice[1]
        return float(math.degrees(math.atan2(dy, dx)))

    @property
    def offset_px(self) -> tuple[float, float]:
        """``(y, x)`` of the lenslet centre nearest the pixel origin, reduced into the first lattice cell."""
        inverse = np.linalg.inv(self.lattice.T)
        fractional = inverse @ np.asarray(self.centre_px)
        cell = fractional - np.floor(fractional)
        position = self.lattice.T @ cell
        return float(position[0]), float(position[1])

    def pixels_per_lenslet(self) -> int:
        """The odd integer nearest the pitch: the rectified tile size."""
        n = int(round(self.pitch_px))
        return n if n % 2 == 1 else (n + 1 if self.pitch_px >= n else n - 1)

    def lenslet_centres(self) -> np.ndarray:
        """``(N, 2)`` ``(y, x)`` centres of every lenslet whose centre lies inside the frame."""
        rows, cols = self._index_range(margin=0.0)
        jj, ll = np.meshgrid(rows, cols, indexing="ij")
        centres = (
            np.asarray(self.centre_px)[None]
            + jj.reshape(-1, 1) * self.lattice[0][None]
            + ll.reshape(-1, 1) * self.lattice[1][None]
        )
        height, width = self.frame_shape
        inside = (
            (centres[:, 0] >= 0) & (centres[:, 0] <= height - 1) & (centres[:, 1] >= 0) & (centres[:, 1] <= width - 1)
        )
        return centres[inside]

    def _index_range(self, margin: float) -> tuple[np.ndarray, np.ndarray]:
        """Lenslet row/column indices (relative to the centre lenslet) whose tiles, grown by ``margin``, fit."""
        height, width = self.frame_shape
        inverse = np.linalg.inv(self.lattice.T)
        corners = np.array([[0, 0], [0, width - 1], [height - 1, 0], [height - 1, width - 1]], dtype=np.float64)
        fractional = (inverse @ (corners - np.asarray(self.centre_px)).T).T
        lo = np.floor(fractional.min(axis=0)).astype(int) - 1
        hi = np.ceil(fractional.max(axis=0)).astype(int) + 1
        return np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (the CLI's ``--json`` line)."""
        return {
            "pitch_px": self.pitch_px,
            "pitch_row_col_px": list(self.pitch_yx_px),
            "rotation_deg": self.rotation_deg,
            "offset_px": list(self.offset_px),
            "centre_px": [float(v) for v in self.centre_px],
            "pixels_per_lenslet": self.pixels_per_lenslet(),
            "lattice_px": self.lattice.tolist(),
            "frame_shape": list(self.frame_shape),
            "nominal_pitch_px": self.nominal_pitch_px,
            "contrast": self.contrast,
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- grid detection
def _spectrum_peaks(image: np.ndarray, min_period: float, max_period: float) -> tuple[list[np.ndarray], float]:
    """Two fundamental lattice frequencies ``(ky, kx)`` (cycles/px) from the windowed, zero-padded spectrum.

    Also returns the lattice's *contrast*: the weaker peak's spectral magnitude
    over the median magnitude in the searched band. Pure noise gives about 4
    at any frame size (the largest of ~10⁶ Rayleigh samples over their
    median); lenslet lattices give hundreds to thousands.
    """
    height, width = image.shape
    window = np.outer(np.hanning(height), np.hanning(width))
    pad = 4
    spectrum = np.abs(np.fft.fft2((image - image.mean()) * window, s=(pad * height, pad * width)))
    spectrum = np.fft.fftshift(spectrum)
    ky = np.fft.fftshift(np.fft.fftfreq(pad * height))
    kx = np.fft.fftshift(np.fft.fftfreq(pad * width))
    radius = np.hypot(ky[:, None], kx[None, :])
    band = (radius >= 1.0 / max_period) & (radius <= 1.0 / min_period)
    masked = np.where(band, spectrum, 0.0)
    background = float(np.median(spectrum[band])) if np.any(band) else 0.0
    peaks: list[np.ndarray] = []
    heights: list[float] = []
    for _ in range(2):
        index = np.unravel_index(int(np.argmax(masked)), masked.shape)
        if masked[index] <= 0:
            break
        heights.append(float(masked[index]))
        refined = []
        for axis, freqs in ((0, ky), (1, kx)):
            i = index[axis]
            step = [0, 0]
            step[axis] = 1
            if 0 < i < masked.shape[axis] - 1:
                left = spectrum[index[0] - step[0], index[1] - step[1]]
                mid = spectrum[index]
                right = spectrum[index[0] + step[0], index[1] + step[1]]
                denominator = left - 2 * mid + right
                delta = 0.5 * (left - right) / denominator if denominator < 0 else 0.0
            else:
                delta = 0.0
            refined.append(freqs[i] + delta * (freqs[1] - freqs[0]))
        k = np.asarray(refined)
        peaks.append(k)
        # Suppress this peak, its mirror image and everything not roughly orthogonal to it.
        direction = k / np.linalg.norm(k)
        cosine = (ky[:, None] * direction[0] + kx[None, :] * direction[1]) / np.maximum(radius, 1e-12)
        masked = np.where(np.abs(cosine) < 0.5, masked, 0.0)
    if len(peaks) < 2:
        raise ValueError(
            f"no lenslet lattice found in the radiometry frame: expected two strong, roughly orthogonal "
            f"periodicities with periods between {min_period:g} and {max_period:g} px"
        )
    contrast = min(heights) / background if background > 0 else float("inf")
    return peaks, contrast


def _refine_frequency(image: np.ndarray, k: np.ndarray, blocks: int) -> tuple[np.ndarray, float]:
    """One lattice-fit pass: fit the demodulated block phases with a plane; return ``k`` and the phase at r = 0."""
    height, width = image.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    demodulated = (image - image.mean()) * np.exp(-2j * np.pi * (k[0] * yy + k[1] * xx))
    edges_y = np.linspace(0, height, blocks + 1).astype(int)
    edges_x = np.linspace(0, width, blocks + 1).astype(int)
    rows = []
    values = []
    weights = []
    for i in range(blocks):
        for j in range(blocks):
            sl = (slice(edges_y[i], edges_y[i + 1]), slice(edges_x[j], edges_x[j + 1]))
            value = demodulated[sl].sum()
            rows.append((1.0, yy[sl].mean(), xx[sl].mean()))
            values.append(value)
            weights.append(abs(value))
    values_arr = np.asarray(values)
    reference = values_arr[int(np.argmax(weights))]
    # Phases relative to the strongest block, so a small frequency error never wraps.
    phases = np.angle(values_arr * np.conj(reference)) + np.angle(reference)
    design = np.asarray(rows) * np.sqrt(np.asarray(weights))[:, None]
    solution, *_ = np.linalg.lstsq(design, phases * np.sqrt(np.asarray(weights)), rcond=None)
    phi0, gy, gx = solution
    k_new = k + np.array([gy, gx]) / (2 * np.pi)
    return k_new, float(phi0)


#: Passes of the lattice fit per fundamental frequency (two passes reach ~1e-4 px; the third confirms).
REFINE_PASSES = 3


def calibrate_lightfield_stream(
    radiometry: np.ndarray,
    dark: np.ndarray | None = None,
    *,
    nominal_pitch_px: float | None = None,
    min_period: float = 4.0,
    max_period: float = 64.0,
    blocks: int = 4,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[Update]:
    """:func:`calibrate_lightfield` as a stream: ``progress`` after the spectrum and each lattice-fit pass.

    The last update is ``result`` with the :class:`LightFieldCalibration`.
    ``should_stop()`` is checked before every step; when it returns True the
    stream ends without a result.
    """
    radiometry = np.asarray(radiometry, dtype=np.float64)
    if radiometry.ndim != 2:
        raise ValueError(f"the radiometry frame must be a 2-D (Y, X) image, got shape {radiometry.shape}")
    if dark is not None:
        dark = np.asarray(dark, dtype=np.float64)
        if dark.shape != radiometry.shape:
            raise ValueError(
                f"the dark frame is {dark.shape} but the radiometry frame is {radiometry.shape}; expected the same size"
            )
        radiometry = radiometry - dark
    if min(radiometry.shape) < 4 * min_period:
        raise ValueError(f"the radiometry frame {radiometry.shape} is too small to hold a lenslet lattice")
    steps = 1 + 2 * REFINE_PASSES
    if should_stop():
        return
    peaks, contrast = _spectrum_peaks(radiometry, min_period, max_period)
    if contrast < MIN_LATTICE_CONTRAST:
        raise ValueError(
            f"no lenslet lattice found in the radiometry frame: its strongest periodicities stand only "
            f"{contrast:.1f}× above the spectrum's background (noise gives about 4; a lattice needs "
            f"{MIN_LATTICE_CONTRAST:g}×). Is this a radiometry (white) frame of the lenslet array, and its "
            f"pitch between {min_period:g} and {max_period:g} px?"
        )
    yield Update("progress", 1 / steps, f"lenslet lattice: spectrum peaks found (contrast {contrast:.0f}×)")
    refined = []
    for index, k in enumerate(peaks):
        phase = 0.0
        for step in range(REFINE_PASSES):
            if should_stop():
                return
            k, phase = _refine_frequency(radiometry, k, blocks)
            done = 2 + index * REFINE_PASSES + step
            yield Update("progress", done / steps, f"lenslet lattice: direction {index + 1}, fit pass {step + 1}")
        refined.append((k, phase))
    k_matrix = np.stack([k for k, _ in refined])  # rows k1, k2 (cycles/px, (ky, kx))
    phases = np.array([p for _, p in refined])
    # Real-space lattice vectors: columns of inv(K) (a_i · k_j = δ_ij).
    vectors = np.linalg.inv(k_matrix).T  # rows a1, a2 as (dy, dx)
    # Order and orient: a_row mostly along +y, a_col mostly along +x.
    if abs(vectors[0, 1]) > abs(vectors[0, 0]):
        vectors = vectors[::-1]
        k_matrix = k_matrix[::-1]
        phases = phases[::-1]
    signs = np.array([np.sign(vectors[0, 0]) or 1.0, np.sign(vectors[1, 1]) or 1.0])
    vectors = vectors * signs[:, None]
    k_matrix = k_matrix * signs[:, None]
    phases = phases * signs
    # Tile centres: k_i · r + φ_i / 2π ∈ ℤ (the demodulated phase is that of the cosine's maximum).
    centre_frame = np.array([(radiometry.shape[0] - 1) / 2, (radiometry.shape[1] - 1) / 2])
    target = k_matrix @ centre_frame + phases / (2 * np.pi)
    nearest = np.round(target) - phases / (2 * np.pi)
    centre = np.linalg.solve(k_matrix, nearest)
    calibration = LightFieldCalibration(
        lattice=vectors,
        centre_px=(float(centre[0]), float(centre[1])),
        frame_shape=(int(radiometry.shape[0]), int(radiometry.shape[1])),
        nominal_pitch_px=None if nominal_pitch_px is None else float(nominal_pitch_px),
        contrast=float(contrast),
    )
    if nominal_pitch_px is not None:
        ratio = calibration.pitch_px / float(nominal_pitch_px)
        if abs(ratio - 1) > PITCH_DISAGREEMENT:
            calibration.notes.append(
                f"measured lenslet pitch {calibration.pitch_px:.3f} px disagrees with the nominal "
                f"{nominal_pitch_px:.3f} px from the optics (ratio {ratio:.4f}); the measured pitch is used — "
                "the relay magnification is probably not exactly the nominal one"
            )
    yield Update("result", 1.0, f"lenslet pitch {calibration.pitch_px:.4f} px", calibration)


def calibrate_lightfield(
    radiometry: np.ndarray,
    dark: np.ndarray | None = None,
    *,
    nominal_pitch_px: float | None = None,
    min_period: float = 4.0,
    max_period: float = 64.0,
    blocks: int = 4,
) -> LightFieldCalibration:
    """Measure the lenslet grid (pitch, rotation, offset) from a radiometry frame (and its dark frame).

    ``nominal_pitch_px`` (from the optics) is only compared with the result;
    a relative disagreement above 1 % is written into ``notes``.
    """
    stream = calibrate_lightfield_stream(
        radiometry, dark, nominal_pitch_px=nominal_pitch_px, min_period=min_period, max_period=max_period, blocks=blocks
    )
    return result_of(stream)


def nominal_pitch_px(lenslet_pitch_um: float, camera_pixel_um: float, relay_magnification: float = 1.0) -> float:
    """Lenslet pitch on the sensor in pixels implied by the optics."""
    if lenslet_pitch_um <= 0 or camera_pixel_um <= 0 or relay_magnification <= 0:
        raise ValueError("lenslet pitch, camera pixel and relay magnification must be positive")
    return lenslet_pitch_um * relay_magnification / camera_pixel_um


# --------------------------------------------------------------------------- rectification
def rectify(
    frame: np.ndarray,
    calibration: LightFieldCalibration,
    *,
    pixels_per_lenslet: int | None = None,
    dark: np.ndarray | None = None,
    order: int = 1,
) -> np.ndarray:
    """Resample ``frame`` (``(…, Y, X)``) onto an axis-aligned grid of ``Nnum × Nnum``-pixel lenslet tiles.

    Only lenslets whose whole tile lies inside the frame are kept; the output
    is ``(…, Ny·Nnum, Nx·Nnum)`` float32 with each lenslet centre at pixel
    ``Nnum // 2`` of its tile (dark frame subtracted when given, clipped at 0).
    """
    from scipy import ndimage

    frame = np.asarray(frame, dtype=np.float64)
    if frame.shape[-2:] != calibration.frame_shape:
        raise ValueError(
            f"the frame is {frame.shape[-2:]} but the calibration was measured on {calibration.frame_shape}; "
            "expected frames of the same size"
        )
    if dark is not None:
        dark = np.asarray(dark, dtype=np.float64)
        if dark.shape != frame.shape[-2:]:
            raise ValueError(f"the dark frame is {dark.shape}, expected {frame.shape[-2:]} like the light field")
        frame = np.clip(frame - dark, 0.0, None)
    nnum = calibration.pixels_per_lenslet() if pixels_per_lenslet is None else int(pixels_per_lenslet)
    if nnum < 1 or nnum % 2 == 0:
        raise ValueError(f"pixels_per_lenslet must be an odd positive integer, got {nnum}")
    rows, cols = _full_tiles(calibration)
    if rows.size == 0 or cols.size == 0:
        raise ValueError("no whole lenslet tile fits in the frame; expected a frame several lenslets wide")
    # Sub-lenslet position of each output pixel, in lenslet units, centred on the lenslet centre.
    sub = (np.arange(nnum) - nnum // 2) / nnum
    fy = (rows[:, None] + sub[None, :]).reshape(-1)  # output row → fractional lenslet row
    fx = (cols[:, None] + sub[None, :]).reshape(-1)
    centre = np.asarray(calibration.centre_px)
    a_row, a_col = calibration.lattice
    ys = centre[0] + fy[:, None] * a_row[0] + fx[None, :] * a_col[0]
    xs = centre[1] + fy[:, None] * a_row[1] + fx[None, :] * a_col[1]
    lead = frame.shape[:-2]
    flat = frame.reshape(-1, *frame.shape[-2:])
    out = np.stack([ndimage.map_coordinates(f, [ys, xs], order=order, mode="nearest") for f in flat])
    return np.clip(out, 0.0, None).astype(np.float32).reshape(*lead, ys.shape[0], ys.shape[1])


def _full_tiles(calibration: LightFieldCalibration) -> tuple[np.ndarray, np.ndarray]:
    """Lenslet row and column indices whose complete tile (±half a pitch) lies inside the frame."""
    rows, cols = calibration._index_range(0.0)
    height, width = calibration.frame_shape
    centre = np.asarray(calibration.centre_px)
    a_row, a_col = calibration.lattice

    def inside(j: float, l: float) -> bool:
        corners = [centre + (j + sj * 0.5) * a_row + (l + sl * 0.5) * a_col for sj in (-1, 1) for sl in (-1, 1)]
        return all(0 <= c[0] <= height - 1 and 0 <= c[1] <= width - 1 for c in corners)

    good_rows = np.array([j for j in rows if inside(j, 0)] or [], dtype=int)
    good_cols = np.array([l for l in cols if inside(0, l)] or [], dtype=int)
    # The grid must be rectangular: keep rows/columns whose corner tiles are all inside.
    while good_rows.size and good_cols.size:
        corner_ok = all(inside(j, l) for j in (good_rows[0], good_rows[-1]) for l in (good_cols[0], good_cols[-1]))
        if corner_ok:
            break
        # Drop the outermost row or column (whichever is further from the centre).
        if max(abs(good_rows[0]), abs(good_rows[-1])) >= max(abs(good_cols[0]), abs(good_cols[-1])):
            good_rows = good_rows[1:] if abs(good_rows[0]) >= abs(good_rows[-1]) else good_rows[:-1]
        else:
            good_cols = good_cols[1:] if abs(good_cols[0]) >= abs(good_cols[-1]) else good_cols[:-1]
    return good_rows, good_cols


def rectified_views(
    frame: np.ndarray,
    calibration: LightFieldCalibration,
    *,
    pixels_per_lenslet: int | None = None,
    dark: np.ndarray | None = None,
) -> np.ndarray:
    """Rectify ``frame`` and rearrange it into angular views ``(…, Nnum², Ny, Nx)``."""
    nnum = calibration.pixels_per_lenslet() if pixels_per_lenslet is None else int(pixels_per_lenslet)
    return raw_to_views(rectify(frame, calibration, pixels_per_lenslet=nnum, dark=dark), nnum)


def synthetic_radiometry(
    shape: Sequence[int],
    pitch_px: float,
    rotation_deg: float,
    centre_px: Sequence[float],
    *,
    fill: float = 0.8,
    level: float = 1000.0,
    seed: int | None = 0,
) -> np.ndarray:
    """A radiometry-like frame: smooth round lenslet tiles on a rotated square lattice (for tests and demos).

    Tile ``(j, l)`` is centred at ``centre + j·a_row + l·a_col`` with
    ``a_col = pitch (cos θ, sin θ)`` in ``(x, y)`` and ``a_row`` perpendicular;
    each tile is a disc of diameter ``fill · pitch`` with a raised-cosine
    edge; Poisson noise at ``level`` photons on the tile plateau when ``seed`` is not ``None``.
    """
    height, width = (int(s) for s in shape)
    theta = math.radians(rotation_deg)
    a_col = pitch_px * np.array([math.sin(theta), math.cos(theta)])  # (dy, dx)
    a_row = pitch_px * np.array([math.cos(theta), -math.sin(theta)])
    lattice = np.stack([a_row, a_col])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    rel = np.stack([yy - centre_px[0], xx - centre_px[1]], axis=-1)
    fractional = rel @ np.linalg.inv(lattice.T).T  # lattice coordinates of every pixel
    nearest = np.round(fractional)
    offset = (fractional - nearest) @ lattice  # vector to the nearest lenslet centre (px)
    distance = np.linalg.norm(offset, axis=-1)
    radius = 0.5 * fill * pitch_px
    edge = 1.5
    tile = np.clip((radius + edge - distance) / (2 * edge), 0.0, 1.0)
    tile = 0.5 - 0.5 * np.cos(np.pi * tile)
    image = level * tile + 0.02 * level
    if seed is not None:
        image = np.random.default_rng(seed).poisson(image).astype(np.float64)
    return image.astype(np.float32)
