"""The Reconstruct dock widget: input layer, engine, PSF, camera, engine parameters, Run / Cancel.

The run itself is :class:`napari_lfrecon.gui.worker.EngineRunner`: this module
only builds a :class:`~napari_lfrecon.gui.worker.RunRequest` from the widgets
and shows progress. The PSF comes from a layer whose ``metadata["psf"]`` is a
:class:`~napari_lfrecon.psf.model.PSF` (sample data and the PSF reader put it
there; choosing such an input layer selects its own PSF) or from a file (a
``.psf.safetensors`` file or a widefield TIFF stack at the input's voxel size).
Cancel keeps the last preview as ``"<input> [<engine> cancelled]"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
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
from ..camera import Camera
from ..device import describe_device, select_device
from ..psf.model import PSF
from .params_form import ParamsForm
from .worker import EngineRunner, RunRequest, error_message

if TYPE_CHECKING:  # pragma: no cover
    import napari

#: Item data of the PSF combo entry that reads the PSF from the file field.
PSF_FROM_FILE = "__file__"
#: Progress bar resolution (Qt progress bars are integer).
_PROGRESS_STEPS = 1000


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
        self.runner: EngineRunner | None = None

        # Inputs -------------------------------------------------------------
        self.input_combo = QComboBox()
        self.input_combo.setToolTip("the measurement: a widefield stack, a raw light field or an XLFM frame")
        self.engine_combo = QComboBox()
        for name in engines.available(kind="reconstruct"):
            engine = engines.get(name)
            self.engine_combo.addItem(f"{name} — {engine.title}" if engine.title else name, name)
        self.engine_combo.setToolTip("the reconstruction engine")
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

        inputs_box = QGroupBox("Input")
        inputs_form = QFormLayout(inputs_box)
        inputs_form.addRow("data", self.input_combo)
        inputs_form.addRow("engine", self.engine_combo)
        inputs_form.addRow("PSF", self.psf_combo)
        inputs_form.addRow("PSF file", psf_file_row)
        inputs_form.addRow(self.psf_info)

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
        self._on_psf_changed()

    def _on_psf_changed(self, *_: Any) -> None:
        from_file = self.psf_combo.currentData() == PSF_FROM_FILE
        self.psf_path.setEnabled(from_file)
        self.psf_browse.setEnabled(from_file)
        if not from_file:
            layer_name = self.psf_combo.currentData()
            psf = layer_psf(self.viewer.layers[layer_name]) if layer_name in self.viewer.layers else None
            self.psf_info.setText(psf.describe() if psf is not None else "")
        else:
            self.psf_info.setText(self.psf_path.text() and Path(self.psf_path.text()).name)

    def _on_engine_changed(self, *_: Any) -> None:
        engine = engines.get(self.engine_name)
        self.params_form.set_params_class(engine.Params)
        self.params_form.setToolTip(engine.__doc__ or "")

    def _browse_psf(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a PSF", "", "PSF files (*.psf.safetensors *.safetensors *.tif *.tiff);;All files (*)"
        )
        if path:
            self.psf_path.setText(path)

    # ------------------------------------------------------------------ run
    def selected_psf(self) -> PSF:
        """The PSF chosen in the widget; ``ValueError`` naming what is missing otherwise."""
        choice = self.psf_combo.currentData()
        if choice == PSF_FROM_FILE:
            text = self.psf_path.text().strip()
            if not text:
                raise ValueError("no PSF: choose a layer that carries one, or a PSF file")
            from ..api import as_psf

            layer = self.input_layer()
            voxel = tuple(float(s) for s in layer.scale) if layer is not None and layer.ndim == 3 else None
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
        if layer.multiscale:
            data = layer.data[0]
        else:
            data = layer.data
        if getattr(layer, "rgb", False):
            raise ValueError(f"layer {layer.name!r} is RGB; reconstruction needs a single-channel measurement")
        return RunRequest(
            engine=self.engine_name,
            data=np.asarray(data),
            psf=self.selected_psf(),
            params=self.params_form.values(),
            input_name=layer.name,
            input_scale=tuple(float(s) for s in layer.scale),
            input_translate=tuple(float(t) for t in layer.translate),
            camera=self.camera(),
        )

    def run(self) -> EngineRunner | None:
        """Start a run from the current settings (the Run button); bad input shows an error instead."""
        if self.runner is not None and self.runner.running:
            return self.runner
        try:
            runner = EngineRunner(self.viewer, self.build_request(), sync=self.sync)
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
