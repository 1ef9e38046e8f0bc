"""Tiles with halos and blending: the one tiling every engine and the batch runner use (numpy + torch only).

A grid of shape ``shape`` is cut into *cores* of ``core`` voxels per axis
(starting at 0, the last one shorter; cores never overlap and cover the grid).
Each core is computed from a *tile*: the core grown by ``halo`` voxels on each
side (the context the computation needs), clipped at the grid's borders.
Results are blended with separable raised-cosine ramps of half-width ``half``
centred on the core boundaries (``half = 0``: each core is cropped from its own
tile). Neighbouring ramps are complementary, so the weights of all tiles sum
to exactly one at every voxel (a partition of unity) as long as every core but
the last is at least ``2·half`` long and the halo holds the ramp
(``half ≤ halo``); :class:`TileGrid` refuses other layouts.

- :class:`TileGrid` makes the tiles and answers "which tiles does this output
  region need" (:meth:`TileGrid.reaching`), the query the batch planner uses.
- :func:`tile_weights` gives a tile's blending weights on any region.
- :class:`Blender` accumulates tile results (numpy or torch, with leading
  axes such as batch/depth broadcast) into a region; :func:`assemble` is the
  one-shot form.
- :func:`each_tile` iterates tiles so a caller can report progress and check
  its stop flag per tile.

Tiles computed on a coarse grid and returned on a finer one (SeReNet: lenslets
in, ``s`` voxels per lenslet out) are blended with :meth:`Tile.scaled`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

Region = tuple[slice, ...]

#: Weight sums below this are treated as empty (no tile covers the voxel) when dividing.
_MIN_WEIGHT = 1e-12


@dataclass(frozen=True)
class Tile:
    """One computation: read ``region`` (core + halo, clipped), blend its result with ``ramps`` around ``core``."""

    index: tuple[int, ...]
    region: Region
    #: Per axis: (ramp half-width at the start, at the end); 0 at grid edges and when not blending.
    ramps: tuple[tuple[int, int], ...] = ()
    #: Per axis: the core (output cell) this tile's weight is centred on.
    core: Region = ()

    @property
    def shape(self) -> tuple[int, ...]:
        """The number of voxels the tile reads per axis."""
        return tuple(s.stop - s.start for s in self.region)

    def scaled(self, factors: Sequence[int]) -> Tile:
        """The same tile on a grid ``factors`` times finer per axis (regions, cores and ramps multiplied)."""
        factors = tuple(int(f) for f in factors)
        return Tile(
            self.index,
            tuple(slice(s.start * f, s.stop * f) for s, f in zip(self.region, factors, strict=True)),
            tuple((lo * f, hi * f) for (lo, hi), f in zip(self.ramps, factors, strict=True)),
            tuple(slice(s.start * f, s.stop * f) for s, f in zip(self.core, factors, strict=True)),
        )


def _per_axis(value: int | Sequence[int], ndim: int, what: str) -> tuple[int, ...]:
    values = (int(value),) * ndim if isinstance(value, (int, np.integer)) else tuple(int(v) for v in value)
    if len(values) != ndim:
        raise ValueError(f"{what} needs {ndim} values (one per axis), got {list(values)}")
    return values


@dataclass(frozen=True)
class TileGrid:
    """Cores of ``core`` voxels over ``shape``, read with ``halo`` voxels of context, blended over ``half``.

    ``half`` is the ramp half-width per axis (a scalar for every axis); it
    applies only on axes cut into more than one core. Raises ``ValueError``
    for non-positive cores, negative halos, or ramps the halo or the core
    cannot hold (the weights would then not sum to one).
    """

    shape: tuple[int, ...]
    core: tuple[int, ...]
    halo: tuple[int, ...]
    half: tuple[int, ...]

    @classmethod
    def build(
        cls,
        shape: Sequence[int],
        core: int | Sequence[int],
        halo: int | Sequence[int] = 0,
        half: int | Sequence[int] = 0,
    ) -> TileGrid:
        """A validated grid; cores larger than the grid are clipped to it."""
        shape = tuple(int(n) for n in shape)
        ndim = len(shape)
        cores = _per_axis(core, ndim, "core")
        halos = _per_axis(halo, ndim, "halo")
        halves = _per_axis(half, ndim, "half")
        if any(n < 1 for n in shape):
            raise ValueError(f"cannot tile an empty grid of shape {shape}")
        if any(c < 1 for c in cores):
            raise ValueError(f"tile cores must be positive, got {list(cores)}")
        if any(h < 0 for h in halos) or any(h < 0 for h in halves):
            raise ValueError(f"halos and ramps must be ≥ 0, got halo {list(halos)}, ramp {list(halves)}")
        cores = tuple(min(c, n) for c, n in zip(cores, shape, strict=True))
        for axis, (n, c, h, r) in enumerate(zip(shape, cores, halos, halves, strict=True)):
            if c < n and (r > h or 2 * r > c):
                raise ValueError(
                    f"a ramp of half-width {r} needs a halo ≥ {r} and a core ≥ {2 * r} on axis {axis} "
                    f"(got halo {h}, core {c})"
                )
        return cls(shape, cores, halos, halves)

    @property
    def counts(self) -> tuple[int, ...]:
        """Cores per axis."""
        return tuple(math.ceil(n / c) for n, c in zip(self.shape, self.core, strict=True))

    def __len__(self) -> int:
        return math.prod(self.counts)

    def _axis(self, axis: int, i: int) -> tuple[slice, tuple[int, int], slice]:
        """(region, ramps, core) of the ``i``-th tile along ``axis``."""
        n, c, h = self.shape[axis], self.core[axis], self.halo[axis]
        count = self.counts[axis]
        start, stop = i * c, min((i + 1) * c, n)
        tiled = count > 1
        region = slice(max(0, start - h), min(n, stop + h)) if tiled else slice(0, n)
        half = self.half[axis] if tiled else 0
        ramps = (half if i > 0 else 0, half if i < count - 1 else 0)
        return region, ramps, slice(start, stop)

    @cached_property
    def tiles(self) -> list[Tile]:
        """Every tile, in row-major order of their grid index (tile number = position in this list)."""
        out = []
        for index in itertools.product(*(range(g) for g in self.counts)):
            parts = [self._axis(a, i) for a, i in enumerate(index)]
            out.append(
                Tile(tuple(index), tuple(p[0] for p in parts), tuple(p[1] for p in parts), tuple(p[2] for p in parts))
            )
        return out

    def number(self, index: Sequence[int]) -> int:
        """The position in :attr:`tiles` of the tile with grid ``index``."""
        return int(np.ravel_multi_index(tuple(index), self.counts))

    def reaching(self, region: Region) -> tuple[int, ...]:
        """The numbers of the tiles whose blended result is non-zero somewhere in ``region`` (sorted).

        These are the tiles an output chunk covering ``region`` needs.
        """
        per_axis = []
        for axis, want in enumerate(region):
            c, count = self.core[axis], self.counts[axis]
            found = []
            reach = self.half[axis] if count > 1 else 0
            first = max(0, (want.start - reach) // c - 1)
            last = min(count - 1, (want.stop - 1 + reach) // c + 1)
            for i in range(first, last + 1):
                lo, hi = _support_axis(self._axis(axis, i)[1:], self.shape[axis])
                if lo < want.stop and want.start < hi:
                    found.append(i)
            per_axis.append(found)
        return tuple(sorted(self.number(index) for index in itertools.product(*per_axis)))


def _support_axis(ramps_core: tuple[tuple[int, int], slice], length: int | None = None) -> tuple[int, int]:
    (lo, hi), core = ramps_core
    stop = core.stop + hi
    return core.start - lo, stop if length is None else min(stop, length)


def support(tile: Tile) -> Region:
    """Where ``tile``'s weight is non-zero: its core grown by its ramps, within its region."""
    out = []
    for ramps, core, region in zip(tile.ramps, tile.core, tile.region, strict=True):
        lo, hi = _support_axis((ramps, core))
        out.append(slice(max(lo, region.start), min(hi, region.stop)))
    return tuple(out)


def rise(offset: np.ndarray, half: int) -> np.ndarray:
    """0 below ``-half``, 1 from ``half`` on, a raised cosine across the boundary in between.

    Voxel ``p`` is at ``offset = p - boundary``; ``rise(o) + (1 - rise(o)) = 1``
    is what makes neighbouring tiles' weights complementary.
    """
    u = np.clip((offset + half + 0.5) / (2 * half), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * u)


def tile_weights(tile: Tile, region: Region) -> np.ndarray | None:
    """Blending weights (float64) of ``tile`` on ``region`` (grid coordinates); ``None`` means all ones.

    Separable raised-cosine ramps centred on the core boundaries; a tile with
    no ramps is used as a crop of its core (the caller decides where, e.g.
    :class:`Blender` uses only the tile's :func:`support`).
    """
    if not any(a or b for a, b in tile.ramps):
        return None
    factors = []
    for (ramp_lo, ramp_hi), core, want in zip(tile.ramps, tile.core, region, strict=True):
        positions = np.arange(want.start, want.stop, dtype=np.float64)
        weight = np.ones_like(positions)
        if ramp_lo:
            weight *= rise(positions - core.start, ramp_lo)
        if ramp_hi:
            weight *= 1.0 - rise(positions - core.stop, ramp_hi)
        factors.append(weight)
    out = factors[0]
    for factor in factors[1:]:
        out = np.multiply.outer(out, factor)
    return out


def cut(result: Any, held: Region, want: Region) -> Any:
    """The part ``want`` (grid coordinates) of a result that covers ``held`` (over its last axes)."""
    local = tuple(slice(w.start - h.start, w.stop - h.start) for w, h in zip(want, held, strict=True))
    return result[(Ellipsis, *local)]


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")


def _intersect(a: Region, b: Region) -> Region | None:
    out = tuple(slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(a, b, strict=True))
    return None if any(s.stop <= s.start for s in out) else out


class Blender:
    """Accumulates blended tile results into ``region`` (the last ``len(region)`` axes of the output).

    ``lead`` is the shape of leading axes the results carry (batch, depth…),
    broadcast over the weights. ``like``: a torch tensor to accumulate on its
    device and dtype; otherwise numpy in float64 (the result is float32).
    """

    def __init__(self, region: Region, lead: Sequence[int] = (), like: Any = None) -> None:
        self.region = tuple(region)
        size = tuple(s.stop - s.start for s in self.region)
        self._torch = like is not None and _is_torch(like)
        if self._torch:
            self.total = like.new_zeros((*lead, *size))
            self.weight = like.new_zeros(size)
        else:
            self.total = np.zeros((*lead, *size), np.float64)
            self.weight = np.zeros(size, np.float64)

    def add(self, tile: Tile, result: Any) -> None:
        """Add ``result`` (computed on ``tile.region``) with ``tile``'s weights where it reaches the region."""
        where = _intersect(self.region, support(tile))
        if where is None:
            return
        local = (
            Ellipsis,
            *(slice(w.start - r.start, w.stop - r.start) for w, r in zip(where, self.region, strict=True)),
        )
        part = cut(result, tile.region, where)
        weights = tile_weights(tile, where)
        if weights is None:
            self.total[local] += part
            self.weight[local[1:]] += 1.0
            return
        if self._torch:
            import torch

            weights = torch.as_tensor(weights, dtype=self.total.dtype, device=self.total.device)
        self.total[local] += weights * part
        self.weight[local[1:]] += weights

    def result(self) -> Any:
        """The weighted mean (float32 for numpy; the accumulator's dtype for torch)."""
        if self._torch:
            return self.total / self.weight.clamp(min=_MIN_WEIGHT)
        return (self.total / np.maximum(self.weight, _MIN_WEIGHT)).astype(np.float32)


def assemble(region: Region, tiles: Sequence[Tile], results: Sequence[Any]) -> Any:
    """The blended values of ``tiles``' ``results`` over ``region`` (a plain crop when one unramped tile covers it)."""
    if (
        len(tiles) == 1
        and tile_weights(tiles[0], region) is None
        and not type(results[0]).__module__.startswith("torch")
    ):
        return np.ascontiguousarray(cut(results[0], tiles[0].region, region), dtype=np.float32)
    first = results[0]
    lead = tuple(first.shape[: first.ndim - len(region)])
    blender = Blender(region, lead, like=first if _is_torch(first) else None)
    for tile, result in zip(tiles, results, strict=True):
        blender.add(tile, result)
    return blender.result()


def each_tile(tiles: Sequence[Tile], should_stop: Callable[[], bool] | None = None) -> Iterator[tuple[int, Tile]]:
    """``(number, tile)`` for each tile; stops before the next tile once ``should_stop()`` is true.

    The caller computes the tile in the loop body and reports progress as
    ``(number + 1) / len(tiles)``; a cancelled run ends within one tile.
    """
    for number, tile in enumerate(tiles):
        if should_stop is not None and should_stop():
            return
        yield number, tile


def spans(total: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering ``[0, total)`` (1-D chunks of points or slices)."""
    size = max(1, int(size))
    for start in range(0, int(total), size):
        yield slice(start, min(start + size, int(total)))


__all__ = [
    "Blender",
    "Region",
    "Tile",
    "TileGrid",
    "assemble",
    "cut",
    "each_tile",
    "rise",
    "spans",
    "support",
    "tile_weights",
]
