"""SeReNet: self-supervised light-field reconstruction (Lu et al., Nature Methods 2025).

``serenet``: views → psfshift stack (each view shifted per depth by its PSF
kernel's centre of mass) → Conv3d network → volume on the PSF's volume grid.
Runs on the whole frame or in overlapping tiles blended with linear ramps;
any subset of views (missing ones are zero-filled); optional per-view
registration against the centre view. Its weights come from
``serenet-train`` (:mod:`.serenet_train`), which needs no ground truth.

Units: the views are photo-electrons; the network sees them divided by the
frame's mean view intensity and its output is scaled back, so the volume is in
the same units as an RL reconstruction with the same PSF.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from weakref import WeakKeyDictionary

import numpy as np
import torch

from ..psf.model import PSF
from ..tiling import Blender, TileGrid, each_tile
from . import register
from .base import Engine, EngineInputError, Inputs, StopFlag, Update, never, param
from .serenet_data import (
    measurement_to_views,
    parse_view_indices,
    registration_corrections,
    shift_views,
)
from .serenet_model import SeReNetNet, refocus, view_shifts_lenslets
from .serenet_weights import default_weights_for, load_model

#: Smallest frame scale (mean view intensity, electrons) the input is divided by.
_MIN_SCALE = 1e-3


# ----------------------------------------------------------------------------- shared pieces


def _check_lfm_psf(psf: PSF | None, what: str) -> PSF:
    if psf is None:
        raise EngineInputError(f"{what} needs the light field's PSF (an LFM PSF file or object)")
    if psf.modality != "lfm":
        raise EngineInputError(f"{what} needs an LFM PSF (A, D, h, w), got a {psf.modality} PSF")
    if psf.array.shape[1] < 1:
        raise EngineInputError(f"{what} needs a PSF with depth planes; this PSF has {psf.array.shape[1]}")
    return psf


def _supersample(psf: PSF) -> int:
    return int(psf.optics.get("supersample", 1))


#: Per-PSF view shifts (the centres of mass of hundreds of MB of kernels take ~0.1 s to compute).
_SHIFTS_CACHE: WeakKeyDictionary[PSF, tuple[int, np.ndarray]] = WeakKeyDictionary()


def psf_view_shifts(psf: PSF) -> np.ndarray:
    """``(A, D, 2)`` psfshift displacements of every PSF view, in lenslets (cached per PSF object and array)."""
    cached = _SHIFTS_CACHE.get(psf)
    if cached is not None and cached[0] == id(psf.array):
        return cached[1]
    shifts = view_shifts_lenslets(psf.array, _supersample(psf))
    _SHIFTS_CACHE[psf] = (id(psf.array), shifts)
    return shifts


def flux_factor(psf: PSF, n_views_with_light: int) -> float:
    """Voxel intensity of a uniform volume whose views have mean 1: ``A_lit / (s²·D)``.

    Each voxel sends 1 in total to the sensor; one lenslet holds ``s²·D`` voxels
    and shares their light among the ``A_lit`` views inside the aperture.
    """
    s, depth = _supersample(psf), int(psf.array.shape[1])
    return float(n_views_with_light) / float(s * s * depth)


def frame_scale(views: torch.Tensor) -> torch.Tensor:
    """Per-frame normaliser ``(B,)``: the mean view intensity (≥ 1e-3 electrons)."""
    return torch.clamp(views.mean(dim=(1, 2, 3)), min=_MIN_SCALE)


def network_input(
    views: torch.Tensor, shifts: torch.Tensor, scale: torch.Tensor, available: torch.Tensor | None = None
) -> torch.Tensor:
    """The normalised psfshift stack ``(B, A, D, Ny, Nx)`` of views ``(B, A, Ny, Nx)`` (model channel order).

    ``available`` (``(A,)`` bool) marks views actually measured; the others are
    zero and the rest scaled up by ``A / A_available`` so the stack's sum is kept.
    """
    x = views / scale[:, None, None, None]
    if available is not None:
        n_avail = int(available.sum())
        if n_avail == 0:
            raise EngineInputError("no views left to reconstruct from")
        x = x * available[None, :, None, None].to(x.dtype) * (available.numel() / n_avail)
    return refocus(x, shifts)


def tile_grid(model: SeReNetNet, ny: int, nx: int, tile: int, overlap: int) -> TileGrid | None:
    """The lateral tiles (in lenslets) of a ``ny × nx`` frame; ``None``: one pass over the whole frame.

    A tile of ``tile`` lenslets shares ``overlap`` with each neighbour: a core
    of ``tile − 2·⌊overlap/2⌋`` read with a halo of ``⌊overlap/2⌋``. The
    blending ramps use only the part of the halo beyond the network's
    receptive radius ``r``, where a tile's output is unaffected by its border;
    so with ``overlap ≥ 2·r + 1`` the tiled result equals the untiled one.
    """
    if tile <= 0 or (tile >= ny and tile >= nx):
        return None
    halo = min(max(int(overlap), 0), tile - 1) // 2
    core = tile - 2 * halo
    cut = min(model.receptive_radius_lenslets(), halo)
    half = min(halo - cut, core // 2)
    cores = (ny if tile >= ny else core, nx if tile >= nx else core)
    return TileGrid.build((ny, nx), cores, halo, half)


def predict_tiles(
    model: SeReNetNet, stack: torch.Tensor, scale: torch.Tensor, *, tile: int = 0, overlap: int = 8
) -> Iterator[tuple[int, int, torch.Tensor | None]]:
    """:func:`predict_volume` as a generator: ``(done, total, None)`` after each tile, then ``(total, total, volume)``.

    Stopping early is closing the generator (callers check their stop flag between tiles).
    """
    s = model.config.supersample
    ny, nx = stack.shape[-2:]
    grid = tile_grid(model, ny, nx, tile, overlap)
    if grid is None:
        with torch.no_grad():
            out = model(stack) * scale[:, None, None, None]
        yield 1, 1, out
        return
    # Tiles are cut in lenslets and blended on the output grid, s voxels per lenslet.
    output = (slice(0, s * ny), slice(0, s * nx))
    blender = Blender(output, lead=(stack.shape[0], stack.shape[2]), like=stack)
    for number, part_tile in each_tile(grid.tiles):
        with torch.no_grad():
            part = model(stack[(..., *part_tile.region)])
            blender.add(part_tile.scaled((s, s)), part)
        yield number + 1, len(grid), None
    with torch.no_grad():
        out = blender.result() * scale[:, None, None, None]
    yield len(grid), len(grid), out


def predict_volume(
    model: SeReNetNet,
    stack: torch.Tensor,
    scale: torch.Tensor,
    *,
    tile: int = 0,
    overlap: int = 8,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor | None:
    """The volume ``(B, D, s·Ny, s·Nx)`` from a normalised stack, whole or in blended lateral tiles.

    ``tile`` and ``overlap`` are in lenslets (``tile = 0``: one pass; see
    :func:`tile_grid`). Tiles are cut from the stack of the whole frame, so
    their inputs are exact. ``progress(done, total)`` is called after each
    tile; ``None`` is returned when ``should_stop()`` turns true between tiles.
    """
    steps = predict_tiles(model, stack, scale, tile=tile, overlap=overlap)
    try:
        for done, total, volume in steps:
            if progress is not None:
                progress(done, total)
            if volume is not None:
                return volume
            if should_stop is not None and should_stop():
                return None
    finally:
        steps.close()
    return None  # pragma: no cover  (the generator always ends with the volume)


# ----------------------------------------------------------------------------- inference engine


@dataclass
class SeReNetParams:
    """SeReNet inference settings (every field appears in the GUI form and as a CLI flag)."""

    weights: str = field(
        default="",
        metadata=param("SeReNet weights file (.safetensors); empty = the shipped weights when the optics match"),
    )
    tile_lenslets: int = field(
        default=0, metadata=param("process in lateral tiles of this many lenslets (0 = whole frame)", min=0, max=4096)
    )
    overlap_lenslets: int = field(
        default=20, metadata=param("overlap between tiles in lenslets (blended)", min=0, max=1024)
    )
    background: float = field(
        default=0.0, metadata=param("constant background subtracted from the views (photo-electrons)", min=0.0)
    )
    view_indices: str = field(
        default="",
        metadata=param("views present, raster order, e.g. '0-8,12' (empty = all); missing views are zero-filled"),
    )
    register_views: bool = field(
        default=False, metadata=param("register every view to the centre view (cross-correlation) first")
    )


def prepare_views(
    data: np.ndarray, psf: PSF, view_indices: str, background: float
) -> tuple[np.ndarray, list[int] | None]:
    """Views ``(A_psf, Ny, Nx)`` (absent ones zero) and the list of views present (``None`` = all)."""
    n_psf = int(psf.array.shape[0])
    present = parse_view_indices(view_indices, n_psf)
    array = np.asarray(data, dtype=np.float32)
    if present is not None and array.ndim == 3 and array.shape[0] == len(present) and len(present) != n_psf:
        views = np.zeros((n_psf, *array.shape[1:]), np.float32)
        views[present] = array
    else:
        views = measurement_to_views(array, psf)
    if background:
        views = np.clip(views - np.float32(background), 0.0, None)
    return views, present


@register
class SeReNet(Engine):
    """SeReNet inference: a trained network turns one light-field frame into a volume in one pass."""

    name = "serenet"
    title = "SeReNet (self-supervised network)"
    modalities = ("lfm",)
    Params = SeReNetParams

    def run(
        self, inputs: Inputs, params: SeReNetParams, *, device: torch.device, should_stop: StopFlag = never
    ) -> Iterator[Update]:
        """Load the weights, build the psfshift stack, run the network (tiled if asked), yield the volume."""
        from .validation import checked_measurement

        psf = _check_lfm_psf(inputs.psf, "SeReNet")
        started = time.perf_counter()
        weights = params.weights or str(default_weights_for(psf))
        model, header = load_model(weights, psf)
        model.to(device)
        data = checked_measurement(inputs.data, non_negative=True)
        views, present = prepare_views(data, psf, params.view_indices, params.background)
        yield Update("progress", 0.05, f"SeReNet ({Path(weights).name}): views {views.shape}")
        if should_stop():
            return
        used = model.config.view_indices
        if params.register_views:
            views = register_to_centre(views, psf, used, present)
            yield Update("progress", 0.15, "views registered to the centre view")
        v = torch.as_tensor(views[used], device=device)[None]
        available = None
        if present is not None:
            available = torch.as_tensor([i in set(present) for i in used], device=device)
        shifts = torch.as_tensor(psf_view_shifts(psf)[used], device=device)
        with torch.no_grad():
            scale = frame_scale(v if available is None else v[:, available])
            stack = network_input(v, shifts, scale, available)
        start = 0.15 if params.register_views else 0.05
        steps = predict_tiles(model, stack, scale, tile=params.tile_lenslets, overlap=params.overlap_lenslets)
        volume = None
        try:
            for done, total, volume in steps:
                if volume is not None:
                    break
                yield Update("progress", start + (0.95 - start) * done / total, f"tile {done}/{total}")
                if should_stop():
                    yield Update("progress", start + (0.95 - start) * done / total, f"cancelled after tile {done}")
                    return
        finally:
            steps.close()
        volume = torch.clamp(volume, min=0.0)
        elapsed = time.perf_counter() - started
        yield Update("metric", 1.0, "seconds", ("seconds", elapsed))
        out = volume[0].to("cpu", torch.float32).numpy().copy()
        yield Update("result", 1.0, f"done in {elapsed:.2f} s", out)

    def output_voxel_size(self, inputs: Inputs) -> tuple[float, float, float] | None:
        """SeReNet returns a volume on the PSF's volume grid (the same as RL)."""
        return inputs.psf.voxel_size if inputs.psf is not None else inputs.voxel_size

    def output_shape(self, inputs: Inputs, params: SeReNetParams) -> tuple[int, ...] | None:
        """``(D, s·Ny, s·Nx)`` for a raw frame ``(Ny·N, Nx·N)`` or views ``(A, Ny, Nx)``."""
        psf = _check_lfm_psf(inputs.psf, "SeReNet")
        ny, nx = _lenslet_grid(psf, np.shape(inputs.data))
        s = _supersample(psf)
        return (int(psf.array.shape[1]), s * ny, s * nx)

    def halo(self, inputs: Inputs, params: SeReNetParams) -> tuple[int, ...] | None:
        """The network's receptive radius in the input's pixels: lenslets for views, ``N``× that for raw frames."""
        psf = _check_lfm_psf(inputs.psf, "SeReNet")
        radius = _network(psf, params).receptive_radius_lenslets()
        if len(np.shape(inputs.data)) == 2:
            nnum = int(psf.optics.get("pixels_per_lenslet", 1))
            return (radius * nnum, radius * nnum)
        return (0, radius, radius)

    def memory_bytes(self, inputs: Inputs, params: SeReNetParams) -> int:
        """Views, psfshift stack, the widest layer's activations (×3) and the output, per tile when tiled."""
        psf = _check_lfm_psf(inputs.psf, "SeReNet")
        ny, nx = _lenslet_grid(psf, np.shape(inputs.data))
        config = _network(psf, params).config
        depth, s = config.depths, config.supersample
        if params.tile_lenslets > 0:
            ny, nx = min(ny, params.tile_lenslets), min(nx, params.tile_lenslets)
        coarse, fine = depth * ny * nx, depth * s * s * ny * nx
        widest_coarse = max([config.n_views, *config.trunk])
        widest_fine = max([1, *(c for group in config.stages for c in group)])
        floats = 2 * config.n_views * coarse + 3 * widest_coarse * coarse + 3 * widest_fine * fine + 2 * fine
        return 4 * floats + int(psf.array.nbytes)


def _lenslet_grid(psf: PSF, shape: tuple[int, ...]) -> tuple[int, int]:
    """Lenslets ``(Ny, Nx)`` of a raw frame ``(Y, X)`` or of views ``(A, Ny, Nx)``."""
    if len(shape) == 2:
        nnum = max(int(psf.optics.get("pixels_per_lenslet", 1)), 1)
        return int(shape[0]) // nnum, int(shape[1]) // nnum
    return int(shape[-2]), int(shape[-1])


def _network(psf: PSF, params: SeReNetParams) -> SeReNetNet:
    """The network of the weights ``params`` name (or the shipped ones), built from the header alone."""
    from ..io.weights import read_header
    from .serenet_model import SeReNetConfig

    weights = params.weights or str(default_weights_for(psf))
    return SeReNetNet(SeReNetConfig.from_dict(read_header(weights)["config"]))


def register_to_centre(views: np.ndarray, psf: PSF, used: list[int], present: list[int] | None) -> np.ndarray:
    """Remove each used view's misregistration (cross-correlation with the centre view, parallax fitted out)."""
    from ..psf.lfm import LFMOptics

    nnum = int(psf.optics.get("pixels_per_lenslet", 1))
    centre = (nnum * nnum) // 2
    candidates = [i for i in used if present is None or i in present]
    if centre not in candidates:
        raise EngineInputError("view registration needs the centre view, which is not among the views present")
    angles = LFMOptics.from_dict(psf.optics).view_angles()[candidates]
    residual, _ = registration_corrections(views[candidates], angles, candidates.index(centre))
    out = views.copy()
    moved = shift_views(torch.as_tensor(views[candidates])[None], torch.as_tensor(residual, dtype=torch.float32))
    out[candidates] = moved[0].numpy()
    return out


def describe_weights(path: str | Path) -> str:
    """One paragraph about a weights file: engine, optics and training command (for GUIs and logs)."""
    from ..io.weights import read_header

    header = read_header(path)
    optics = header.get("optics", {})
    training = header.get("training", {})
    return json.dumps(
        {
            "engine": header.get("engine"),
            "views": len(header.get("config", {}).get("view_indices", [])),
            "psf_shape": optics.get("psf_shape"),
            "steps": training.get("steps_done"),
            "command": training.get("command"),
        }
    )


__all__ = [
    "SeReNet",
    "SeReNetParams",
    "describe_weights",
    "flux_factor",
    "frame_scale",
    "network_input",
    "predict_tiles",
    "predict_volume",
    "prepare_views",
    "register_to_centre",
    "tile_grid",
]
