"""All frames of a time series through the batch runner, mirrored into a napari viewer (the Reconstruct panel's
"all frames" choice); see :class:`BatchRunner`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error
from psygnal import Signal

from .. import engines
from ..camera import Camera
from ..controllers import reconstruct as control
from ..controllers.layers import axes_kwargs, result_name
from ..controllers.reconstruct import BatchCancelled
from ..device import select_device
from ..engines.base import EngineInputError
from ..psf.model import PSF
from ._geometry import output_translate
from .worker import Job, error_message, register_job, start_job

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["JOB_KEY", "BatchRunner"]

#: The name the Reconstruct panel's run is registered under for its viewer (one at a time per viewer).
JOB_KEY = "reconstruct"


class BatchRunner:
    """All frames of a time series through :func:`napari_lfrecon.batch.run_batch`, mirrored into a viewer.

    The same interface as :class:`~napari_lfrecon.gui.worker.EngineRunner` as
    far as the widget uses it (``progressed``, ``metric``, ``finished``,
    ``start``, ``cancel``, ``running``, ``status``, ``message``,
    ``result_layer``). The run is
    :func:`napari_lfrecon.controllers.reconstruct.batch_updates` in the worker
    layer's :func:`~napari_lfrecon.gui.worker.start_job`: the series is read
    frame by frame (never whole), written to ``output`` and opened lazily with
    :func:`napari_lfrecon.io.zarr_io.read_zarr` as ``"<input> [<engine>]"``.
    Cancel stops after the chunk in flight; running again with the same output resumes.
    """

    #: ``(fraction in [0, 1], message)`` per finished chunk (on the main thread).
    progressed = Signal(float, str)
    #: Never emitted (batch runs show no metrics); there for the widget's wiring.
    metric = Signal(str, float)
    #: Emitted once when the run is over, with :attr:`status` and a one-line message.
    finished = Signal(str, str)

    def __init__(
        self,
        viewer: napari.Viewer,
        *,
        engine: str,
        data: Any,
        frame_ndim: int,
        psf: PSF,
        params: dict[str, Any],
        output: str | Path,
        input_name: str = "input",
        input_scale: tuple[float, ...] | None = None,
        input_translate: tuple[float, ...] | None = None,
        camera: Camera | None = None,
        overwrite: bool = False,
        sync: bool | None = None,
    ) -> None:
        self.viewer = viewer
        self.engine = engines.get(engine)
        if psf.modality not in self.engine.modalities:
            raise EngineInputError(
                f"engine {self.engine.name!r} handles {', '.join(self.engine.modalities)} data, "
                f"not a {psf.modality} PSF"
            )
        ndim = len(data.shape)
        if ndim != frame_ndim + 1:
            raise ValueError(f"a time series needs {frame_ndim + 1} axes (T first), got shape {tuple(data.shape)}")
        self.data = data  # never converted to numpy here: the batch runner reads one frame at a time
        self.frame_ndim = frame_ndim
        self.psf = psf
        self.params = dict(params)
        self.output = Path(output)
        self.input_name = input_name
        self.input_scale = tuple(input_scale) if input_scale is not None else (1.0,) * ndim
        self.input_translate = tuple(input_translate) if input_translate is not None else (0.0,) * ndim
        self.camera = camera
        self.overwrite = overwrite
        self.sync = bool(sync)
        # As for one frame: a widefield frame's voxel size is the layer's spatial scale.
        self.voxel_size = tuple(self.input_scale[1:]) if frame_ndim == 3 else None
        self.device = select_device(None)
        self.stop_flag = threading.Event()
        self.job: Job | None = None
        self.summary: Any = None
        self.result_layer: Any = None
        self.cancelled_layer: Any = None
        self.status = "idle"
        self.message = ""
        self.seconds = 0.0
        self._started = 0.0
        self.job_key = JOB_KEY
        self.detached = False

    @property
    def running(self) -> bool:
        """True between :meth:`start` and the :attr:`finished` signal."""
        return self.status == "running"

    def start(self) -> Any:
        """Start the run: in a thread (returns the worker) or, in sync mode, to completion (returns ``None``)."""
        if self.status != "idle":
            raise RuntimeError("a BatchRunner runs once; make a new one for another run")
        self.status = "running"
        self._started = time.perf_counter()
        register_job(self.viewer, self.job_key, self)
        self.job = start_job(
            control.batch_updates,
            self.data,
            control.batch_axes(self.psf.modality, self.frame_ndim),
            self.output,
            self.psf,
            self.stop_flag,
            engine=self.engine.name,
            params=self.params,
            voxel_size=self.voxel_size,
            camera=self.camera,
            overwrite=self.overwrite,
            metadata={"input_layer": self.input_name},
            on_yield=lambda report: self.progressed.emit(*report),
            on_return=self._on_returned,
            on_error=lambda exc: self._on_returned((None, exc)),
            on_finish=self._on_worker_finished,
            sync=self.sync,
        )
        return self.job.worker

    def cancel(self) -> None:
        """Stop after the chunk in flight; :attr:`finished` then fires with ``"cancelled"``."""
        self.stop_flag.set()

    def detach(self) -> None:
        """The viewer is closing: stop, touch no layer any more, and say ``"cancelled"`` once."""
        self.stop_flag.set()
        if self.detached:
            return
        self.detached = True
        if self.job is not None:
            self.job.detach()
        if self.status == "running":
            self.status, self.message = "cancelled", "the viewer was closed; finished chunks are kept"
            self.finished.emit(self.status, self.message)

    # ------------------------------------------------------ main-thread side
    def _on_returned(self, outcome: tuple[Any, BaseException | None]) -> None:
        summary, exc = outcome
        self.seconds = time.perf_counter() - self._started
        if isinstance(exc, BatchCancelled):
            self._end("cancelled", control.cancelled_message(exc))
            return
        if exc is not None:
            self._end("failed", error_message(exc))
            return
        try:
            self.result_layer = self._add_result(summary)
        except Exception as err:  # a store we cannot open is a message too
            self._end("failed", error_message(err))
            return
        self.summary = summary
        computed, total = summary.chunks_computed, summary.chunks_total
        self._end("done", f"{computed} of {total} chunks computed in {self.seconds:.1f} s → {summary.output}")

    def _add_result(self, summary: Any) -> Any:
        from ..io.zarr_io import read_zarr

        image = read_zarr(summary.output)
        volume = image.data  # dask: stays on disk, read as the viewer slices it
        voxel = tuple(float(v) for v in (image.voxel_size or summary.voxel_size_um))[-3:]
        z_planes = self.psf.z_planes_um if self.psf.z_planes_um.size else None
        frame_shape = tuple(int(n) for n in self.data.shape[1:])
        spatial = output_translate(
            frame_shape, self.input_scale[1:], self.input_translate[1:], tuple(volume.shape[1:]), voxel, z_planes
        )
        metadata = control.batch_metadata(
            self.engine.name,
            self.params,
            self.seconds,
            self.input_name,
            self.data.shape,
            voxel,
            volume.shape,
            summary,
            self.psf,
        )
        return self.viewer.add_image(
            volume,
            name=result_name(self.input_name, self.engine.name, self.params, [lay.name for lay in self.viewer.layers]),
            **axes_kwargs(volume.ndim, len(voxel), time_first=True),
            # The time axis keeps the input's own, so the result's frames line up with the input's.
            scale=(self.input_scale[0], *voxel),
            translate=(self.input_translate[0], *spatial),
            metadata=metadata,
        )

    def _end(self, status: str, message: str) -> None:
        if self.status != "running":
            return
        self.status, self.message = status, message
        if status == "failed":
            show_error(f"{self.engine.title or self.engine.name} (all frames) failed: {message}")

    def _on_worker_finished(self) -> None:
        if self.status == "running":
            self._end("failed", "the worker stopped before the batch run finished")
        self.finished.emit(self.status, self.message)
