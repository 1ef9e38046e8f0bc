"""Calibrate a widefield PSF from a bead stack: find the bead, then fit position, flux, background and aberrations.

Model of the cropped stack ``d`` (photo-electrons or camera counts):

    m(z, y, x) = A · h(z - z0, y - y0, x - x0; c, NA) + b,

with ``h`` the scalar-pupil PSF of :mod:`.widefield` (the same pupil grid,
Zernike basis and propagation, evaluated at shifted sample positions so the
shift is exact and differentiable), normalised so that one plane of an
unclipped PSF carries unit energy: ``A`` is the bead's photons per plane.
The fit minimises the Poisson negative log-likelihood ``Σ m - d log m`` (or
least squares) by L-BFGS over ``(z0, y0, x0, log A, b, c_j, [NA])``.

Piston (j = 0) does not change the intensity and tip/tilt (1, 2) and defocus
(4) trade off against the lateral and axial position, so they are held at 0
and the bead's position absorbs them. The *unaberrated* fit is the same fit
with every Zernike coefficient held at 0; the ratio of the two χ² values says
how much the aberrations explain.

χ² is Pearson's, per degree of freedom: ``Σ (d - m)² / m / (N - p)`` (≈ 1 for
a correct model of Poisson data; camera read noise and offset push it up).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..jobs.protocol import Update, Volume, result_of
from .model import PSF
from .pupil import (
    aberrated_pupil,
    centred_coordinates,
    field_from_pupil,
    make_pupil_grid,
    propagation_factors,
    pupil_samples_for,
)
from .zernike import ZERNIKE_NAMES

#: Modes a bead cannot reveal (they trade off against position or do nothing).
UNREVEALABLE_MODES: tuple[int, ...] = (0, 1, 2, 4)
#: Default fitted modes: ANSI 3 and 5..14 (astigmatism, coma, trefoil, spherical, 2nd astig., quadrafoil).
DEFAULT_MODES: tuple[int, ...] = (3, *range(5, 15))


@dataclass
class BeadLocation:
    """Where the bead is in the stack and how bright it is above background."""

    index_zyx: tuple[int, int, int]
    background: float
    noise_sigma: float
    peak_above_background: float


@dataclass
class BeadFit:
    """The outcome of one bead fit.

    ``zernike`` holds coefficients in waves for ANSI ``j = 0 .. max(modes)``
    (the unfitted ones are 0). ``position_um`` is ``(z0, y0, x0)`` of the bead
    relative to the crop centre (index ``shape // 2``) and ``centre_index`` the
    bead position in the full stack (fractional voxels).
    """

    zernike: np.ndarray
    modes: tuple[int, ...]
    position_um: tuple[float, float, float]
    centre_index: tuple[float, float, float]
    amplitude: float
    background: float
    na: float
    chi2: float
    loss_history: list[float]
    model: np.ndarray
    crop: np.ndarray
    crop_origin: tuple[int, int, int]


@dataclass
class BeadCalibration:
    """Aberrated and unaberrated fits of one bead stack, and the PSF they imply."""

    fit: BeadFit
    unaberrated: BeadFit
    psf: PSF
    location: BeadLocation
    voxel_size: tuple[float, float, float]
    optics: dict[str, Any] = field(default_factory=dict)

    @property
    def chi2_fit(self) -> float:
        """Reduced Pearson χ² of the aberrated fit."""
        return self.fit.chi2

    @property
    def chi2_unaberrated(self) -> float:
        """Reduced Pearson χ² of the fit with all Zernike coefficients held at 0."""
        return self.unaberrated.chi2

    @property
    def residual(self) -> np.ndarray:
        """Data minus the aberrated model on the crop (float32)."""
        return (self.fit.crop - self.fit.model).astype(np.float32)

    def volume(self) -> Volume:
        """The fitted (aberrated) PSF as a volume at the bead stack's voxel size, the summary as metadata."""
        return Volume(np.asarray(self.psf.array, dtype=np.float32), self.voxel_size, {"calibration": self.summary()})

    def summary(self) -> dict[str, Any]:
        """JSON-able summary: coefficients by ANSI index and name, χ² values, position, flux, NA."""
        coefficients = {str(j): float(self.fit.zernike[j]) for j in self.fit.modes}
        return {
            "zernike_waves": coefficients,
            "zernike_names": {str(j): ZERNIKE_NAMES.get(j, f"Z{j}") for j in self.fit.modes},
            "rms_waves": float(np.sqrt(np.sum(self.fit.zernike[list(self.fit.modes)] ** 2))),
            "chi2_unaberrated": float(self.chi2_unaberrated),
            "chi2_fit": float(self.chi2_fit),
            "centre_index_zyx": [float(v) for v in self.fit.centre_index],
            "amplitude_per_plane": float(self.fit.amplitude),
            "background": float(self.fit.background),
            "na": float(self.fit.na),
            "voxel_size": list(self.voxel_size),
        }


# --------------------------------------------------------------------------- finding the bead
def _robust_background(stack: np.ndarray) -> tuple[float, float]:
    """Median and MAD-based sigma of the stack: the bead covers a small fraction of the voxels."""
    values = stack.ravel()
    if values.size > 2_000_000:  # a strided subsample is plenty for two order statistics
        values = values[:: values.size // 1_000_000]
    median = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - median)))
    return median, max(sigma, 1e-6 * max(abs(median), 1.0), 1e-12)


def find_bead(
    stack: np.ndarray,
    *,
    min_snr: float = 10.0,
    second_bead_fraction: float = 0.2,
    border_px: int = 3,
) -> BeadLocation:
    """Locate the single bead in ``stack`` ``(Z, Y, X)``; refuse no bead, several beads or a bead at the border.

    The stack is smoothed (Gaussian, σ = 1 voxel) so single hot pixels do not
    count; the bead is the brightest smoothed voxel, and it must stand
    ``min_snr`` noise sigmas above the median background. Any other
    separate blob (connected region above half its own peak height... counted
    at ``second_bead_fraction`` of the bead's height above background) is a
    second bead. The bead's bright core (above half its height) must stay
    ``border_px`` voxels clear of the lateral borders, and its peak must not be
    in the first or last plane.
    """
    from scipy import ndimage

    stack = np.asarray(stack, dtype=np.float32)
    if stack.ndim != 3 or min(stack.shape) < 3:
        raise ValueError(f"a bead stack must be 3-D (Z, Y, X) with at least 3 voxels per axis, got shape {stack.shape}")
    if not np.all(np.isfinite(stack)):
        raise ValueError("the bead stack contains NaN or Inf values")
    background, sigma = _robust_background(stack)
    smooth = ndimage.gaussian_filter(stack, sigma=1.0, mode="nearest")
    peak_index = tuple(int(i) for i in np.unravel_index(int(np.argmax(smooth)), smooth.shape))
    height = float(smooth[peak_index]) - background
    # Smoothing by σ=1 in 3-D averages ~ (2√π)³ ≈ 45 voxels: the noise of the smoothed image is ~σ/6.7.
    smooth_sigma = sigma / (2.0 * math.sqrt(math.pi)) ** 1.5
    if height < min_snr * smooth_sigma:
        raise ValueError(
            f"no bead found: the brightest (smoothed) voxel is only {height:.3g} above the background "
            f"{background:.3g} (noise σ ≈ {smooth_sigma:.3g}); expected one bead at least {min_snr:g} σ above it"
        )
    # Other beads: local maxima of the in-plane maximum projection, far from the bead, above the fraction.
    projection = smooth.max(axis=0) - background
    footprint = np.ones((9, 9), dtype=bool)
    maxima = (projection == ndimage.maximum_filter(projection, footprint=footprint)) & (
        projection > max(second_bead_fraction * height, min_snr * smooth_sigma)
    )
    core_labels, _ = ndimage.label(projection > 0.5 * height)
    bead_label = core_labels[peak_index[1], peak_index[2]]
    others = [
        (int(y), int(x))
        for y, x in zip(*np.nonzero(maxima), strict=True)
        if core_labels[y, x] != bead_label
        and math.hypot(y - peak_index[1], x - peak_index[2]) > 6.0
        and not _on_rings(projection, (peak_index[1], peak_index[2]), (int(y), int(x)))
    ]
    if others:
        listed = ", ".join(f"(y={y}, x={x})" for y, x in others[:5])
        raise ValueError(
            f"found {1 + len(others)} beads (the brightest at z={peak_index[0]}, y={peak_index[1]}, "
            f"x={peak_index[2]}; others at {listed}); expected exactly one: crop the stack around one bead"
        )
    core = core_labels == bead_label
    ys, xs = np.nonzero(core)
    ny, nx = projection.shape
    if ys.min() < border_px or xs.min() < border_px or ys.max() >= ny - border_px or xs.max() >= nx - border_px:
        raise ValueError(
            f"the bead at (y={peak_index[1]}, x={peak_index[2]}) touches the border of the {ny}×{nx} field "
            f"(its core reaches within {border_px} px of the edge); expected a bead well inside the field"
        )
    if peak_index[0] in (0, stack.shape[0] - 1):
        raise ValueError(
            f"the bead's focus is in plane {peak_index[0]}, the first or last of {stack.shape[0]}; expected "
            "a stack that extends on both sides of the focus"
        )
    return BeadLocation(peak_index, background, sigma, height)


def _on_rings(projection: np.ndarray, bead: tuple[int, int], other: tuple[int, int]) -> bool:
    """Is a local maximum part of the bead's own (ring-symmetric) defocus pattern?

    A defocused bead makes rings, whose local maxima would look like other
    beads; a real second bead breaks the ring symmetry, so the maximum is
    compared with the mean of the projection on the circle through it.
    """
    radius = math.hypot(other[0] - bead[0], other[1] - bead[1])
    angles = np.linspace(0, 2 * np.pi, max(16, int(4 * radius)), endpoint=False)
    ys = np.clip(np.round(bead[0] + radius * np.sin(angles)).astype(int), 0, projection.shape[0] - 1)
    xs = np.clip(np.round(bead[1] + radius * np.cos(angles)).astype(int), 0, projection.shape[1] - 1)
    ring = projection[ys, xs]
    return float(projection[other]) < 2.0 * float(np.median(ring)) + 1e-12


# --------------------------------------------------------------------------- the model
class BeadModel(torch.nn.Module):
    """Differentiable model ``A · h(r - r0; c, NA) + b`` of a cropped bead stack (float64 on the CPU by default)."""

    def __init__(
        self,
        shape_zyx: Sequence[int],
        voxel_size: Sequence[float],
        na: float,
        wavelength_um: float,
        immersion_index: float,
        modes: Sequence[int],
        *,
        fit_na: bool = False,
        pupil_samples: int | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape_zyx)
        self.voxel_size = tuple(float(v) for v in voxel_size)
        self.wavelength_um = float(wavelength_um)
        self.immersion_index = float(immersion_index)
        self.modes = tuple(int(j) for j in modes)
        self.n_coefficients = (max(self.modes) + 1) if self.modes else 0
        self.dtype = dtype
        nz, ny, nx = self.shape
        dz, dy, dx = self.voxel_size
        self.register_buffer("z_um", centred_coordinates(nz, dz))
        self.register_buffer("y_um", centred_coordinates(ny, dy))
        self.register_buffer("x_um", centred_coordinates(nx, dx))
        if pupil_samples is None:
            # Size the pupil for up to ~0.15 waves in every fitted mode, so the grid never changes mid-fit.
            budget = torch.zeros(max(self.n_coefficients, 1), dtype=torch.float64)
            budget[list(self.modes)] = 0.15
            half_width = max(ny // 2 * dy, nx // 2 * dx) + 2 * max(dy, dx)
            pupil_samples = pupil_samples_for(
                na, wavelength_um, immersion_index, half_width, (nz // 2 + 2) * dz, budget
            )
        self.pupil_samples = int(pupil_samples)
        # Parameters in well-scaled units: shifts in voxels, log flux, background relative to a scale.
        self.shift_vox = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        self.log_amplitude = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.background = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.coefficients = torch.nn.Parameter(torch.zeros(len(self.modes), dtype=torch.float64))
        # NA = n · sigmoid(u): an L-BFGS line search can then never step outside (0, n).
        fraction = float(na) / self.immersion_index
        self.na_logit = torch.nn.Parameter(
            torch.tensor(math.log(fraction / (1.0 - fraction)), dtype=torch.float64), requires_grad=fit_na
        )

    @property
    def na(self) -> torch.Tensor:
        """The numerical aperture (0-d tensor, differentiable when it is fitted)."""
        return self.immersion_index * torch.sigmoid(self.na_logit)

    def zernike_vector(self) -> torch.Tensor:
        """Full ANSI coefficient vector ``0 .. max(modes)`` (waves) with the fitted modes filled in."""
        vector = torch.zeros(self.n_coefficients, dtype=torch.float64)
        if self.modes:
            vector = vector.index_put((torch.tensor(self.modes),), self.coefficients)
        return vector

    def psf(self) -> torch.Tensor:
        """The unit-energy-per-plane PSF at the current shift, aberrations and NA, ``(Z, Y, X)``."""
        grid = make_pupil_grid(self.na, self.wavelength_um, self.immersion_index, self.pupil_samples, dtype=self.dtype)
        step = torch.tensor(self.voxel_size, dtype=torch.float64)
        shift_um = self.shift_vox * step
        coefficients = self.zernike_vector() if self.modes else None
        pupil = aberrated_pupil(grid, coefficients)[None] * propagation_factors(grid, self.z_um - shift_um[0])
        field_ = field_from_pupil(pupil, grid, self.y_um - shift_um[1], self.x_um - shift_um[2])
        intensity = field_.real**2 + field_.imag**2
        # Parseval: one plane's energy ∫|E|² d²r = dk² Σ |P|²; per pixel that is divided by dy·dx.
        plane_energy = (grid.dk**2) * (grid.aperture.to(torch.float64) ** 2).sum() / (step[1] * step[2])
        return intensity / plane_energy.to(intensity.dtype)

    def forward(self) -> torch.Tensor:
        """The modelled stack ``A · h + b``."""
        return torch.exp(self.log_amplitude) * self.psf() + self.background


def _pearson_chi2(data: np.ndarray, model: np.ndarray, n_params: int) -> float:
    """Reduced Pearson χ², ``Σ (d - m)² / m / (N - p)``, with ``m`` floored at 1 count."""
    variance = np.maximum(model, 1.0)
    return float(np.sum((data - model) ** 2 / variance) / max(data.size - n_params, 1))


def _initial_values(
    crop: np.ndarray, background: float, voxel_size: Sequence[float]
) -> tuple[np.ndarray, float, float]:
    """Starting shift (voxels, from the centroid of the bright core), flux per plane and background."""
    signal = np.clip(crop - background, 0, None)
    core = signal * (signal > 0.3 * signal.max())
    total = core.sum()
    coords = np.indices(crop.shape).reshape(3, -1).astype(np.float64)
    centre = np.array([s // 2 for s in crop.shape], dtype=np.float64)
    shift = (coords @ core.ravel()) / max(total, 1e-12) - centre
    flux = float(signal.sum() / crop.shape[0])
    return shift, max(flux, 1.0), float(background)


def iter_bead_fit(
    crop: np.ndarray,
    voxel_size: Sequence[float],
    na: float,
    wavelength_um: float,
    immersion_index: float,
    *,
    modes: Sequence[int] = DEFAULT_MODES,
    fit_na: bool = False,
    loss: str = "poisson",
    iterations: int = 60,
    background_guess: float | None = None,
    pupil_samples: int | None = None,
    crop_origin: tuple[int, int, int] = (0, 0, 0),
    should_stop: Callable[[], bool] = lambda: False,
    fraction_range: tuple[float, float] = (0.0, 1.0),
) -> Iterator[Update]:
    """Fit one crop (bead near its centre) and stream ``Update``s; the last is ``result`` with a :class:`BeadFit`.

    ``modes`` are the ANSI indices to fit (empty: the unaberrated fit). Each
    L-BFGS outer step yields a ``progress`` and a ``metric`` ``("loss", value)``;
    every fifth a ``preview`` with the current model stack.
    """
    if loss not in ("poisson", "least-squares"):
        raise ValueError(f"loss must be 'poisson' or 'least-squares', got {loss!r}")
    bad = sorted(set(modes) & set(UNREVEALABLE_MODES))
    if bad:
        raise ValueError(
            f"Zernike modes {bad} cannot be fitted from a bead (piston does nothing; tip/tilt and defocus "
            "trade off against the bead position); expected modes from 3, 5, 6, 7, ..."
        )
    data = torch.as_tensor(np.asarray(crop, dtype=np.float64))
    background = float(np.median(crop)) if background_guess is None else float(background_guess)
    shift, flux, background = _initial_values(np.asarray(crop, np.float64), background, voxel_size)
    model = BeadModel(
        crop.shape, voxel_size, na, wavelength_um, immersion_index, modes, fit_na=fit_na, pupil_samples=pupil_samples
    )
    scale = max(flux, 1.0)  # the background is fitted in units of the flux per plane: keeps L-BFGS well-scaled
    with torch.no_grad():
        model.shift_vox.copy_(torch.as_tensor(shift))
        model.log_amplitude.zero_()
        model.background.copy_(torch.tensor(background / scale))
    params = [p for p in model.parameters() if p.requires_grad]
    # No tolerances: the outer loop decides when to stop (small but real improvements, e.g. in NA, count).
    optimiser = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=8,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=0.0,
        tolerance_change=0.0,
    )
    weight = 1.0 / data.numel()
    # The Poisson deviance is 0 for a perfect model and ~1 per voxel for a right one: differences
    # between fits are then large relative to the loss, unlike in the raw -log-likelihood.
    data_log_data = torch.where(data > 0, data * torch.log(torch.clamp(data, min=1e-12)), torch.zeros_like(data))

    def predicted() -> torch.Tensor:
        amplitude = scale * torch.exp(model.log_amplitude)
        return amplitude * model.psf() + model.background * scale

    def objective() -> torch.Tensor:
        optimiser.zero_grad()
        m = predicted()
        if loss == "poisson":
            m = torch.clamp(m, min=1e-6)
            value = 2.0 * (m - data - data * torch.log(m) + data_log_data).sum() * weight
        else:
            value = ((m - data) ** 2 / torch.clamp(data, min=1.0)).sum() * weight  # Neyman's χ²
        value.backward()
        return value

    low, high = fraction_range
    history: list[float] = []
    last = math.inf
    for step in range(1, iterations + 1):
        value = float(optimiser.step(objective).detach())
        history.append(value)
        fraction = low + (high - low) * step / iterations
        yield Update(
            "progress", fraction, f"{'aberrated' if modes else 'unaberrated'} fit, step {step}: loss {value:.6g}"
        )
        yield Update("metric", fraction, "loss", ("loss", value))
        if step % 5 == 0:
            with torch.no_grad():
                yield Update("preview", fraction, f"model after step {step}", predicted().float().numpy())
        if should_stop():
            yield Update("progress", fraction, f"cancelled after step {step}")
            return
        if not math.isfinite(value) or abs(last - value) <= 1e-9 * max(abs(value), 1.0):
            break  # converged: L-BFGS made no progress over a whole outer step
        last = value
    with torch.no_grad():
        fitted = predicted().numpy()
        shift_vox = model.shift_vox.numpy().copy()
        zernike = model.zernike_vector().numpy().copy()
        na_fit = float(model.na)
        amplitude = float(scale * torch.exp(model.log_amplitude))
        bg = float(model.background * scale)
    n_params = 5 + len(modes) + int(fit_na)
    centre = tuple(float(o + s // 2 + d) for o, s, d in zip(crop_origin, crop.shape, shift_vox, strict=True))
    result = BeadFit(
        zernike=zernike,
        modes=tuple(int(j) for j in modes),
        position_um=tuple(float(d * v) for d, v in zip(shift_vox, voxel_size, strict=True)),
        centre_index=centre,
        amplitude=amplitude,
        background=bg,
        na=na_fit,
        chi2=_pearson_chi2(np.asarray(crop, np.float64), fitted, n_params),
        loss_history=history,
        model=fitted.astype(np.float32),
        crop=np.asarray(crop, np.float32),
        crop_origin=tuple(int(o) for o in crop_origin),
    )
    yield Update("result", high, f"χ² {result.chi2:.4g}", result)


def crop_around_bead(
    stack: np.ndarray,
    location: BeadLocation,
    voxel_size: Sequence[float],
    na: float,
    immersion_index: float,
    *,
    half_xy: int | None = None,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """All planes and a square lateral window centred on the bead; return the crop and its origin.

    The default half-width covers the geometric defocus cone at the farthest
    plane plus 1.5 µm, capped by the distance to the nearest border (so the
    crop never wraps or pads).
    """
    nz, ny, nx = stack.shape
    _, cy, cx = location.index_zyx
    dz, dy, _ = voxel_size
    if half_xy is None:
        z_far = max(location.index_zyx[0], nz - 1 - location.index_zyx[0]) * dz
        cone = z_far * na / math.sqrt(max(immersion_index**2 - na**2, 1e-6))
        half_xy = int(math.ceil((cone + 1.5) / dy))
    half_xy = int(min(half_xy, cy, cx, ny - 1 - cy, nx - 1 - cx))
    if half_xy < 4:
        raise ValueError(f"the bead at (y={cy}, x={cx}) is too close to the border to crop; expected ≥ 4 px clearance")
    origin = (0, cy - half_xy, cx - half_xy)
    crop = stack[:, cy - half_xy : cy + half_xy, cx - half_xy : cx + half_xy]
    return np.ascontiguousarray(crop, dtype=np.float32), origin


def calibrate_bead_stream(
    stack: np.ndarray,
    voxel_size: Sequence[float],
    na: float,
    wavelength_um: float,
    immersion_index: float,
    *,
    modes: Sequence[int] = DEFAULT_MODES,
    fit_na: bool = False,
    loss: str = "poisson",
    iterations: int = 60,
    half_xy: int | None = None,
    psf_shape: Sequence[int] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[Update]:
    """Find the bead, run the unaberrated then the aberrated fit, and stream both.

    The last update is ``result`` with a :class:`BeadCalibration` (its ``psf``
    is the fitted aberrated PSF, centred, at the stack's voxel size, of shape
    ``psf_shape`` — by default the crop's shape made odd).
    """
    voxel = tuple(float(v) for v in voxel_size)
    if len(voxel) != 3 or min(voxel) <= 0:
        raise ValueError(f"voxel_size must be three positive numbers (dz, dy, dx) in µm, got {tuple(voxel_size)}")
    if not 0 < na < immersion_index:
        raise ValueError(f"na must be in (0, immersion_index = {immersion_index}), got {na}")
    stack = np.asarray(stack, dtype=np.float32)
    location = find_bead(stack)
    crop, origin = crop_around_bead(stack, location, voxel, na, immersion_index, half_xy=half_xy)
    started = time.perf_counter()
    yield Update(
        "progress",
        0.0,
        f"bead at z={location.index_zyx[0]}, y={location.index_zyx[1]}, x={location.index_zyx[2]}; "
        f"background {location.background:.4g}; fitting a {crop.shape} crop",
    )
    common = dict(
        voxel_size=voxel,
        na=na,
        wavelength_um=wavelength_um,
        immersion_index=immersion_index,
        fit_na=fit_na,
        loss=loss,
        iterations=iterations,
        background_guess=location.background,
        crop_origin=origin,
        should_stop=should_stop,
    )
    fits: list[BeadFit] = []
    for part, (chosen, span) in enumerate((((), (0.0, 0.3)), (tuple(modes), (0.3, 1.0)))):
        result = None
        for update in iter_bead_fit(crop, modes=chosen, fraction_range=span, **common):  # type: ignore[arg-type]
            if update.kind == "result":
                result = update.data
            else:
                yield update
        if result is None:  # cancelled
            return
        fits.append(result)
        name = "chi2_unaberrated" if part == 0 else "chi2_fit"
        yield Update("metric", span[1], name, (name, result.chi2))
    unaberrated, fit = fits
    optics = {
        "na": float(fit.na),
        "wavelength_um": float(wavelength_um),
        "immersion_index": float(immersion_index),
        "psf_model": "scalar-pupil, bead-calibrated",
        "chi2_fit": fit.chi2,
        "chi2_unaberrated": unaberrated.chi2,
    }
    shape = tuple(int(s) for s in (psf_shape or [s | 1 for s in crop.shape]))
    from .widefield import widefield_psf

    psf = widefield_psf(shape, voxel, fit.na, wavelength_um, immersion_index, fit.zernike)
    psf.optics.update(optics)
    calibration = BeadCalibration(fit, unaberrated, psf, location, voxel, optics)
    elapsed = time.perf_counter() - started
    yield Update(
        "result",
        1.0,
        f"χ² {fit.chi2:.4g} (unaberrated {unaberrated.chi2:.4g}) in {elapsed:.1f} s",
        calibration,
    )


def calibrate_bead(
    stack: np.ndarray,
    voxel_size: Sequence[float],
    na: float,
    wavelength_um: float,
    immersion_index: float,
    **kwargs: Any,
) -> BeadCalibration:
    """Run :func:`calibrate_bead_stream` to the end and return its :class:`BeadCalibration`."""
    return result_of(calibrate_bead_stream(stack, voxel_size, na, wavelength_um, immersion_index, **kwargs))
