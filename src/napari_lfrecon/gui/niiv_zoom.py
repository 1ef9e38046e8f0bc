"""Interactive arbitrary-resolution zoom: re-decode a niiv field where the camera looks, at screen density.

Three parts, from pure to Qt:

* **Geometry** (:mod:`napari_lfrecon.controllers.niiv_zoom_geometry`, no Qt):
  which region of the field to decode at which sampling for a 2-D view, and the
  ``scale``/``translate`` that place the tile.
* **Controller** (:mod:`napari_lfrecon.controllers.niiv_zoom`, no Qt): request
  generations (a newer request supersedes older ones, stale results are
  dropped) and the decode generator.
* **Qt glue** (:class:`NiivZoom`, here): listens to the camera, the dims, the
  canvas size and the base layer; debounces with a ``QTimer``; runs each
  request's decode (coarse then full) through the one worker layer
  (:func:`napari_lfrecon.gui.worker.start_job`), one decode at a time: a newer
  request sets the running one's stop flag and starts when it has stopped;
  results come back on the main thread and stale ones are dropped; the tile is
  ONE extra image layer ``"<base> [niiv zoom]"`` (3-D, one plane on the
  non-displayed axis, made when attaching) whose data, scale and translate
  change together with one slice and one transform update.
* **Widget** (:class:`~napari_lfrecon.gui.niiv_zoom_widget.NiivZoomWidget`): pick a niiv result (or an anisotropic
  stack carrying niiv weights), tick *Live zoom*, read the status line.

Nothing here raises into the viewer: errors become ``show_error`` messages and
the status line.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, QTimer, Signal

from ..controllers.niiv_zoom import (
    DecodeCounter,
    DecodeFailed,
    DecodeRequest,
    TileResult,
    ZoomRequests,
    decode_tiles,
    tile_status,
)
from ..controllers.niiv_zoom_geometry import FieldDecoder, OutputGrid, TilePlan, ViewState, output_grid
from . import _napari_compat as compat
from .worker import Job, start_job

if TYPE_CHECKING:  # pragma: no cover
    import napari

_LOG = logging.getLogger(__name__)

#: Quiet time after the last camera/dims event before a decode starts.
DEBOUNCE_MS = 80
#: A decoded tile goes onto its layer on a timer this many ms after it arrives (see ``NiivZoom._on_delivered``).
APPLY_DELAY_MS = 1
#: Longest wait, on detach, for a running decode to see its stop flag (decoders check it between batches).
DETACH_WAIT_S = 5.0
#: Suffix of the tile layer's name.
TILE_SUFFIX = " [niiv zoom]"

__all__ = ["APPLY_DELAY_MS", "DEBOUNCE_MS", "DETACH_WAIT_S", "TILE_SUFFIX", "NiivZoom"]


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
    dropped because a newer request existed; :attr:`gen` is the current
    request's generation (:class:`~napari_lfrecon.controllers.niiv_zoom.ZoomRequests`).
    """

    status_changed = Signal(str)
    tile_shown = Signal(str, int, float, float)

    def __init__(self, *, debounce_ms: int = DEBOUNCE_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.viewer: Any = None
        self.base_layer: Any = None
        self.field: FieldDecoder | None = None
        self.grid: OutputGrid | None = None
        self.tile_layer: Image | None = None
        self.status = "detached"
        #: Generations, the samples already shown, the clamp state and the counters (Qt-free).
        self.bookkeeping = ZoomRequests()
        self.last_seconds: dict[str, float] = {}
        #: Main-thread seconds spent putting each tile on its layer (the zoom's own share of a frame).
        self.apply_seconds: deque[float] = deque(maxlen=1000)
        self.last_plan: TilePlan | None = None
        self._pending_since: float | None = None
        self._last_error = ""
        self._tile_live = False
        self._attached = False
        self._counter = DecodeCounter()
        #: The request whose decode runs in the worker layer now (one at a time), and its job.
        self._running: DecodeRequest | None = None
        self._job: Job | None = None
        #: The newest request, waiting for the running (superseded, stopping) one to end.
        self._queued: DecodeRequest | None = None
        self._connections: list[tuple[Any, Callable]] = []
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(int(debounce_ms))
        self._timer.timeout.connect(self._request)
        self._pending_result: object | None = None
        self._apply_timer = QTimer(self)
        self._apply_timer.setSingleShot(True)
        self._apply_timer.setInterval(APPLY_DELAY_MS)
        self._apply_timer.timeout.connect(self._apply_pending)

    # --------------------------------------------------------------- attach / detach
    @property
    def attached(self) -> bool:
        """True between :meth:`attach` and :meth:`detach`."""
        return self._attached

    @property
    def decodes(self) -> int:
        """Number of ``decode_grid`` calls started since :meth:`attach`."""
        return self._counter.count

    @property
    def decoding(self) -> bool:
        """True while a decode runs in the worker layer (from its start on a worker thread until it returned)."""
        running = self._running
        return running is not None and running.started.is_set() and not running.done.is_set()

    @property
    def gen(self) -> int:
        """The current request's generation; results of any other generation are stale."""
        return self.bookkeeping.gen

    @property
    def requests(self) -> int:
        """Requests handed to the decoder since :meth:`attach`."""
        return self.bookkeeping.requests

    @property
    def stale_dropped(self) -> int:
        """Results dropped since :meth:`attach` because a newer request existed."""
        return self.bookkeeping.stale_dropped

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
        self.bookkeeping.reset()
        self._last_error = ""
        self._counter = DecodeCounter()
        self._attached = True
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
        self.bookkeeping.supersede()  # anything still in flight is stale from now on
        self._attached = False
        self._queued = None
        running = self._running
        if running is not None:
            running.stop.set()
            # Like a thread join: the decoder sees the flag between batches; nothing is left decoding after detach.
            # A job not yet started (queued behind other work in the pool) returns at once when it starts.
            if running.started.is_set() and running.done.wait(DETACH_WAIT_S):
                self._running = None
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
            self.bookkeeping.forget_shown()

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
        """Debounce fired: plan the tiles for the current view and hand them to the worker layer."""
        if not self.attached:
            return
        requested_at = self._pending_since or time.perf_counter()
        self._pending_since = None
        try:
            planned = self.bookkeeping.plan(self.grid, self.current_view(), requested_at)
        except Exception as exc:  # never let a view event crash the viewer
            _LOG.debug("niiv zoom planning failed", exc_info=True)
            self._fail(f"cannot plan the tile: {exc}")
            return
        if planned.hidden:
            self._queued = None
            if self._running is not None:
                self._running.stop.set()
            self._hide_tile()
            self._set_status(planned.hidden)
            return
        if planned.clamp_crossed:
            show_info(f"niiv zoom: {planned.clamp_crossed}")
        if planned.clamp_status:
            self._set_status(planned.clamp_status)
        if planned.request is not None:
            self._submit(planned.request)

    def _submit(self, request: DecodeRequest) -> None:
        """Run ``request`` now, or (one decode at a time) stop the running one and run it when that ends."""
        self._queued = request
        if self._running is not None:
            self._running.stop.set()  # superseded: a cooperative decoder stops at its next check
            return
        self._start_queued()

    def _start_queued(self) -> None:
        request, self._queued = self._queued, None
        if request is None or not self.attached or self._running is not None:
            return
        self._running = request
        self._job = start_job(
            decode_tiles,
            self.field,
            request,
            self._counter,
            on_yield=self._on_delivered,
            on_error=lambda exc: self._fail(f"decoding failed: {exc}"),
            on_finish=lambda: self._on_decode_finished(request),
        )

    def _on_decode_finished(self, request: DecodeRequest) -> None:
        """A decode ended (main thread): start the newest waiting request, if any."""
        if self._running is request:
            self._running, self._job = None, None
        if self._running is None and self._queued is not None:
            self._start_queued()

    # --------------------------------------------------------------- results (main thread)
    def _on_delivered(self, result: object) -> None:
        """A worker message arrived (main thread): drop it if stale, else apply it on the next timer turn.

        Applying from a timer rather than right here lets Qt first finish what
        it queued before (typically the repaint that follows the camera change
        which started this request) and handle input in between, so a tile
        never lengthens that frame; a full tile that arrives before its coarse
        one was applied replaces it.
        """
        if not self.bookkeeping.accept(result, self.attached):
            return
        self._pending_result = result
        self._apply_timer.start()

    def _apply_pending(self) -> None:
        result, self._pending_result = self._pending_result, None
        try:
            if result is None or not self.bookkeeping.accept(result, self.attached):
                return
            if isinstance(result, DecodeFailed):
                self.bookkeeping.forget_shown()  # let the same view be retried after the next change
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
        self._set_status(tile_status(plan, self.last_seconds))
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
        self.bookkeeping.forget_shown()
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
    still cleared by the setters. napari's private refresh blocking and dims
    handler are reached through :mod:`._napari_compat`; without them, plain
    assignments are the fallback.
    """
    if not compat.has_refresh_blocking(layer):  # pragma: no cover - other napari versions
        layer.data, layer.scale, layer.translate = data, scale, translate
        return
    events = layer.events
    with compat.layer_refresh_blocked(layer):
        with events.scale.blocker(), events.translate.blocker(), events.data.blocker():
            layer.scale = scale
            layer.translate = translate
            layer.data = data
        with compat.dims_update_held(viewer, events.translate):
            events.translate()
    layer.refresh(thumbnail=False)  # a thumbnail update repaints the layer list: a whole-window redraw


def _camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera
