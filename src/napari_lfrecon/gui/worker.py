"""The worker layer: the one place that turns an engine's ``Update`` stream into napari layers.

:func:`napari_lfrecon.jobs.stream_job` (the one runner, no Qt) converts the
measurement to photo-electrons, runs the engine and yields its updates plus
three events of its own (``Warned``, ``Failed``, ``Cancelled``), so exceptions
and warnings never escape as tracebacks. :class:`EngineRunner` runs that generator
in napari's ``thread_worker`` (or synchronously when ``LFRECON_SYNC=1``, for
debugging) and handles each event on the main thread:

* ``progress`` → :attr:`EngineRunner.progressed` (progress bar + status text);
* ``preview`` → the data of ONE preview layer ``"<input> [<engine> preview]"``
  is replaced in place and its contrast refreshed (never a layer per step);
* ``metric`` → :attr:`EngineRunner.metric`;
* ``result`` → the preview layer is removed and ``"<input> [<engine>]"`` is added
  with the engine's output voxel size as ``scale``, a ``translate`` that centres
  it on the input's field of view, and engine, params, timing, device and PSF in
  ``metadata``;
* errors → ``show_error`` with the reason; engine warnings → ``show_warning``.

Cancel sets a stop flag that the engine sees through ``should_stop()``; the
generator also stops pulling updates as soon as the flag is set, so a run stops
within one engine step even for an engine that forgets to check. On cancel the
last preview is KEPT, renamed ``"<input> [<engine> cancelled]"`` (a partial
estimate is often worth looking at); no result layer is added. On error the
preview layer is removed.

The input layer's array is handed to the engine as a read-only view: engines
copy what they change, and nothing here writes to it.

Previews never stall the viewer: the worker thread sends at most one preview per
:data:`PREVIEW_INTERVAL_S` (keeping the latest one back, and sending it first if
the run is cancelled) with its contrast limits computed there, and the main
thread applies only the newest of any previews queued while it was busy.

Closing: every run is registered per viewer (:func:`register_job`,
:func:`running_job`). Closing the viewer cancels its runs, detaches them (no
layer is touched any more) and waits a few seconds for their threads to end, so
a script that closes its viewer mid-run neither raises nor aborts; a widget
cancels its own run when it is closed (:func:`on_widget_closed`), and a widget
opened again finds a run still going with :func:`running_job`. Callbacks into
widgets go through :func:`connect_alive`, which drops calls to a widget whose
Qt object is gone.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import GeneratorWorker, thread_worker
from napari.utils.notifications import show_error, show_warning
from psygnal import Signal
from qtpy.QtCore import QTimer

from .. import engines
from ..camera import Camera
from ..controllers import previews
from ..controllers.layers import axes_kwargs, result_name
from ..controllers.previews import PREVIEW_INTERVAL_S, PreviewFrame, ResultFrame, throttled_previews, volume_contrast
from ..device import describe_device, select_device
from ..jobs import jsonable, make_params
from ..jobs.protocol import EngineInputError, Volume, preview_volume
from ..jobs.runner import Cancelled, Event, Failed, Warned, error_message, prepare_inputs, stream_job
from ..psf.model import PSF
from ._geometry import output_translate
from .lifecycle import (
    CLOSE_WAIT_S,
    cancel_viewer_jobs,
    connect_alive,
    on_widget_closed,
    qt_alive,
    register_job,
    running_job,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari

#: Set to ``1`` to run engines synchronously on the calling thread (debugging, profiling).
SYNC_ENV = "LFRECON_SYNC"

__all__ = [
    "CLOSE_WAIT_S",
    "PREVIEW_INTERVAL_S",
    "SYNC_ENV",
    "EngineRunner",
    "Event",
    "Job",
    "PreviewFrame",
    "RunRequest",
    "cancel_viewer_jobs",
    "connect_alive",
    "error_message",
    "on_widget_closed",
    "qt_alive",
    "register_job",
    "run_blocking",
    "running_job",
    "start_job",
    "stream_job",
    "sync_requested",
]


def _fit_contrast(layer: Any, contrast: tuple[float, float]) -> None:
    """Stretch the layer's contrast to ``contrast``: an improving estimate changes its range every step."""
    layer.contrast_limits_range = contrast
    layer.contrast_limits = contrast


# ------------------------------------------------------------------ the one way to run work off the main thread
def sync_requested(sync: bool | None = None) -> bool:
    """True when work should run on the calling thread (``sync`` given, else ``LFRECON_SYNC=1``)."""
    return os.environ.get(SYNC_ENV, "") not in ("", "0") if sync is None else bool(sync)


class Job:
    """A piece of work run off the main thread by :func:`start_job`; :meth:`cancel` sets its stop flag.

    ``stop`` is the :class:`threading.Event` the work sees; ``worker`` the napari
    worker (``None`` in sync mode or once finished); ``done`` is True once the
    finished callback ran.
    """

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop if stop is not None else threading.Event()
        self.worker: GeneratorWorker | None = None
        self.done = False
        #: Set by the worker thread itself when the work has ended (waitable without an event loop).
        self.exited = threading.Event()
        #: Once detached (its viewer closed), no callback runs any more.
        self.detached = False

    @property
    def running(self) -> bool:
        """True until the work has finished (or failed, or was cancelled and stopped)."""
        return not self.done

    def cancel(self) -> None:
        """Ask the work to stop; generators see it through ``stop.is_set()``, and yields stop being pulled."""
        self.stop.set()

    def detach(self) -> None:
        """Cancel and drop every later callback (its widgets or viewer are gone)."""
        self.detached = True
        self.cancel()


def _marking_exit(work: Callable[..., Any], exited: threading.Event) -> Callable[..., Any]:
    """``work`` that sets ``exited`` on its own thread when it ends (generators: when exhausted or closed)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            result = work(*args, **kwargs)
            if hasattr(result, "__next__"):
                result = yield from result
            return result
        finally:
            exited.set()

    return run


def start_job(
    work: Callable[..., Any],
    *args: Any,
    on_yield: Callable[[Any], None] | None = None,
    on_return: Callable[[Any], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    on_finish: Callable[[], None] | None = None,
    sync: bool | None = None,
    stop: threading.Event | None = None,
    **kwargs: Any,
) -> Job:
    """Run ``work(*args, **kwargs)`` in napari's ``thread_worker`` and hand its results to the main thread.

    ``work`` is a plain function or a generator (Qt-free). ``on_yield`` gets each
    yielded value, ``on_return`` the return value, ``on_error`` an exception
    (default: ``show_error`` with :func:`error_message`), ``on_finish`` runs last
    in every case. With ``sync`` (or ``LFRECON_SYNC=1``) everything runs on the
    calling thread: tests and debugging see the same callbacks in order. Every
    widget runs its background work through here or :class:`EngineRunner` (which
    uses it). ``stop``, when given, is handed to ``work`` as its ``stop`` keyword
    and is the flag :meth:`Job.cancel` sets.
    """
    job = Job(stop)
    if stop is not None:
        kwargs["stop"] = stop

    def failed(exc: BaseException) -> None:
        if job.detached:
            return
        if on_error is not None:
            on_error(exc)
        else:
            show_error(error_message(exc))

    def finished() -> None:
        job.done, job.worker = True, None
        job.exited.set()
        if on_finish is not None and not job.detached:
            on_finish()

    def yielded(value: Any) -> None:
        if not job.detached and on_yield is not None:
            on_yield(value)

    if sync_requested(sync):
        try:
            result = work(*args, **kwargs)
            if hasattr(result, "__next__"):
                while True:
                    try:
                        value = next(result)
                    except StopIteration as end:
                        result = end.value
                        break
                    if on_yield is not None:
                        on_yield(value)
            if on_return is not None:
                on_return(result)
        except Exception as exc:  # the same contract as the threaded path: errors go to on_error
            failed(exc)
        finished()
        return job
    # errors are always handled here (on_error or show_error): napari must not re-raise them in the event loop
    worker = thread_worker(_marking_exit(work, job.exited), start_thread=False, ignore_errors=True)(*args, **kwargs)
    if on_yield is not None:
        worker.yielded.connect(yielded)
    if on_return is not None:
        worker.returned.connect(lambda value: None if job.detached else on_return(value))
    worker.errored.connect(failed)
    worker.finished.connect(finished)
    job.worker = worker
    worker.start()
    return job


# ------------------------------------------------------------------ runner
@dataclass
class RunRequest:
    """Everything one run needs; built by a widget (or a script) from layers and form values.

    ``data`` is the input layer's array (handed over read-only); ``input_scale``
    and ``input_translate`` are that layer's, one number per data axis;
    ``params`` are raw form values checked with ``make_params``.
    """

    engine: str
    data: Any
    psf: PSF | None
    params: dict[str, Any] = field(default_factory=dict)
    input_name: str = "input"
    input_scale: tuple[float, ...] | None = None
    input_translate: tuple[float, ...] | None = None
    camera: Camera | None = None
    device: str | None = None
    #: Fields of the engine's typed inputs beyond data/psf/voxel size (e.g. ``optics`` for a calibration).
    input_fields: dict[str, Any] = field(default_factory=dict)


class EngineRunner:
    """One engine run mirrored into a napari viewer (see the module docstring for what each update does).

    Construct it (input errors raise ``ValueError`` with the reason, before any
    thread starts), connect to its signals, then call :meth:`start`. After the
    run, :attr:`status` is ``"done"``, ``"cancelled"`` or ``"failed"`` and
    :attr:`result_layer` holds the final layer when there is one.
    """

    #: ``(fraction in [0, 1], message)`` for each progress update.
    progressed = Signal(float, str)
    #: ``(name, value)`` for each metric update.
    metric = Signal(str, float)
    #: The preview layer after each in-place update (for live metric widgets).
    previewed = Signal(object)
    #: The result as the engine returned it (a :class:`Volume` or a calibration object), before :attr:`finished`.
    resulted = Signal(object)
    #: Emitted once when the run is over, with :attr:`status` and a one-line message.
    finished = Signal(str, str)

    def __init__(self, viewer: napari.Viewer, request: RunRequest, *, sync: bool | None = None) -> None:
        self.viewer = viewer
        self.request = request
        self.engine = engines.get(request.engine)
        self.params = make_params(self.engine.Params, request.params)
        self.device = select_device(request.device)
        data = np.asarray(request.data)
        ndim = data.ndim
        self.input_scale = tuple(request.input_scale) if request.input_scale is not None else (1.0,) * ndim
        self.input_translate = tuple(request.input_translate) if request.input_translate is not None else (0.0,) * ndim
        data_voxel = tuple(float(s) for s in self.input_scale) if ndim == 3 else None
        inputs = self.engine.inputs_type(data=data, psf=request.psf, voxel_size=data_voxel, **request.input_fields)
        # every check an engine needs, before any thread starts (the worker repeats it after the camera step)
        self.inputs = prepare_inputs(self.engine, inputs)
        out_voxel = self.engine.output_voxel_size(self.inputs)
        if out_voxel is None and self.engine.kind != "calibrate":
            raise EngineInputError("the output voxel size is unknown: give the input layer a scale in µm or use a PSF")
        self.output_voxel_size = tuple(float(v) for v in out_voxel) if out_voxel is not None else data_voxel or ()
        self.sync = sync_requested(sync)
        self.stop_flag = threading.Event()
        self.worker: GeneratorWorker | None = None
        self.preview_layer: Any = None
        self.result_layer: Any = None
        #: The engine's result object (a :class:`Volume` or a calibration) once the run is done.
        self.result: Any = None
        #: The last preview, kept and renamed when the run is cancelled.
        self.cancelled_layer: Any = None
        self.status = "idle"
        self.message = ""
        self.seconds = 0.0
        self._started = 0.0
        self._fraction = 0.0
        self._metrics: dict[str, float] = {}
        self.job: Job | None = None
        #: Set when the viewer closed: the run is cancelled and no layer is touched any more.
        self.detached = False
        # the newest preview not yet shown, and whether showing it is scheduled (main-thread coalescing)
        self._pending_preview: PreviewFrame | None = None
        self._preview_scheduled = False
        self._placeholder = False  # the preview layer holds the empty one added at start (none shown yet)
        #: The name this run is registered under for its viewer (a widget sets its own, e.g. ``"reconstruct"``).
        self.job_key = f"{self.engine.name}-{id(self)}"

    # --------------------------------------------------------------- control
    @property
    def running(self) -> bool:
        """True between :meth:`start` and the :attr:`finished` signal."""
        return self.status == "running"

    def start(self) -> GeneratorWorker | None:
        """Start the run: in a thread (returns the worker) or, in sync mode, to completion (returns ``None``)."""
        if self.status != "idle":
            raise RuntimeError("an EngineRunner runs once; make a new one for another run")
        self.status = "running"
        self._started = time.perf_counter()
        register_job(self.viewer, self.job_key, self)
        ndim = len(self.output_voxel_size)
        shape = None if self.sync else previews.placeholder_shape(self.engine, self.inputs, self.params, ndim)
        if shape is not None:  # the preview layer, empty, before the engine starts: see placeholder_shape
            self._show_preview(PreviewFrame(np.zeros(shape, np.float32), (0.0, 1.0)), placeholder=True)
        self.job = start_job(
            _throttled_stream,
            self.engine,
            self.inputs,
            self.params,
            device=self.device,
            stop=self.stop_flag,
            camera=self.request.camera,
            on_yield=self._on_event,
            on_error=lambda exc: self._end("failed", error_message(exc)),
            on_finish=self._on_worker_finished,
            sync=self.sync,
        )
        self.worker = self.job.worker
        return self.worker

    def cancel(self) -> None:
        """Ask the engine to stop; it does within one step, then :attr:`finished` fires with ``"cancelled"``."""
        self.stop_flag.set()

    def detach(self) -> None:
        """Cancel and stop touching the viewer (it is closing); :attr:`finished` still fires once, ``"cancelled"``."""
        self.stop_flag.set()
        if self.detached:
            return
        self.detached = True
        self.preview_layer = None
        self._pending_preview = None
        if self.status == "running":
            self.status, self.message = "cancelled", "the viewer was closed"
            self.finished.emit(self.status, self.message)

    # ------------------------------------------------------ main-thread side
    def _on_event(self, event: Event | PreviewFrame) -> None:
        if self.detached:
            return
        try:
            self._handle_event(event)
        except RuntimeError as exc:
            if "deleted" not in str(exc):
                raise
            self.detach()  # a Qt object of the viewer is gone: the viewer is closing

    def _handle_event(self, event: Event | PreviewFrame) -> None:
        if isinstance(event, PreviewFrame):
            self._queue_preview(event)
        elif isinstance(event, ResultFrame):
            self._show_result(event.update.data, event.update.message, event.contrast)
        elif isinstance(event, Warned):
            show_warning(event.message)
        elif isinstance(event, Failed):
            self._end("failed", event.message)
        elif isinstance(event, Cancelled):
            self._end("cancelled", event.message)
        elif event.kind == "progress":
            self._fraction = float(event.fraction)
            self.progressed.emit(self._fraction, event.message)
        elif event.kind == "metric":
            name, value = event.data
            self._metrics[str(name)] = float(value)
            self.metric.emit(str(name), float(value))
        elif event.kind == "preview":  # only when a stream is handled without throttled_previews
            volume = preview_volume(event.data)
            self._queue_preview(PreviewFrame(volume, volume_contrast(volume), event.fraction))
        elif event.kind == "result":
            self._show_result(event.data, event.message)

    def _queue_preview(self, frame: PreviewFrame) -> None:
        """Show ``frame`` now (sync mode, or a cancelled run's last one) or once the event loop is free.

        Previews queued while the main thread was busy collapse to the newest one.
        """
        if self.sync or self.stop_flag.is_set():
            self._pending_preview = None
            self._show_preview(frame)
            return
        self._pending_preview = frame
        if not self._preview_scheduled:
            self._preview_scheduled = True
            QTimer.singleShot(0, self._show_pending_preview)

    def _show_pending_preview(self) -> None:
        self._preview_scheduled = False
        frame, self._pending_preview = self._pending_preview, None
        if frame is not None and not self.detached:
            try:
                self._show_preview(frame)
            except RuntimeError as exc:
                if "deleted" not in str(exc):
                    raise
                self.detach()

    def _show_preview(self, frame: PreviewFrame, placeholder: bool = False) -> None:
        if self.status != "running":
            return
        volume = frame.volume
        layer = self.preview_layer
        if layer is not None and self._placeholder and layer in self.viewer.layers and layer.data.shape != volume.shape:
            self._remove_preview()  # the engine's volumes are not the shape it announced (e.g. a time series)
            layer = None
        self._placeholder = placeholder
        if layer is None or layer not in self.viewer.layers:
            layer = self.viewer.add_image(
                volume,
                name=f"{self.request.input_name} [{self.engine.name} preview]",
                scale=self._out_scale(volume),
                translate=self._out_translate(volume),
                metadata={"preview": True, "engine": self.engine.name},
                contrast_limits=frame.contrast,
                **self._axes(volume),
            )
            self.preview_layer = layer
        else:
            layer.data = volume
        _fit_contrast(layer, frame.contrast)
        if not placeholder:
            self.previewed.emit(layer)

    def _show_result(self, result: Any, message: str, contrast: tuple[float, float] | None = None) -> None:
        self.seconds = time.perf_counter() - self._started
        self.result = result
        volume = result if isinstance(result, Volume) else getattr(result, "volume", lambda: None)()
        self._pending_preview = None
        preview = self.preview_layer
        if (
            volume is not None
            and preview is not None
            and preview in self.viewer.layers
            and preview.ndim == volume.data.ndim
        ):
            # The preview layer becomes the result: adding a layer costs the main thread far more than new data.
            self.output_voxel_size = tuple(float(v) for v in volume.voxel_size)
            self.preview_layer = None
            self._become_result(preview, volume, contrast)
        elif volume is not None:
            self._remove_preview()
            # the result carries its exact sampling (niiv knows it only after the run)
            self.output_voxel_size = tuple(float(v) for v in volume.voxel_size)
            self.result_layer = self.viewer.add_image(
                volume.data,
                name=result_name(self.request.input_name, self.engine.name, self.params, self._layer_names()),
                scale=self._out_scale(volume.data),
                translate=self._out_translate(volume.data),
                metadata={**volume.metadata, **self._metadata(volume.data)},
                **self._axes(volume.data),
                **({"contrast_limits": contrast} if contrast is not None else {}),
            )
        else:
            self._remove_preview()
        self.resulted.emit(result)
        self._end("done", message or "done")

    def _become_result(self, layer: Any, volume: Volume, contrast: tuple[float, float] | None) -> None:
        """Turn the preview ``layer`` into the result layer (name, data, placement, metadata, contrast)."""
        data = volume.data
        names = [name for name in self._layer_names() if name != layer.name]
        layer.metadata = {**volume.metadata, **self._metadata(data)}
        layer.name = result_name(self.request.input_name, self.engine.name, self.params, names)
        layer.data = data
        layer.scale = self._out_scale(data)
        layer.translate = self._out_translate(data)
        _fit_contrast(layer, contrast if contrast is not None else volume_contrast(np.asarray(data)))
        self.result_layer = layer

    def _end(self, status: str, message: str) -> None:
        if self.status != "running":
            return
        self.seconds = time.perf_counter() - self._started
        self.status, self.message = status, message
        if status == "failed":
            self._remove_preview()
            show_error(f"{self.engine.title or self.engine.name} failed: {message}")
        elif status == "cancelled" and self._placeholder:
            self._remove_preview()  # no estimate was shown: nothing worth keeping
        elif status == "cancelled" and self.preview_layer is not None:
            layer = self.preview_layer
            names = [name for name in self._layer_names() if name != layer.name]
            layer.name = result_name(self.request.input_name, self.engine.name, self.params, names, " cancelled")
            layer.metadata = {**self._metadata(layer.data), "cancelled": True, "fraction": self._fraction}
            self.cancelled_layer, self.preview_layer = layer, None

    def _on_worker_finished(self) -> None:
        if self.detached:
            return  # detach() already said "cancelled"
        if self.status == "running":
            # The stream always ends with result/Failed/Cancelled; reaching here means the worker was killed.
            self._end("failed", "the worker stopped before the engine finished")
        self.finished.emit(self.status, self.message)

    def _remove_preview(self) -> None:
        if self.preview_layer is not None and self.preview_layer in self.viewer.layers:
            self.viewer.layers.remove(self.preview_layer)
        self.preview_layer = None

    # ---------------------------------------------------------------- layers
    def _layer_names(self) -> list[str]:
        return [layer.name for layer in self.viewer.layers]

    def _axes(self, volume: np.ndarray) -> dict[str, Any]:
        """``units`` (µm on the spatial axes) and ``axis_labels`` (z, y, x) of an output layer."""
        spatial = min(len(self.output_voxel_size), volume.ndim)
        return axes_kwargs(volume.ndim, spatial) if spatial else {}

    def _out_scale(self, volume: np.ndarray) -> tuple[float, ...]:
        voxel = self.output_voxel_size
        # A batch/channel axis in front of the volume keeps unit scale.
        return (1.0,) * (volume.ndim - len(voxel)) + voxel[-volume.ndim :]

    def _out_translate(self, volume: np.ndarray) -> tuple[float, ...]:
        psf = self.request.psf
        z_planes = psf.z_planes_um if psf is not None and psf.z_planes_um.size else None
        return output_translate(
            tuple(self.inputs.data.shape),
            self.input_scale,
            self.input_translate,
            tuple(volume.shape),
            self._out_scale(volume),
            z_planes,
        )

    def _metadata(self, volume: np.ndarray) -> dict[str, Any]:
        request = self.request
        metadata: dict[str, Any] = {
            "engine": self.engine.name,
            "params": jsonable(vars(self.params)),
            "seconds": round(self.seconds, 3),
            "device": describe_device(self.device),
            "input_layer": request.input_name,
            "input_shape": list(self.inputs.data.shape),
            "voxel_size": list(self.output_voxel_size),
            "output_shape": list(volume.shape),
        }
        if self._metrics:
            metadata["metrics"] = dict(self._metrics)
        if request.psf is not None:
            metadata["psf"] = request.psf.describe()
        if request.camera is not None:
            cam = request.camera
            metadata["camera"] = {"offset": cam.offset, "gain": cam.gain, "read_noise": cam.read_noise}
        return metadata


def _throttled_stream(*args: Any, **kwargs: Any) -> Any:
    """:func:`stream_job` with previews thinned and contrasted on the worker thread (:func:`throttled_previews`)."""
    return throttled_previews(stream_job(*args, **kwargs), PREVIEW_INTERVAL_S)


def run_blocking(viewer: napari.Viewer, request: RunRequest, on_progress: Callable[[float, str], None] | None = None):
    """Run ``request`` synchronously and return the finished :class:`EngineRunner` (scripts, debugging)."""
    runner = EngineRunner(viewer, request, sync=True)
    if on_progress is not None:
        runner.progressed.connect(on_progress)
    runner.start()
    return runner
