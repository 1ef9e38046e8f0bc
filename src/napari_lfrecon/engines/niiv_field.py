"""A trained niiv network bound to one anisotropic stack: an isotropic volume decodable at any grid.

:class:`NiivField` holds a stack ``(D, Y, X)`` whose z (first) axis is ``af``
times coarser than y and x. Its xz slices (one per y, coarse axis z, lateral
axis x) and yz slices (one per x) are encoded on demand and their per-cell
decoder tables (:meth:`NiivNet.prepare`) kept in a least-recently-used cache
bounded in bytes, so re-decoding a region (interactive zoom) skips the
encoder. :meth:`NiivField.decode_grid` evaluates the field on any rectilinear
grid of output-voxel coordinates: the xz pass decodes integer y slices at
``(z, x)`` and interpolates linearly in y, the yz pass decodes integer x
slices at ``(z, y)`` and interpolates in x, and the two are averaged.

Coordinates are in output-voxel index units of the isotropic volume at scale
1 (``D·af`` planes, cell-centred): output plane ``k`` lies at input plane
``(k + 0.5) / af - 0.5``, so z spans ``[-0.5, D·af - 0.5]``, y
``[-0.5, Y - 0.5]`` and x ``[-0.5, X - 0.5]``. Values come back in the
stack's intensity units (the network sees them through :func:`normalise`).

Torch's thread count is the caller's business (this module never sets it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator

import numpy as np
import torch

from ..tiling import spans
from .niiv_model import NiivNet, PreparedSlices

#: ``lo`` of the normalisation is this percentile of the stack; ``hi`` is its maximum (never clipped).
LOW_PERCENTILE = 0.1
#: The network sees ``FLOOR + SPAN·(x - lo) / (hi - lo)``: ``[lo, hi]`` maps into ``[0.1, 0.9]``, away from the
#: flat tails of the output sigmoid (sparse fluorescence would otherwise sit where its gradient vanishes).
FLOOR = 0.1
SPAN = 0.8
#: Default bound on the points decoded in one batch (memory ∝ points × MLP width). Small batches are
#: faster on CPUs: their intermediates stay in cache and in the allocator's reused blocks (measured:
#: 8192 points per batch decode about 2× faster than 65536).
DEFAULT_BATCH_POINTS = 8192
#: Default bound on the bytes of cached decoder tables.
DEFAULT_CACHE_BYTES = 256 * 2**20
#: Slices encoded in one encoder call.
ENCODE_BATCH = 16
#: A stack whose z is the coarse axis has ``D·af`` at most this many times ``max(Y, X)``.
MAX_DEPTH_RATIO = 8.0
#: Which passes are fused.
PASSES = ("both", "xz", "yz")


def intensity_range(stack: np.ndarray) -> tuple[float, float]:
    """``(lo, hi)`` of the normalisation the network sees: a low percentile and the maximum."""
    lo = float(np.percentile(stack, LOW_PERCENTILE))
    hi = float(np.max(stack))
    if not hi > lo:
        lo = float(np.min(stack))
    if not hi > lo:
        raise ValueError("the stack is constant: there is nothing to reconstruct")
    return lo, hi


def normalise(x: np.ndarray, intensity: tuple[float, float]) -> np.ndarray:
    """Stack units → the network's units (``[lo, hi]`` → ``[FLOOR, FLOOR + SPAN]``)."""
    lo, hi = intensity
    return (FLOOR + SPAN * (np.asarray(x, dtype=np.float32) - lo) / (hi - lo)).astype(np.float32)


def denormalise(y: np.ndarray, intensity: tuple[float, float]) -> np.ndarray:
    """The network's units → stack units (in place for float32 arrays)."""
    lo, hi = intensity
    y -= np.float32(FLOOR)
    y *= np.float32((hi - lo) / SPAN)
    y += np.float32(lo)
    return y


def check_stack(stack: np.ndarray, anisotropy: int) -> np.ndarray:
    """A float32 ``(D, Y, X)`` copy of ``stack``; ``ValueError`` for 2D input or a z axis that is not the coarse one."""
    array = np.asarray(stack)
    if array.ndim != 3:
        raise ValueError(
            f"niiv needs an anisotropic 3D stack (Z, Y, X) with z the coarse axis; got an array of shape "
            f"{array.shape}" + (" (a 2D image has no coarse axis to restore)" if array.ndim == 2 else "")
        )
    if int(anisotropy) < 1:
        raise ValueError(f"the anisotropy factor must be a positive integer, got {anisotropy}")
    d, y, x = array.shape
    if d < 2 or d >= min(y, x) or d * anisotropy > MAX_DEPTH_RATIO * max(y, x):
        raise ValueError(
            f"the stack {array.shape} does not look like (Z, Y, X) with z the coarse (first) axis: niiv expects "
            f"fewer z planes than y or x pixels (here Z={d}, Y={y}, X={x}, anisotropy {anisotropy}). "
            "Move the coarse axis first (e.g. numpy.moveaxis) or check the axis order of the file."
        )
    out = np.array(array, dtype=np.float32, copy=True)
    if not np.all(np.isfinite(out)):
        raise ValueError("the stack contains NaN or Inf values; remove or replace them first")
    return out


class NiivField:
    """``model`` applied to ``stack`` ``(D, Y, X)`` (z coarse by ``anisotropy``): see the module docstring.

    ``max_batch_points`` bounds the points decoded per batch; ``cache_bytes``
    the decoder tables kept between calls; ``passes`` is ``"both"`` (xz and yz
    averaged), ``"xz"`` or ``"yz"``; ``intensity`` overrides the ``(lo, hi)``
    normalisation (default: from the stack, :func:`intensity_range`).
    """

    def __init__(
        self,
        model: NiivNet,
        stack: np.ndarray,
        anisotropy: int,
        *,
        device: torch.device | str | None = None,
        max_batch_points: int = DEFAULT_BATCH_POINTS,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        passes: str = "both",
        intensity: tuple[float, float] | None = None,
    ) -> None:
        if int(anisotropy) != model.config.anisotropy:
            raise ValueError(
                f"the anisotropy factor {anisotropy} does not match the weights (trained for "
                f"{model.config.anisotropy}): train weights for this factor (`lfrecon train niiv STACK "
                f"--anisotropy {anisotropy} --out WEIGHTS`)"
            )
        if passes not in PASSES:
            raise ValueError(f"passes must be one of {PASSES}, got {passes!r}")
        if int(max_batch_points) < 1:
            raise ValueError(f"max_batch_points must be ≥ 1, got {max_batch_points}")
        self.stack = check_stack(stack, anisotropy)
        self.anisotropy = int(anisotropy)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.max_batch_points = int(max_batch_points)
        self.cache_bytes = int(cache_bytes)
        self.passes = passes
        self.intensity = intensity if intensity is not None else intensity_range(self.stack)
        self._normalised = torch.as_tensor(normalise(self.stack, self.intensity))
        self._cache: OrderedDict[tuple[str, int], PreparedSlices] = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ geometry
    @property
    def shape_out(self) -> tuple[int, int, int]:
        """Shape of the isotropic volume at scale 1: ``(D·af, Y, X)``."""
        d, y, x = self.stack.shape
        return (d * self.anisotropy, y, x)

    def depth_out(self, z_scale: float = 1.0) -> int:
        """Output planes at ``z_scale``: ``round(D·af·z_scale)`` (at least 1)."""
        if not z_scale > 0:
            raise ValueError(f"z_scale must be positive, got {z_scale}")
        return max(1, int(round(self.shape_out[0] * float(z_scale))))

    def z_coordinates(self, z_scale: float = 1.0) -> np.ndarray:
        """Cell-centred output-plane coordinates (scale-1 units) of :meth:`decode_volume` at ``z_scale``."""
        n = self.depth_out(z_scale)
        step = self.shape_out[0] / n  # keeps the stack's z extent exactly
        return (np.arange(n) + 0.5) * step - 0.5

    def voxel_size_out(self, voxel_size_in: tuple[float, float, float], z_scale: float = 1.0) -> tuple[float, ...]:
        """Voxel size (µm) of :meth:`decode_volume`'s output for an input voxel size ``(dz, dy, dx)``."""
        dz, dy, dx = (float(v) for v in voxel_size_in)
        return (dz * self.stack.shape[0] / self.depth_out(z_scale), dy, dx)

    # ------------------------------------------------------------------ cache
    def clear_cache(self) -> None:
        """Drop every cached decoder table."""
        with self._lock:
            self._cache.clear()
            self._cached_bytes = 0

    @property
    def cached_bytes(self) -> int:
        """Bytes of decoder tables currently cached."""
        return self._cached_bytes

    def _slice_inputs(self, orientation: str, indices: list[int]) -> torch.Tensor:
        """Normalised coarse slices ``(B, 1, D, L)``: xz at y = index, or yz at x = index."""
        index = torch.as_tensor(indices, dtype=torch.long)
        if orientation == "xz":
            chosen = self._normalised.index_select(1, index).permute(1, 0, 2)  # (D, B, X) → (B, D, X)
        else:
            chosen = self._normalised.index_select(2, index).permute(2, 0, 1)  # (D, Y, B) → (B, D, Y)
        return chosen.unsqueeze(1).contiguous().to(self.device)

    def _prepared(self, orientation: str, indices: list[int]) -> PreparedSlices:
        """The tables of slices ``indices`` as one batch: cached ones reused, the others encoded now."""
        missing = [i for i in dict.fromkeys(indices) if (orientation, i) not in self._cache]
        fresh: dict[int, PreparedSlices] = {}
        with torch.no_grad():
            for start in range(0, len(missing), ENCODE_BATCH):
                chunk = missing[start : start + ENCODE_BATCH]
                lowres = self._slice_inputs(orientation, chunk)
                tables = self.model.prepare(self.model.encode(lowres), lowres)
                for k, i in enumerate(chunk):
                    fresh[i] = tables.select(k).clone()
        parts = []
        for i in indices:
            key = (orientation, i)
            if key in self._cache:
                self._cache.move_to_end(key)
                parts.append(self._cache[key])
            else:
                parts.append(fresh[i])
        for i, tables in fresh.items():
            self._store((orientation, i), tables)
        return PreparedSlices.cat(parts) if len(parts) > 1 else parts[0]

    def _store(self, key: tuple[str, int], tables: PreparedSlices) -> None:
        size = tables.nbytes()
        if size > self.cache_bytes:
            return
        self._cache[key] = tables
        self._cached_bytes += size
        while self._cached_bytes > self.cache_bytes and self._cache:
            _, dropped = self._cache.popitem(last=False)
            self._cached_bytes -= dropped.nbytes()

    # ------------------------------------------------------------------ decoding
    def _table_bytes_per_slice(self) -> int:
        cfg = self.model.config
        d, y, x = self.stack.shape
        per_cell = 2 * cfg.attn_dim + 1 + 2 * cfg.mlp_width
        return 4 * per_cell * d * max(y, x)

    @staticmethod
    def _slice_uses(across: np.ndarray, n_slices: int) -> dict[int, list[tuple[int, float]]]:
        """For each integer slice, the output rows it contributes to and with what linear-interpolation weight."""
        pos = np.clip(across, 0.0, n_slices - 1.0)  # outside the outermost slice centres: clamp to the edge
        lower = np.floor(pos).astype(np.int64)
        upper = np.minimum(lower + 1, n_slices - 1)
        weight = pos - lower
        uses: dict[int, list[tuple[int, float]]] = {}
        for j, (a, b, w) in enumerate(zip(lower.tolist(), upper.tolist(), weight.tolist(), strict=True)):
            uses.setdefault(a, []).append((j, 1.0 - w))
            if w > 0:
                uses.setdefault(b, []).append((j, w))
        return uses

    def _pass(self, orientation: str, zs: np.ndarray, across: np.ndarray, along: np.ndarray, out: np.ndarray):
        """Add one pass into ``out`` ``(Nz, Ny, Nx)``, yielding the slices done after each batch.

        ``across`` = slice positions, ``along`` = in-slice positions. xz: slices
        at y = ``across`` (``out`` axis 1), points ``(z, x = along)``; yz: slices
        at x = ``across`` (``out`` axis 2), points ``(z, y = along)``.
        """
        uses = self._slice_uses(across, self.stack.shape[1 if orientation == "xz" else 2])
        slices = sorted(uses)
        grid_z, grid_l = np.meshgrid(zs, along, indexing="ij")
        coords = torch.as_tensor(np.stack([grid_z.ravel(), grid_l.ravel()], axis=-1), dtype=torch.float32)
        n_points = coords.shape[0]
        chunk = min(n_points, self.max_batch_points)
        shape = (self.stack.shape[0], self.stack.shape[2 if orientation == "xz" else 1])
        with torch.no_grad():
            # where the points fall in a slice's latent grid: the same for every slice of this pass. The batches
            # are runs of query points, not spatial tiles: a slice is always encoded whole, so there is no halo.
            located = [
                self.model.queries(coords[batch][None].to(self.device), shape) for batch in spans(n_points, chunk)
            ]
        # slices encoded together (the encoder is faster on batches), bounded by what the cache holds
        per_group = max(1, min(ENCODE_BATCH, self.cache_bytes // max(1, 2 * self._table_bytes_per_slice())))
        # slices decoded together: enough to fill a batch of points when a slice has few of them
        per_decode = max(1, self.max_batch_points // n_points)
        out_shape = (len(zs), len(along))
        for start in range(0, len(slices), per_group):
            group = slices[start : start + per_group]
            with torch.no_grad():
                tables = self._prepared(orientation, group)
            for first in range(0, len(group), per_decode):
                some = tables.select(slice(first, first + per_decode))
                with torch.no_grad():
                    values = torch.cat([self.model.decode_queries(some, q) for q in located], dim=1)
                decoded = values.to("cpu", torch.float32).numpy().reshape(some.batch, *out_shape)
                for k, s in enumerate(group[first : first + per_decode]):
                    for j, w in uses[s]:
                        if orientation == "xz":
                            out[:, j, :] += np.float32(w) * decoded[k]
                        else:
                            out[:, :, j] += np.float32(w) * decoded[k]
                yield some.batch

    def decode_steps(self, zs: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> Iterator[tuple[float, np.ndarray | None]]:
        """:meth:`decode_grid` as a generator: ``(fraction, None)`` after each batch, then ``(1.0, volume)``.

        Stopping early is closing the generator (an engine yields between batches and checks its stop flag).
        The slice cache is locked while the generator runs.
        """
        axes = []
        for name, values in (("zs", zs), ("ys", ys), ("xs", xs)):
            arr = np.asarray(values, dtype=np.float64)
            if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} must be a non-empty 1-D array of finite coordinates, got shape {arr.shape}")
            axes.append(arr)
        zs_a, ys_a, xs_a = axes
        out = np.zeros((zs_a.size, ys_a.size, xs_a.size), np.float32)
        plan = [("xz", ys_a, xs_a), ("yz", xs_a, ys_a)]
        if self.passes != "both":
            plan = [p for p in plan if p[0] == self.passes]
        sizes = {"xz": self.stack.shape[1], "yz": self.stack.shape[2]}
        total = sum(len(self._slice_uses(a, sizes[o])) for o, a, _ in plan)
        done = 0
        with self._lock:
            for orientation, across, along in plan:
                for n in self._pass(orientation, zs_a, across, along, out):
                    done += n
                    yield min(done / total, 1.0), None
        out /= np.float32(len(plan))
        yield 1.0, denormalise(out, self.intensity)

    def decode_grid(
        self,
        zs: np.ndarray,
        ys: np.ndarray,
        xs: np.ndarray,
        *,
        should_stop: Callable[[], bool] | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> np.ndarray | None:
        """The field on the grid ``zs × ys × xs`` (output-voxel units at scale 1) as float32 ``(Nz, Ny, Nx)``.

        Values are in the stack's intensity units. Returns ``None`` when
        ``should_stop()`` becomes true (checked between batches).
        ``progress(fraction)`` is called after each batch.
        """
        steps = self.decode_steps(zs, ys, xs)
        try:
            for fraction, volume in steps:
                if volume is not None:
                    return volume
                if progress is not None:
                    progress(fraction)
                if should_stop is not None and should_stop():
                    return None
        finally:
            steps.close()
        return None  # pragma: no cover  (the generator always ends with the volume)

    def decode_volume(
        self,
        z_scale: float = 1.0,
        *,
        should_stop: Callable[[], bool] | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> np.ndarray | None:
        """The whole isotropic volume with ``round(D·af·z_scale)`` planes (``None`` when stopped)."""
        _, y, x = self.stack.shape
        return self.decode_grid(
            self.z_coordinates(z_scale), np.arange(y), np.arange(x), should_stop=should_stop, progress=progress
        )


__all__ = ["NiivField", "check_stack", "denormalise", "intensity_range", "normalise"]
