"""The Reconstruct dock widget: input layer, engine, PSF, camera, engine parameters, Run / Cancel.

The run itself is :class:`napari_lfrecon.gui.worker.EngineRunner`: this module
only builds a :class:`~napari_lfrecon.gui.worker.RunRequest` from the widgets
and shows progress. The PSF comes from a layer whose ``metadata["psf"]`` is a
:class:`~napari_lfrecon.psf.model.PSF` (sample data and the PSF reader put it
there; choosing such an input layer selects its own PSF) or from a file (a
``.psf.safetensors`` file or a widefield TIFF stack at the input's voxel size).
Cancel keeps the last preview as ``"<input> [<engine> cancelled]"``.

Lazy (dask-backed) layers are never loaded whole: only the frame a run needs
is read. An input with one axis more than the PSF's modality needs (a time
series ``(T, Z, Y, X)`` widefield, ``(T, Y, X)`` light-field/XLFM frames) shows
a *frames* choice: **current frame** reconstructs the frame under the viewer's
time slider like any single input; **all frames** runs
:func:`napari_lfrecon.batch.run_batch` over the series into a chosen ``.zarr``
store (in a thread, chunk progress on the bar, Cancel stops after the chunk in
flight and a re-run with the same path resumes) and opens the store lazily as
the result layer.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import QObject, Qt, Signal, Slot
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import engines
from ..batch.plan import frame_layout
from ..camera import Camera
from ..device import describe_device, select_device
from ..engines.base import EngineInputError
from ..psf.model import PSF
from ._geometry import output_translate
from .params_form import ParamsForm
from .worker import EngineRunner, RunRequest, error_message

if TYPE_CHECKING:  # pragma: no cover
    import napari

#: Item data of the PSF combo entry that reads the PSF from the file field.
PSF_FROM_FILE = "__file__"
#: Progress bar resolution (Qt progress bars are integer).
_PROGRESS_STEPS = 1000
#: The engine selected when the widget opens.
DEFAULT_ENGINE = "rl"
#: Item data of the two entries of the frames combo.
FRAMES_CURRENT = "current"
FRAMES_ALL = "all"


def layer_psf(layer: Any) -> PSF | None:
    """The PSF object a layer carries in ``metadata["psf"]``, if any."""
    psf = getattr(layer, "metadata", {}).get("psf")
    return psf if isinstance(psf, PSF) else None


class ReconstructWidget(QWidget):
    """Dock widget that runs any registered engine on an image layer and streams the result into the viewer."""

    def __init__(self, napari_viewer: napari.Viewer, *, sync: bool | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.sync = sync
        self.runner: EngineRunner | BatchRunner | None = None

        # Inputs -------------------------------------------------------------
        self.input_combo = QComboBox()
        self.input_combo.setToolTip("the measurement: a widefield stack, a raw light field or an XLFM frame")
        self.engine_combo = QComboBox()
        for name in engines.available(kind="reconstruct"):
            engine = engines.get(name)
            self.engine_combo.addItem(f"{name} — {engine.title}" if engine.title else name, name)
        self.engine_combo.setToolTip("the reconstruction engine")
        # Richardson–Lucy is the default: it needs no weights and works for every modality.
        self.engine_combo.setCurrentIndex(max(self.engine_combo.findData(DEFAULT_ENGINE), 0))
        self.psf_combo = QComboBox()
        self.psf_combo.setToolTip("a layer carrying a PSF object (samples and PSF files do), or a file")
        self.psf_path = QLineEdit()
        self.psf_path.setPlaceholderText("PSF file (.psf.safetensors) or widefield TIFF")
        self.psf_browse = QPushButton("…")
        self.psf_browse.setToolTip("choose a PSF file")
        self.psf_browse.setFixedWidth(28)
        psf_file_row = QHBoxLayout()
        psf_file_row.setContentsMargins(0, 0, 0, 0)
        psf_file_row.addWidget(self.psf_path)
        psf_file_row.addWidget(self.psf_browse)
        self.psf_info = QLabel()
        self.psf_info.setWordWrap(True)
        self.psf_info.setStyleSheet("color: gray")

        # Time series: which frames, and where all frames go.
        self.frames_combo = QComboBox()
        self.frames_combo.addItem("current frame", FRAMES_CURRENT)
        self.frames_combo.addItem("all frames → .zarr", FRAMES_ALL)
        self.frames_combo.setToolTip(
            "a time series: reconstruct the frame under the time slider, or every frame into a zarr store"
        )
        self.output_path = QLineEdit()
        self.output_path.setPlaceholderText("output .zarr (all frames)")
        self.output_path.setToolTip("the OME-Zarr store all frames are written to; the same path resumes a run")
        self.output_browse = QPushButton("…")
        self.output_browse.setToolTip("choose the output .zarr store")
        self.output_browse.setFixedWidth(28)
        self.overwrite_check = QCheckBox("overwrite")
        self.overwrite_check.setToolTip("replace an existing store made with other settings (else it is refused)")
        output_row = QHBoxLayout()
        output_row.setContentsMargins(0, 0, 0, 0)
        output_row.addWidget(self.output_path)
        output_row.addWidget(self.output_browse)
        output_row.addWidget(self.overwrite_check)
        self.frames_info = QLabel()
        self.frames_info.setStyleSheet("color: gray")

        inputs_box = QGroupBox("Input")
        inputs_form = QFormLayout(inputs_box)
        inputs_form.addRow("data", self.input_combo)
        inputs_form.addRow("engine", self.engine_combo)
        inputs_form.addRow("PSF", self.psf_combo)
        inputs_form.addRow("PSF file", psf_file_row)
        inputs_form.addRow(self.psf_info)
        inputs_form.addRow("frames", self.frames_combo)
        inputs_form.addRow("output", output_row)
        inputs_form.addRow(self.frames_info)

        # Camera -------------------------------------------------------------
        self.offset_spin = _spin(0.0, 0.0, 1e6, "camera offset in ADU (subtracted first)")
        self.gain_spin = _spin(1.0, 1e-6, 1e6, "camera gain in photo-electrons per ADU")
        self.read_noise_spin = _spin(0.0, 0.0, 1e4, "read noise in electrons RMS (used by likelihood-based engines)")
        camera_box = QGroupBox("Camera (defaults: data already in electrons)")
        camera_form = QFormLayout(camera_box)
        camera_form.addRow("offset (ADU)", self.offset_spin)
        camera_form.addRow("gain (e⁻/ADU)", self.gain_spin)
        camera_form.addRow("read noise (e⁻)", self.read_noise_spin)

        # Engine parameters --------------------------------------------------
        self.params_form = ParamsForm()
        params_box = QGroupBox("Parameters")
        params_layout = QVBoxLayout(params_box)
        params_layout.addWidget(self.params_form)

        # Run ----------------------------------------------------------------
        self.device_label = QLabel(_device_text())
        self.device_label.setToolTip("set LFRECON_DEVICE (cpu, cuda:1, mps) to choose another device")
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, _PROGRESS_STEPS)
        self.progress.setValue(0)
        self.status_label = QLabel("ready")
        self.status_label.setWordWrap(True)
        self.metric_label = QLabel()

        layout = QVBoxLayout(self)
        layout.addWidget(inputs_box)
        layout.addWidget(camera_box)
        layout.addWidget(params_box)
        layout.addWidget(self.device_label)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addWidget(self.metric_label)
        layout.addStretch(1)

        # Wiring -------------------------------------------------------------
        self.engine_combo.currentIndexChanged.connect(self._on_engine_changed)
        self.input_combo.currentIndexChanged.connect(self._on_input_changed)
        self.psf_combo.currentIndexChanged.connect(self._on_psf_changed)
        self.psf_path.textChanged.connect(self._on_psf_changed)
        self.psf_browse.clicked.connect(self._browse_psf)
        self.frames_combo.currentIndexChanged.connect(self._update_frames_ui)
        self.output_browse.clicked.connect(self._browse_output)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layers)
        self.viewer.layers.events.moved.connect(self._refresh_layers)
        self._on_engine_changed()
        self._refresh_layers()

    # -------------------------------------------------------------- choices
    @property
    def engine_name(self) -> str:
        """The selected engine's registry name."""
        return str(self.engine_combo.currentData())

    def input_layer(self) -> Image | None:
        """The selected input layer (``None`` when there is none)."""
        name = self.input_combo.currentData()
        if name is None or name not in self.viewer.layers:
            return None
        layer = self.viewer.layers[name]
        return layer if isinstance(layer, Image) else None

    def select_input(self, name: str) -> None:
        """Select input layer ``name`` (``ValueError`` if it is not an image layer in the viewer)."""
        index = self.input_combo.findData(name)
        if index < 0:
            raise ValueError(f"no image layer named {name!r}; image layers: {self._image_names()}")
        self.input_combo.setCurrentIndex(index)

    def select_engine(self, name: str) -> None:
        """Select engine ``name`` (``ValueError`` listing the registered engines otherwise)."""
        index = self.engine_combo.findData(name)
        if index < 0:
            raise ValueError(f"unknown engine {name!r}; available: {engines.available()}")
        self.engine_combo.setCurrentIndex(index)

    def _image_names(self) -> list[str]:
        # Our own previews are outputs, not inputs.
        return [
            layer.name for layer in self.viewer.layers if isinstance(layer, Image) and not layer.metadata.get("preview")
        ]

    def _refresh_layers(self, *_: Any) -> None:
        current_input = self.input_combo.currentData()
        current_psf = self.psf_combo.currentData()
        images = self._image_names()
        self.input_combo.blockSignals(True)
        self.input_combo.clear()
        for name in images:
            self.input_combo.addItem(name, name)
        if current_input in images:
            self.input_combo.setCurrentIndex(images.index(current_input))
        elif images:
            # A newly opened measurement (not a result or ground truth) is the likely next input.
            measurements = [n for n in images if layer_psf(self.viewer.layers[n]) is not None]
            self.input_combo.setCurrentIndex(images.index(measurements[-1] if measurements else images[-1]))
        self.input_combo.blockSignals(False)

        self.psf_combo.blockSignals(True)
        self.psf_combo.clear()
        for layer in self.viewer.layers:
            psf = layer_psf(layer)
            if psf is not None:
                self.psf_combo.addItem(f"{layer.name} ({psf.modality})", layer.name)
        self.psf_combo.addItem("from file…", PSF_FROM_FILE)
        index = self.psf_combo.findData(current_psf)
        self.psf_combo.setCurrentIndex(max(index, 0))
        self.psf_combo.blockSignals(False)
        if current_input != self.input_combo.currentData():
            self._on_input_changed()
        else:
            self._on_psf_changed()

    def _on_input_changed(self, *_: Any) -> None:
        # Each measurement opens with its own PSF: select it automatically.
        layer = self.input_layer()
        if layer is not None and layer_psf(layer) is not None:
            index = self.psf_combo.findData(layer.name)
            if index >= 0:
                self.psf_combo.setCurrentIndex(index)
        elif layer is not None:
            self._apply_layer_hints(layer)
        self._on_psf_changed()

    def _apply_layer_hints(self, layer: Any) -> None:
        """A layer that says which engine and weights it is for (a sample, a Train run) preselects them."""
        hint = layer.metadata.get("engine_hint")
        if not isinstance(hint, dict) or hint.get("engine") not in engines.available(kind="reconstruct"):
            return
        self.select_engine(str(hint["engine"]))
        values = {k: v for k, v in hint.get("params", {}).items() if k in self.params_form.values()}
        if values:
            self.params_form.set_values(values)

    def _on_psf_changed(self, *_: Any) -> None:
        needs_psf = engines.get(self.engine_name).needs_psf
        self.psf_combo.setEnabled(needs_psf)
        from_file = self.psf_combo.currentData() == PSF_FROM_FILE
        self.psf_path.setEnabled(from_file and needs_psf)
        self.psf_browse.setEnabled(from_file and needs_psf)
        if not needs_psf:
            self.psf_info.setText("this engine needs no PSF (it learns from the data itself)")
        elif not from_file:
            layer_name = self.psf_combo.currentData()
            psf = layer_psf(self.viewer.layers[layer_name]) if layer_name in self.viewer.layers else None
            self.psf_info.setText(psf.describe() if psf is not None else "")
        else:
            self.psf_info.setText(self.psf_path.text() and Path(self.psf_path.text()).name)
        self._update_frames_ui()

    def _on_engine_changed(self, *_: Any) -> None:
        engine = engines.get(self.engine_name)
        self.params_form.set_params_class(engine.Params)
        self.params_form.setToolTip(engine.__doc__ or "")
        self._on_psf_changed()

    # ------------------------------------------------------------ time series
    @property
    def frames_mode(self) -> str:
        """``"current"`` or ``"all"``: what a run on a time series reconstructs."""
        return str(self.frames_combo.currentData())

    def series_layout(self, psf: PSF | None = None) -> tuple[bool, int]:
        """``(has_time_axis, frame_ndim)`` of the input layer for ``psf`` (else the PSF the widget shows).

        A time axis is one leading axis more than the modality needs (widefield
        frames are 3D, light-field and XLFM frames 2D; LFM views ``(A, Y, X)``
        are told from a series by the PSF's view count). Without a PSF at hand
        (a file not read yet) the engine's modalities decide, else a 4D input
        counts as a series.
        """
        layer = self.input_layer()
        if layer is None:
            return False, 0
        shape = tuple(int(n) for n in _layer_array(layer).shape)
        if psf is None and engines.get(self.engine_name).needs_psf:
            choice = self.psf_combo.currentData()
            if choice != PSF_FROM_FILE and choice in self.viewer.layers:
                psf = layer_psf(self.viewer.layers[choice])
        if psf is not None:
            try:
                # Axes without "T": the shape (and the LFM view count) decide, as for a file.
                return frame_layout(psf, shape, "TZYX"[-len(shape) :] if len(shape) == 4 else "ZYX"[-len(shape) :])
            except ValueError:
                return False, len(shape)  # not a valid input at all: the run reports why
        modalities = engines.get(self.engine_name).modalities
        frame_ndim = 2 if modalities and set(modalities) <= {"xlfm"} else 3
        return len(shape) == frame_ndim + 1, frame_ndim

    def current_frame(self) -> int:
        """The input layer's frame index under the viewer's time slider (its first axis)."""
        layer = self.input_layer()
        if layer is None:
            raise ValueError("no input: open an image (or a sample) and choose it as 'data'")
        n_frames = int(_layer_array(layer).shape[0])
        # The layer's axes are the viewer's last ones; the slider position is in world units.
        axis = self.viewer.dims.ndim - layer.ndim
        world = float(self.viewer.dims.point[axis])
        index = round((world - float(layer.translate[0])) / float(layer.scale[0]))
        return int(min(max(index, 0), n_frames - 1))

    def _update_frames_ui(self, *_: Any) -> None:
        has_time, _frame_ndim = self.series_layout()
        layer = self.input_layer()
        self.frames_combo.setEnabled(has_time)
        all_frames = has_time and self.frames_mode == FRAMES_ALL
        for widget in (self.output_path, self.output_browse, self.overwrite_check):
            widget.setEnabled(all_frames)
        if has_time and layer is not None:
            self.frames_info.setText(f"time series of {_layer_array(layer).shape[0]} frames")
        else:
            self.frames_info.setText("")

    def _browse_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Write all frames to", "", "Zarr store (*.zarr)")
        if path:
            self.output_path.setText(path if path.endswith(".zarr") else f"{path}.zarr")

    def _browse_psf(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a PSF", "", "PSF files (*.psf.safetensors *.safetensors *.tif *.tiff);;All files (*)"
        )
        if path:
            self.psf_path.setText(path)

    # ------------------------------------------------------------------ run
    def selected_psf(self) -> PSF | None:
        """The PSF chosen in the widget (``None`` for engines that need none); ``ValueError`` if it is missing."""
        if not engines.get(self.engine_name).needs_psf:
            return None
        choice = self.psf_combo.currentData()
        if choice == PSF_FROM_FILE:
            text = self.psf_path.text().strip()
            if not text:
                raise ValueError("no PSF: choose a layer that carries one, or a PSF file")
            from ..api import as_psf

            layer = self.input_layer()
            # A widefield stack, or each frame of a (T, Z, Y, X) series, is at the layer's spatial scale.
            voxel = tuple(float(s) for s in layer.scale[-3:]) if layer is not None and layer.ndim in (3, 4) else None
            psf = as_psf(Path(text), voxel)  # type: ignore[arg-type]
            assert psf is not None
            return psf
        if choice is None or choice not in self.viewer.layers:
            raise ValueError("no PSF: open a sample or a PSF file, or choose 'from file…'")
        psf = layer_psf(self.viewer.layers[choice])
        if psf is None:
            raise ValueError(f"layer {choice!r} carries no PSF object in its metadata")
        return psf

    def camera(self) -> Camera | None:
        """The camera model from the camera fields, or ``None`` when the data is already in electrons."""
        offset, gain, noise = self.offset_spin.value(), self.gain_spin.value(), self.read_noise_spin.value()
        if offset == 0 and gain == 1 and noise == 0:
            return None
        return Camera(offset=offset, gain=gain, read_noise=noise)

    def build_request(self) -> RunRequest:
        """A :class:`RunRequest` from the current widget state; ``ValueError`` with the reason when incomplete."""
        layer = self.input_layer()
        if layer is None:
            raise ValueError("no input: open an image (or a sample) and choose it as 'data'")
        data = _layer_array(layer)
        if getattr(layer, "rgb", False):
            raise ValueError(f"layer {layer.name!r} is RGB; reconstruction needs a single-channel measurement")
        psf = self.selected_psf()
        name = layer.name
        scale = tuple(float(s) for s in layer.scale)
        translate = tuple(float(t) for t in layer.translate)
        has_time, _frame_ndim = self.series_layout(psf)
        if has_time:
            # One frame of a series; a lazy layer computes only this frame.
            t = self.current_frame()
            data, name, scale, translate = data[t], f"{layer.name} t={t}", scale[1:], translate[1:]
        return RunRequest(
            engine=self.engine_name,
            data=np.asarray(data),
            psf=psf,
            params=self.params_form.values(),
            input_name=name,
            input_scale=scale,
            input_translate=translate,
            camera=self.camera(),
        )

    def build_batch(self) -> BatchRunner:
        """A :class:`BatchRunner` over all frames of the input series; ``ValueError`` with the reason otherwise."""
        layer = self.input_layer()
        if layer is None:
            raise ValueError("no input: open an image (or a sample) and choose it as 'data'")
        if getattr(layer, "rgb", False):
            raise ValueError(f"layer {layer.name!r} is RGB; reconstruction needs a single-channel measurement")
        psf = self.selected_psf()
        if psf is None:
            raise ValueError(
                f"all frames: the batch runner plans chunks from a PSF, and {self.engine_name!r} uses none; "
                "reconstruct the current frame instead"
            )
        has_time, frame_ndim = self.series_layout(psf)
        if not has_time:
            raise ValueError(f"layer {layer.name!r} is not a time series: choose 'current frame'")
        text = self.output_path.text().strip()
        if not text:
            raise ValueError("all frames: choose an output .zarr path")
        if not text.rstrip("/").endswith(".zarr"):
            raise ValueError(f"all frames: the output must be a .zarr store, got {text!r}")
        return BatchRunner(
            self.viewer,
            engine=self.engine_name,
            data=_layer_array(layer),
            frame_ndim=frame_ndim,
            psf=psf,
            params=self.params_form.values(),
            output=text,
            input_name=layer.name,
            input_scale=tuple(float(s) for s in layer.scale),
            input_translate=tuple(float(t) for t in layer.translate),
            camera=self.camera(),
            overwrite=self.overwrite_check.isChecked(),
            sync=self.sync,
        )

    def _make_runner(self) -> EngineRunner | BatchRunner:
        if self.frames_mode == FRAMES_ALL and self.series_layout()[0]:
            return self.build_batch()
        return EngineRunner(self.viewer, self.build_request(), sync=self.sync)

    def run(self) -> EngineRunner | BatchRunner | None:
        """Start a run from the current settings (the Run button); bad input shows an error instead."""
        if self.runner is not None and self.runner.running:
            return self.runner
        try:
            runner = self._make_runner()
        except Exception as exc:  # bad input is a message to the user, never a traceback
            show_error(f"Cannot run: {error_message(exc)}")
            self.status_label.setText(f"cannot run: {error_message(exc)}")
            return None
        self.runner = runner
        runner.progressed.connect(self._on_progress)
        runner.metric.connect(self._on_metric)
        runner.finished.connect(self._on_finished)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.metric_label.setText("")
        if isinstance(runner, BatchRunner):
            self.status_label.setText(f"starting {runner.engine.name} on all frames of {runner.input_name}…")
        else:
            self.status_label.setText(f"starting {runner.engine.name} on {runner.request.input_name}…")
        runner.start()
        return runner

    def cancel(self) -> None:
        """Stop the running engine (the Cancel button); it stops within one step."""
        if self.runner is not None and self.runner.running:
            self.runner.cancel()
            self.cancel_button.setEnabled(False)
            self.status_label.setText("cancelling…")

    @property
    def running(self) -> bool:
        """True while an engine runs."""
        return self.runner is not None and self.runner.running

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(round(fraction * _PROGRESS_STEPS))
        self.status_label.setText(message)

    def _on_metric(self, name: str, value: float) -> None:
        self.metric_label.setText(f"{name}: {value:.4g}")

    def _on_finished(self, status: str, message: str) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        runner = self.runner
        if status == "done":
            self.progress.setValue(_PROGRESS_STEPS)
            self.status_label.setText(f"{message} on {describe_device(runner.device) if runner else '?'}")
        elif status == "cancelled":
            kept = runner.cancelled_layer if runner else None
            self.status_label.setText(f"{message}; last preview kept as '{kept.name}'" if kept else message)
        else:
            self.status_label.setText(f"failed: {message}")


class BatchCancelled(Exception):
    """Raised from the batch progress callback to stop a run between chunks (finished chunks stay valid)."""


class BatchRunner(QObject):
    """All frames of a time series through :func:`napari_lfrecon.batch.run_batch`, mirrored into a viewer.

    The same interface as :class:`~napari_lfrecon.gui.worker.EngineRunner` as
    far as the widget uses it (``progressed``, ``metric``, ``finished``,
    ``start``, ``cancel``, ``running``, ``status``, ``message``,
    ``result_layer``). The series is read frame by frame by the batch runner
    (never whole), written to ``output`` and opened lazily with
    :func:`napari_lfrecon.io.zarr_io.read_zarr` as ``"<input> [<engine>]"``.
    Cancel stops after the chunk in flight; running again with the same output
    resumes.
    """

    #: ``(fraction in [0, 1], message)`` per finished chunk (on the main thread).
    progressed = Signal(float, str)
    #: Never emitted (batch runs show no metrics); there for the widget's wiring.
    metric = Signal(str, float)
    #: Emitted once when the run is over, with :attr:`status` and a one-line message.
    finished = Signal(str, str)
    # Emitted from the worker thread; delivered on the main thread (queued connection).
    _relay = Signal(float, str)

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
        super().__init__()
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
        self.worker: Any = None
        self.summary: Any = None
        self.result_layer: Any = None
        self.cancelled_layer: Any = None
        self.status = "idle"
        self.message = ""
        self.seconds = 0.0
        self._started = 0.0
        self._last_progress = ""
        self._relay.connect(self._on_relay)

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
        if self.sync:
            self._on_returned(self._work())
            self._on_worker_finished()
            return None
        worker = thread_worker(self._work, start_thread=False)()
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_worker_finished)
        self.worker = worker
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop after the chunk in flight; :attr:`finished` then fires with ``"cancelled"``."""
        self.stop_flag.set()

    # ----------------------------------------------------------- worker side
    def _work(self) -> tuple[Any, BaseException | None]:
        """``(summary, None)`` or ``(None, exception)``: errors are returned, never raised in the thread."""
        from ..batch import array_source, run_batch

        axes = "T" + {3: "AYX" if self.psf.modality == "lfm" else "ZYX", 2: "YX"}[self.frame_ndim]
        try:
            summary = run_batch(
                array_source(self.data, axes),
                self.output,
                self.psf,
                engine=self.engine.name,
                params=self.params,
                voxel_size=self.voxel_size,  # type: ignore[arg-type]
                camera=self.camera,
                overwrite=self.overwrite,
                progress=self._progress,
                metadata={"input_layer": self.input_name},
            )
        except Exception as exc:  # every failure becomes a message, never a traceback in the UI
            return None, exc
        return summary, None

    def _progress(self, fraction: float, message: str) -> None:
        # Called between chunks (in the worker thread): raising here stops the run with every written chunk valid.
        if self.stop_flag.is_set():
            raise BatchCancelled(self._last_progress)
        self._relay.emit(float(fraction), str(message))

    # ------------------------------------------------------ main-thread side
    @Slot(float, str)
    def _on_relay(self, fraction: float, message: str) -> None:
        self._last_progress = message
        self.progressed.emit(fraction, message)

    def _on_returned(self, outcome: tuple[Any, BaseException | None]) -> None:
        summary, exc = outcome
        self.seconds = time.perf_counter() - self._started
        if isinstance(exc, BatchCancelled):
            done = f"after {exc.args[0]}" if exc.args and exc.args[0] else "before the first chunk"
            self._end("cancelled", f"cancelled {done}; run again with the same output to resume")
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
        frame_shape = tuple(int(n) for n in volume.shape[1:])
        z_planes = self.psf.z_planes_um if self.psf.z_planes_um.size else None
        spatial = output_translate(
            tuple(int(n) for n in self.data.shape[1:]),
            self.input_scale[1:],
            self.input_translate[1:],
            frame_shape,
            voxel,
            z_planes,
        )
        return self.viewer.add_image(
            volume,
            name=f"{self.input_name} [{self.engine.name}]",
            # The time axis keeps the input's own, so the result's frames line up with the input's.
            scale=(self.input_scale[0], *voxel),
            translate=(self.input_translate[0], *spatial),
            metadata={
                "engine": self.engine.name,
                "params": {
                    k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
                    for k, v in self.params.items()
                },
                "seconds": round(self.seconds, 3),
                "input_layer": self.input_name,
                "input_shape": list(self.data.shape),
                "voxel_size": list(voxel),
                "output_shape": list(volume.shape),
                "output": str(summary.output),
                "batch": summary.as_dict(),
                "psf": self.psf.describe(),
            },
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


def _layer_array(layer: Any) -> Any:
    """The layer's full-resolution array as stored (numpy, dask, zarr…): never converted here."""
    return layer.data[0] if layer.multiscale else layer.data


def _spin(value: float, low: float, high: float, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setDecimals(3)
    spin.setRange(low, high)
    spin.setValue(value)
    spin.setToolTip(tip)
    spin.setAlignment(Qt.AlignmentFlag.AlignRight)
    return spin


def _device_text() -> str:
    try:
        return f"device: {describe_device(select_device())}"
    except RuntimeError as exc:  # e.g. LFRECON_DEVICE=cuda on a machine without CUDA
        return f"device: unavailable ({exc})"
