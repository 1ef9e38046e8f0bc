"""The Qt-free half of the PSF editor: settings, cost estimates, PSF computations and panel geometry.

:mod:`napari_lfrecon.gui.psf_widget` (the dock widget) draws what this module
computes; nothing here imports Qt or napari, so the computations can be
tested, benchmarked and scripted without a display.

- **Widefield**: :class:`EditorSettings` → :func:`compute_sections` →
  :class:`Sections` (the PSF, its XY / XZ / YZ sections and ``log10 |OTF|``).
- **LFM / XLFM**: optics and depths → :func:`compute_lfm` / :func:`compute_xlfm`
  → :class:`SensorStack` (the sensor image of an on-axis point per depth).
- :func:`estimate_widefield`, :func:`estimate_lfm`, :func:`estimate_xlfm`
  give an :class:`Estimate` of time and memory; :meth:`Estimate.refusal`
  refuses requests beyond :data:`MAX_ESTIMATED_SECONDS` / :data:`MAX_ESTIMATED_BYTES`.
- :func:`widefield_panels` / :func:`sensor_panels` cut the 2-D :class:`Panel`
  views; :func:`place_panels` lays them side by side in world space (µm).
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..psf.model import PSF, PSF_FILE_SUFFIX

if TYPE_CHECKING:  # pragma: no cover
    from ..psf.lfm import LFMOptics
    from ..psf.xlfm import XLFMOptics

#: Number of Zernike sliders (ANSI 0 .. N_MODES - 1).
N_MODES = 22
#: Named presets: ANSI index → waves.
PRESETS: dict[str, dict[int, float]] = {
    "none (diffraction-limited)": {},
    "defocus": {4: 0.15},
    "astigmatism": {5: 0.1},
    "coma": {7: 0.1},
    "spherical": {12: 0.1},
    "trefoil": {6: 0.1},
}
#: The editor's modes (keys) and how the Mode combo names them.
MODES: dict[str, str] = {"widefield": "Widefield", "lfm": "Light field (LFM)", "xlfm": "XLFM"}
#: Names of the widefield section layers.
LAYER_NAMES = ("PSF XY [editor]", "PSF XZ [editor]", "PSF YZ [editor]", "OTF log|kz,kx| [editor]")
#: Names of the panel layers in each mode (the same layer objects are reused and renamed).
MODE_LAYER_NAMES: dict[str, tuple[str, ...]] = {
    "widefield": LAYER_NAMES,
    "lfm": ("LF sensor @ z [editor]", "LF sensor row × z [editor]"),
    "xlfm": ("XLFM sensor @ z [editor]", "XLFM sensor row × z [editor]", "XLFM one view @ z [editor]"),
}
#: The 3-D layer that hands the PSF to the Reconstruct widget.
RECONSTRUCTION_LAYER = "PSF [editor]"
#: NA from which the vectorial model is recommended (the scalar model's error grows with the aperture angle).
VECTORIAL_NA = 0.9
#: Requests estimated to take longer than this (s) or to need more memory than this (bytes) are refused.
MAX_ESTIMATED_SECONDS = 60.0
MAX_ESTIMATED_BYTES = 2 * 2**30
#: Rough throughputs used by the estimates (measured on one CPU core of a 2-core test machine; a
#: faster machine only makes the estimate pessimistic): complex samples × log2(FFT length) per second.
_LFM_SAMPLES_PER_SECOND = 1.0e8
_XLFM_SAMPLES_PER_SECOND = 2.5e8
#: The depth shown first in LFM mode, as a fraction of the largest |z|: the in-focus pattern lies under one
#: lenslet, a defocused point spreads over several and shows what a light field looks like.
LFM_SHOWN_DEPTH_FRACTION = 0.5
#: Upper contrast limit of the light-field sensor panels, as a fraction of their peak (see :class:`Panel`).
SENSOR_SATURATION = 0.3
#: Why the Zernike sliders are disabled in the light-field modes.
NO_ABERRATION_NOTE = "Zernike aberrations are not modelled for {mode} PSFs yet: the sliders apply to widefield only."
#: Why light-field PSFs are not resampled.
NO_RESAMPLE_NOTE = (
    "LFM/XLFM PSFs are tied to their lenslet geometry (the volume grid follows the lenslet pitch or the "
    "camera pixel): they are not resampled."
)


# ----------------------------------------------------------------------------- settings
@dataclass
class EditorSettings:
    """Everything the editor computes a widefield PSF from (object-space µm).

    ``model`` is ``"scalar"`` or ``"vectorial"``; ``sample_index`` (None =
    matched to the immersion) and ``depth_um`` (below the coverslip) describe
    a refractive-index mismatch.
    """

    na: float = 0.8
    wavelength_um: float = 0.52
    immersion_index: float = 1.33
    magnification: float = 40.0
    camera_pixel_um: float = 6.5
    n_z: int = 33
    dz_um: float = 0.25
    n_xy: int = 64
    zernike: np.ndarray = field(default_factory=lambda: np.zeros(N_MODES))
    model: str = "scalar"
    sample_index: float | None = None
    depth_um: float = 0.0

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """``(dz, dy, dx)`` of the PSF: lateral = camera pixel / magnification."""
        dx = self.camera_pixel_um / self.magnification
        return (self.dz_um, dx, dx)


@dataclass
class Sections:
    """The computed widefield PSF and the four 2-D views of it."""

    psf: PSF
    xy: np.ndarray
    xz: np.ndarray
    yz: np.ndarray
    otf: np.ndarray
    seconds: float


@dataclass
class SensorStack:
    """A light-field PSF with the sensor image of an on-axis point at every depth.

    ``sensor`` is ``(D, Y, X)`` float32 on the camera's pixels, ``pixel_um``
    their object-space size; ``row`` is the sensor row the row × z panel
    shows; ``zoom`` is ``(top, left, height, width)`` of the window the zoom
    panel shows (XLFM: one view), or None.
    """

    psf: PSF
    sensor: np.ndarray
    pixel_um: float
    row: int
    zoom: tuple[int, int, int, int] | None
    seconds: float


@dataclass
class Estimate:
    """What a computation is expected to cost."""

    seconds: float
    bytes: int

    def refusal(self) -> str | None:
        """A message when the request is too large to run, else None."""
        if self.seconds <= MAX_ESTIMATED_SECONDS and self.bytes <= MAX_ESTIMATED_BYTES:
            return None
        return (
            f"too large: estimated ~{self.seconds:.0f} s and ~{self.bytes / 2**30:.1f} GiB "
            f"(limits {MAX_ESTIMATED_SECONDS:.0f} s, {MAX_ESTIMATED_BYTES / 2**30:.0f} GiB); "
            "reduce the z range or the number of planes, the lateral size or the sensor"
        )


@dataclass
class Panel:
    """One 2-D panel: an image with its scale (µm) and colormap."""

    data: np.ndarray
    scale: tuple[float, float]
    colormap: str = "magma"
    #: Upper contrast limit as a fraction of the maximum (< 1 saturates the brightest cores so that the
    #: small, sparse spots of a light-field sensor image stay visible when the whole sensor is on screen).
    saturate: float = 1.0


def z_planes(z_from: float, z_to: float, z_step: float) -> np.ndarray:
    """Depths ``z_from, z_from + step, …`` up to ``z_to`` (inclusive within half a step), µm."""
    if not (z_step > 0 and math.isfinite(z_step)):
        raise ValueError(f"the z step must be a positive number of µm, got {z_step}")
    if z_to < z_from:
        raise ValueError(f"z 'to' ({z_to} µm) must not be below z 'from' ({z_from} µm)")
    count = int(math.floor((z_to - z_from) / z_step + 0.5)) + 1
    return z_from + z_step * np.arange(count, dtype=np.float64)


@functools.lru_cache(maxsize=4)
def sample_psf(name: str) -> PSF:
    """The PSF shipped with sample ``name`` (read once; the editor's defaults come from its optics)."""
    from ..io.resources import sample_dir

    return PSF.load(sample_dir() / f"{name}{PSF_FILE_SUFFIX}")


# ----------------------------------------------------------------------------- widefield
@functools.lru_cache(maxsize=1)
def widefield_options_supported() -> bool:
    """Whether :func:`~napari_lfrecon.psf.widefield.widefield_psf` takes ``model``, ``sample_index``, ``depth_um``."""
    from ..psf.widefield import widefield_psf

    parameters = inspect.signature(widefield_psf).parameters
    return all(name in parameters for name in ("model", "sample_index", "depth_um"))


def _widefield_options(settings: EditorSettings) -> dict[str, Any]:
    """The optional keyword arguments, passed only when they differ from the defaults."""
    options: dict[str, Any] = {}
    if settings.model != "scalar":
        options["model"] = settings.model
    if settings.sample_index is not None:
        options["sample_index"] = settings.sample_index
        options["depth_um"] = settings.depth_um
    if options and not widefield_options_supported():
        raise ValueError(
            "this version of psf.widefield has no vectorial / index-mismatch model; "
            "clear those options to compute the scalar, index-matched PSF"
        )
    return options


def compute_sections(settings: EditorSettings) -> Sections:
    """Compute the widefield PSF for ``settings`` and its XY / XZ / YZ sections and ``log10 |OTF|`` (kz, kx)."""
    from ..psf.widefield import widefield_psf

    started = time.perf_counter()
    zernike = np.asarray(settings.zernike, dtype=np.float64)
    psf = widefield_psf(
        (settings.n_z, settings.n_xy, settings.n_xy),
        settings.voxel_size,
        settings.na,
        settings.wavelength_um,
        settings.immersion_index,
        zernike if np.any(zernike) else None,
        magnification=settings.magnification,
        camera_pixel_um=settings.camera_pixel_um,
        **_widefield_options(settings),
    )
    array = psf.array
    cz, cy, cx = (s // 2 for s in array.shape)
    # The OTF is the Fourier transform of the PSF centred at shape // 2 (ifftshift puts it at index 0).
    # The (kz, kx) plane at ky = 0 is the 2-D transform of the projection along y (projection-slice
    # theorem): 0.5 ms instead of ~50 ms for the full 3-D OTF. Its maximum is the DC term, as in 3-D.
    projection = array.sum(axis=1)
    otf = np.abs(np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(projection))))
    otf_section = np.log10(otf / max(float(otf.max()), 1e-30) + 1e-6).astype(np.float32)
    return Sections(
        psf=psf,
        xy=array[cz].copy(),
        xz=array[:, cy, :].copy(),
        yz=array[:, :, cx].copy(),
        otf=otf_section,
        seconds=time.perf_counter() - started,
    )


def estimate_widefield(settings: EditorSettings) -> Estimate:
    """Time and memory of :func:`compute_sections` (the pupil, the field and the OTF dominate)."""
    from ..psf.pupil import pupil_samples_for

    voxels = settings.n_z * settings.n_xy**2
    half_width = settings.n_xy // 2 * settings.voxel_size[1]
    try:
        n_k = pupil_samples_for(
            settings.na,
            settings.wavelength_um,
            settings.immersion_index,
            half_width,
            settings.n_z // 2 * settings.dz_um,
        )
    except (ValueError, ZeroDivisionError):  # bad optics: the computation itself reports them
        n_k = 64
    # complex64 field + float32 intensity + complex128 OTF + its magnitude per voxel; complex pupil per plane
    memory = voxels * (8 + 4 + 16 + 8) + settings.n_z * n_k * n_k * 8 * 2
    # matrix Fourier transform: Z·Nk²·N + Z·Nk·N² complex multiply-adds
    work = settings.n_z * (n_k * n_k * settings.n_xy + n_k * settings.n_xy**2)
    return Estimate(seconds=work / 2e9, bytes=int(memory))


def widefield_panels(result: Sections) -> list[Panel]:
    """XY | XZ | YZ | OTF(kz, kx), the OTF drawn over the XZ panel's extent."""
    dz, dy, dx = result.psf.voxel_size
    return [
        Panel(result.xy, (dy, dx)),
        Panel(result.xz, (dz, dx)),
        Panel(result.yz, (dz, dy)),
        Panel(result.otf, (dz, dx), "viridis"),
    ]


# ----------------------------------------------------------------------------- LFM
def lfm_sensor_stack(psf: PSF) -> tuple[np.ndarray, float]:
    """``(D, Y, X)`` raw-sensor image of a point on the centre lenslet's axis at each depth, and the pixel (µm).

    By lenslet periodicity pixel ``a`` under lenslet ``n`` of that image is
    ``H[a, z][c + s·n]`` (``c`` the kernel centre, ``s`` voxels per lenslet):
    the kernel sampled every ``s`` voxels from ``s // 2``, rearranged into the
    raw frame. The pixel is the lenslet pitch / Nnum in object space.
    """
    from ..physics.lightfield import views_to_raw

    if psf.modality != "lfm":
        raise ValueError(f"an LFM PSF is needed, got a {psf.modality} PSF")
    s = int(psf.optics.get("supersample", 1))
    nnum = int(psf.optics["pixels_per_lenslet"])
    sampled = psf.array[:, :, s // 2 :: s, s // 2 :: s]  # (A, D, 2R+1, 2R+1)
    sensor = views_to_raw(np.moveaxis(sampled, 1, 0), nnum)  # (D, (2R+1)·Nnum, (2R+1)·Nnum)
    return np.ascontiguousarray(sensor, dtype=np.float32), float(psf.voxel_size[-1]) * s / nnum


def lfm_stack(psf: PSF, seconds: float = 0.0) -> SensorStack:
    """The :class:`SensorStack` of an LFM PSF (row × z panel through the centre lenslet's centre row)."""
    sensor, pixel = lfm_sensor_stack(psf)
    return SensorStack(psf=psf, sensor=sensor, pixel_um=pixel, row=sensor.shape[1] // 2, zoom=None, seconds=seconds)


def compute_lfm(
    optics: LFMOptics, z_planes_um: np.ndarray, *, should_stop: Callable[[], bool] | None = None
) -> SensorStack:
    """Compute the LFM PSF (:func:`~napari_lfrecon.psf.lfm.lfm_psf`) and its sensor images."""
    from ..psf.lfm import lfm_psf

    started = time.perf_counter()
    psf = lfm_psf(optics, z_planes_um, device="cpu", should_stop=should_stop)
    return lfm_stack(psf, time.perf_counter() - started)


def estimate_lfm(optics: LFMOptics, z_planes_um: np.ndarray) -> Estimate:
    """Time and memory of :func:`compute_lfm`, from the grid sizes :func:`~napari_lfrecon.psf.lfm.lfm_psf` uses."""
    from ..psf.lfm import default_oversampling, kernel_radius_lenslets

    z = np.asarray(z_planes_um, dtype=np.float64)
    depth = max(z.size, 1)
    radius = kernel_radius_lenslets(optics, float(np.abs(z).max()) if z.size else 0.0)
    osf = default_oversampling(optics)
    nnum, s = optics.nnum, optics.supersample
    n_kept = 2 * radius + 1
    per_lenslet = nnum * osf
    grid = n_kept * per_lenslet + 2 * per_lenslet  # kept lenslets plus one guard lenslet per side
    dx = optics.pixel_um / osf
    padded = max(grid * 1.15, optics.wavelength_um * optics.lenslet_focal_um / dx**2)
    n_canon = (s // 2 + 1) * (s // 2 + 2) // 2  # sub-lenslet sources left after the D4 symmetry
    work = depth * n_canon * padded**2 * math.log2(max(padded, 2)) * 4  # fill, FFT, multiply, inverse FFT
    kernel = nnum**2 * depth * (n_kept * s) ** 2 * 4
    memory = 3 * kernel + depth * n_canon * (n_kept * nnum) ** 2 * 4 + n_canon * grid**2 * 12 + 8 * 2**20
    return Estimate(seconds=work / _LFM_SAMPLES_PER_SECOND, bytes=int(memory))


# ----------------------------------------------------------------------------- XLFM
def xlfm_stack(psf: PSF, seconds: float = 0.0) -> SensorStack:
    """The :class:`SensorStack` of an XLFM PSF: row × z through the fullest row of views, zoom on its outermost view."""
    if psf.modality != "xlfm":
        raise ValueError(f"an XLFM PSF is needed, got a {psf.modality} PSF")
    sensor = np.asarray(psf.array, dtype=np.float32)
    _, height, width = sensor.shape
    centres = psf.arrays.get("centres")
    view = psf.optics.get("view_size")
    if centres is None or len(centres) == 0 or view is None:
        return SensorStack(psf, sensor, float(psf.voxel_size[-1]), height // 2, None, seconds)
    rows = np.round(np.asarray(centres, dtype=np.float64)[:, 0]).astype(int)
    values, counts = np.unique(rows, return_counts=True)
    # The row crossing the most views shows the most parallax traces; ties go to the one nearest the axis.
    best = min(zip(values, counts, strict=True), key=lambda vc: (-vc[1], abs(vc[0] - height // 2)))[0]
    on_row = np.flatnonzero(rows == best)
    outer = on_row[np.argmax(np.abs(np.asarray(centres)[on_row, 1] - width // 2))]
    h, w = int(view[0]), int(view[1])
    top = int(round(float(centres[outer][0]))) - h // 2
    left = int(round(float(centres[outer][1]))) - w // 2
    return SensorStack(psf, sensor, float(psf.voxel_size[-1]), int(best), (top, left, h, w), seconds)


def compute_xlfm(optics: XLFMOptics, z_planes_um: np.ndarray) -> SensorStack:
    """Compute the XLFM PSF (:func:`~napari_lfrecon.psf.xlfm.xlfm_psf`) and its panels' geometry."""
    from ..psf.xlfm import xlfm_psf

    started = time.perf_counter()
    psf = xlfm_psf(optics, z_planes_um, device="cpu")
    return xlfm_stack(psf, time.perf_counter() - started)


def estimate_xlfm(optics: XLFMOptics, z_planes_um: np.ndarray) -> Estimate:
    """Time and memory of :func:`compute_xlfm`: one padded complex128 field stack per view."""
    depth = max(np.asarray(z_planes_um).size, 1)
    s = int(optics.supersample or 1)
    fine = (2 * optics.view_size[0] * s) * (2 * optics.view_size[1] * s)
    work = optics.n_lenslets * depth * fine * math.log2(max(fine, 2)) * 2
    sensor = depth * optics.sensor_shape[0] * optics.sensor_shape[1]
    memory = depth * fine * 16 * 4 + sensor * (8 * 2 + 4)
    return Estimate(seconds=work / _XLFM_SAMPLES_PER_SECOND, bytes=int(memory))


def sensor_panels(result: SensorStack, depth_index: int) -> list[Panel]:
    """Sensor @ z | sensor row × z (each depth scaled to its own peak) | zoom (XLFM) at ``depth_index``."""
    depth_index = int(np.clip(depth_index, 0, result.sensor.shape[0] - 1))
    pixel = result.pixel_um
    dz = float(result.psf.voxel_size[0])
    plane = result.sensor[depth_index]
    peaks = result.sensor.reshape(result.sensor.shape[0], -1).max(axis=1)
    row = result.sensor[:, result.row, :] / np.maximum(peaks, 1e-30)[:, None]
    panels = [Panel(plane, (pixel, pixel), saturate=SENSOR_SATURATION), Panel(row.astype(np.float32), (dz, pixel))]
    if result.zoom is not None:
        top, left, h, w = result.zoom
        panels.append(Panel(plane[top : top + h, left : left + w].copy(), (pixel, pixel)))
    return panels


def nearest_plane(psf: PSF, depth_um: float) -> int:
    """Index of the PSF plane nearest ``depth_um``."""
    planes = psf.z_planes_um
    return int(np.argmin(np.abs(planes - depth_um))) if planes.size else 0


def plane_step(planes: np.ndarray, default: float = 1.0) -> float:
    """The mean spacing of ``planes`` (µm), or ``default`` when there are fewer than two."""
    planes = np.asarray(planes, dtype=np.float64)
    return float(np.mean(np.diff(planes))) if planes.size > 1 else float(default)


def zernike_values(coefficients: dict[int, float] | np.ndarray) -> np.ndarray:
    """``N_MODES`` coefficients (waves) from an ANSI index → waves dict or an array; the rest are 0, extras dropped."""
    values = np.zeros(N_MODES)
    if isinstance(coefficients, dict):
        for j, c in coefficients.items():
            if 0 <= int(j) < N_MODES:
                values[int(j)] = float(c)
    else:
        array = np.asarray(coefficients, dtype=np.float64).ravel()[:N_MODES]
        values[: array.size] = array
    return values


def xlfm_file_layout(psf: PSF) -> tuple[dict[str, Any], str]:
    """The lenslet layout an XLFM PSF file fixes, and a description of it.

    The layout always holds the file's sensor centres (``centres_px``); a
    pupil layout that is not the default hexagonal one for that many lenslets
    (positions or radius) adds ``pupil_centres`` and ``radius``.
    """
    from ..psf.xlfm import default_lenslet_layout, default_lenslet_radius

    if psf.modality != "xlfm":
        raise ValueError(f"an XLFM PSF is needed, got a {psf.modality} PSF")
    pupil = np.asarray(psf.optics["lenslet_pupil_centres"], dtype=np.float64)
    radius = np.asarray(psf.optics["lenslet_radius"], dtype=np.float64)
    default = default_lenslet_layout(len(pupil))
    custom = (
        pupil.shape != default.shape
        or not np.allclose(pupil, default)
        or not np.allclose(radius, default_lenslet_radius(default))
    )
    layout: dict[str, Any] = {"centres_px": np.asarray(psf.arrays["centres"], dtype=np.float64)}
    if custom:
        layout.update(pupil_centres=pupil, radius=radius if radius.ndim else float(radius))
    origin = "from the file" if custom else "hexagonal"
    return layout, f"{origin}, {len(pupil)} sub-apertures (sensor centres from the file)"


# ----------------------------------------------------------------------------- request keys
def widefield_key(settings: EditorSettings) -> tuple:
    """A hashable identity of widefield settings (equal keys give the same PSF)."""
    return (
        "widefield",
        settings.na,
        settings.wavelength_um,
        settings.immersion_index,
        settings.magnification,
        settings.camera_pixel_um,
        settings.n_z,
        settings.dz_um,
        settings.n_xy,
        tuple(np.asarray(settings.zernike, dtype=np.float64).tolist()),
        settings.model,
        settings.sample_index,
        settings.depth_um,
    )


def lfm_key(optics: LFMOptics, z_planes_um: np.ndarray) -> tuple:
    """A hashable identity of an LFM request (optics and depths)."""
    return ("lfm", tuple(sorted(optics.to_dict().items())), tuple(z_planes_um))


def xlfm_key(optics: XLFMOptics, z_planes_um: np.ndarray) -> tuple:
    """A hashable identity of an XLFM request (optics, sensor centres and depths)."""
    out = []
    for name, value in sorted(optics.to_dict().items()):
        out.append((name, repr(np.asarray(value).round(12).tolist()) if isinstance(value, list) else value))
    out.append(("centres_px", repr(np.asarray(optics.centres_px).tolist())))
    return ("xlfm", tuple(out), tuple(z_planes_um))


# ----------------------------------------------------------------------------- panel layout & captions
@dataclass
class PanelPlacement:
    """Where and how one :class:`Panel` is drawn: world offset (µm), contrast range and limits, gamma."""

    translate: tuple[float, float]
    contrast_range: tuple[float, float]
    contrast_limits: tuple[float, float]
    gamma: float


def place_panels(panels: list[Panel]) -> list[PanelPlacement]:
    """Lay ``panels`` left to right in world space (µm), separated by a tenth of the first panel's width."""
    if not panels:
        return []
    gap = 0.1 * panels[0].data.shape[-1] * panels[0].scale[-1]
    offset = 0.0
    out = []
    for panel in panels:
        translate = (0.0, offset)
        offset += panel.data.shape[-1] * panel.scale[-1] + gap
        low, high = float(panel.data.min()), float(panel.data.max())
        full = (low, high if high > low else low + 1)
        limits = (low, low + panel.saturate * (full[1] - low))
        # gamma 0.5 shows the dim rings and side lobes next to the bright core; the OTF is already in log
        gamma = 0.5 if panel.colormap == "magma" else 1.0
        out.append(PanelPlacement(translate, full, limits, gamma))
    return out


def sections_details(result: Sections) -> str:
    """The status line's description of widefield panels: model, aberration RMS and the sections' height."""
    dz = result.psf.voxel_size[0]
    rms = float(np.sqrt(np.sum(result.psf.zernike[3:] ** 2))) if result.psf.zernike.size > 3 else 0.0
    model = result.psf.optics.get("psf_model", "scalar-pupil")
    details = f"{model}; aberration {rms:.3f} waves RMS (excluding piston/tilt); "
    return details + f"XZ/YZ panels are {result.psf.array.shape[0] * dz:g} µm tall"


def sensor_details(result: SensorStack, depth_index: int) -> str:
    """The status line's description of light-field panels shown at plane ``depth_index``."""
    planes = result.psf.z_planes_um
    depth = float(planes[depth_index]) if planes.size else 0.0
    details = (
        f"panels: sensor image of an on-axis point at z = {depth:g} µm | sensor row {result.row} across "
        f"z = {planes[0]:g}…{planes[-1]:g} µm (each depth scaled to its peak)"
    )
    if result.zoom is not None:
        details += " | the outermost view on that row, zoomed"
    return details + f"; sensor pixel {result.pixel_um:.4g} µm (object space)"
