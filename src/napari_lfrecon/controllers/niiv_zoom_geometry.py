"""niiv zoom geometry: which region of a field to decode, at which sampling, and where the tile goes (pure).

Plain numbers, no Qt or napari objects: from where the field's output voxels
sit in the world (:class:`OutputGrid`), which two axes are on screen, the slice
position, the camera centre, the zoom (screen px per world unit) and the canvas
size (:class:`ViewState`), :func:`plan_tile` gives the visible region in
output-voxel index coordinates (clipped to the volume), the sample positions at
about one sample per screen pixel (``"full"``) or a quarter of that per axis
(``"coarse"``), and the ``scale``/``translate`` that put sample ``j`` at world
position ``translate + j * scale``. Samples sit on a fixed lattice anchored at
the volume's corner, so a pan re-uses the same positions.

Zooming beyond :data:`MAX_SAMPLES_PER_VOXEL` screen pixels per output voxel
clamps the decode at that density (:func:`clamp_message` says so).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

#: Most screen pixels per output voxel the tile is decoded at. At the shipped
#: sample's 0.2 µm voxels this is 6 nm per sample, thirty times finer than the
#: optical resolution: the field is a smooth interpolant there, so decoding more
#: samples only costs time. Zooming further magnifies the 32× decode instead.
MAX_SAMPLES_PER_VOXEL = 32.0
#: The coarse pass samples this many times more sparsely per axis (1/16 of the samples).
COARSE_FACTOR = 4
#: A full tile with at most this many samples is decoded directly (a coarse pass would not be faster to see).
COARSE_MIN_SAMPLES = 128 * 128
#: Hard cap on samples per axis, whatever the canvas claims (a 4k screen is 3840 px wide).
MAX_TILE_SIDE = 4096

__all__ = [
    "COARSE_FACTOR",
    "COARSE_MIN_SAMPLES",
    "MAX_SAMPLES_PER_VOXEL",
    "MAX_TILE_SIDE",
    "FieldDecoder",
    "OutputGrid",
    "TilePlan",
    "ViewState",
    "clamp_message",
    "lattice_positions",
    "output_grid",
    "plan_passes",
    "plan_tile",
    "visible_index_range",
]


@runtime_checkable
class FieldDecoder(Protocol):
    """What the zoom needs from a niiv model (``engines.niiv_field.NiivField`` is one).

    ``shape_out`` is the isotropic output volume ``(Z, Y, X)`` at scale 1;
    ``decode_grid`` evaluates the field on the outer product of 1-D positions in
    output-voxel index units (cell-centred: index ``i`` covers ``[i-0.5, i+0.5]``)
    and returns float32 ``(len(zs), len(ys), len(xs))``, or ``None`` when
    ``should_stop()`` became true.
    """

    @property
    def shape_out(self) -> tuple[int, int, int]:  # pragma: no cover - protocol
        """The output volume's shape at scale 1."""
        ...

    def decode_grid(
        self,
        zs: np.ndarray,
        ys: np.ndarray,
        xs: np.ndarray,
        *,
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray | None:  # pragma: no cover - protocol
        """Values on the grid ``zs × ys × xs``, or ``None`` if stopped."""
        ...


@dataclass(frozen=True)
class OutputGrid:
    """Where the field's output voxels sit in the world: ``world = translate + index * scale`` per axis."""

    shape: tuple[int, int, int]
    scale: tuple[float, float, float]
    translate: tuple[float, float, float]

    def to_index(self, axis: int, world: float) -> float:
        """Output-voxel index (continuous) of a world position along ``axis``."""
        return (world - self.translate[axis]) / self.scale[axis]

    def to_world(self, axis: int, index: float) -> float:
        """World position of a (continuous) output-voxel index along ``axis``."""
        return self.translate[axis] + index * self.scale[axis]


def output_grid(
    layer_shape: Sequence[int],
    layer_scale: Sequence[float],
    layer_translate: Sequence[float],
    shape_out: Sequence[int],
) -> OutputGrid:
    """The output grid of a field shown over a layer of shape ``layer_shape``.

    For a niiv result at scale 1 the layer IS the output grid. For the
    anisotropic input stack (``D`` planes for ``D·af`` output planes) or a result
    decoded at another z-scale, both grids cover the same cells: output voxels
    are ``layer_shape / shape_out`` times the layer's voxels along each axis,
    and the first output cell starts where the first layer cell starts.
    Raises ``ValueError`` for a layer that is not 3-D or has a zero scale.
    """
    if len(layer_shape) != 3 or len(shape_out) != 3 or len(layer_scale) != 3 or len(layer_translate) != 3:
        raise ValueError(f"niiv zoom needs a 3-D (Z, Y, X) layer and field, got a layer of shape {tuple(layer_shape)}")
    scale, translate = [], []
    for n_l, s_l, t_l, n_o in zip(layer_shape, layer_scale, layer_translate, shape_out, strict=True):
        if not (n_l > 0 and n_o > 0 and math.isfinite(s_l) and s_l != 0):
            raise ValueError(
                f"niiv zoom needs positive sizes and a non-zero finite scale, got scale {tuple(layer_scale)}"
            )
        if n_l == n_o:  # the layer is the output grid (kept exact: no round-off drift)
            scale.append(float(s_l))
            translate.append(float(t_l))
            continue
        s_o = s_l * n_l / n_o
        # Cell-centred: the first cells of both grids share their lower edge.
        scale.append(float(s_o))
        translate.append(float(t_l - s_l / 2 + s_o / 2))
    return OutputGrid(tuple(int(n) for n in shape_out), tuple(scale), tuple(translate))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ViewState:
    """What the 2-D canvas shows, in the layer's axes (napari's camera and dims, as plain numbers).

    ``displayed`` are the layer axes on screen as (rows, columns), ``slice_world``
    the world position on the third axis, ``center`` the camera centre (world)
    on (rows, columns), ``zoom`` screen pixels per world unit, ``canvas`` the
    canvas size in pixels as (height, width).
    """

    displayed: tuple[int, int]
    slice_world: float
    center: tuple[float, float]
    zoom: float
    canvas: tuple[int, int]


@dataclass(frozen=True)
class TilePlan:
    """Where to decode one tile and where to put it.

    ``positions`` are the sample positions per layer axis (Z, Y, X) in output
    index units (length 1 on the non-displayed axis); sample ``j`` on axis ``a``
    is shown at world ``translate[a] + j * scale[a]``. ``samples_per_voxel``
    is the density along the two displayed axes, ``clamped`` says the zoom went
    beyond :data:`MAX_SAMPLES_PER_VOXEL`.
    """

    level: str
    positions: tuple[np.ndarray, np.ndarray, np.ndarray]
    scale: tuple[float, float, float]
    translate: tuple[float, float, float]
    samples_per_voxel: tuple[float, float]
    clamped: bool
    zoom_per_voxel: tuple[float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        """The tile's array shape."""
        return tuple(len(p) for p in self.positions)  # type: ignore[return-value]

    @property
    def size(self) -> int:
        """Number of samples in the tile."""
        return int(np.prod(self.shape))

    @property
    def key(self) -> tuple:
        """Hashable identity of the sampled positions (equal keys decode the same values)."""
        return tuple((len(p), round(float(p[0]), 9), round(float(p[-1]), 9)) for p in self.positions)


def visible_index_range(
    grid: OutputGrid, axis: int, center_world: float, zoom: float, pixels: int
) -> tuple[float, float] | None:
    """The visible part of ``axis`` in output-index coordinates, clipped to the volume's cells.

    The canvas shows ``pixels / zoom`` world units around ``center_world``; the
    volume's cells cover indices ``[-0.5, n - 0.5]``. ``None`` when nothing of
    the volume is visible along this axis.
    """
    half = pixels / (2.0 * zoom)
    a = grid.to_index(axis, center_world - half)
    b = grid.to_index(axis, center_world + half)
    lo, hi = max(min(a, b), -0.5), min(max(a, b), grid.shape[axis] - 0.5)
    return (lo, hi) if hi > lo else None


def lattice_positions(lo: float, hi: float, step: float, n: int) -> np.ndarray:
    """Sample positions covering ``[lo, hi]`` on the lattice ``-0.5 + (k + 0.5) * step``, inside ``[-0.5, n-0.5]``.

    Anchoring the lattice at the volume's corner (instead of at the view's edge)
    keeps sample positions fixed while panning at a constant zoom.
    """
    k0 = max(math.floor((lo + 0.5) / step), 0)
    k1 = min(math.ceil((hi + 0.5) / step) - 1, math.floor(n / step - 0.5))
    k1 = max(k1, k0)
    return (-0.5 + (np.arange(k0, k1 + 1, dtype=np.float64) + 0.5) * step).astype(np.float64)


def plan_tile(
    grid: OutputGrid,
    view: ViewState,
    *,
    level: str = "full",
    max_samples_per_voxel: float = MAX_SAMPLES_PER_VOXEL,
    coarse_factor: int = COARSE_FACTOR,
) -> TilePlan | None:
    """The tile to decode for ``view`` at ``level`` (``"full"`` or ``"coarse"``); ``None`` if nothing is visible.

    Full: one sample per screen pixel (``zoom * scale`` samples per output
    voxel), at most ``max_samples_per_voxel`` (then ``clamped``); coarse:
    ``coarse_factor`` times sparser per axis. At most one sample per screen
    pixel plus one (the lattice's partial edge cells) and :data:`MAX_TILE_SIDE`
    per axis. Never raises: a non-finite or non-positive zoom, an empty canvas
    or a slice outside the volume give ``None``.
    """
    if level not in ("full", "coarse"):
        raise ValueError(f"level must be 'full' or 'coarse', got {level!r}")
    rows, cols = view.displayed
    if {rows, cols} - {0, 1, 2} or rows == cols:
        return None
    (sliced,) = {0, 1, 2} - {rows, cols}
    zoom = float(view.zoom)
    if not (math.isfinite(zoom) and zoom > 0) or min(view.canvas) <= 0:
        return None
    index = grid.to_index(sliced, float(view.slice_world))
    if not (math.isfinite(index) and -0.5 <= index <= grid.shape[sliced] - 0.5):
        return None
    positions: list[np.ndarray] = [np.empty(0)] * 3
    scale = list(grid.scale)
    translate = list(grid.translate)
    positions[sliced] = np.array([index], dtype=np.float64)
    translate[sliced] = float(view.slice_world)
    density, per_voxel, clamped = [], [], False
    for axis, centre, pixels in ((rows, view.center[0], view.canvas[0]), (cols, view.center[1], view.canvas[1])):
        visible = visible_index_range(grid, axis, float(centre), zoom, int(pixels))
        if visible is None:
            return None
        lo, hi = visible
        screen_per_voxel = zoom * abs(grid.scale[axis])
        samples = screen_per_voxel
        if samples > max_samples_per_voxel:
            samples, clamped = max_samples_per_voxel, True
        if level == "coarse":
            samples /= coarse_factor
        step = 1.0 / samples
        if (hi - lo) / step > MAX_TILE_SIDE - 1:
            step = (hi - lo) / (MAX_TILE_SIDE - 1)
        pos = lattice_positions(lo, hi, step, grid.shape[axis])
        positions[axis] = pos
        scale[axis] = step * grid.scale[axis]
        translate[axis] = grid.to_world(axis, float(pos[0]))
        density.append(1.0 / step)
        per_voxel.append(screen_per_voxel)
    return TilePlan(
        level=level,
        positions=(positions[0], positions[1], positions[2]),
        scale=tuple(float(s) for s in scale),  # type: ignore[arg-type]
        translate=tuple(float(t) for t in translate),  # type: ignore[arg-type]
        samples_per_voxel=(density[0], density[1]),
        clamped=clamped,
        zoom_per_voxel=(per_voxel[0], per_voxel[1]),
    )


def plan_passes(grid: OutputGrid, view: ViewState) -> list[TilePlan]:
    """The tiles one request decodes, in order: coarse (unless the full tile is small) then full."""
    full = plan_tile(grid, view, level="full")
    if full is None:
        return []
    if full.size <= COARSE_MIN_SAMPLES:
        return [full]
    coarse = plan_tile(grid, view, level="coarse")
    return [coarse, full] if coarse is not None else [full]


def clamp_message(plan: TilePlan, limit: float = MAX_SAMPLES_PER_VOXEL) -> str:
    """The status line for a zoom beyond the limit."""
    zoom = max(plan.zoom_per_voxel)
    return (
        f"zoomed to {zoom:.0f} screen px per voxel, beyond the {limit:.0f}× limit: "
        f"showing the {limit:.0f}× decode magnified (the field has no finer detail)"
    )
