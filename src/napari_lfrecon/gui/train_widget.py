"""The Train dock widget: train a network engine on the user's data, watch the loss, write the weights.

Training engines are ordinary engines with ``kind = "train"``
(``engines.available(kind="train")``) that declare the engine they ``trains``
and their ``data_kinds``: this widget lists them, builds a
:class:`~napari_lfrecon.gui.worker.RunRequest` from the chosen layers and the
form generated from the engine's ``Params``, and hands it to
:class:`~napari_lfrecon.gui.worker.EngineRunner` — the one worker layer, which
streams progress, keeps ONE preview layer updated in place and adds the final
reconstruction of the trained network as ``"<input> [<engine>]"``. This module
adds what only training needs:

* what each engine needs comes from its declarations
  (:mod:`napari_lfrecon.controllers.train`): light-field, XLFM and widefield
  engines need a PSF (a layer carrying ``metadata["psf"]``, as samples and
  PSF files do, or a file); the data kinds say what an input looks like;
* the weights path has its own row with a file dialog (default under
  ``~/lfrecon-weights``, never inside the package); the form's ``output`` field
  is hidden and filled from it, and the form's ``checkpoint`` field (when the
  engine has one) defaults to ``<weights>.checkpoint.safetensors`` so a
  cancelled run keeps its state and a re-run resumes;
* a live loss curve (x = training step, log y) from the engine's ``("loss", v)``
  metric updates;
* at the end: weights path, final loss and time in the status line, and
  **Use in Reconstruct**, which selects the engine the trainer ``trains``
  (``serenet-train`` → ``serenet``) in a docked Reconstruct widget and fills its
  ``weights`` field (docking one first when there is none).

Input layers are never modified; errors are shown with ``show_error``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import engines
from ..controllers.train import (
    CHECKPOINT_SUFFIX,
    DEFAULT_WEIGHTS_DIR,
    LossCurve,
    check_input,
    check_weights_path,
    checkpoint_for,
    checkpoint_note,
    default_weights,
    inference_engine,
    input_hint,
    input_ndim,
    needs_psf,
    preferred_trainer,
    series_frame,
    wanted_psf,
)
from ..device import describe_device
from ..engines.base import Engine, EngineInputError, param_specs
from ..psf.model import PSF
from ._geometry import output_translate
from .kit import PROGRESS_STEPS as _PROGRESS_STEPS
from .kit import (
    PSF_FROM_FILE,
    DeviceLabel,
    EngineRunControls,
    add_psf_choices,
    follow_layers,
    layer_psf,
)
from .panels import draw_loss_curve, path_row, scrolled_layout, theme_axes
from .params_form import ParamsForm
from .worker import EngineRunner, RunRequest, connect_alive, error_message, on_widget_closed, running_job

#: The name the Train panel's run is registered under for its viewer (one training run at a time per viewer).
JOB_KEY = "train"

if TYPE_CHECKING:  # pragma: no cover
    import napari

#: Item data of the PSF combo entry shown for engines that take no PSF.
NO_PSF = "__none__"


# ---------------------------------------------------------------------------- widget
class TrainWidget(QWidget, EngineRunControls):
    """Dock widget that trains a ``kind="train"`` engine on a layer and shows the loss and the preview live."""

    def __init__(self, napari_viewer: napari.Viewer, *, sync: bool | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.sync = sync
        self.runner: EngineRunner | None = None
        #: The loss curve's points: training step and loss value, per metric name.
        self.curve = LossCurve()
        #: The weights file of the last finished run (``None`` before one).
        self.trained_weights: Path | None = None
        self._weights_target: Path | None = None
        self._auto_weights = ""
        self._auto_checkpoint = ""
        self._input_name = ""

        # Inputs -------------------------------------------------------------
        self.engine_combo = QComboBox()
        for name in engines.available(kind="train"):
            engine = engines.get(name)
            self.engine_combo.addItem(engine.title or name, name)
        self.engine_combo.setToolTip("the training engine")
        self.needs_label = QLabel()
        self.needs_label.setWordWrap(True)
        self.needs_label.setStyleSheet("color: gray")
        self.input_combo = QComboBox()
        self.input_combo.setToolTip("the training data (the layer is read, never modified)")
        self.psf_combo = QComboBox()
        self.psf_combo.setToolTip("a layer carrying a PSF object (samples and PSF files do), or a file")
        self.psf_path = QLineEdit()
        self.psf_path.setPlaceholderText("PSF file (.psf.safetensors)")
        self.psf_browse, psf_row = path_row(self.psf_path, "choose a PSF file")
        self.weights_path = QLineEdit()
        self.weights_path.setToolTip("the trained weights are written here (.safetensors)")
        self.weights_browse, weights_row = path_row(self.weights_path, "choose where to write the weights")

        inputs_box = QGroupBox("Training")
        inputs_form = QFormLayout(inputs_box)
        inputs_form.addRow("engine", self.engine_combo)
        inputs_form.addRow(self.needs_label)
        inputs_form.addRow("data", self.input_combo)
        inputs_form.addRow("PSF", self.psf_combo)
        inputs_form.addRow("PSF file", psf_row)
        inputs_form.addRow("weights", weights_row)

        # Engine parameters --------------------------------------------------
        self.params_form = ParamsForm()
        params_box = QGroupBox("Parameters")
        params_layout = QVBoxLayout(params_box)
        params_layout.addWidget(self.params_form)

        # Run ----------------------------------------------------------------
        self.device_label = DeviceLabel()
        buttons = self.make_run_controls("Train")

        # Loss curve ---------------------------------------------------------
        self.figure = Figure(figsize=(4, 2.4), dpi=80, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(190)
        self.loss_ax = self.figure.add_subplot(1, 1, 1)
        self._draw_loss()

        self.use_button = QPushButton("Use in Reconstruct")
        self.use_button.setToolTip("select the inference engine and these weights in the Reconstruct widget")
        self.use_button.setEnabled(False)

        body, footer = scrolled_layout(self)
        body.addWidget(inputs_box)
        body.addWidget(params_box)
        body.addWidget(self.device_label)
        body.addWidget(self.canvas)
        body.addWidget(self.use_button)
        body.addStretch(1)
        footer.addLayout(buttons)
        footer.addWidget(self.progress)
        footer.addWidget(self.status_label)

        # Wiring -------------------------------------------------------------
        self.engine_combo.currentIndexChanged.connect(self._on_engine_changed)
        self.input_combo.currentIndexChanged.connect(self._on_input_changed)
        self.psf_combo.currentIndexChanged.connect(self._on_psf_changed)
        self.psf_browse.clicked.connect(self._browse_psf)
        self.weights_browse.clicked.connect(self._browse_weights)
        self.weights_path.textChanged.connect(self._on_weights_changed)
        self.run_button.clicked.connect(self.run)
        self.use_button.clicked.connect(self.use_in_reconstruct)
        follow_layers(self.viewer, self._refresh_layers, moved=True)
        # a trainer the user picked is kept; until then the loaded layers choose one (an LFM sample → SeReNet)
        self._engine_picked = False
        self.engine_combo.activated.connect(lambda *_: setattr(self, "_engine_picked", True))
        self._select_fitting_trainer()
        self._on_engine_changed()
        on_widget_closed(self, self._on_closed)
        running = running_job(self.viewer, JOB_KEY)
        if running is not None:
            self._follow(running)

    # -------------------------------------------------------------- choices
    @property
    def losses(self) -> dict[str, tuple[list[int], list[float]]]:
        """The loss curve's points of the last run: training steps and values, per metric name."""
        return self.curve.points

    @property
    def _last_step(self) -> int:
        return self.curve.last_step

    @property
    def engine_name(self) -> str:
        """The selected engine's registry name ("" when no training engine is registered)."""
        data = self.engine_combo.currentData()
        return "" if data is None else str(data)

    @property
    def engine(self) -> Engine | None:
        """An instance of the selected engine."""
        return engines.get(self.engine_name) if self.engine_name else None

    def select_engine(self, name: str) -> None:
        """Select training engine ``name`` (``ValueError`` listing the training engines otherwise)."""
        index = self.engine_combo.findData(name)
        if index < 0:
            raise ValueError(f"unknown training engine {name!r}; available: {engines.available(kind='train')}")
        self._engine_picked = True
        self.engine_combo.setCurrentIndex(index)

    def select_input(self, name: str) -> None:
        """Select input layer ``name`` (``ValueError`` if it is not an image layer in the viewer)."""
        index = self.input_combo.findData(name)
        if index < 0:
            raise ValueError(f"no image layer named {name!r}; image layers: {self._image_names()}")
        self.input_combo.setCurrentIndex(index)

    def select_psf(self, name: str | None) -> None:
        """Take the PSF from layer ``name`` (``None``: from the file field); ``ValueError`` if it carries none."""
        index = self.psf_combo.findData(PSF_FROM_FILE if name is None else name)
        if index < 0:
            raise ValueError(f"no layer named {name!r} carries a PSF; PSF layers: {self._psf_layer_names()}")
        self.psf_combo.setCurrentIndex(index)

    def input_layer(self) -> Image | None:
        """The selected input layer (``None`` when there is none)."""
        name = self.input_combo.currentData()
        if name is None or name not in self.viewer.layers:
            return None
        layer = self.viewer.layers[name]
        return layer if isinstance(layer, Image) else None

    def _image_names(self) -> list[str]:
        # Engine previews and results are outputs; a ground truth is not a measurement.
        return [
            layer.name
            for layer in self.viewer.layers
            if isinstance(layer, Image)
            and not layer.metadata.get("preview")
            and not layer.metadata.get("ground_truth")
            and "engine" not in layer.metadata
        ]

    def _psf_layer_names(self) -> list[str]:
        return [layer.name for layer in self.viewer.layers if layer_psf(layer) is not None]

    def _preferred_input(self, names: list[str]) -> str | None:
        """The likely training input: a layer of the engine's modality, the newest first."""
        engine = self.engine
        if not names or engine is None:
            return names[-1] if names else None
        layers = [self.viewer.layers[n] for n in names]
        if needs_psf(engine):
            fits = [x.name for x in layers if (psf := layer_psf(x)) is not None and psf.modality in engine.modalities]
        else:
            fits = [x.name for x in layers if x.ndim in input_ndim(engine)]
        return (fits or names)[-1]

    def _select_fitting_trainer(self) -> bool:
        """Select the trainer the loaded layers suit (unless the user picked one); True when it changed."""
        if self._engine_picked:
            return False
        trainers = [engines.get(self.engine_combo.itemData(i)) for i in range(self.engine_combo.count())]
        psfs = [(layer_psf(self.viewer.layers[n]), self.viewer.layers[n].ndim) for n in self._image_names()]
        layers = [(psf.modality if psf is not None else None, ndim) for psf, ndim in psfs]
        choice = preferred_trainer(trainers, layers)
        index = self.engine_combo.findData(choice) if choice is not None else -1
        if index < 0 or index == self.engine_combo.currentIndex():
            return False
        self.engine_combo.blockSignals(True)
        self.engine_combo.setCurrentIndex(index)
        self.engine_combo.blockSignals(False)
        return True

    def _refresh_layers(self, *_: Any) -> None:
        if self._select_fitting_trainer():
            self._on_engine_changed()  # refreshes the layers for the new trainer
            return
        current_input = self.input_combo.currentData()
        current_psf = self.psf_combo.currentData()
        images = self._image_names()
        self.input_combo.blockSignals(True)
        self.input_combo.clear()
        for name in images:
            self.input_combo.addItem(name, name)
        chosen = current_input if current_input in images else self._preferred_input(images)
        if chosen is not None:
            self.input_combo.setCurrentIndex(images.index(chosen))
        self.input_combo.blockSignals(False)

        self.psf_combo.blockSignals(True)
        self.psf_combo.clear()
        engine = self.engine
        if engine is not None and not needs_psf(engine):
            self.psf_combo.addItem("none (this engine needs no PSF)", NO_PSF)
        else:
            add_psf_choices(self.psf_combo, self.viewer)
        self.psf_combo.setCurrentIndex(max(self.psf_combo.findData(current_psf), 0))
        self.psf_combo.blockSignals(False)
        if current_input != self.input_combo.currentData():
            self._on_input_changed()
        else:
            self._on_psf_changed()

    def _on_engine_changed(self, *_: Any) -> None:
        engine = self.engine
        if engine is None:
            self.needs_label.setText("no training engine is registered")
            self.run_button.setEnabled(False)
            return
        self.params_form.set_params_class(engine.Params)
        self.params_form.setToolTip(engine.__doc__ or "")
        # The weights path has its own row with a file dialog; the form's copy would only disagree with it.
        form = self.params_form.layout()
        if "output" in self.params_form.values() and isinstance(form, QFormLayout):
            form.setRowVisible(self.params_form.editor("output"), False)
        self.needs_label.setText(input_hint(engine))
        self._auto_checkpoint = ""
        self._refresh_layers()
        self._update_default_weights()
        self._on_weights_changed()

    def _on_input_changed(self, *_: Any) -> None:
        # A measurement opened with its PSF (samples, PSF reader) selects that PSF.
        layer = self.input_layer()
        if layer is not None and layer_psf(layer) is not None:
            index = self.psf_combo.findData(layer.name)
            if index >= 0:
                self.psf_combo.setCurrentIndex(index)
        self._update_default_weights()
        self._on_psf_changed()

    def _on_psf_changed(self, *_: Any) -> None:
        choice = self.psf_combo.currentData()
        from_file = choice == PSF_FROM_FILE
        self.psf_combo.setEnabled(choice != NO_PSF)
        self.psf_path.setEnabled(from_file)
        self.psf_browse.setEnabled(from_file)

    # ------------------------------------------------------------- weights path
    def _update_default_weights(self) -> None:
        """Propose ``~/lfrecon-weights/<engine>-<input>.safetensors`` unless the user typed a path."""
        current = self.weights_path.text().strip()
        if current and current != self._auto_weights:
            return
        proposal = str(default_weights(self.engine, self.input_combo.currentData()))
        self._auto_weights = proposal
        self.weights_path.setText(proposal)

    def _on_weights_changed(self, *_: Any) -> None:
        """Keep the form's checkpoint next to the weights, unless the user chose another one."""
        try:
            editor = self.params_form.editor("checkpoint")
        except KeyError:
            return
        current = self.params_form.values()["checkpoint"]
        if current and current != self._auto_checkpoint:
            return
        text = self.weights_path.text().strip()
        proposal = str(checkpoint_for(text)) if text else ""
        self._auto_checkpoint = proposal
        self.params_form.set_values({"checkpoint": proposal})
        engine = self.engine
        help_text = next(s["help"] for s in param_specs(engine.Params) if s["name"] == "checkpoint") if engine else ""
        editor.setToolTip(f"{help_text}; defaults to the weights path with {CHECKPOINT_SUFFIX}")

    def _browse_weights(self) -> None:
        start = self.weights_path.text().strip() or str(DEFAULT_WEIGHTS_DIR)
        path, _ = QFileDialog.getSaveFileName(self, "Write the trained weights to", start, "Weights (*.safetensors)")
        if path:
            self.weights_path.setText(path if path.endswith(".safetensors") else f"{path}.safetensors")

    def _browse_psf(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a PSF", "", "PSF files (*.psf.safetensors *.safetensors);;All files (*)"
        )
        if path:
            self.psf_path.setText(path)

    # ------------------------------------------------------------------ run
    def selected_psf(self) -> PSF | None:
        """The PSF for the run (``None`` for engines that need none); ``ValueError`` naming what is missing."""
        engine = self.engine
        if engine is None or not needs_psf(engine):
            return None
        wanted = wanted_psf(engine)
        choice = self.psf_combo.currentData()
        if choice == PSF_FROM_FILE:
            text = self.psf_path.text().strip()
            if not text:
                raise ValueError(f"{engine.name} needs a {wanted} PSF: choose a layer that carries one, or a PSF file")
            psf = PSF.load(Path(text))
        else:
            if choice is None or choice not in self.viewer.layers:
                raise ValueError(f"{engine.name} needs a {wanted} PSF: open a sample or a PSF file, or choose a file")
            psf = layer_psf(self.viewer.layers[choice])
            if psf is None:
                raise ValueError(f"layer {choice!r} carries no PSF object in its metadata")
        if psf.modality not in engine.modalities:
            raise EngineInputError(f"{engine.name} needs a {wanted} PSF, not a {psf.modality} PSF")
        return psf

    def build_request(self) -> RunRequest:
        """A :class:`RunRequest` from the widget; ``ValueError`` with the reason when something is missing."""
        engine = self.engine
        if engine is None:
            raise ValueError("no training engine is registered")
        layer = self.input_layer()
        if layer is None:
            raise ValueError("no training data: open an image (or a sample) and choose it as 'data'")
        if getattr(layer, "rgb", False):
            raise ValueError(f"layer {layer.name!r} is RGB; training needs single-channel measurements")
        data = layer.data[0] if layer.multiscale else layer.data
        check_input(engine, layer.name, tuple(data.shape))
        psf = self.selected_psf()
        weights = check_weights_path(self.weights_path.text())
        params = self.params_form.values()
        if "output" in params:
            params["output"] = str(weights)
        return RunRequest(
            engine=engine.name,
            data=np.asarray(data),  # training reads every frame; a lazy layer is loaded once, never changed
            psf=psf,
            params=params,
            input_name=layer.name,
            input_scale=tuple(float(s) for s in layer.scale),
            input_translate=tuple(float(t) for t in layer.translate),
        )

    def run(self) -> EngineRunner | None:
        """Start training from the current settings (the Train button); bad input shows an error instead.

        While a training run of this viewer is going (started by a panel since
        closed, too) no second one starts: that run is returned and followed.
        """
        if self.runner is not None and self.runner.running:
            return self.runner
        running = running_job(self.viewer, JOB_KEY)
        if running is not None:
            self._follow(running)
            return running
        try:
            request = self.build_request()
            runner = EngineRunner(self.viewer, request, sync=self.sync)
            runner.job_key = JOB_KEY
        except Exception as exc:  # bad input is a message to the user, never a traceback
            show_error(f"Cannot train: {error_message(exc)}")
            self.status_label.setText(f"cannot train: {error_message(exc)}")
            return None
        self.runner = runner
        self._input_name = request.input_name
        self._weights_target = Path(request.params.get("output") or self.weights_path.text()).expanduser()
        self.trained_weights = None
        self.curve = LossCurve()
        self._draw_loss()
        self._follow(runner)
        self.progress.setValue(0)
        self.status_label.setText(f"starting {runner.engine.name} on {request.input_name}…")
        runner.start()
        return runner

    def _follow(self, runner: EngineRunner) -> None:
        """Show ``runner``'s progress, loss and end here (and let Cancel stop it)."""
        self.runner = runner
        self._input_name = runner.request.input_name
        connect_alive(runner.progressed, self, self._on_progress)
        connect_alive(runner.metric, self, self._on_metric)
        connect_alive(runner.previewed, self, self._place)
        connect_alive(runner.finished, self, self._on_finished)
        self.set_run_buttons(True)
        self.use_button.setEnabled(False)
        if runner.running:
            self.status_label.setText(f"training with {runner.engine.name}…")

    def _on_closed(self) -> None:
        """The panel was closed: its training run stops (a checkpoint already written is kept)."""
        if self.runner is not None and self.runner.running:
            self.runner.cancel()

    # ------------------------------------------------------------ run events
    def _on_progress(self, fraction: float, message: str) -> None:
        self.show_run_progress(fraction, message)
        planned = int(getattr(self.runner.params, "steps", 0) or 0) if self.runner is not None else 0
        self.curve.progress(fraction, message, planned)

    def _on_metric(self, name: str, value: float) -> None:
        if self.curve.add(name, value):
            self._draw_loss()

    def _draw_loss(self) -> None:
        draw_loss_curve(self.loss_ax, self.losses)
        theme_axes(self.viewer, self.figure, [self.loss_ax])
        self.canvas.draw_idle()

    def _place(self, layer: Any) -> None:
        """Put a preview/result of a time-series run on one frame's field of view.

        The worker layer centres outputs on the whole input, whose first axis is
        time here; a frame's geometry is the right reference.
        """
        runner = self.runner
        if runner is None or layer is None:
            return
        psf = runner.request.psf
        shape = tuple(int(n) for n in runner.inputs.data.shape)
        frame = series_frame(psf, shape, runner.input_scale, runner.input_translate)
        if frame is None:
            return
        z_planes = psf.z_planes_um if psf is not None and psf.z_planes_um.size else None
        shape, scale, translate = frame
        out_scale = tuple(float(s) for s in layer.scale)
        layer.translate = output_translate(shape, scale, translate, tuple(layer.data.shape), out_scale, z_planes)

    def _on_finished(self, status: str, message: str) -> None:
        self.set_run_buttons(False)
        runner = self.runner
        if runner is None:
            return
        seconds = runner.seconds
        loss = self.final_loss()
        loss_text = f"final loss {loss:.4g}" if loss is not None else "no loss reported"
        checkpoint = str(getattr(runner.params, "checkpoint", "") or "")
        if status == "done":
            self._place(runner.result_layer)
            self.progress.setValue(_PROGRESS_STEPS)
            weights = self._weights_target
            if weights is not None and weights.is_file():
                self.trained_weights = weights
                target = inference_engine(runner.engine.name)
                if runner.result_layer is not None:
                    info = {"weights": str(weights), "engine": target or runner.engine.name}
                    runner.result_layer.metadata = {**runner.result_layer.metadata, "trained_weights": info}
                self.use_button.setEnabled(target is not None)
                self.status_label.setText(
                    f"done: weights → {weights}; {loss_text}; {seconds:.1f} s on {describe_device(runner.device)}"
                )
            else:
                show_error(f"{runner.engine.name} finished but wrote no weights file at {weights}")
                self.status_label.setText(f"finished, but no weights file at {weights}")
        elif status == "cancelled":
            self._place(runner.cancelled_layer)
            self.status_label.setText(f"{message}; {loss_text}; {checkpoint_note(checkpoint)}")
        else:
            self.status_label.setText(f"failed: {message}")

    def final_loss(self) -> float | None:
        """The last loss value of the last run (the ``"loss"`` metric when there are several)."""
        return self.curve.final()

    # ----------------------------------------------------------- hand-over
    def use_in_reconstruct(self) -> Any:
        """Select the inference engine and the trained weights in the Reconstruct widget (docked if needed).

        Returns that widget, or ``None`` (with a message) when there is nothing to hand over.
        """
        from .reconstruct_widget import ReconstructWidget

        runner = self.runner
        if self.trained_weights is None or runner is None:
            show_error("no trained weights yet: train first")
            return None
        target = inference_engine(runner.engine.name)
        if target is None:
            show_error(f"no reconstruction engine uses weights from {runner.engine.name}")
            return None
        found = self.viewer.window._qt_window.findChildren(ReconstructWidget)
        widget = found[0] if found else None
        if widget is None:
            try:
                _dock, widget = self.viewer.window.add_plugin_dock_widget("napari-lfrecon", "Reconstruct")
            except Exception as exc:  # no manifest (e.g. an uninstalled checkout): say what to do instead
                show_error(f"open Plugins → Reconstruct first ({error_message(exc)})")
                return None
        try:
            widget.select_engine(target)
            if self._input_name in self.viewer.layers:
                widget.select_input(self._input_name)
            widget.params_form.set_values({"weights": str(self.trained_weights)})
        except (ValueError, KeyError) as exc:
            show_error(f"could not set the Reconstruct widget: {error_message(exc)}")
            return None
        show_info(f"Reconstruct: engine {target} with weights {self.trained_weights.name}")
        return widget
