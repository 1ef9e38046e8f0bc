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
store (through the worker layer's ``start_job``: chunk progress on the bar,
Cancel stops after the chunk in flight and a re-run with the same path
resumes) and opens the store lazily as the result layer.

The decisions that need no Qt (defaults, time series, names, the camera, the
batch run itself) are in :mod:`napari_lfrecon.controllers.reconstruct`; the
layer and PSF pickers and the device label come from :mod:`.kit`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_error
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import engines
from ..camera import Camera
from ..controllers import reconstruct as control
from ..controllers.layers import input_candidates, is_ground_truth
from ..controllers.reconstruct import DEFAULT_ENGINE, FRAMES_ALL, FRAMES_CURRENT
from ..device import describe_device
from ..psf.model import PSF
from .batch_runner import JOB_KEY, BatchRunner
from .kit import PROGRESS_STEPS as _PROGRESS_STEPS
from .kit import (
    PSF_FROM_FILE,
    DeviceLabel,
    EngineRunControls,
    LayerPicker,
    PsfPicker,
    follow_layers,
    layer_array,
    layer_psf,
    spin,
)
from .panels import scrolled_layout
from .params_form import ParamsForm
from .worker import (
    EngineRunner,
    RunRequest,
    connect_alive,
    error_message,
    on_widget_closed,
    running_job,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = [
    "DEFAULT_ENGINE",
    "FRAMES_ALL",
    "FRAMES_CURRENT",
    "JOB_KEY",
    "PSF_FROM_FILE",
    "BatchRunner",
    "ReconstructWidget",
]


class ReconstructWidget(QWidget, EngineRunControls):
    """Dock widget that runs any registered engine on an image layer and streams the result into the viewer."""

    def __init__(self, napari_viewer: napari.Viewer, *, sync: bool | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.sync = sync
        self.runner: EngineRunner | BatchRunner | None = None

        # Inputs -------------------------------------------------------------
        self.input_picker = LayerPicker(
            self.viewer, tip="the measurement: a widefield stack, a raw light field or an XLFM frame"
        )
        self.input_combo = self.input_picker.combo
        self.engine_combo = QComboBox()
        for name, label in control.engine_choices():
            self.engine_combo.addItem(label, name)
        self.engine_combo.setToolTip("the reconstruction engine")
        self.engine_combo.setCurrentIndex(max(self.engine_combo.findData(DEFAULT_ENGINE), 0))
        self.psf_picker = PsfPicker(self.viewer)
        self.psf_combo, self.psf_path, self.psf_info = self.psf_picker.combo, self.psf_picker.path, self.psf_picker.info

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
        for widget in (self.output_path, self.output_browse, self.overwrite_check):
            output_row.addWidget(widget)
        self.frames_info = QLabel()
        self.frames_info.setStyleSheet("color: gray")

        inputs_box = QGroupBox("Input")
        inputs_form = QFormLayout(inputs_box)
        inputs_form.addRow("data", self.input_picker)
        inputs_form.addRow("engine", self.engine_combo)
        inputs_form.addRow("PSF", self.psf_combo)
        inputs_form.addRow("PSF file", self.psf_picker.file_row)
        inputs_form.addRow(self.psf_picker.info)
        inputs_form.addRow("frames", self.frames_combo)
        inputs_form.addRow("output", output_row)
        inputs_form.addRow(self.frames_info)

        # Camera -------------------------------------------------------------
        self.offset_spin = spin(0.0, 0.0, 1e6, "camera offset in ADU (subtracted first)")
        self.gain_spin = spin(1.0, 1e-6, 1e6, "camera gain in photo-electrons per ADU")
        self.read_noise_spin = spin(0.0, 0.0, 1e4, "read noise in electrons RMS (used by likelihood-based engines)")
        camera_box = QGroupBox("Camera (defaults: data already in electrons)")
        camera_form = QFormLayout(camera_box)
        camera_form.addRow("offset (ADU)", self.offset_spin)
        camera_form.addRow("gain (e⁻/ADU)", self.gain_spin)
        camera_form.addRow("read noise (e⁻)", self.read_noise_spin)

        # Engine parameters --------------------------------------------------
        self.params_form = ParamsForm()
        params_box = QGroupBox("Parameters")
        QVBoxLayout(params_box).addWidget(self.params_form)

        # Run ----------------------------------------------------------------
        self.device_label = DeviceLabel()
        buttons = self.make_run_controls("Run")
        self.metric_label = QLabel()

        # The forms scroll (the dock fits a laptop screen); Run/Cancel and progress always stay in view.
        body, footer = scrolled_layout(self)
        for box in (inputs_box, camera_box, params_box, self.device_label):
            body.addWidget(box)
        body.addStretch(1)
        footer.addLayout(buttons)
        for label in (self.progress, self.status_label, self.metric_label):
            footer.addWidget(label)

        # Wiring -------------------------------------------------------------
        self.engine_combo.currentIndexChanged.connect(self._on_engine_changed)
        self.input_combo.currentIndexChanged.connect(self._on_input_changed)
        self.psf_combo.currentIndexChanged.connect(self._on_psf_changed)
        self.psf_path.textChanged.connect(self._on_psf_changed)
        self.frames_combo.currentIndexChanged.connect(self._update_frames_ui)
        self.output_browse.clicked.connect(self._browse_output)
        self.run_button.clicked.connect(self.run)
        follow_layers(self.viewer, self._refresh_layers, moved=True)
        self._on_engine_changed()
        self._refresh_layers()
        # A run outlives neither its panel nor its viewer; a panel opened again shows the run still going.
        on_widget_closed(self, self._on_closed)
        running = running_job(self.viewer, JOB_KEY)
        if running is not None:
            self._follow(running)

    # -------------------------------------------------------------- choices
    @property
    def engine_name(self) -> str:
        """The selected engine's registry name."""
        return str(self.engine_combo.currentData())

    def input_layer(self) -> Image | None:
        """The selected input layer (``None`` when there is none)."""
        layer = self.input_picker.layer()
        return layer if isinstance(layer, Image) else None

    def select_input(self, name: str) -> None:
        """Select input layer ``name`` (``ValueError`` if it is not an image layer in the viewer)."""
        if self.input_combo.findData(name) < 0:
            images = [self.input_combo.itemData(i) for i in range(self.input_combo.count())]
            raise ValueError(f"no image layer named {name!r}; image layers: {images}")
        self.input_picker.select(name)

    def select_engine(self, name: str) -> None:
        """Select engine ``name`` (``ValueError`` listing the registered engines otherwise)."""
        index = self.engine_combo.findData(name)
        if index < 0:
            raise ValueError(f"unknown engine {name!r}; available: {engines.available()}")
        self.engine_combo.setCurrentIndex(index)

    def _refresh_layers(self, *_: Any) -> None:
        current_input = self.input_combo.currentData()
        self.input_picker.refresh()
        images = [self.input_combo.itemData(i) for i in range(self.input_combo.count())]
        truths = [n for n in images if is_ground_truth(self.viewer.layers[n].metadata)]
        candidates = input_candidates(images, truths)
        # a measurement carries its PSF or says which engine it is for (a sample, a Train run)
        measurements = [
            n
            for n in candidates
            if layer_psf(self.viewer.layers[n]) is not None or "engine_hint" in self.viewer.layers[n].metadata
        ]
        choice = control.default_input(candidates, current_input, measurements)
        self.input_combo.blockSignals(True)
        # no default at all rather than a ground truth (the user may still pick one)
        self.input_combo.setCurrentIndex(self.input_combo.findData(choice) if choice is not None else -1)
        self.input_combo.blockSignals(False)
        self.psf_picker.refresh()
        if current_input != self.input_combo.currentData():
            self._on_input_changed()
        else:
            self._on_psf_changed()

    def _on_input_changed(self, *_: Any) -> None:
        # Each measurement opens with its own PSF: select it automatically.
        layer = self.input_layer()
        if layer is not None and layer_psf(layer) is not None:
            self.psf_picker.select_layer(layer.name)
        elif layer is not None:
            self._apply_layer_hints(layer)
        self._on_psf_changed()

    def _apply_layer_hints(self, layer: Any) -> None:
        """A layer that says which engine and weights it is for (a sample, a Train run) preselects them."""
        hint = control.hinted_params(layer.metadata.get("engine_hint"))
        if hint is not None:
            self.select_engine(hint[0])
            values = {k: v for k, v in hint[1].items() if k in self.params_form.values()}
            if values:
                self.params_form.set_values(values)

    def _on_psf_changed(self, *_: Any) -> None:
        self.psf_picker.set_enabled(engines.get(self.engine_name).needs_psf)
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

        See :func:`napari_lfrecon.controllers.reconstruct.series_layout`; without
        a PSF at hand (a file not read yet) the engine's modalities decide.
        """
        layer = self.input_layer()
        if layer is None:
            return False, 0
        if psf is None and engines.get(self.engine_name).needs_psf and not self.psf_picker.from_file:
            psf = self.psf_picker.layer_choice()
        return control.series_layout(layer_array(layer).shape, psf, self.engine_name)

    def current_frame(self) -> int:
        """The input layer's frame index under the viewer's time slider (its first axis)."""
        layer = self.input_layer()
        if layer is None:
            raise ValueError("no input: open an image (or a sample) and choose it as 'data'")
        # The layer's axes are the viewer's last ones; the slider position is in world units.
        world = float(self.viewer.dims.point[self.viewer.dims.ndim - layer.ndim])
        n_frames = int(layer_array(layer).shape[0])
        return control.frame_index(world, float(layer.translate[0]), float(layer.scale[0]), n_frames)

    def _update_frames_ui(self, *_: Any) -> None:
        has_time, _frame_ndim = self.series_layout()
        layer = self.input_layer()
        self.frames_combo.setEnabled(has_time)
        all_frames = has_time and self.frames_mode == FRAMES_ALL
        for widget in (self.output_path, self.output_browse, self.overwrite_check):
            widget.setEnabled(all_frames)
        frames = layer_array(layer).shape[0] if has_time and layer is not None else None
        self.frames_info.setText(f"time series of {frames} frames" if frames is not None else "")

    def _browse_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Write all frames to", "", "Zarr store (*.zarr)")
        if path:
            self.output_path.setText(control.zarr_path(path))

    # ------------------------------------------------------------------ run
    def selected_psf(self) -> PSF | None:
        """The PSF chosen in the widget (``None`` for engines that need none); ``ValueError`` if it is missing."""
        if not engines.get(self.engine_name).needs_psf:
            return None
        layer = self.input_layer()
        # A widefield stack, or each frame of a (T, Z, Y, X) series, is at the layer's spatial scale.
        voxel = tuple(float(s) for s in layer.scale[-3:]) if layer is not None and layer.ndim in (3, 4) else None
        return self.psf_picker.psf(voxel)  # type: ignore[arg-type]

    def camera(self) -> Camera | None:
        """The camera model from the camera fields, or ``None`` when the data is already in electrons."""
        return control.camera_from(self.offset_spin.value(), self.gain_spin.value(), self.read_noise_spin.value())

    def _checked_input(self) -> Image:
        layer = self.input_layer()
        if layer is None:
            raise ValueError("no input: open an image (or a sample) and choose it as 'data'")
        if getattr(layer, "rgb", False):
            raise ValueError(f"layer {layer.name!r} is RGB; reconstruction needs a single-channel measurement")
        return layer

    def build_request(self) -> RunRequest:
        """A :class:`RunRequest` from the current widget state; ``ValueError`` with the reason when incomplete."""
        layer = self._checked_input()
        data = layer_array(layer)
        psf = self.selected_psf()
        name = layer.name
        scale = tuple(float(s) for s in layer.scale)
        translate = tuple(float(t) for t in layer.translate)
        if self.series_layout(psf)[0]:
            # One frame of a series; a lazy layer computes only this frame.
            t = self.current_frame()
            data, name, scale, translate = data[t], control.frame_name(layer.name, t), scale[1:], translate[1:]
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
        layer = self._checked_input()
        psf = self.selected_psf()
        if psf is None:
            raise ValueError(
                f"all frames: the batch runner plans chunks from a PSF, and {self.engine_name!r} uses none; "
                "reconstruct the current frame instead"
            )
        has_time, frame_ndim = self.series_layout(psf)
        if not has_time:
            raise ValueError(f"layer {layer.name!r} is not a time series: choose 'current frame'")
        return BatchRunner(
            self.viewer,
            engine=self.engine_name,
            data=layer_array(layer),
            frame_ndim=frame_ndim,
            psf=psf,
            params=self.params_form.values(),
            output=control.batch_output(self.output_path.text()),
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
        """Start a run from the current settings (the Run button); bad input shows an error instead.

        While a run of this viewer's Reconstruct panel is going (this panel's, or
        one started by a panel since closed) no second one starts: that run is
        returned and followed.
        """
        if self.runner is not None and self.runner.running:
            return self.runner
        running = running_job(self.viewer, JOB_KEY)
        if running is not None:
            self._follow(running)
            return running
        try:
            runner = self._make_runner()
        except Exception as exc:  # bad input is a message to the user, never a traceback
            show_error(f"Cannot run: {error_message(exc)}")
            self.status_label.setText(f"cannot run: {error_message(exc)}")
            return None
        runner.job_key = JOB_KEY
        self._follow(runner)
        self.progress.setValue(0)
        self.metric_label.setText("")
        what = f"all frames of {runner.input_name}" if isinstance(runner, BatchRunner) else runner.request.input_name
        self.status_label.setText(f"starting {runner.engine.name} on {what}…")
        runner.start()
        return runner

    def _follow(self, runner: EngineRunner | BatchRunner) -> None:
        """Show ``runner``'s progress and end here (and let Cancel stop it)."""
        self.runner = runner
        connect_alive(runner.progressed, self, self.show_run_progress)
        connect_alive(runner.metric, self, self._on_metric)
        connect_alive(runner.finished, self, self._on_finished)
        self.set_run_buttons(True)
        if runner.running:
            self.status_label.setText(f"running {runner.engine.name}…")

    def _on_closed(self) -> None:
        """The panel was closed: its run stops (the last preview is kept as for Cancel)."""
        if self.runner is not None and self.runner.running:
            self.runner.cancel()

    def _on_metric(self, name: str, value: float) -> None:
        self.metric_label.setText(f"{name}: {value:.4g}")

    def _on_finished(self, status: str, message: str) -> None:
        self.set_run_buttons(False)
        runner = self.runner
        if status == "done":
            self.progress.setValue(_PROGRESS_STEPS)
            self.status_label.setText(f"{message} on {describe_device(runner.device) if runner else '?'}")
        elif status == "cancelled":
            kept = runner.cancelled_layer if runner else None
            self.status_label.setText(f"{message}; last preview kept as '{kept.name}'" if kept else message)
        else:
            self.status_label.setText(f"failed: {message}")
