"""Interactive arbitrary-resolution zoom: re-decode a niiv field where the camera looks, at screen density.

Three parts, from pure to Qt:

* **Geometry** (:class:`OutputGrid`, :class:`ViewState`, :func:`plan_tile`; plain
  numbers, no Qt or napari objects): from where the field's output voxels sit in
  the world, which two axes are on screen, the slice position, the camera centre,
  the zoom (screen px per world unit) and the canvas size, the visible region in
  output-voxel index coordinates (clipped to the volume), the sample positions
  at about one sample per screen pixel (``"full"``) or a quarter of that per
  axis (``"coarse"``), and the ``scale``/``translate`` that put sample ``j`` at
  world position ``translate + j * scale``. Samples sit on a fixed lattice
  anchored at the volume's corner, so a pan re-uses the same positions.
* **Controller** (:class:`NiivZoom`): listens to the camera, the dims, the canvas
  size and the base layer; debounces with a ``QTimer``; numbers each request
  (a generation); ONE background thread (torch limited to one thread there, so
  rendering keeps a core) decodes coarse then full and stops as soon as a newer
  generation exists; results come back through a queued Qt signal and stale ones
  are dropped; the tile is ONE extra image layer ``"<base> [niiv zoom]"`` (3-D,
  one plane on the non-displayed axis, made when attaching) whose data, scale
  and translate change together with one slice and one transform update.
* **Widget** (:class:`NiivZoomWidget`): pick a niiv result (or an anisotropic
  stack carrying niiv weights), tick *Live zoom*, read the status line.

Zooming beyond :data:`MAX_SAMPLES_PER_VOXEL` screen pixels per output voxel
clamps the decode at that density and says so; nothing here raises into the
viewer: errors become ``show_error`` messages and the status line.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QVBoxLayout, QWidget

if TYPE_CHECKING:  # pragma: no cover
    import napari

_LOG = logging.getLogger(__name__)

#: Most screen pixels per output voxel the tile is decoded at. At the shipped
#: sample's 0.2 µm voxels this is 6 nm per sample, thirty times finer than the
#: optical resolution: the field is a smooth interpolant there, so decoding more
#: samples only costs time. Zooming further magnifies the 32× decode instead.
MAX_SAMPLES_PER_VOXEL = 32.0
#: The coarse pass samples this many times more sparsely per axis (1/16 of the samples).
COARSE_FACTOR = 4
#: A full tile with at most this many samples is decoded directly (a coarse pass would not be faster to see).
COARSE_MIN_SAMPLES = 128 * 128
#: Quiet time after the last camera/dims event before a decode starts.
DEBOUNCE_MS = 80
#: A decoded tile goes onto its layer on a timer this many ms after it arrives (see ``NiivZoom._on_delivered``).
APPLY_DELAY_MS = 1
#: Hard cap on samples per axis, whatever the canvas claims (a 4k screen is 3840 px wide).
MAX_TILE_SIDE = 4096
#: Latent-table cache of a field built for zooming. Every view decodes from the slices it crosses, and
#: switching xy ↔ xz touches all of them: with the engine's default (256 MiB) the shipped sample's 256
#: slice tables (1.3 MB each) do not all fit and a return to a view re-encodes (seconds on a CPU).
ZOOM_CACHE_BYTES = 1024 * 2**20
#: Suffix of the tile layer's name.
TILE_SUFFIX = " [niiv zoom]"


# ====================================================================== decoder protocol
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


# ====================================================================== geometry (pure)
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


# ====================================================================== worker side (no Qt)
@dataclass
class _Job:
    gen: int
    plans: list[TilePlan]
    requested_at: float


@dataclass
class TileResult:
    """A decoded tile on its way to the main thread."""

    gen: int
    plan: TilePlan
    data: np.ndarray
    decode_seconds: float
    requested_at: float


@dataclass
class DecodeFailed:
    """Decoding raised; ``message`` is the reason shown to the user."""

    gen: int
    message: str


class _DecodeThread(threading.Thread):
    """ONE background thread decoding the newest job; a newer job stops the one in flight."""

    def __init__(self, field: FieldDecoder, deliver: Callable[[object], None], torch_threads: int = 1) -> None:
        super().__init__(name="niiv-zoom-decoder", daemon=True)
        self.field = field
        self.deliver = deliver
        self.torch_threads = torch_threads
        self._cond = threading.Condition()
        self._pending: _Job | None = None
        self._latest = 0
        self._closed = False
        self.decodes = 0  # decode_grid calls started (for tests and the benchmark)

    def submit(self, job: _Job) -> None:
        """Make ``job`` the newest; anything older is dropped or stopped at its next check."""
        with self._cond:
            self._latest = job.gen
            self._pending = job
            self._cond.notify()

    def cancel(self, gen: int) -> None:
        """Stop whatever runs (a newer generation with no work)."""
        with self._cond:
            self._latest = gen
            self._pending = None

    def close(self, timeout: float = 5.0) -> None:
        """Stop and join (the decoder checks ``should_stop`` between batches)."""
        with self._cond:
            self._closed = True
            self._pending = None
            self._cond.notify()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def _stale(self, gen: int) -> bool:
        return self._closed or gen != self._latest

    def run(self) -> None:
        """Limit torch to one thread here (rendering keeps a core), then decode jobs until closed."""
        # Per-thread under OpenMP: the main thread keeps its threads. A field that uses torch has
        # imported it already; importing it here only for this call would delay the first tile by seconds.
        torch = sys.modules.get("torch")
        if torch is not None:
            with contextlib.suppress(Exception):
                torch.set_num_threads(self.torch_threads)
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job, self._pending = self._pending, None
            self._run_job(job)

    def _run_job(self, job: _Job) -> None:
        def should_stop() -> bool:
            return self._stale(job.gen)

        for plan in job.plans:
            if should_stop():
                return
            started = time.perf_counter()
            self.decodes += 1
            try:
                data = self.field.decode_grid(*plan.positions, should_stop=should_stop)
                if data is None:
                    return
                data = np.asarray(data, dtype=np.float32)
                if data.shape != plan.shape:
                    raise ValueError(f"the decoder returned shape {data.shape}, expected {plan.shape}")
            except Exception as exc:  # the viewer must survive any decoder failure
                _LOG.debug("niiv zoom decode failed", exc_info=True)
                message = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
                if not self._closed:
                    self._send(DecodeFailed(job.gen, message))
                return
            if self._closed:
                return
            self._send(TileResult(job.gen, plan, data, time.perf_counter() - started, job.requested_at))

    def _send(self, message: object) -> None:
        try:
            self.deliver(message)
        except RuntimeError:  # the receiving Qt object is gone (viewer closed without detach): stop quietly
            self._closed = True


# ====================================================================== controller (Qt, napari)
def _layer_is_axis_aligned(layer: Any) -> bool:
    """True when the layer's data→world map is only scale and translate (rotate/shear/affine are not handled)."""
    eye = np.eye(layer.ndim)
    affine = np.asarray(layer.affine.affine_matrix, dtype=float)
    return bool(
        np.allclose(np.asarray(layer.rotate, dtype=float), eye)
        and np.allclose(np.asarray(layer.shear, dtype=float), 0.0)
        and np.allclose(affine, np.eye(affine.shape[0]))
    )


class NiivZoom(QObject):
    """Keeps a tile of ``field`` decoded over the visible part of ``base_layer`` at the screen's density.

    Use :meth:`attach` / :meth:`detach`. Signals: :attr:`status_changed` (one
    line for a status bar), :attr:`tile_shown` (``level, gen, latency_s,
    decode_s``: latency from the first view change of the request to the tile
    on the layer, debounce included). :attr:`stale_dropped` counts results
    dropped because a newer request existed.
    """

    status_changed = Signal(str)
    tile_shown = Signal(str, int, float, float)
    _delivered = Signal(object)

    def __init__(self, *, debounce_ms: int = DEBOUNCE_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.viewer: Any = None
        self.base_layer: Any = None
        self.field: FieldDecoder | None = None
        self.grid: OutputGrid | None = None
        self.tile_layer: Image | None = None
        self.status = "detached"
        self.gen = 0
        self.stale_dropped = 0
        self.requests = 0
        self.last_seconds: dict[str, float] = {}
        #: Main-thread seconds spent putting each tile on its layer (the zoom's own share of a frame).
        self.apply_seconds: deque[float] = deque(maxlen=1000)
        self.last_plan: TilePlan | None = None
        self._pending_since: float | None = None
        self._last_key: tuple | None = None
        self._clamped = False
        self._last_error = ""
        self._tile_live = False
        self._thread: _DecodeThread | None = None
        self._connections: list[tuple[Any, Callable]] = []
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(int(debounce_ms))
        self._timer.timeout.connect(self._request)
        # Queued across threads: the handler always runs on the main (GUI) thread.
        self._delivered.connect(self._on_delivered)
        self._pending_result: object | None = None
        self._apply_timer = QTimer(self)
        self._apply_timer.setSingleShot(True)
        self._apply_timer.setInterval(APPLY_DELAY_MS)
        self._apply_timer.timeout.connect(self._apply_pending)

    # --------------------------------------------------------------- attach / detach
    @property
    def attached(self) -> bool:
        """True between :meth:`attach` and :meth:`detach`."""
        return self._thread is not None

    @property
    def decodes(self) -> int:
        """Number of ``decode_grid`` calls started since :meth:`attach`."""
        return self._thread.decodes if self._thread is not None else 0

    def attach(self, viewer: napari.Viewer, base_layer: Any, field: FieldDecoder) -> None:
        """Start following the camera over ``base_layer``; raises ``ValueError`` for a layer it cannot follow."""
        if self.attached:
            self.detach()
        if not isinstance(field, FieldDecoder):
            raise ValueError("niiv zoom needs a decoder with shape_out and decode_grid(zs, ys, xs, should_stop=...)")
        if base_layer not in viewer.layers:
            raise ValueError(f"layer {getattr(base_layer, 'name', base_layer)!r} is not in this viewer")
        if (
            getattr(base_layer, "ndim", 0) != 3
            or getattr(base_layer, "rgb", False)
            or getattr(base_layer, "multiscale", False)
        ):
            raise ValueError("niiv zoom needs a single-scale 3-D (Z, Y, X) grey-level image layer")
        if not _layer_is_axis_aligned(base_layer):
            raise ValueError("niiv zoom needs a layer without rotate, shear or affine (scale and translate only)")
        self.viewer, self.base_layer, self.field = viewer, base_layer, field
        self.grid = self._make_grid()
        self.gen, self.stale_dropped, self.requests = 0, 0, 0
        self._last_key, self._clamped, self._last_error = None, False, ""
        self._thread = _DecodeThread(field, self._delivered.emit)
        self._thread.start()
        camera = _camera(viewer)
        self._connect(camera.events.zoom, self._on_view_changed)
        self._connect(camera.events.center, self._on_view_changed)
        self._connect(viewer.dims.events.point, self._on_view_changed)
        self._connect(viewer.dims.events.order, self._on_layout_changed)
        self._connect(viewer.dims.events.ndisplay, self._on_layout_changed)
        self._connect(viewer.canvas.events.size, self._on_view_changed)
        self._connect(viewer.layers.events.removed, self._on_layer_removed)
        for name in ("scale", "translate", "data"):
            self._connect(getattr(base_layer.events, name), self._on_base_geometry)
        for name in ("contrast_limits", "colormap", "gamma", "visible"):
            self._connect(getattr(base_layer.events, name), self._sync_appearance)
        # The tile layer is made now (creating a layer's visual is the slowest main-thread step), hidden.
        self._ensure_tile_layer()
        self._set_status("attached: waiting for the view")
        self.schedule()

    def detach(self) -> None:
        """Stop decoding, remove the tile layer and disconnect everything (safe to call twice)."""
        self._timer.stop()
        self._apply_timer.stop()
        self._pending_result = None
        for emitter, callback in self._connections:
            with contextlib.suppress(Exception):
                emitter.disconnect(callback)
        self._connections.clear()
        self.gen += 1  # anything still in flight is stale from now on
        if self._thread is not None:
            self._thread.close()
            self._thread = None
        if self.tile_layer is not None and self.viewer is not None and self.tile_layer in self.viewer.layers:
            self.viewer.layers.remove(self.tile_layer)
        self.tile_layer = None
        self.viewer = self.base_layer = self.field = self.grid = None
        self._set_status("detached")

    def _connect(self, emitter: Any, callback: Callable) -> None:
        emitter.connect(callback)
        self._connections.append((emitter, callback))

    # --------------------------------------------------------------- events (main thread)
    def _on_view_changed(self, event: Any = None) -> None:
        self.schedule()

    def _on_layout_changed(self, event: Any = None) -> None:
        self._reset_tile()
        self.schedule()

    def _on_base_geometry(self, event: Any = None) -> None:
        try:
            self.grid = self._make_grid()
        except ValueError as exc:
            self._fail(str(exc))
            return
        self._reset_tile()
        self.schedule()

    def _on_layer_removed(self, event: Any) -> None:
        layer = getattr(event, "value", None)
        if layer is self.base_layer:
            self.detach()
        elif layer is self.tile_layer:
            self.tile_layer = None
            self._tile_live = False
            self._last_key = None

    def schedule(self) -> None:
        """(Re)start the debounce timer: a burst of view changes makes one request."""
        if not self.attached:
            return
        if self._pending_since is None:
            self._pending_since = time.perf_counter()
        self._timer.start()

    def _make_grid(self) -> OutputGrid:
        layer = self.base_layer
        return output_grid(layer.data.shape, tuple(layer.scale), tuple(layer.translate), tuple(self.field.shape_out))

    def current_view(self) -> ViewState | None:
        """The viewer's 2-D view in the base layer's axes, or ``None`` (3-D display, layer axes not on screen)."""
        viewer = self.viewer
        dims = viewer.dims
        if dims.ndisplay != 2:
            return None
        offset = dims.ndim - 3  # the layer's axes are the viewer's last three
        displayed = [a - offset for a in dims.displayed]
        if min(displayed) < 0:
            return None
        sliced = ({0, 1, 2} - set(displayed)).pop()
        camera = _camera(viewer)
        height, width = (int(v) for v in viewer.canvas.size)
        return ViewState(
            displayed=(displayed[0], displayed[1]),
            slice_world=float(dims.point[sliced + offset]),
            center=(float(camera.center[-2]), float(camera.center[-1])),
            zoom=float(camera.zoom),
            canvas=(height, width),
        )

    def _request(self) -> None:
        """Debounce fired: plan the tiles for the current view and hand them to the decoder thread."""
        if not self.attached:
            return
        requested_at = self._pending_since or time.perf_counter()
        self._pending_since = None
        try:
            view = self.current_view()
            plans = plan_passes(self.grid, view) if view is not None else []
        except Exception as exc:  # never let a view event crash the viewer
            _LOG.debug("niiv zoom planning failed", exc_info=True)
            self._fail(f"cannot plan the tile: {exc}")
            return
        if not plans:
            self.gen += 1
            self._thread.cancel(self.gen)
            self._last_key = None
            self._hide_tile()
            self._set_status("3-D display: zoom tile hidden" if view is None else "nothing of the volume is visible")
            return
        full = plans[-1]
        self._update_clamp(full)
        if full.key == self._last_key:
            return  # same samples as the tile shown or in flight
        self._last_key = full.key
        self.gen += 1
        self.requests += 1
        self._thread.submit(_Job(self.gen, plans, requested_at))

    def _update_clamp(self, plan: TilePlan) -> None:
        if plan.clamped and not self._clamped:
            message = clamp_message(plan)
            show_info(f"niiv zoom: {message}")
        self._clamped = plan.clamped
        if plan.clamped:
            self._set_status(clamp_message(plan))

    # --------------------------------------------------------------- results (main thread)
    def _on_delivered(self, result: object) -> None:
        """A worker message arrived (main thread): drop it if stale, else apply it on the next timer turn.

        Applying from a timer rather than right here lets Qt first finish what
        it queued before (typically the repaint that follows the camera change
        which started this request) and handle input in between, so a tile
        never lengthens that frame; a full tile that arrives before its coarse
        one was applied replaces it.
        """
        if not self.attached or getattr(result, "gen", None) != self.gen:
            self.stale_dropped += 1
            return
        self._pending_result = result
        self._apply_timer.start()

    def _apply_pending(self) -> None:
        result, self._pending_result = self._pending_result, None
        try:
            if result is None or not self.attached or getattr(result, "gen", None) != self.gen:
                if result is not None:
                    self.stale_dropped += 1
                return
            if isinstance(result, DecodeFailed):
                self._last_key = None  # let the same view be retried after the next change
                self._fail(f"decoding failed: {result.message}")
                return
            if isinstance(result, TileResult):
                self._show_tile(result)
        except Exception as exc:  # a failure here must not take the viewer down
            _LOG.debug("niiv zoom could not show a tile", exc_info=True)
            self._fail(f"cannot show the tile: {exc}")

    def _show_tile(self, result: TileResult) -> None:
        plan = result.plan
        started = time.perf_counter()
        layer = self._ensure_tile_layer()
        _update_in_place(layer, result.data, plan.scale, plan.translate, self.viewer)
        self._tile_live = True
        if layer.visible != bool(self.base_layer.visible):
            layer.visible = bool(self.base_layer.visible)
        self.apply_seconds.append(time.perf_counter() - started)
        latency = time.perf_counter() - result.requested_at
        self.last_seconds[plan.level] = latency
        self.last_plan = plan
        self._last_error = ""
        density = min(plan.samples_per_voxel)
        times = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in sorted(self.last_seconds.items()))
        size = "×".join(str(n) for n in plan.shape)
        status = f"{plan.level} tile {size} at {density:.2g} samples/voxel ({times})"
        if plan.clamped:
            status += f"; {clamp_message(plan)}"
        self._set_status(status)
        self.tile_shown.emit(plan.level, result.gen, latency, result.decode_seconds)

    def _ensure_tile_layer(self) -> Image:
        """The tile layer, made (hidden, as a one-voxel placeholder on the output grid) when missing.

        The placeholder's scale is the output grid's, so the viewer's dims
        (computed when a layer is inserted) see no step finer than the base's;
        real tiles then arrive through :func:`_update_in_place`, which keeps
        their finer steps out of the dims.
        """
        layer = self.tile_layer
        if layer is not None and layer in self.viewer.layers:
            return layer
        base, grid = self.base_layer, self.grid
        layer = Image(
            np.zeros((1, 1, 1), np.float32),
            name=f"{base.name}{TILE_SUFFIX}",
            scale=grid.scale,
            translate=grid.translate,
            colormap=base.colormap,
            contrast_limits=base.contrast_limits,
            gamma=base.gamma,
            # Covers the base wherever it has a tile; colormaps with transparency still blend.
            blending="translucent_no_depth",
            interpolation2d=base.interpolation2d,
            visible=False,
            metadata={"niiv_zoom": True, "base_layer": base.name},
        )
        selection = self.viewer.layers.selection
        selected, active = set(selection), selection.active
        # Right above the base: covers it, stays under whatever the user put on top.
        self.viewer.layers.insert(self.viewer.layers.index(base) + 1, layer)
        self.viewer.layers.selection = selected  # the tile never takes the selection from the user's layer
        self.viewer.layers.selection.active = active
        self.tile_layer = layer
        self._tile_live = False
        return layer

    def _reset_tile(self) -> None:
        """Hide the tile and put it back to the placeholder, letting the viewer recompute its dims.

        Needed when the displayed axes change: an axis that was on screen (where
        the tile is finer than the base) may become a slider axis, whose step
        must be the base's, not the tile's.
        """
        self._last_key = None
        self._tile_live = False
        layer = self.tile_layer
        if layer is None or self.viewer is None or layer not in self.viewer.layers:
            return
        layer.visible = False
        _update_in_place(layer, np.zeros((1, 1, 1), np.float32), self.grid.scale, self.grid.translate, viewer=None)

    def _sync_appearance(self, event: Any = None) -> None:
        layer, base = self.tile_layer, self.base_layer
        if layer is None or base is None:
            return
        with contextlib.suppress(Exception):
            layer.colormap = base.colormap
            layer.contrast_limits_range = base.contrast_limits_range
            layer.contrast_limits = base.contrast_limits
            layer.gamma = base.gamma
            layer.visible = bool(base.visible) and self._tile_live

    def _hide_tile(self) -> None:
        self._tile_live = False
        if self.tile_layer is not None:
            self.tile_layer.visible = False

    def _fail(self, message: str) -> None:
        self._set_status(message)
        if message != self._last_error:  # one notification per distinct failure, not one per camera event
            self._last_error = message
            show_error(f"niiv zoom: {message}")

    def _set_status(self, message: str) -> None:
        self.status = message
        self.status_changed.emit(message)


def _update_in_place(
    layer: Image, data: np.ndarray, scale: Sequence[float], translate: Sequence[float], viewer: Any = None
) -> None:
    """Set a layer's data, scale and translate together, with ONE slice and ONE transform update.

    Plain assignments re-slice three times and make the viewer recompute its
    dims after each; as the tile's scale is the finest in the scene, every new
    scale changes the dims' step and napari then re-slices EVERY layer (measured
    here: about 130 ms of main-thread time per tile, against 10–30 ms this way),
    with intermediate states (new data at the old scale) that must never be
    drawn. So the setters run with the layer's events and refresh held, one
    ``translate`` event moves the visual, and one refresh uploads the data.
    The viewer's dims handler is held for that event: the tile lies inside the
    base layer, so the dims' extent is unchanged, and the step of a displayed
    axis only matters once it becomes a slider axis, when the tile is dropped
    (see :meth:`NiivZoom._on_layout_changed`). The layer list's extent cache is
    still cleared by the setters. napari's private ``_block_refresh`` and
    ``ViewerModel._on_layers_change`` are used when present; otherwise plain
    assignments are the fallback.
    """
    block = getattr(layer, "_block_refresh", None)
    if block is None:  # pragma: no cover - other napari versions
        layer.data, layer.scale, layer.translate = data, scale, translate
        return
    events = layer.events
    dims_handler = getattr(viewer, "_on_layers_change", None)
    with block():
        with events.scale.blocker(), events.translate.blocker(), events.data.blocker():
            layer.scale = scale
            layer.translate = translate
            layer.data = data
        with events.translate.blocker(dims_handler) if dims_handler is not None else contextlib.nullcontext():
            events.translate()
    layer.refresh(thumbnail=False)  # a thumbnail update repaints the layer list: a whole-window redraw


def _camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


# ====================================================================== building a field for a layer
def zoom_source(viewer: Any, layer: Any) -> dict[str, Any] | None:
    """How to build a field for ``layer``: ``{"stack", "weights", "anisotropy"}``, or ``None`` if it has no niiv model.

    A niiv result (``metadata["engine"] == "niiv"``) names its input layer and
    its params (``weights``: "" = the shipped file; ``anisotropy``: 0 = from the
    shapes); an anisotropic stack opened with niiv weights carries
    ``metadata["niiv_weights"]`` and ``metadata["anisotropy"]``.
    """
    meta = getattr(layer, "metadata", None) or {}
    if getattr(layer, "ndim", 0) != 3:
        return None
    if meta.get("engine") == "niiv" and not meta.get("preview"):
        source_name = meta.get("input_layer")
        if source_name not in viewer.layers:
            return None
        source = viewer.layers[source_name]
        params = meta.get("params") or {}
        anisotropy = int(float(params.get("anisotropy", 0) or 0))
        if anisotropy <= 0:
            z_scale = float(params.get("z_scale", 1.0) or 1.0)
            anisotropy = round(layer.data.shape[0] / (source.data.shape[0] * z_scale))
        return {"stack": source.data, "weights": str(params.get("weights", "") or ""), "anisotropy": anisotropy}
    if meta.get("niiv_weights"):
        return {"stack": layer.data, "weights": str(meta["niiv_weights"]), "anisotropy": int(meta.get("anisotropy", 0))}
    return None


def build_field(stack: Any, weights: str, anisotropy: int) -> FieldDecoder:
    """A :class:`~napari_lfrecon.engines.niiv_field.NiivField` for ``stack`` from ``weights``.

    ``weights`` "" means the shipped file; a bare file name that does not exist
    as given is looked up among the shipped sample files. Weights for another
    anisotropy factor, a missing file or a stack whose z is not the coarse axis
    raise ``ValueError`` with the niiv engine's message.
    """
    from ..engines.niiv import load_model, shipped_weights_path
    from ..engines.niiv_field import NiivField
    from ..samples import sample_dir

    path = Path(weights) if weights else shipped_weights_path()
    if not path.is_file() and not path.is_absolute() and (sample_dir() / path).is_file():
        path = sample_dir() / path
    if not path.is_file():
        raise ValueError(f"niiv weights file not found: {path}")
    model, _header = load_model(path, int(anisotropy) if anisotropy else None)
    factor = int(anisotropy) if anisotropy else model.config.anisotropy
    return NiivField(model, np.asarray(stack, dtype=np.float32), factor, cache_bytes=ZOOM_CACHE_BYTES)


# ====================================================================== dock widget
class NiivZoomWidget(QWidget):
    """Dock widget: choose a niiv result (or a stack with niiv weights) and follow the camera with live decodes."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.zoom = NiivZoom(parent=self)
        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("a niiv result, or an anisotropic stack opened with niiv weights")
        self.live_check = QCheckBox("Live zoom")
        self.live_check.setToolTip("re-decode the visible region at the screen's resolution while you zoom and pan")
        self.status_label = QLabel("pick a layer and tick Live zoom")
        self.status_label.setWordWrap(True)
        form = QFormLayout()
        form.addRow("layer", self.layer_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.live_check)
        layout.addWidget(self.status_label)
        layout.addStretch(1)
        self.live_check.toggled.connect(self._on_live_toggled)
        self.layer_combo.currentIndexChanged.connect(self._on_layer_changed)
        self.zoom.status_changed.connect(self.status_label.setText)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self._refresh_layers()

    def _candidates(self) -> list[str]:
        return [layer.name for layer in self.viewer.layers if zoom_source(self.viewer, layer) is not None]

    def _refresh_layers(self, event: Any = None) -> None:
        current = self.layer_combo.currentText()
        names = self._candidates()
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)
        self.live_check.setEnabled(bool(names) or self.live_check.isChecked())

    def _on_layer_removed(self, event: Any) -> None:
        followed = self.zoom.base_layer
        self._refresh_layers()
        if followed is not None and getattr(event, "value", None) is followed:
            self.zoom.detach()
            self._set_live(False)
            self.status_label.setText(f"live zoom off: layer {followed.name!r} was removed")

    def _set_live(self, on: bool) -> None:
        """Tick or untick *Live zoom* without re-entering the toggle handler."""
        self.live_check.blockSignals(True)
        self.live_check.setChecked(on)
        self.live_check.blockSignals(False)

    def _on_layer_changed(self, index: int = 0) -> None:
        if self.live_check.isChecked():
            self.start()

    def _on_live_toggled(self, on: bool) -> None:
        if on:
            self.start()
        else:
            self.zoom.detach()
            self.status_label.setText("live zoom off")

    def start(self, field: FieldDecoder | None = None) -> bool:
        """Attach the zoom to the chosen layer (building its field unless ``field`` is given); True on success.

        Errors (no niiv model, a weights file for another anisotropy, a layer
        the zoom cannot follow) go to ``show_error`` and the status line, and
        untick *Live zoom*.
        """
        self._set_live(True)
        self.zoom.detach()
        name = self.layer_combo.currentText()
        try:
            if not name or name not in self.viewer.layers:
                raise ValueError("no niiv result or stack with niiv weights to follow")
            layer = self.viewer.layers[name]
            if field is None:
                source = zoom_source(self.viewer, layer)
                if source is None:
                    raise ValueError(f"layer {name!r} has no niiv model attached")
                field = build_field(source["stack"], source["weights"], source["anisotropy"])
            self.zoom.attach(self.viewer, layer, field)
        except Exception as exc:  # a bad layer or weights file is a message, never a traceback
            message = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            show_error(f"niiv zoom: {message}")
            self.status_label.setText(message)
            self._set_live(False)
            return False
        return True

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt name
        """Detach before the widget goes (no thread left behind)."""
        self.zoom.detach()
        super().closeEvent(event)
