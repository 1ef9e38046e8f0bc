"""Split a reconstruction into chunks that fit a memory budget.

Two kinds of plan:

- ``"tiles"``: one volume ``(Z, Y, X)`` cut into a grid of *cores* (the
  output chunks, never overlapping), for engines that declare a halo
  (:meth:`Engine.halo`, e.g. RL on widefield data: the PSF size) and return
  a volume on the input's grid. Each core is reconstructed from an input
  *tile*: the core grown by ``overlap`` voxels on each side (default: the
  engine's halo; clipped to the volume). Tiles are blended back with a
  separable raised-cosine window whose ramps are ``blend`` voxels wide and
  centred on the core boundaries (``blend=0``: each core is just cropped from
  its own tile). The grid and the weights are :mod:`napari_lfrecon.tiling`'s.
- ``"frames"``: everything else — a time series ``(T, …)`` cut into groups
  of whole frames (frames are independent), or one frame of an engine that
  needs whole frames (SeReNet, niiv).

Memory comes from the engine's own model (:meth:`Engine.memory_bytes`; RL's
is the PSF modality's, measured on this code) plus the input and result
copies a task holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..modalities.widefield import TILE_COPIES
from ..psf.model import PSF
from ..tiling import Region, Tile, TileGrid, tile_weights
from .sizes import format_size

#: Held back from every budget for the scheduler, the zarr writer and first-call caches (measured 8–10 MiB).
RESERVED_BYTES = 12 * 2**20
#: Budget used when the caller gives none.
DEFAULT_MAX_MEMORY = 2**30

_FLOAT = 4


@dataclass(frozen=True)
class Chunk:
    """One output chunk: where it goes, and the tiles whose weights reach it."""

    index: tuple[int, ...]
    region: Region
    tiles: tuple[int, ...]

    @property
    def name(self) -> str:
        """A file-name-safe id, e.g. ``c0_1_2``."""
        return "c" + "_".join(str(i) for i in self.index)


@dataclass
class Plan:
    """How a run is cut up: tiles (engine calls) and chunks (output writes) over ``output_shape``."""

    mode: str
    input_shape: tuple[int, ...]
    input_axes: str
    output_shape: tuple[int, ...]
    output_axes: str
    chunk_shape: tuple[int, ...]
    tiles: list[Tile]
    chunks: list[Chunk]
    overlap: tuple[int, ...] = ()
    blend: int = 0
    task_bytes: int = 0
    max_memory: int = DEFAULT_MAX_MEMORY
    frame_output_shape: tuple[int, ...] = ()
    has_time: bool = False
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """The plan as JSON-able facts (stored in the output and printed by ``--json``)."""
        return {
            "mode": self.mode,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "output_axes": self.output_axes,
            "chunk_shape": list(self.chunk_shape),
            "overlap": list(self.overlap),
            "blend": self.blend,
            "tiles": len(self.tiles),
            "chunks": len(self.chunks),
            "task_bytes_estimate": int(self.task_bytes),
            "max_memory": int(self.max_memory),
        }


# --------------------------------------------------------------------------- memory models
def frames_bytes(psf: PSF, frame_shape: Sequence[int], volume_shape: Sequence[int], frames: int, boundary: str) -> int:
    """Estimated peak bytes of RL on a group of ``frames`` frames (one engine call per frame).

    The engine's working set on one frame is the modality's memory model (:meth:`Modality.frame_bytes`).
    """
    from .. import modalities

    per_frame = _FLOAT * (math.prod(frame_shape) + math.prod(volume_shape))
    engine = modalities.for_psf(psf).frame_bytes(psf, frame_shape, volume_shape, boundary)
    # The group's input and result stay in memory while its frames are reconstructed one by one.
    return engine + 2 * frames * per_frame


# --------------------------------------------------------------------------- planning
def frame_layout(psf: PSF | None, shape: Sequence[int], axes: str) -> tuple[bool, int]:
    """``(has_time_axis, frame_ndim)`` for an input of ``shape``/``axes`` and this PSF's modality."""
    shape = tuple(shape)
    if "C" in axes:
        raise ValueError(
            f"batch runs take one channel; the input has axes {axes!r}: split the channels and run each with its PSF"
        )
    if psf is None:
        return (len(shape) == 4 or axes.startswith("T")), (len(shape) - 1 if axes.startswith("T") else len(shape))
    from .. import modalities

    return modalities.for_psf(psf).frame_layout(psf, shape, axes)


def output_frame_shape(psf: PSF, frame_shape: Sequence[int], boundary: str) -> tuple[int, ...]:
    """The shape of one reconstructed frame, from the forward model (no engine run needed)."""
    from .. import modalities

    return modalities.for_psf(psf).output_frame_shape(psf, frame_shape, boundary)


@dataclass
class EngineView:
    """What planning asks of an engine: its halo, output shape and memory for frames or tiles of a shape."""

    engine: Any
    params: Any
    psf: PSF | None
    voxel_size: tuple[float, float, float] | None

    def _inputs(self, shape: Sequence[int]) -> Any:
        # A zero-byte stand-in of the right shape: the engine's planning methods read shapes only.
        placeholder = np.broadcast_to(np.float32(0), tuple(int(n) for n in shape))
        return self.engine.inputs_type(data=placeholder, psf=self.psf, voxel_size=self.voxel_size)

    def halo(self, shape: Sequence[int]) -> tuple[int, ...] | None:
        """The engine's context per axis for tiles of a frame of ``shape`` (``None``: whole frames only)."""
        halo = self.engine.halo(self._inputs(shape), self.params)
        return None if halo is None else tuple(int(h) for h in halo)

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The volume one frame of ``shape`` becomes; ``ValueError`` when the engine cannot tell."""
        out = self.engine.output_shape(self._inputs(shape), self.params)
        if out is None:
            raise ValueError(
                f"engine {self.engine.name!r} does not tell the shape of its result before running "
                "(Engine.output_shape), so it cannot run chunked"
            )
        return tuple(int(n) for n in out)

    def memory_bytes(self, shape: Sequence[int]) -> int:
        """The engine's estimated peak bytes on one frame or tile of ``shape``."""
        return int(self.engine.memory_bytes(self._inputs(shape), self.params))


def engine_view(
    engine: Any, params: Any, psf: PSF | None, voxel_size: tuple[float, float, float] | None = None
) -> EngineView:
    """``engine`` (a registered name or an engine) with ``params`` (a mapping or its ``Params``) for planning.

    Raises ``ValueError`` when the engine needs a PSF and none is given.
    """
    from .. import engines
    from ..jobs import make_params

    engine_obj = engines.get(engine) if isinstance(engine, str) else engine
    if params is None or isinstance(params, Mapping):
        params = make_params(engine_obj.Params, dict(params or {}))
    if psf is None and engine_obj.needs_psf:
        raise ValueError(f"engine {engine_obj.name!r} needs a PSF to plan its tiles and output shape")
    return EngineView(engine_obj, params, psf, voxel_size)


def plan_run(
    shape: Sequence[int],
    axes: str,
    psf: PSF | None,
    *,
    engine: Any = "rl",
    params: Any = None,
    voxel_size: tuple[float, float, float] | None = None,
    max_memory: int | None = None,
    tile: Sequence[int] | None = None,
    overlap: Sequence[int] | None = None,
    blend: int = 0,
) -> Plan:
    """Plan a run of ``engine`` (name or engine, with ``params``) over an input of ``shape`` (canonical ``axes``).

    ``psf`` may be ``None`` for engines that need none (niiv); ``voxel_size``
    is the data's (some engines derive their output grid from it).
    ``max_memory``: bytes one task (engine call plus its chunk) may use;
    drives the tile size or frames per chunk. ``tile``: the core size instead
    (tiles: 1 value = Y and X, 2 = Y X, 3 = Z Y X; frames: frames per chunk).
    ``overlap``: voxels added on each side of a core (default: the engine's
    halo, for RL the PSF size). ``blend``: width of the blending ramps in voxels.
    Raises ``ValueError`` for tiles smaller than the engine's halo, overlaps
    that cannot hold the blend ramps, or a budget too small for one tile/frame.
    """
    view = engine_view(engine, params, psf, voxel_size)
    cap = int(max_memory) if max_memory is not None else DEFAULT_MAX_MEMORY
    if cap <= RESERVED_BYTES:
        raise ValueError(f"--max-memory must be more than {format_size(RESERVED_BYTES)}, got {format_size(cap)}")
    budget = cap - RESERVED_BYTES
    shape = tuple(int(n) for n in shape)
    has_time, frame_ndim = frame_layout(psf, shape, axes)
    halo = None if has_time or len(shape) != 3 else view.halo(shape)
    # Spatial tiles only where a tile's result is the same grid cut the same way: the output on the input's grid.
    if halo is not None and view.output_shape(shape) == shape:
        plan = _plan_tiles(shape, axes, view, halo, budget, tile, overlap, int(blend))
    else:
        plan = _plan_frames(shape, axes, view, budget, tile, has_time)
    plan.max_memory = cap
    return plan


def _frames_task_bytes(view: EngineView, frame_shape, vol_shape, frames: int) -> int:
    """One engine call on a frame, plus the group's input and result held while its frames run one by one."""
    per_frame = _FLOAT * (math.prod(frame_shape) + math.prod(vol_shape))
    return view.memory_bytes(frame_shape) + 2 * frames * per_frame


def _plan_frames(shape, axes, view: EngineView, budget, tile, has_time) -> Plan:
    frame_shape = shape[1:] if has_time else shape
    n_frames = shape[0] if has_time else 1
    vol_shape = view.output_shape(frame_shape)
    one = _frames_task_bytes(view, frame_shape, vol_shape, 1)
    if one > budget:
        raise ValueError(
            f"--max-memory {format_size(budget)} is below the estimated working set of one frame "
            f"({format_size(one)} for {view.engine.name} on a frame {tuple(frame_shape)} → volume {vol_shape}); "
            "raise it"
        )
    if tile is not None:
        values = list(tile)
        if len(values) != 1 or int(values[0]) < 1:
            raise ValueError(f"for a time series, --tile is one number (frames per chunk), got {values}")
        per_chunk = min(int(values[0]), n_frames)
    else:
        # One frame per chunk: the finest resume step, the most parallelism, and what napari reads per frame.
        per_chunk = 1
    task = _frames_task_bytes(view, frame_shape, vol_shape, per_chunk)
    if task > budget:
        raise ValueError(
            f"{per_chunk} frames per chunk need ≈{format_size(task)}, more than --max-memory {format_size(budget)}"
        )
    tiles, chunks = [], []
    for i, start in enumerate(range(0, n_frames, per_chunk)):
        stop = min(start + per_chunk, n_frames)
        if has_time:
            region_in = (slice(start, stop),) + tuple(slice(0, n) for n in frame_shape)
            region_out = (slice(start, stop),) + tuple(slice(0, n) for n in vol_shape)
        else:
            region_in = tuple(slice(0, n) for n in frame_shape)
            region_out = tuple(slice(0, n) for n in vol_shape)
        tiles.append(Tile((i,), tuple(region_in)))
        chunks.append(Chunk((i,), tuple(region_out), (i,)))
    out_shape = ((n_frames,) if has_time else ()) + tuple(vol_shape)
    chunk_shape = ((per_chunk,) if has_time else ()) + tuple(vol_shape)
    return Plan(
        mode="frames",
        input_shape=shape,
        input_axes=axes,
        output_shape=out_shape,
        output_axes=("T" if has_time else "") + "ZYX",
        chunk_shape=chunk_shape,
        tiles=tiles,
        chunks=chunks,
        task_bytes=task,
        max_memory=budget,
        frame_output_shape=tuple(vol_shape),
        has_time=has_time,
    )


def _per_axis(values: Sequence[int] | None, default: Sequence[int], what: str) -> tuple[int, ...]:
    if values is None:
        return tuple(int(v) for v in default)
    values = [int(v) for v in values]
    if len(values) == 1:
        return (int(default[0]), values[0], values[0]) if what == "tile" else (values[0],) * 3
    if len(values) == 2:
        return (int(default[0]), *values)
    if len(values) == 3:
        return tuple(values)
    raise ValueError(f"--{what} takes 1 (Y and X), 2 (Y X) or 3 (Z Y X) numbers, got {values}")


def _extent(length: int, core: int, overlap: int) -> int:
    """The largest tile extent along an axis: an interior core plus the overlap on both sides."""
    return length if core >= length else min(length, core + 2 * overlap)


def _plan_tiles(shape, axes, view: EngineView, halo, budget, tile, overlap, blend) -> Plan:
    overlap = _per_axis(overlap, halo, "overlap")
    if any(o < 0 for o in overlap):
        raise ValueError(f"--overlap must be ≥ 0 voxels, got {list(overlap)}")
    half = blend // 2
    if blend < 0:
        raise ValueError(f"the blend width must be ≥ 0 voxels, got {blend}")

    def cost(core: Sequence[int]) -> int:
        return view.memory_bytes([_extent(n, c, o) for n, c, o in zip(shape, core, overlap, strict=True)])

    if tile is not None:
        core = tuple(min(int(c), n) for c, n in zip(_per_axis(tile, shape, "tile"), shape, strict=True))
        if any(c < 1 for c in core):
            raise ValueError(f"--tile must be positive, got {list(tile)}")
    else:
        core = _auto_core(shape, halo, budget, cost, blend)
    for axis, (c, n, p, o) in enumerate(zip(core, shape, halo, overlap, strict=True)):
        if c < n and c < p:
            raise ValueError(
                f"the tile ({c} voxels on axis {'ZYX'[axis]}) is smaller than the PSF support ({p} voxels, the "
                f"context engine {view.engine.name!r} needs): use a larger --tile or --max-memory"
            )
        if c < n and (half > o or 2 * half > c):
            raise ValueError(
                f"a blend of {blend} voxels needs an overlap ≥ {half} and a tile ≥ {2 * half} on axis {'ZYX'[axis]}"
            )
    task = cost(core)
    if task > budget:
        raise ValueError(
            f"a tile of {list(core)} voxels with overlap {list(overlap)} needs ≈{format_size(task)}, "
            f"more than --max-memory {format_size(budget)}: use a smaller --tile or a larger --max-memory"
        )

    grid = TileGrid.build(shape, core, overlap, half)
    tiles = grid.tiles
    # A chunk is one tile's core; the tiles it needs are those whose blend ramps reach into it.
    chunks = [Chunk(t.index, t.core, grid.reaching(t.core)) for t in tiles]
    plan = Plan(
        mode="tiles",
        input_shape=shape,
        input_axes=axes,
        output_shape=shape,
        output_axes="ZYX",
        chunk_shape=core,
        tiles=tiles,
        chunks=chunks,
        overlap=overlap,
        blend=blend,
        task_bytes=task if not half else task + 27 * TILE_COPIES * _FLOAT * math.prod(core),
        max_memory=budget,
    )
    if any(o < p // 2 for o, p, g in zip(overlap, halo, grid.counts, strict=True) if g > 1):
        plan.notes.append(
            f"the overlap is smaller than half the context engine {view.engine.name!r} needs (for RL: half the PSF): "
            "expect seams between tiles"
        )
    return plan


def _auto_core(shape, psf_shape, budget, cost, blend) -> tuple[int, int, int]:
    """The largest core that fits ``budget``: whole Z first and a square in Y, X; Z is cut only if it must be."""
    nz, ny, nx = shape
    min_lateral = max(psf_shape[1], psf_shape[2], blend, 1)
    z_options = [nz]
    cz = nz
    while cz > max(psf_shape[0], blend, 1):
        cz = max((cz + 1) // 2, psf_shape[0], blend, 1)
        z_options.append(cz)
    largest = max(ny, nx)
    for cz in z_options:
        if cost((cz, min(min_lateral, ny), min(min_lateral, nx))) > budget:
            continue
        lo, hi = min(min_lateral, largest), largest
        while lo < hi:  # the largest square side that fits
            mid = (lo + hi + 1) // 2
            if cost((cz, min(mid, ny), min(mid, nx))) <= budget:
                lo = mid
            else:
                hi = mid - 1
        # Balance the cores: the same number of tiles with equal sizes wastes less overlap.
        side_y = _balanced(ny, lo)
        side_x = _balanced(nx, lo)
        return (cz, side_y, side_x)
    smallest = cost((z_options[-1], min(min_lateral, ny), min(min_lateral, nx)))
    raise ValueError(
        f"--max-memory {format_size(budget)} cannot hold even the smallest tile the PSF (engine's halo) allows "
        f"(≈{format_size(smallest)}); raise it"
    )


def _balanced(length: int, largest: int) -> int:
    """The smallest core ≤ ``largest`` that needs as few tiles along ``length`` as ``largest`` does."""
    count = math.ceil(length / max(largest, 1))
    return min(length, math.ceil(length / count))


__all__ = ["Chunk", "Plan", "Region", "Tile", "engine_view", "plan_run", "tile_weights"]
