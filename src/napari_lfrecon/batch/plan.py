"""Split a reconstruction into chunks that fit a memory budget.

Two kinds of plan:

- ``"tiles"``: one widefield volume ``(Z, Y, X)`` cut into a grid of *cores*
  (the output chunks, never overlapping). Each core is reconstructed from an
  input *tile*: the core grown by ``overlap`` voxels on each side (clipped to
  the volume), so the light that the PSF spreads across the core's edges is
  seen. Tiles are blended back with a separable raised-cosine window whose
  ramps are ``blend`` voxels wide and centred on the core boundaries
  (``blend=0``: each core is just cropped from its own tile).
- ``"frames"``: a time series ``(T, …)`` of light-field, XLFM or widefield
  frames, cut into groups of whole frames (frames are independent).

The working-set models below were measured on this code (RL, float32, CPU):
RL on a padded widefield tile peaks at ≈13.3× the float32 bytes of its FFT
grid (``benchmarks/bench_batch.py`` re-measures it); we budget 14×.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..modalities.widefield import TILE_COPIES, tile_bytes
from ..psf.model import PSF
from .sizes import format_size

Region = tuple[slice, ...]

#: Held back from every budget for the scheduler, the zarr writer and first-call caches (measured 8–10 MiB).
RESERVED_BYTES = 12 * 2**20
#: Budget used when the caller gives none.
DEFAULT_MAX_MEMORY = 2**30

_FLOAT = 4


@dataclass(frozen=True)
class Tile:
    """One engine call: read ``region`` of the input, reconstruct it, blend it with ``ramps``."""

    index: tuple[int, ...]
    region: Region
    #: Per axis: (ramp half-width at the start, at the end); 0 at volume edges and when not blending.
    ramps: tuple[tuple[int, int], ...] = ()
    #: Per axis: the core (output chunk) start and stop this tile's weight is centred on.
    core: Region = ()


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
def widefield_tile_bytes(extent: Sequence[int], psf_shape: Sequence[int], boundary: str = "padded") -> int:
    """Estimated peak bytes of RL on one widefield tile of ``extent`` voxels (the widefield modality's model)."""
    return tile_bytes(extent, psf_shape, boundary)


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


def plan_run(
    shape: Sequence[int],
    axes: str,
    psf: PSF,
    *,
    max_memory: int | None = None,
    tile: Sequence[int] | None = None,
    overlap: Sequence[int] | None = None,
    blend: int = 0,
    boundary: str = "padded",
) -> Plan:
    """Plan a run over an input of ``shape`` (canonical ``axes``) reconstructed with ``psf``.

    ``max_memory``: bytes one task (engine call plus its chunk) may use;
    drives the tile size or frames per chunk. ``tile``: the core size instead
    (widefield: 1 value = Y and X, 2 = Y X, 3 = Z Y X; frames: frames per
    chunk). ``overlap``: voxels added on each side of a core (default: the PSF
    size on that axis). ``blend``: width of the blending ramps in voxels.
    Raises ``ValueError`` for tiles smaller than the PSF support, overlaps
    that cannot hold the blend ramps, or a budget too small for one tile/frame.
    """
    if psf is None:
        raise ValueError("a batch run needs a PSF to plan its tiles and output shape")
    cap = int(max_memory) if max_memory is not None else DEFAULT_MAX_MEMORY
    if cap <= RESERVED_BYTES:
        raise ValueError(f"--max-memory must be more than {format_size(RESERVED_BYTES)}, got {format_size(cap)}")
    budget = cap - RESERVED_BYTES
    has_time, frame_ndim = frame_layout(psf, shape, axes)
    if psf.modality == "widefield" and not has_time:
        plan = _plan_tiles(tuple(shape), axes, psf, budget, tile, overlap, int(blend), boundary)
    else:
        plan = _plan_frames(tuple(shape), axes, psf, budget, tile, has_time, frame_ndim, boundary)
    plan.max_memory = cap
    return plan


def _plan_frames(shape, axes, psf, budget, tile, has_time, frame_ndim, boundary) -> Plan:
    frame_shape = shape[1:] if has_time else shape
    n_frames = shape[0] if has_time else 1
    vol_shape = output_frame_shape(psf, frame_shape, boundary)
    one = frames_bytes(psf, frame_shape, vol_shape, 1, boundary)
    if one > budget:
        raise ValueError(
            f"--max-memory {format_size(budget)} is below the estimated working set of one frame "
            f"({format_size(one)} for a {psf.modality} frame {tuple(frame_shape)} → volume {vol_shape}); raise it"
        )
    if tile is not None:
        values = list(tile)
        if len(values) != 1 or int(values[0]) < 1:
            raise ValueError(f"for a time series, --tile is one number (frames per chunk), got {values}")
        per_chunk = min(int(values[0]), n_frames)
    else:
        # One frame per chunk: the finest resume step, the most parallelism, and what napari reads per frame.
        per_chunk = 1
    task = frames_bytes(psf, frame_shape, vol_shape, per_chunk, boundary)
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
        tiles.append(Tile((i,), region_in))
        chunks.append(Chunk((i,), region_out, (i,)))
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


def _plan_tiles(shape, axes, psf, budget, tile, overlap, blend, boundary) -> Plan:
    if len(shape) != 3:
        raise ValueError(f"widefield tiling needs a (Z, Y, X) volume, got shape {shape}")
    psf_shape = tuple(int(p) for p in psf.array.shape)
    overlap = _per_axis(overlap, psf_shape, "overlap")
    if any(o < 0 for o in overlap):
        raise ValueError(f"--overlap must be ≥ 0 voxels, got {list(overlap)}")
    half = blend // 2
    if blend < 0:
        raise ValueError(f"the blend width must be ≥ 0 voxels, got {blend}")

    def cost(core: Sequence[int]) -> int:
        extent = [_extent(n, c, o) for n, c, o in zip(shape, core, overlap, strict=True)]
        return widefield_tile_bytes(extent, psf_shape, boundary)

    if tile is not None:
        core = tuple(min(int(c), n) for c, n in zip(_per_axis(tile, shape, "tile"), shape, strict=True))
        if any(c < 1 for c in core):
            raise ValueError(f"--tile must be positive, got {list(tile)}")
    else:
        core = _auto_core(shape, psf_shape, budget, cost, blend)
    for axis, (c, n, p, o) in enumerate(zip(core, shape, psf_shape, overlap, strict=True)):
        if c < n and c < p:
            raise ValueError(
                f"the tile ({c} voxels on axis {'ZYX'[axis]}) is smaller than the PSF support ({p} voxels): "
                "use a larger --tile or --max-memory"
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

    starts = [list(range(0, n, c)) for n, c in zip(shape, core, strict=True)]
    grid = [len(s) for s in starts]
    tiles: list[Tile] = []
    for index in itertools.product(*(range(g) for g in grid)):
        region, ramps, core_region = [], [], []
        for axis, i in enumerate(index):
            n, c, o = shape[axis], core[axis], overlap[axis]
            start, stop = i * c, min((i + 1) * c, n)
            tiled = grid[axis] > 1
            region.append(slice(max(0, start - o), min(n, stop + o)) if tiled else slice(0, n))
            ramps.append((half if (tiled and i > 0) else 0, half if (tiled and i < grid[axis] - 1) else 0))
            core_region.append(slice(start, stop))
        tiles.append(Tile(tuple(index), tuple(region), tuple(ramps), tuple(core_region)))
    number = {t.index: k for k, t in enumerate(tiles)}
    chunks = []
    for t in tiles:
        # A tile's blend ramps reach at most half a ramp into its neighbours' cores.
        neighbours = itertools.product(*((-1, 0, 1) if half and grid[a] > 1 else (0,) for a in range(3)))
        contributing = []
        for step in neighbours:
            other = tuple(i + s for i, s in zip(t.index, step, strict=True))
            if other in number:
                contributing.append(number[other])
        chunks.append(Chunk(t.index, t.core, tuple(sorted(contributing))))
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
    if any(o < p // 2 for o, p, g in zip(overlap, psf_shape, grid, strict=True) if g > 1):
        plan.notes.append("the overlap is smaller than half the PSF: expect seams between tiles")
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
        f"--max-memory {format_size(budget)} cannot hold even the smallest tile the PSF allows "
        f"(≈{format_size(smallest)}); raise it"
    )


def _balanced(length: int, largest: int) -> int:
    """The smallest core ≤ ``largest`` that needs as few tiles along ``length`` as ``largest`` does."""
    count = math.ceil(length / max(largest, 1))
    return min(length, math.ceil(length / count))


def tile_weights(tile: Tile, region: Region) -> np.ndarray | None:
    """Blending weights of ``tile`` on ``region`` (global coordinates); ``None`` means all ones.

    Separable raised-cosine ramps, complementary between neighbours, so the
    weights of all tiles reaching a voxel sum to one.
    """
    if not any(a or b for a, b in tile.ramps):
        return None
    factors = []
    for (ramp_lo, ramp_hi), core, want in zip(tile.ramps, tile.core, region, strict=True):
        positions = np.arange(want.start, want.stop, dtype=np.float64)
        weight = np.ones_like(positions)
        if ramp_lo:
            weight *= _rise(positions - core.start, ramp_lo)
        if ramp_hi:
            weight *= 1.0 - _rise(positions - core.stop, ramp_hi)
        factors.append(weight)
    out = factors[0][:, None, None] * factors[1][None, :, None] * factors[2][None, None, :]
    return out


def _rise(offset: np.ndarray, half: int) -> np.ndarray:
    """0 below ``-half``, 1 from ``half`` on, a raised cosine across the boundary in between."""
    u = np.clip((offset + half + 0.5) / (2 * half), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * u)
