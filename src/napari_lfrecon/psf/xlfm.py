"""Fourier light-field (XLFM / FLFM) PSF: one elemental image per pupil sub-aperture.

Model (scalar Fourier optics; Cong et al. 2017 eLife, Guo et al. 2019 FLFM):
a microlens array sits in a plane conjugate to the objective's pupil. Lenslet
``k`` is a circular sub-aperture of the pupil centred at ``ρ_k`` (NA-normalised
pupil coordinates: ``ρ = 1`` is the pupil edge, i.e. spatial frequency
``NA/λ``) with radius ``r_k`` (same unit). It forms its own image of the sample
(a *view*) on the sensor, centred at sensor pixel ``c_k``. For a point source
at depth ``z`` (object space, µm, 0 = focal plane) the view's intensity is

    h_k(x; z) = | F⁻¹{ A_k(k_xy) · exp(i·2π·z·k_z(k_xy)) } |²,
    k_z = sqrt((n/λ)² − |k_xy|²),

where ``A_k`` is the support of the sub-aperture (its disc intersected with the
pupil disc ``|k_xy| ≤ NA/λ``). Off-axis sub-apertures turn defocus mostly into
a lateral shift ``z · tan θ_k`` along ``+ρ_k`` (parallax; ``sin θ_k = |ρ_k|·NA/n``):
with this sign convention a point at ``z > 0`` moves every view *outwards*.

The sensor image of an on-axis point is ``H[z] = Σ_k shift_{c_k}(h_k(·; z))``.
Each view is truncated to its window of ``view_size`` pixels around ``c_k``
(the field stop of a real XLFM keeps views apart); light falling outside the
window is dropped. Each depth plane of ``H`` is normalised to sum 1, so a unit
point source gives unit total signal at every depth.

Sampling: the lateral pixel is the camera pixel in object space
(``pixel_um``); the volume the operator maps from uses the same lateral
sampling. Pixel integration is modelled by computing each view on a grid
``supersample`` times finer (odd factor) and summing ``s × s`` blocks. The
field is computed on a grid twice the view size so that defocused tails do not
wrap around into the window. Each sub-aperture is evaluated in local
frequency coordinates around its own centre: the carrier ``exp(i2π k_0·x)`` has
unit modulus, so the intensity is unchanged and the grid only needs to resolve
the sub-aperture's own bandwidth.

Default layout: ``n`` sub-apertures on a hexagonal lattice inside the pupil disc
(for ``n = 27`` the lattice is centred on a triangle centroid, which has a
closed shell of exactly 27 points), scaled so the outermost discs touch the pupil
edge and neighbouring discs touch each other. The original XLFM used two
interleaved groups of lenslets with different focal lengths; one group of equal
lenslets is what this model implements. Zernike aberrations are not modelled yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..physics.xlfm import view_windows, windows_overlap  # noqa: F401 (windows_overlap: re-exported)
from .model import PSF

#: Lattice offsets tried by :func:`default_lenslet_layout`, in lattice pitches:
#: centred on a lattice point, a triangle centroid and an edge midpoint.
_HEX_OFFSETS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (math.sqrt(3) / 6, 0.5), (0.0, 0.5))
#: Relative tolerance when grouping lattice points into shells of equal radius.
_SHELL_TOL = 1e-9
#: Field-computation grid = this factor × the view window (avoids wrap-around of defocused tails).
_FIELD_PAD_FACTOR = 2


def _hex_points(offset: tuple[float, float], half: int) -> np.ndarray:
    """Hexagonal lattice points (y, x), unit pitch, rows along x, shifted by ``-offset``."""
    i, j = np.meshgrid(np.arange(-half, half + 1), np.arange(-half, half + 1), indexing="xy")
    x = i + 0.5 * j - offset[1]
    y = j * math.sqrt(3) / 2 - offset[0]
    return np.stack([y.ravel(), x.ravel()], axis=1)


def default_lenslet_layout(n: int = 27) -> np.ndarray:
    """Centres ``(n, 2)`` (y, x) of ``n`` equal sub-apertures hex-packed in the unit pupil disc.

    NA-normalised pupil coordinates (``|ρ| = 1`` is the pupil edge). Among three
    lattice offsets (lattice point, triangle centroid, edge midpoint) the one
    whose ``n`` nearest points reach the smallest radius is used, preferring
    offsets where ``n`` closes a shell (so the layout is symmetric). The pitch
    is ``1 / (R + 1/2)`` with ``R`` the outermost distance in pitches, so with
    :func:`default_lenslet_radius` the outer discs touch the pupil edge.
    Points are ordered by radius, then by angle.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"the number of lenslets must be a positive integer, got {n!r}")
    n = int(n)
    half = int(math.ceil(math.sqrt(n))) + 3
    best: tuple[bool, float, np.ndarray] | None = None
    for offset in _HEX_OFFSETS:
        pts = _hex_points(offset, half)
        radius = np.hypot(pts[:, 0], pts[:, 1])
        angle = np.mod(np.arctan2(pts[:, 0], pts[:, 1]), 2 * np.pi)
        order = np.lexsort((angle, np.round(radius / _SHELL_TOL) * _SHELL_TOL))
        pts, radius = pts[order], radius[order]
        outer = radius[n - 1]
        closed = n == len(radius) or radius[n] > outer * (1 + _SHELL_TOL) + _SHELL_TOL
        key = (not closed, outer)
        if best is None or key < (not best[0], best[1]):
            best = (closed, outer, pts[:n])
    assert best is not None
    _, outer, pts = best
    pitch = 1.0 / (outer + 0.5)
    return pts * pitch


def default_lenslet_radius(pupil_centres: np.ndarray) -> float:
    """Largest common radius for non-overlapping discs at ``pupil_centres`` inside the unit pupil."""
    pupil_centres = _as_centres(pupil_centres, "lenslet_pupil_centres")
    edge = float(np.min(1.0 - np.hypot(pupil_centres[:, 0], pupil_centres[:, 1])))
    if len(pupil_centres) > 1:
        gaps = np.linalg.norm(pupil_centres[:, None] - pupil_centres[None], axis=-1)
        gaps[np.diag_indices_from(gaps)] = np.inf
        edge = min(edge, float(gaps.min()) / 2)
    if edge <= 0:
        raise ValueError("lenslet pupil centres must lie inside the unit pupil and be distinct")
    return edge


def default_sensor_centres(
    pupil_centres: np.ndarray, sensor_shape: tuple[int, int], view_size: tuple[int, int]
) -> tuple[np.ndarray, float]:
    """Integer sensor centres ``c_k = sensor_centre + ρ_k · S`` with the largest ``S`` keeping views on the sensor.

    Returns ``(centres (N, 2) float64 pixels, S in pixels per unit pupil radius)``.
    The sensor centre is pixel ``(H // 2, W // 2)`` (the optical axis).
    """
    pupil_centres = _as_centres(pupil_centres, "lenslet_pupil_centres")
    origin = np.array([s // 2 for s in sensor_shape], dtype=np.float64)
    scale = np.inf
    for axis in range(2):
        size, view = sensor_shape[axis], view_size[axis]
        # room before and after the optical axis for a window starting at c - view//2
        room_neg = origin[axis] - view // 2 - 0.5
        room_pos = size - 1 - origin[axis] - (view - 1 - view // 2) - 0.5
        lo, hi = pupil_centres[:, axis].min(), pupil_centres[:, axis].max()
        if hi > 0:
            scale = min(scale, room_pos / hi)
        if lo < 0:
            scale = min(scale, room_neg / -lo)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"views of size {view_size} do not fit on a sensor of shape {sensor_shape}")
    centres = np.round(origin + pupil_centres * scale)
    return centres.astype(np.float64), float(scale)


def _as_centres(value: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a finite (N, 2) array of (y, x) positions, got shape {arr.shape}")
    return arr


def _pair(value: tuple[int, int], name: str) -> tuple[int, int]:
    pair = tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1 or any(int(v) != v for v in value):
        raise ValueError(f"{name} must be two positive integers (rows, cols), got {value!r}")
    return pair  # type: ignore[return-value]


@dataclass(eq=False)
class XLFMOptics:
    """Optics of a Fourier light-field microscope (all lengths in µm, object space).

    Attributes
    ----------
    na, immersion_index, wavelength_um:
        Objective NA (must be below the immersion index), immersion refractive
        index and emission wavelength.
    pixel_um:
        Camera pixel size in object space (camera pixel / effective
        magnification); also the lateral voxel size of the volume.
    sensor_shape:
        ``(H, W)`` of the raw frame in pixels.
    view_size:
        ``(h, w)`` of one elemental image (view) window.
    lenslet_pupil_centres:
        ``(N, 2)`` sub-aperture centres ``(y, x)`` in NA-normalised pupil units;
        ``None`` → :func:`default_lenslet_layout` with 27 lenslets.
    lenslet_radius:
        Sub-aperture radius (scalar or ``(N,)``), NA-normalised; ``None`` →
        :func:`default_lenslet_radius` (touching discs).
    centres_px:
        ``(N, 2)`` view centres on the sensor in pixels (row, col); ``None`` →
        :func:`default_sensor_centres` (proportional to ``ρ_k``, filling the
        sensor). Fractional centres are honoured in the PSF (Fourier shift);
        view windows start at ``round(c_k) - view_size // 2``.
    supersample:
        Odd sub-pixel factor for pixel integration; ``None`` → the smallest odd
        factor that Nyquist-samples the views' intensity.
    magnification:
        Effective magnification, only recorded (with the camera pixel it implies).
    """

    na: float = 1.0
    immersion_index: float = 1.33
    wavelength_um: float = 0.525
    pixel_um: float = 1.0
    sensor_shape: tuple[int, int] = (384, 384)
    view_size: tuple[int, int] = (56, 56)
    lenslet_pupil_centres: np.ndarray | None = None
    lenslet_radius: float | np.ndarray | None = None
    centres_px: np.ndarray | None = None
    supersample: int | None = None
    magnification: float | None = None
    pupil_to_sensor_px: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        for name in ("na", "immersion_index", "wavelength_um", "pixel_um"):
            value = float(getattr(self, name))
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"XLFMOptics.{name} must be a positive number, got {getattr(self, name)!r}")
            setattr(self, name, value)
        if self.na >= self.immersion_index:
            raise ValueError(f"NA ({self.na}) must be below the immersion index ({self.immersion_index})")
        self.sensor_shape = _pair(self.sensor_shape, "sensor_shape")
        self.view_size = _pair(self.view_size, "view_size")
        if self.lenslet_pupil_centres is None:
            self.lenslet_pupil_centres = default_lenslet_layout(27)
        self.lenslet_pupil_centres = _as_centres(self.lenslet_pupil_centres, "lenslet_pupil_centres")
        n = len(self.lenslet_pupil_centres)
        if self.lenslet_radius is None:
            self.lenslet_radius = default_lenslet_radius(self.lenslet_pupil_centres)
        radius = np.broadcast_to(np.asarray(self.lenslet_radius, dtype=np.float64), (n,))
        if not np.all(np.isfinite(radius)) or radius.min() <= 0:
            raise ValueError(f"lenslet_radius must be positive (scalar or ({n},)), got {self.lenslet_radius!r}")
        self.lenslet_radius = float(radius[0]) if np.all(radius == radius[0]) else radius.copy()
        if self.centres_px is None:
            self.centres_px, self.pupil_to_sensor_px = default_sensor_centres(
                self.lenslet_pupil_centres, self.sensor_shape, self.view_size
            )
        self.centres_px = _as_centres(self.centres_px, "centres_px")
        if len(self.centres_px) != n:
            raise ValueError(f"centres_px must have one row per lenslet ({n}), got {len(self.centres_px)}")
        corners = view_windows(self.centres_px, self.view_size)
        ends = corners + np.array(self.view_size)
        if corners.min() < 0 or np.any(ends > np.array(self.sensor_shape)):
            raise ValueError(f"every view window of size {self.view_size} must lie on the {self.sensor_shape} sensor")
        if self.supersample is None:
            self.supersample = self.auto_supersample()
        if int(self.supersample) != self.supersample or self.supersample < 1 or self.supersample % 2 == 0:
            raise ValueError(f"supersample must be a positive odd integer, got {self.supersample!r}")
        self.supersample = int(self.supersample)
        if self.magnification is not None and float(self.magnification) <= 0:
            raise ValueError(f"magnification must be positive, got {self.magnification!r}")

    @property
    def n_lenslets(self) -> int:
        """Number of lenslets (views)."""
        return len(self.lenslet_pupil_centres)  # type: ignore[arg-type]

    def radii(self) -> np.ndarray:
        """Sub-aperture radii ``(N,)`` in NA-normalised units."""
        return np.broadcast_to(np.asarray(self.lenslet_radius, dtype=np.float64), (self.n_lenslets,)).copy()

    def auto_supersample(self) -> int:
        """Smallest odd factor whose sub-pixel Nyquist-samples the intensity of the widest sub-aperture."""
        bandwidth = 2 * float(np.max(self.radii())) * self.na / self.wavelength_um  # intensity cut-off, cycles/µm
        factor = max(1, math.ceil(2 * bandwidth * self.pixel_um))
        return factor if factor % 2 else factor + 1

    def parallax_per_um(self) -> np.ndarray:
        """Lateral shift ``(N, 2)`` (y, x) in pixels per µm of depth of each view's spot: ``tan θ_k · ρ̂_k / pixel``."""
        rho = self.lenslet_pupil_centres * self.na / self.wavelength_um  # type: ignore[operator]
        kz = np.sqrt((self.immersion_index / self.wavelength_um) ** 2 - np.sum(rho**2, axis=1))
        return rho / kz[:, None] / self.pixel_um

    def to_dict(self) -> dict:
        """JSON-able description (stored as the PSF's ``optics``)."""
        out = {
            "na": self.na,
            "immersion_index": self.immersion_index,
            "wavelength_um": self.wavelength_um,
            "pixel_um": self.pixel_um,
            "sensor_shape": list(self.sensor_shape),
            "view_size": list(self.view_size),
            "n_lenslets": self.n_lenslets,
            "lenslet_pupil_centres": np.asarray(self.lenslet_pupil_centres).tolist(),
            "lenslet_radius": np.asarray(self.lenslet_radius).tolist(),
            "supersample": self.supersample,
            "pupil_to_sensor_px": self.pupil_to_sensor_px,
            "z_sign": "z > 0 shifts each view along +rho_k (outwards)",
            "normalisation": "each depth plane sums to 1",
        }
        if self.magnification is not None:
            out["magnification"] = float(self.magnification)
            out["camera_pixel_um"] = self.pixel_um * float(self.magnification)
        return out


def _view_stack(
    optics: XLFMOptics, k: int, z: torch.Tensor, fine: tuple[int, int], device: torch.device
) -> torch.Tensor:
    """Intensity ``(D, h, w)`` of lenslet ``k``'s view at depths ``z`` (float64, binned to sensor pixels)."""
    s = optics.supersample
    h, w = optics.view_size
    dx = optics.pixel_um / s  # type: ignore[operator]
    f64 = dict(dtype=torch.float64, device=device)
    ky = torch.fft.fftfreq(fine[0], d=dx, **f64)[:, None]
    kx = torch.fft.fftfreq(fine[1], d=dx, **f64)[None, :]
    cutoff = optics.na / optics.wavelength_um
    k0 = optics.lenslet_pupil_centres[k] * cutoff  # type: ignore[index]
    sub = optics.radii()[k] * cutoff
    ay, ax = ky + float(k0[0]), kx + float(k0[1])  # absolute pupil frequencies
    k2 = ay**2 + ax**2
    support = (ky**2 + kx**2 <= sub**2) & (k2 <= cutoff**2)
    kz = torch.sqrt(torch.clamp((optics.immersion_index / optics.wavelength_um) ** 2 - k2, min=0.0))
    # Where the optical axis of this view sits on the fine grid: the middle of view
    # pixel (h//2, w//2) inside the central window, plus the fractional centre.
    centre = np.asarray(optics.centres_px[k], dtype=np.float64)  # type: ignore[index]
    frac = centre - np.round(centre)
    start = [(fine[0] - h * s) // 2, (fine[1] - w * s) // 2]
    origin = [start[0] + (h // 2) * s + s // 2 + frac[0] * s, start[1] + (w // 2) * s + s // 2 + frac[1] * s]
    ramp = -2j * math.pi * (ky * origin[0] + kx * origin[1]) * dx
    phase = 2j * math.pi * z[:, None, None] * kz[None] + ramp[None]
    spectrum = torch.where(support[None], torch.exp(phase), torch.zeros((), dtype=torch.complex128, device=device))
    field_ = torch.fft.ifft2(spectrum)
    intensity = field_.real**2 + field_.imag**2
    window = intensity[:, start[0] : start[0] + h * s, start[1] : start[1] + w * s]
    return window.reshape(len(z), h, s, w, s).sum(dim=(2, 4))


def xlfm_psf(optics: XLFMOptics, z_planes_um: np.ndarray, *, device: str | torch.device | None = None) -> PSF:
    """Sensor image ``(D, H, W)`` of an on-axis point at each depth in ``z_planes_um``.

    Each depth plane is normalised to sum 1. The returned :class:`PSF` has
    modality ``"xlfm"``, voxel size ``(dz, pixel_um, pixel_um)`` (``dz`` = plane
    spacing, which must be uniform; ``pixel_um`` for a single plane),
    ``arrays["centres"]`` = the ``(N, 2)`` float64 view centres in pixels, and
    ``optics`` = :meth:`XLFMOptics.to_dict`. Computed in float64 on ``device``
    (default CPU), stored as float32.
    """
    z = np.asarray(z_planes_um, dtype=np.float64).ravel()
    if len(z) == 0 or not np.all(np.isfinite(z)):
        raise ValueError("z_planes_um must be a non-empty sequence of finite depths in µm")
    if len(z) > 1:
        steps = np.diff(z)
        if steps.min() <= 0 or np.ptp(steps) > 1e-6 * abs(steps.mean()):
            raise ValueError("z_planes_um must be strictly increasing with uniform spacing")
        dz = float(steps.mean())
    else:
        dz = optics.pixel_um
    device = torch.device(device) if device is not None else torch.device("cpu")
    h, w = optics.view_size
    s = optics.supersample
    fine = (_FIELD_PAD_FACTOR * h * s, _FIELD_PAD_FACTOR * w * s)  # type: ignore[operator]
    z_t = torch.as_tensor(z, dtype=torch.float64, device=device)
    sensor = torch.zeros((len(z), *optics.sensor_shape), dtype=torch.float64, device=device)
    for k, (top, left) in enumerate(view_windows(optics.centres_px, optics.view_size)):  # type: ignore[arg-type]
        sensor[:, top : top + h, left : left + w] += _view_stack(optics, k, z_t, fine, device)
    totals = sensor.sum(dim=(1, 2), keepdim=True)
    if torch.any(totals <= 0):
        raise ValueError("a PSF depth plane received no light; check the lenslet layout and view size")
    array = (sensor / totals).to(torch.float32).cpu().numpy()
    return PSF(
        array=array,
        modality="xlfm",
        voxel_size=(dz, optics.pixel_um, optics.pixel_um),
        optics=optics.to_dict(),
        zernike=np.zeros(0),
        z_planes_um=z,
        arrays={"centres": np.asarray(optics.centres_px, dtype=np.float64)},
    )
