"""The small widget kit the dock widgets share: layer picker, PSF picker, device label.

* :class:`LayerPicker` — an image-layer combo (our own preview layers left
  out: they are outputs) plus a "…" button that opens a TIFF as a new layer.
* :class:`PsfPicker` — a combo of the layers carrying a PSF object in
  ``metadata["psf"]`` plus "from file…" with a path field and a browse button.
* :class:`DeviceLabel` — "device: …" for the device engines run on.

Each is a view over the viewer's layer list: call ``refresh()`` when layers
are added or removed (the widgets connect it to the layer-list events).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..device import describe_device, select_device
from ..jobs import error_message
from ..psf.model import PSF
from .panels import ProgressBar
from .worker import (
    EngineRunner,
    Job,
    RunRequest,
    connect_alive,
    on_widget_closed,
    qt_alive,
    start_job,
    sync_requested,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari

#: Combo entry meaning "no layer" (optional inputs such as a dark frame).
NO_LAYER = "(none)"
#: Item data of the PSF combo entry that reads the PSF from the file field.
PSF_FROM_FILE = "__file__"
#: Progress bar resolution shared by the widgets (Qt progress bars are integer).
PROGRESS_STEPS = 1000
#: Progress is shown at most this often (seconds). Each display costs the main thread two repaints of the
#: whole window (15–25 ms each under Xvfb, as the GL canvas is composited): at 0.1 s that was ≈ 0.55 s of
#: main-thread time in a 1.5 s RL-30 run, CPU the engine lacks on 2 cores; at 0.25 s, ≈ 0.25 s.
PROGRESS_DISPLAY_S = 0.25


def layer_psf(layer: Any) -> PSF | None:
    """The PSF object a layer carries in ``metadata["psf"]``, if any."""
    psf = getattr(layer, "metadata", {}).get("psf")
    return psf if isinstance(psf, PSF) else None


def add_psf_choices(combo: QComboBox, viewer: napari.Viewer) -> None:
    """Append ``"<layer> (<modality>)"`` for each layer carrying a PSF (item data: its name), then "from file…"."""
    for layer in viewer.layers:
        psf = layer_psf(layer)
        if psf is not None:
            combo.addItem(f"{layer.name} ({psf.modality})", layer.name)
    combo.addItem("from file…", PSF_FROM_FILE)


def image_layer_names(viewer: napari.Viewer) -> list[str]:
    """Names of the viewer's image layers that can be inputs (our preview layers are outputs)."""
    return [layer.name for layer in viewer.layers if isinstance(layer, Image) and not layer.metadata.get("preview")]


def layer_array(layer: Any) -> Any:
    """The layer's full-resolution array as stored (numpy, dask, zarr…): never converted here."""
    return layer.data[0] if layer.multiscale else layer.data


def spin(value: float, low: float, high: float, tip: str, decimals: int = 3) -> QDoubleSpinBox:
    """A right-aligned float spin box with a range, a value and a tooltip."""
    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(low, high)
    box.setValue(value)
    box.setToolTip(tip)
    box.setAlignment(Qt.AlignmentFlag.AlignRight)
    return box


def int_spin(value: int, low: int, high: int, tip: str = "", step: int = 1) -> QSpinBox:
    """An integer spin box with a range, a step, a value and a tooltip."""
    box = QSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tip)
    return box


def number_field(tip: str) -> QLineEdit:
    """A text field for an optional number (empty: not given)."""
    edit = QLineEdit()
    edit.setPlaceholderText("—")
    edit.setToolTip(tip)
    return edit


def hbox(*widgets: QWidget, stretch_first: bool = True) -> QHBoxLayout:
    """A margin-free row of ``widgets``; the first one takes the spare width unless ``stretch_first`` is False."""
    row = QHBoxLayout()
    row.setContentsMargins(0, 0, 0, 0)
    for index, widget in enumerate(widgets):
        row.addWidget(widget, 1 if stretch_first and index == 0 else 0)
    return row


def _browse_button(tip: str) -> QPushButton:
    button = QPushButton("…")
    button.setFixedWidth(28)
    button.setToolTip(tip)
    return button


class LayerPicker(QWidget):
    """An image-layer combo plus a "…" button that opens a TIFF as a new layer and selects it."""

    def __init__(self, viewer: napari.Viewer, *, optional: bool = False, tip: str = "") -> None:
        super().__init__()
        self.viewer = viewer
        self.optional = optional
        self.combo = QComboBox()
        self.combo.setToolTip(tip)
        self.button = _browse_button("open a TIFF file as a layer")
        self.setLayout(hbox(self.combo, self.button))
        self.button.clicked.connect(self._browse)
        self.refresh()

    def refresh(self, *_: Any) -> None:
        """Refill the combo from the viewer's image layers, keeping the selection when it still exists."""
        current = self.combo.currentData()
        self.combo.blockSignals(True)
        self.combo.clear()
        if self.optional:
            self.combo.addItem(NO_LAYER, None)
        for name in image_layer_names(self.viewer):
            self.combo.addItem(name, name)
        index = self.combo.findData(current)
        self.combo.setCurrentIndex(max(index, 0))
        self.combo.blockSignals(False)

    def select(self, name: str | None) -> None:
        """Select layer ``name`` (``None``: no layer, for optional pickers); ``ValueError`` if absent."""
        index = self.combo.findData(name)
        if index < 0:
            raise ValueError(f"no image layer named {name!r}")
        self.combo.setCurrentIndex(index)

    def layer(self) -> Image | None:
        """The chosen layer, or ``None``."""
        name = self.combo.currentData()
        if name is None or name not in self.viewer.layers:
            return None
        return self.viewer.layers[name]

    def open_file(self, path: str | Path) -> Image:
        """Read a TIFF into a new layer (its voxel size as scale when stated) and select it."""
        from ..io.tiff import read_tiff

        image = read_tiff(Path(path))
        data = np.asarray(image.data)
        kwargs: dict[str, Any] = {"name": Path(path).stem}
        if image.voxel_size is not None and len(image.voxel_size) >= data.ndim:
            kwargs["scale"] = tuple(image.voxel_size[-data.ndim :])
        layer = self.viewer.add_image(data, **kwargs)
        self.refresh()
        self.select(layer.name)
        return layer

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open an image", "", "TIFF (*.tif *.tiff);;All files (*)")
        if path:
            try:
                self.open_file(path)
            except Exception as exc:  # a bad file is a message, not a traceback
                show_error(f"Cannot open {path}: {error_message(exc)}")


class PsfPicker(QWidget):
    """The PSF choice: a layer carrying a PSF object, or a file (``.psf.safetensors`` or a widefield TIFF).

    :attr:`combo` lists ``"<layer> (<modality>)"`` for each PSF-carrying layer
    and "from file…"; :attr:`path` and :attr:`browse` are enabled for the file
    entry; :attr:`info` describes the chosen PSF.
    """

    def __init__(self, viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.combo = QComboBox()
        self.combo.setToolTip("a layer carrying a PSF object (samples and PSF files do), or a file")
        self.path = QLineEdit()
        self.path.setPlaceholderText("PSF file (.psf.safetensors) or widefield TIFF")
        self.browse = _browse_button("choose a PSF file")
        self.file_row = QWidget()
        self.file_row.setLayout(hbox(self.path, self.browse))
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.info.setStyleSheet("color: gray")
        self.browse.clicked.connect(self._browse)
        self.refresh()

    @property
    def from_file(self) -> bool:
        """True when the file entry is chosen."""
        return self.combo.currentData() == PSF_FROM_FILE

    def refresh(self, *_: Any) -> None:
        """Refill the combo from the layers carrying a PSF, keeping the selection when it still exists."""
        current = self.combo.currentData()
        self.combo.blockSignals(True)
        self.combo.clear()
        add_psf_choices(self.combo, self.viewer)
        self.combo.setCurrentIndex(max(self.combo.findData(current), 0))
        self.combo.blockSignals(False)

    def select_layer(self, name: str) -> bool:
        """Select the PSF of layer ``name``; False when that layer carries none."""
        index = self.combo.findData(name)
        if index >= 0:
            self.combo.setCurrentIndex(index)
        return index >= 0

    def layer_choice(self) -> PSF | None:
        """The PSF of the chosen layer (``None`` for the file entry or a layer that is gone)."""
        name = self.combo.currentData()
        return layer_psf(self.viewer.layers[name]) if name in self.viewer.layers else None

    def set_enabled(self, needed: bool) -> None:
        """Enable the picker when the engine needs a PSF (the file fields only for the file entry)."""
        self.combo.setEnabled(needed)
        self.path.setEnabled(needed and self.from_file)
        self.browse.setEnabled(needed and self.from_file)
        if not needed:
            self.info.setText("this engine needs no PSF (it learns from the data itself)")
        elif not self.from_file:
            psf = self.layer_choice()
            self.info.setText(psf.describe() if psf is not None else "")
        else:
            text = self.path.text()
            self.info.setText(text and Path(text).name)

    def psf(self, voxel_size: tuple[float, float, float] | None = None) -> PSF:
        """The chosen PSF; a TIFF file is read at ``voxel_size``. ``ValueError`` with the reason when missing."""
        if self.from_file:
            text = self.path.text().strip()
            if not text:
                raise ValueError("no PSF: choose a layer that carries one, or a PSF file")
            from ..api import as_psf

            psf = as_psf(Path(text), voxel_size)  # type: ignore[arg-type]
            assert psf is not None
            return psf
        name = self.combo.currentData()
        if name is None or name not in self.viewer.layers:
            raise ValueError("no PSF: open a sample or a PSF file, or choose 'from file…'")
        psf = layer_psf(self.viewer.layers[name])
        if psf is None:
            raise ValueError(f"layer {name!r} carries no PSF object in its metadata")
        return psf

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a PSF", "", "PSF files (*.psf.safetensors *.safetensors *.tif *.tiff);;All files (*)"
        )
        if path:
            self.path.setText(path)


def follow_layers(viewer: napari.Viewer, refresh: Callable[..., Any], *, moved: bool = False) -> None:
    """Call ``refresh`` whenever a layer is added to or removed from ``viewer`` (and moved, when ``moved``).

    When ``refresh`` is a method of a Qt widget, the connection drops itself once
    that widget is deleted (a closed dock must not be refreshed when the viewer
    clears its layers on close).
    """
    events = viewer.layers.events
    owner = getattr(refresh, "__self__", None)
    if owner is not None and hasattr(owner, "objectName"):
        follow_renames(viewer, owner, refresh)
    for event in (events.inserted, events.removed, *((events.moved,) if moved else ())):
        if owner is None or not hasattr(owner, "objectName"):
            event.connect(refresh)
            continue

        def guarded(*args: Any, _event: Any = event) -> None:
            if not qt_alive(owner):
                _event.disconnect(guarded)
                return
            if args and _is_preview_event(args[0]):
                return  # a run's preview layer is in no picker: adding or removing it changes no choice
            refresh(*args)

        event.connect(guarded)


def follow_renames(viewer: napari.Viewer, owner: QWidget, refresh: Callable[..., Any]) -> None:
    """Call ``refresh`` when any layer of ``viewer`` is renamed (a run's preview layer becomes its result).

    Drops itself once ``owner`` (the widget) is deleted.
    """

    def renamed(event: Any) -> None:
        if qt_alive(owner):
            refresh()
        else:
            event.source.events.name.disconnect(renamed)

    def watch(layer: Any) -> None:
        layer.events.name.connect(renamed)

    for layer in viewer.layers:
        watch(layer)
    connect_alive(viewer.layers.events.inserted, owner, lambda event: watch(event.value))


def _is_preview_event(event: Any) -> bool:
    layer = getattr(event, "value", None)
    return bool(getattr(layer, "metadata", {}).get("preview")) if layer is not None else False


def device_text() -> str:
    """``"device: <the device engines run on>"`` (or why it is unavailable)."""
    try:
        return f"device: {describe_device(select_device())}"
    except RuntimeError as exc:  # e.g. LFRECON_DEVICE=cuda on a machine without CUDA
        return f"device: unavailable ({exc})"


class DeviceLabel(QLabel):
    """The device engines run on, with how to choose another."""

    def __init__(self) -> None:
        super().__init__(device_text())
        self.setToolTip("set LFRECON_DEVICE (cpu, cuda:1, mps) to choose another device")


class RunPanel(QWidget):
    """Progress bar, Cancel button and status line for a widget's background work, and the runs themselves.

    :meth:`start_engine` runs a :class:`~napari_lfrecon.gui.worker.RunRequest`
    through :class:`~napari_lfrecon.gui.worker.EngineRunner`; :meth:`start_work`
    runs any Qt-free generator through :func:`~napari_lfrecon.gui.worker.start_job`
    (its last argument is the stop flag Cancel sets). While either runs, the
    widgets in :attr:`locked` are disabled. Errors are shown with ``show_error``.
    """

    def __init__(self, viewer: napari.Viewer, *, sync: bool | None = None, cancel_tip: str = "stop") -> None:
        super().__init__()
        self.viewer = viewer
        self.sync = sync_requested(sync)
        #: The last engine run and the last piece of work (``None`` before the first).
        self.runner: EngineRunner | None = None
        self.job: Job | None = None
        #: Widgets disabled while something runs (the buttons that start runs).
        self.locked: list[QWidget] = []
        self._stop: threading.Event | None = None
        # True from start until the runner's finished signal (its status changes a little earlier)
        self._engine_busy = False
        self.progress = ProgressBar()
        self.progress.setRange(0, PROGRESS_STEPS)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip(cancel_tip)
        self.status_label = QLabel("ready")
        self.status_label.setWordWrap(True)
        self._progress_display = ProgressDisplay(self.progress, self.status_label, lambda: self.busy)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(hbox(self.progress, self.cancel_button))
        layout.addWidget(self.status_label)
        self.cancel_button.clicked.connect(self.cancel)

    @property
    def busy(self) -> bool:
        """True while an engine run or a piece of work runs."""
        return self._engine_busy or (self.job is not None and self.job.running)

    def start_engine(
        self,
        request: RunRequest,
        on_result: Callable[[Any], None],
        message: str,
        on_metric: Callable[[str, float], None] | None = None,
    ) -> EngineRunner | None:
        """Run ``request``; ``on_result`` gets the engine's result on the main thread. ``None`` if refused."""
        try:
            runner = EngineRunner(self.viewer, request, sync=self.sync)
        except Exception as exc:  # bad input is a message, never a traceback
            self.fail(f"Cannot run {request.engine}: {error_message(exc)}")
            return None
        self.runner = runner
        # the run may outlive this panel (a closed dock): calls to a deleted panel are dropped
        connect_alive(runner.progressed, self, self.show_progress)
        connect_alive(runner.resulted, self, on_result)
        if on_metric is not None:
            connect_alive(runner.metric, self, on_metric)
        connect_alive(runner.finished, self, self._on_engine_finished)
        self._engine_busy = True
        self.set_busy(True, message)
        runner.start()
        return runner

    def start_work(
        self, work: Callable[..., Any], *args: Any, message: str, on_return: Callable[[Any], None], failure: str
    ) -> Job:
        """Run generator ``work(*args, stop)`` off the main thread; each yielded fraction moves the bar.

        ``on_return`` gets the generator's return value; an exception is shown as ``"<failure>: <reason>"``.
        """
        self._stop = threading.Event()
        self.set_busy(True, message)
        self.job = start_job(
            work,
            *args,
            self._stop,
            on_yield=lambda fraction: self.show_progress(fraction, message),
            on_return=on_return,
            on_error=lambda exc: self.fail(f"{failure}: {error_message(exc)}"),
            on_finish=lambda: self.set_busy(False, ""),
            sync=self.sync,
        )
        return self.job

    def stop_on_close(self, owner: QWidget) -> None:
        """Stop this panel's runs when ``owner`` (the dock widget holding it) is closed."""
        on_widget_closed(owner, self._closed)

    def _closed(self) -> None:
        if self.runner is not None and self.runner.running:
            self.runner.cancel()
        if self.job is not None and self.job.running:
            self.job.detach()  # its results would go to widgets that are gone

    def cancel(self) -> None:
        """Stop what runs (the Cancel button); engines stop within one step."""
        if self.runner is not None and self.runner.running:
            self.runner.cancel()
        if self._stop is not None:
            self._stop.set()
        self.status_label.setText("cancelling…")

    def set_busy(self, busy: bool, message: str) -> None:
        """Enable Cancel and lock :attr:`locked` while busy; show ``message`` when given."""
        self.cancel_button.setEnabled(busy)
        for widget in self.locked:
            widget.setEnabled(not busy)
        if busy:
            self.progress.setValue(0)
        if message:
            self.status_label.setText(message)

    def show_progress(self, fraction: float, message: str) -> None:
        """Move the bar to ``fraction`` (0–1) and show ``message`` (at most every :data:`PROGRESS_DISPLAY_S`)."""
        self._progress_display.show(fraction, message)

    def fail(self, message: str) -> None:
        """Show an error and keep it on the status line."""
        show_error(message)
        self.status_label.setText(message)

    def _on_engine_finished(self, status: str, message: str) -> None:
        self._engine_busy = False
        self.set_busy(False, message if status == "done" else f"{status}: {message}")
        if status == "done":
            self.progress.setValue(PROGRESS_STEPS)


class ProgressDisplay:
    """Shows ``(fraction, message)`` on a progress bar and a label at most every :data:`PROGRESS_DISPLAY_S`.

    Every update is accepted, only the repaint is rate-limited: one that comes
    sooner is kept (the newest wins) and shown when the interval is over, so the
    label never stays on an old message; a final one (``fraction >= 1``) is shown
    at once. A kept update is dropped when ``active()`` is false by then (the run
    ended and its owner wrote the final status).
    """

    def __init__(self, bar: QProgressBar, label: QLabel, active: Callable[[], bool]) -> None:
        self.bar, self.label, self.active = bar, label, active
        self._shown_at = -float("inf")
        self._latest: tuple[float, str] | None = None
        self._timer = QTimer(label)  # dies with the label: never fires into a deleted widget
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._show_kept)

    def show(self, fraction: float, message: str) -> None:
        """Show this update now, or keep it for the end of the current interval."""
        self._latest = (fraction, message)
        wait_s = PROGRESS_DISPLAY_S - (time.perf_counter() - self._shown_at)
        if fraction >= 1.0 or wait_s <= 0:
            self._timer.stop()
            self._show_latest()
        elif not self._timer.isActive():
            self._timer.start(max(1, round(1000 * wait_s)))

    def _show_kept(self) -> None:
        if self.active():
            self._show_latest()
        else:
            self._latest = None

    def _show_latest(self) -> None:
        if self._latest is None:
            return
        (fraction, message), self._latest = self._latest, None
        self._shown_at = time.perf_counter()
        self.bar.setValue(round(min(max(fraction, 0.0), 1.0) * PROGRESS_STEPS))
        self.label.setText(message)


class EngineRunControls:
    """Run and Cancel buttons, progress bar and status line of a dock widget that runs one engine at a time.

    Mixed into a :class:`QWidget`: ``__init__`` calls :meth:`make_run_controls`,
    which creates :attr:`run_button`, :attr:`cancel_button`, :attr:`progress`
    and :attr:`status_label` and wires Cancel to :meth:`cancel`; the widget keeps
    its current run in :attr:`runner` (anything with ``running`` and ``cancel()``,
    e.g. an :class:`~napari_lfrecon.gui.worker.EngineRunner`).
    """

    runner: Any = None
    run_button: QPushButton
    cancel_button: QPushButton
    progress: QProgressBar
    status_label: QLabel

    def make_run_controls(self, run_text: str) -> QHBoxLayout:
        """Create the run widgets (the run button labelled ``run_text``); return the row of the two buttons."""
        self.run_button = QPushButton(run_text)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        self.progress = ProgressBar()
        self.progress.setRange(0, PROGRESS_STEPS)
        self.progress.setValue(0)
        self.status_label = QLabel("ready")
        self.status_label.setWordWrap(True)
        self._progress_display = ProgressDisplay(self.progress, self.status_label, lambda: self.running)
        self.cancel_button.clicked.connect(self.cancel)
        return buttons

    def cancel(self) -> None:
        """Stop the run (the Cancel button); an engine stops within one step."""
        if self.runner is not None and self.runner.running:
            self.runner.cancel()
            self.cancel_button.setEnabled(False)
            self.status_label.setText("cancelling…")

    @property
    def running(self) -> bool:
        """True while a run is under way."""
        return self.runner is not None and self.runner.running

    def set_run_buttons(self, running: bool) -> None:
        """Run enabled when idle, Cancel enabled while ``running``."""
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def show_run_progress(self, fraction: float, message: str) -> None:
        """Move the bar to ``fraction`` (0–1, as the runner reports it) and show ``message``.

        At most :data:`PROGRESS_DISPLAY_S` apart, the newest shown (and the final one
        at once): each display repaints the window, tens of ms of main-thread time.
        """
        self._progress_display.show(fraction, message)
