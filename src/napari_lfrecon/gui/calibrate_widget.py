"""The Calibrate dock widget: bead-stack PSF fit, light-field lenslet grid, XLFM view centres.

Three tabs, one shared progress bar / status line / Cancel button:

* **Bead** — a bead stack layer (or TIFF), optics, the ``bead-fit`` engine's
  parameters; Run streams through the worker layer
  (:class:`~napari_lfrecon.gui.worker.EngineRunner`: live loss, one preview
  layer, Cancel). At the end: the fitted PSF layer (``metadata["psf"]`` is the
  :class:`~napari_lfrecon.psf.model.PSF`, so the Reconstruct widget can use
  it), the residual layer over the bead, the coefficient table and χ² of the
  unaberrated and the aberrated fit.
* **Light field** — raw / radiometry / dark layers (or TIFFs), optional nominal
  optics (or a napari-LF ``metadata.txt``). *Detect grid* measures the lenslet
  grid and shows the centres as a Points layer over the raw frame; *Rectify*
  resamples the raw frame to an odd integer number of pixels per lenslet and,
  with complete optics, computes the implied LFM PSF in a worker (progress,
  Cancel) and attaches it to the rectified layer; *Save* writes the same files
  as ``lfrecon calibrate lightfield``.
* **XLFM** — a white or bead frame (optional dark frame and nominal optics):
  view centres as Points, the cropped views as a layer; *Save* writes the same
  files as ``lfrecon calibrate xlfm``.

Errors are shown with ``show_error`` and the reason; input layers are never modified.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal
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
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .. import cli_calibrate as files
from ..engines.bead_fit import BeadFitParams
from ..psf.calibrate_bead import BeadCalibration
from ..psf.zernike import ZERNIKE_NAMES
from .params_form import ParamsForm
from .worker import SYNC_ENV, EngineRunner, RunRequest, error_message

if TYPE_CHECKING:  # pragma: no cover
    import napari

#: Progress bar resolution (Qt progress bars are integer).
_PROGRESS_STEPS = 1000
#: Combo entry meaning "no layer" (optional inputs such as the dark frame).
NO_LAYER = "(none)"
#: Size (data pixels) of the centre markers: visible over a lenslet image without hiding it.
POINT_SIZE_PX = 3.0
#: The light-field optics fields: our name → (label, tooltip).
LF_OPTICS_FIELDS: dict[str, tuple[str, str]] = {
    "lenslet_pitch_um": ("lenslet pitch (µm)", "microlens pitch"),
    "lenslet_focal_um": ("lenslet focal (µm)", "microlens focal length"),
    "camera_pixel_um": ("camera pixel (µm)", "physical camera pixel"),
    "relay_magnification": ("relay magnification", "relay between the lenslets and the camera (1 if none)"),
    "magnification": ("objective magnification", "objective (with tube lens) magnification"),
    "na": ("NA", "objective numerical aperture"),
    "wavelength_um": ("wavelength (µm)", "emission wavelength"),
    "immersion_index": ("medium index", "refractive index of the immersion / sample medium"),
}


# --------------------------------------------------------------------------- small widgets
class LayerPicker(QWidget):
    """An image-layer combo plus a "…" button that opens a TIFF as a new layer and selects it."""

    def __init__(self, viewer: napari.Viewer, *, optional: bool = False, tip: str = "") -> None:
        super().__init__()
        self.viewer = viewer
        self.optional = optional
        self.combo = QComboBox()
        self.combo.setToolTip(tip)
        self.button = QPushButton("…")
        self.button.setFixedWidth(28)
        self.button.setToolTip("open a TIFF file as a layer")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.combo, 1)
        row.addWidget(self.button)
        self.button.clicked.connect(self._browse)
        self.refresh()

    def refresh(self) -> None:
        """Refill the combo from the viewer's image layers, keeping the selection when it still exists."""
        current = self.combo.currentData()
        names = [
            layer.name for layer in self.viewer.layers if isinstance(layer, Image) and not layer.metadata.get("preview")
        ]
        self.combo.blockSignals(True)
        self.combo.clear()
        if self.optional:
            self.combo.addItem(NO_LAYER, None)
        for name in names:
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


class _Relay(QObject):
    """Carries progress and results from a worker thread to the main thread (queued Qt connections)."""

    progressed = Signal(float, str)
    done = Signal(object)


def _number_field(tip: str) -> QLineEdit:
    edit = QLineEdit()
    edit.setPlaceholderText("—")
    edit.setToolTip(tip)
    return edit


def _spin(value: float, low: float, high: float, decimals: int, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setDecimals(decimals)
    spin.setRange(low, high)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def _int_spin(value: int, low: int, high: int, tip: str, step: int = 1) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def _frame(layer: Image, what: str) -> np.ndarray:
    """The layer's data as a float array copy's source, checked to be one 2-D frame."""
    data = np.asarray(layer.data[0] if layer.multiscale else layer.data)
    if data.ndim != 2:
        raise ValueError(f"the {what} layer {layer.name!r} has shape {data.shape}; expected one 2-D (Y, X) frame")
    return data


# --------------------------------------------------------------------------- the widget
class CalibrateWidget(QWidget):
    """Dock widget with the bead, light-field and XLFM calibrations (see the module docstring)."""

    def __init__(self, napari_viewer: napari.Viewer, *, sync: bool | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.sync = os.environ.get(SYNC_ENV, "") not in ("", "0") if sync is None else sync
        self.runner: EngineRunner | None = None
        self.bead_calibration: BeadCalibration | None = None
        self.lf_calibration: Any = None
        self.lf_summary: dict[str, Any] | None = None
        self.lf_rectified: np.ndarray | None = None
        self.lf_psf: Any = None
        self.xlfm_calibration: Any = None
        self._xlfm_views: np.ndarray | None = None
        self._psf_worker: Any = None
        self._psf_stop = threading.Event()
        self._relay = _Relay()
        self._relay.progressed.connect(self._on_progress)
        self._relay.done.connect(self._on_psf_done)
        self._pending_rectified: dict[str, Any] | None = None

        self.tabs = QTabWidget()
        self.tabs.addTab(self._bead_tab(), "Bead")
        self.tabs.addTab(self._lightfield_tab(), "Light field")
        self.tabs.addTab(self._xlfm_tab(), "XLFM")

        self.progress = QProgressBar()
        self.progress.setRange(0, _PROGRESS_STEPS)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("stop the running fit or PSF computation")
        self.status_label = QLabel("ready")
        self.status_label.setWordWrap(True)
        bottom = QHBoxLayout()
        bottom.addWidget(self.progress, 1)
        bottom.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addLayout(bottom)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

        self.cancel_button.clicked.connect(self.cancel)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layers)
        self._refresh_layers()

    # ================================================================= bead tab
    def _bead_tab(self) -> QWidget:
        page = QWidget()
        self.bead_picker = LayerPicker(self.viewer, tip="the bead stack (Z, Y, X)")
        self.bead_na = _spin(0.85, 0.05, 1.7, 3, "objective numerical aperture")
        self.bead_wavelength = _spin(0.52, 0.2, 2.0, 3, "emission wavelength (µm)")
        self.bead_index = _spin(1.0, 1.0, 2.0, 3, "immersion refractive index")
        self.bead_dz = _spin(0.3, 0.001, 100.0, 4, "z step of the stack (µm); from the layer's scale")
        self.bead_dy = _spin(0.13, 0.001, 100.0, 4, "lateral pixel (µm, object space); from the layer's scale")
        self.bead_params = ParamsForm(BeadFitParams)
        self.bead_run = QPushButton("Run fit")
        self.bead_loss = QLabel("loss: —")
        self.bead_chi2 = QLabel("χ²: —")
        self.bead_chi2.setWordWrap(True)
        self.bead_table = QTableWidget(0, 3)
        self.bead_table.setHorizontalHeaderLabels(["mode", "name", "waves"])
        self.bead_table.verticalHeader().setVisible(False)
        self.bead_table.setMinimumHeight(120)

        form = QFormLayout()
        form.addRow("bead stack", self.bead_picker)
        form.addRow("NA", self.bead_na)
        form.addRow("wavelength (µm)", self.bead_wavelength)
        form.addRow("immersion index", self.bead_index)
        voxel = QHBoxLayout()
        voxel.addWidget(self.bead_dz)
        voxel.addWidget(self.bead_dy)
        form.addRow("voxel dz, dxy (µm)", voxel)
        params_box = QGroupBox("Fit")
        QVBoxLayout(params_box).addWidget(self.bead_params)
        layout = QVBoxLayout(page)
        layout.addLayout(form)
        layout.addWidget(params_box)
        layout.addWidget(self.bead_run)
        layout.addWidget(self.bead_loss)
        layout.addWidget(self.bead_chi2)
        layout.addWidget(self.bead_table)
        self.bead_run.clicked.connect(self.run_bead)
        self.bead_picker.combo.currentIndexChanged.connect(self._on_bead_layer)
        return page

    def _on_bead_layer(self, *_: Any) -> None:
        layer = self.bead_picker.layer()
        if layer is not None and layer.ndim == 3 and not np.allclose(layer.scale, 1.0):
            self.bead_dz.setValue(float(layer.scale[0]))
            self.bead_dy.setValue(float(layer.scale[-1]))

    def run_bead(self) -> EngineRunner | None:
        """Start the bead fit (the Run button); bad input shows an error instead."""
        if self.busy:
            return self.runner
        try:
            layer = self.bead_picker.layer()
            if layer is None:
                raise ValueError("no bead stack: choose an image layer or open a TIFF")
            data = np.asarray(layer.data[0] if layer.multiscale else layer.data)
            if data.ndim != 3:
                raise ValueError(f"the bead layer {layer.name!r} has shape {data.shape}; expected a (Z, Y, X) stack")
            voxel = (self.bead_dz.value(), self.bead_dy.value(), self.bead_dy.value())
            optics = {
                "na": self.bead_na.value(),
                "wavelength_um": self.bead_wavelength.value(),
                "immersion_index": self.bead_index.value(),
            }
            if not optics["na"] < optics["immersion_index"]:
                raise ValueError(
                    f"the NA ({optics['na']}) must be below the immersion index ({optics['immersion_index']})"
                )
            request = RunRequest(
                engine="bead-fit",
                data=data,
                psf=None,
                params=self.bead_params.values(),
                input_name=layer.name,
                input_scale=voxel,
                input_translate=tuple(float(t) for t in layer.translate),
                input_fields={"optics": optics},
            )
            runner = EngineRunner(self.viewer, request, sync=self.sync)
        except Exception as exc:  # bad input is a message, never a traceback
            self._fail(f"Cannot fit: {error_message(exc)}")
            return None
        self.runner = runner
        self.bead_calibration = None
        self.bead_table.setRowCount(0)
        self.bead_loss.setText("loss: —")
        self.bead_chi2.setText("χ²: —")
        runner.progressed.connect(self._on_progress)
        runner.metric.connect(self._on_bead_metric)
        runner.resulted.connect(self._on_bead_calibrated)
        runner.finished.connect(self._on_bead_finished)
        self._set_busy(True, f"fitting the bead in {request.input_name}…")
        runner.start()
        return runner

    def _on_bead_metric(self, name: str, value: float) -> None:
        if name == "loss":
            self.bead_loss.setText(f"loss: {value:.6g}")
        elif name.startswith("chi2"):
            self.bead_chi2.setText(f"{self.bead_chi2.text()}  {name}: {value:.4g}".replace("χ²: —  ", ""))

    def _on_bead_calibrated(self, calibration: BeadCalibration) -> None:
        self.bead_calibration = calibration
        result = self.runner.result_layer if self.runner is not None else None
        if result is not None:
            result.metadata = {**result.metadata, "psf": calibration.psf}
        layer = self.runner.request if self.runner is not None else None
        fit = calibration.fit
        self.bead_table.setRowCount(len(fit.modes))
        for row, j in enumerate(fit.modes):
            for col, text in enumerate((str(j), ZERNIKE_NAMES.get(j, f"Z{j}"), f"{float(fit.zernike[j]):+.4f}")):
                self.bead_table.setItem(row, col, QTableWidgetItem(text))
        self.bead_table.resizeColumnsToContents()
        self.bead_chi2.setText(
            f"χ² unaberrated {calibration.chi2_unaberrated:.4g} → fitted {calibration.chi2_fit:.4g} "
            f"(RMS aberration {float(np.sqrt(np.sum(fit.zernike[list(fit.modes)] ** 2))):.3f} waves)"
        )
        if layer is not None:
            voxel = calibration.voxel_size
            translate = tuple(
                float(t) + o * v
                for t, o, v in zip(layer.input_translate or (0, 0, 0), fit.crop_origin, voxel, strict=True)
            )
            self.viewer.add_image(
                calibration.residual,
                name=f"{layer.input_name} [bead-fit residual]",
                scale=voxel,
                translate=translate,
                colormap="twilight_shifted",
                metadata={"bead_fit": calibration.summary()},
            )

    def _on_bead_finished(self, status: str, message: str) -> None:
        self._set_busy(False, message if status == "done" else f"{status}: {message}")
        if status == "done":
            self.progress.setValue(_PROGRESS_STEPS)

    # ================================================================= light-field tab
    def _lightfield_tab(self) -> QWidget:
        page = QWidget()
        self.lf_raw = LayerPicker(self.viewer, tip="the raw light-field frame (Y, X)")
        self.lf_white = LayerPicker(self.viewer, tip="the radiometry (white) frame, same size as the light field")
        self.lf_dark = LayerPicker(self.viewer, optional=True, tip="the dark frame (optional)")
        self.lf_fields = {name: _number_field(tip) for name, (_, tip) in LF_OPTICS_FIELDS.items()}
        self.lf_metadata_button = QPushButton("Load metadata.txt…")
        self.lf_metadata_button.setToolTip("fill the optics from a napari-LF metadata.txt")
        self.lf_supersample = _int_spin(files.DEFAULT_SUPERSAMPLE, 1, 15, "volume voxels per lenslet (odd)", step=2)
        self.lf_z_from = _spin(files.DEFAULT_Z_RANGE_UM[0], -500, 500, 2, "first PSF depth (µm)")
        self.lf_z_to = _spin(files.DEFAULT_Z_RANGE_UM[1], -500, 500, 2, "last PSF depth (µm)")
        self.lf_z_step = _spin(files.DEFAULT_Z_STEP_UM, 0.01, 100, 2, "PSF depth step (µm)")
        self.lf_detect = QPushButton("Detect grid")
        self.lf_rectify = QPushButton("Rectify")
        self.lf_save = QPushButton("Save calibration…")
        self.lf_info = QLabel("no grid yet")
        self.lf_info.setWordWrap(True)

        inputs = QFormLayout()
        inputs.addRow("light field", self.lf_raw)
        inputs.addRow("radiometry", self.lf_white)
        inputs.addRow("dark", self.lf_dark)
        optics_box = QGroupBox("Nominal optics (optional; complete optics give the PSF)")
        optics_form = QFormLayout(optics_box)
        optics_form.addRow(self.lf_metadata_button)
        for name, (label, _) in LF_OPTICS_FIELDS.items():
            optics_form.addRow(label, self.lf_fields[name])
        z_row = QHBoxLayout()
        for spin in (self.lf_z_from, self.lf_z_to, self.lf_z_step):
            z_row.addWidget(spin)
        # On a row of their own: three spin boxes with napari's +/- buttons do not fit in the field column.
        optics_form.addRow(QLabel("PSF depths z: from, to, step (µm)"))
        optics_form.addRow(z_row)
        optics_form.addRow("supersample", self.lf_supersample)
        buttons = QHBoxLayout()
        for button in (self.lf_detect, self.lf_rectify, self.lf_save):
            buttons.addWidget(button)
        layout = QVBoxLayout(page)
        layout.addLayout(inputs)
        layout.addWidget(optics_box)
        layout.addLayout(buttons)
        layout.addWidget(self.lf_info)
        self.lf_metadata_button.clicked.connect(self._browse_metadata)
        self.lf_detect.clicked.connect(self.detect_grid)
        self.lf_rectify.clicked.connect(self.rectify)
        self.lf_save.clicked.connect(self._browse_save_lightfield)
        return page

    def _browse_metadata(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "napari-LF metadata", "", "metadata (*.txt *.json);;All files (*)")
        if path:
            self.load_metadata(path)

    def load_metadata(self, path: str | Path) -> dict[str, Any] | None:
        """Fill the optics (and PSF depths, supersampling) from a napari-LF ``metadata.txt``."""
        try:
            values = files.read_lightfield_metadata(path)
        except Exception as exc:
            self._fail(f"Cannot read the metadata: {error_message(exc)}")
            return None
        for name, edit in self.lf_fields.items():
            if name in values:
                edit.setText(f"{values[name]:g}")
        if "supersample" in values and int(values["supersample"]) % 2 == 1:
            self.lf_supersample.setValue(int(values["supersample"]))
        if values.get("z_planes_um"):
            z = values["z_planes_um"]
            self.lf_z_from.setValue(float(z[0]))
            self.lf_z_to.setValue(float(z[-1]))
            if len(z) > 1:
                self.lf_z_step.setValue(float(z[1] - z[0]))
        self.status_label.setText(f"optics from {Path(path).name}")
        return values

    def lf_optics(self) -> dict[str, float]:
        """The optics typed in the form (empty fields left out); ``ValueError`` for non-numbers."""
        optics: dict[str, float] = {}
        for name, edit in self.lf_fields.items():
            text = edit.text().strip()
            if not text:
                continue
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{LF_OPTICS_FIELDS[name][0]} must be a number, got {text!r}") from None
            if not value > 0:
                raise ValueError(f"{LF_OPTICS_FIELDS[name][0]} must be positive, got {value}")
            optics[name] = value
        return optics

    def _lf_frames(self) -> tuple[Image, np.ndarray, np.ndarray, np.ndarray | None]:
        raw_layer, white_layer = self.lf_raw.layer(), self.lf_white.layer()
        if raw_layer is None or white_layer is None:
            raise ValueError("choose the light-field and the radiometry layers (or open their TIFFs)")
        raw, white = _frame(raw_layer, "light-field"), _frame(white_layer, "radiometry")
        if white.shape != raw.shape:
            raise ValueError(
                f"the radiometry frame is {white.shape} but the light field is {raw.shape}; expected the same size"
            )
        dark_layer = self.lf_dark.layer()
        dark = _frame(dark_layer, "dark") if dark_layer is not None else None
        if dark is not None and dark.shape != raw.shape:
            raise ValueError(
                f"the dark frame is {dark.shape} but the light field is {raw.shape}; expected the same size"
            )
        return raw_layer, raw, white, dark

    def detect_grid(self) -> Any:
        """Measure the lenslet grid (the Detect button): Points layer of the centres on the raw frame."""
        from ..psf.calibrate_lightfield import calibrate_lightfield

        try:
            raw_layer, _raw, white, dark = self._lf_frames()
            optics = self.lf_optics()
            calibration = calibrate_lightfield(white, dark)
            nominal = files.check_pitch(calibration, optics)
            if nominal is not None:
                calibration = calibrate_lightfield(white, dark, nominal_pitch_px=nominal)
        except Exception as exc:
            self._fail(f"Cannot detect the lenslet grid: {error_message(exc)}")
            return None
        self.lf_calibration = calibration
        nnum = calibration.pixels_per_lenslet()
        self.lf_summary = files.lightfield_summary(calibration, nnum, optics)
        name = f"{raw_layer.name} lenslet centres"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        scale = tuple(float(s) for s in raw_layer.scale[-2:])
        self.viewer.add_points(
            calibration.lenslet_centres(),
            name=name,
            size=POINT_SIZE_PX,
            face_color="cyan",
            border_color="cyan",
            scale=scale,
            translate=tuple(float(t) for t in raw_layer.translate[-2:]),
            metadata={"lightfield_calibration": self.lf_summary},
        )
        lines = [
            f"pitch {calibration.pitch_px:.4f} px (rows {calibration.pitch_yx_px[0]:.4f}, "
            f"columns {calibration.pitch_yx_px[1]:.4f}); rotation {calibration.rotation_deg:+.4f}°; "
            f"offset ({calibration.offset_px[0]:.2f}, {calibration.offset_px[1]:.2f}) px; "
            f"{len(calibration.lenslet_centres())} lenslets; rectify to {nnum} px per lenslet"
        ]
        if nominal is not None:
            lines.append(
                f"nominal pitch from the optics: {nominal:.4f} px (ratio {calibration.pitch_px / nominal:.4f})"
            )
        lines += [f"note: {note}" for note in calibration.notes]
        self.lf_info.setText("\n".join(lines))
        self.status_label.setText("lenslet grid detected")
        return calibration

    def rectify(self) -> Any:
        """Rectify the raw frame (the Rectify button); with complete optics, compute the implied PSF in a worker."""
        from ..physics.lightfield import raw_to_views
        from ..psf.calibrate_lightfield import rectify

        if self.busy:
            return None
        try:
            raw_layer, raw, _white, dark = self._lf_frames()
            if self.lf_calibration is None or self.lf_calibration.frame_shape != raw.shape:
                if self.detect_grid() is None:
                    return None
            calibration = self.lf_calibration
            optics = self.lf_optics()
            nnum = calibration.pixels_per_lenslet()
            rectified = rectify(raw, calibration, pixels_per_lenslet=nnum, dark=dark)
            views = raw_to_views(rectified, nnum)
            summary = files.lightfield_summary(calibration, nnum, optics)
            lfm_optics = files.implied_lfm_optics(calibration, nnum, optics, self.lf_supersample.value())
            depths = files.z_planes((self.lf_z_from.value(), self.lf_z_to.value()), self.lf_z_step.value())
        except Exception as exc:
            self._fail(f"Cannot rectify: {error_message(exc)}")
            return None
        self.lf_summary = summary
        self.lf_rectified = rectified
        self.lf_views = views
        self.lf_psf = None
        pixel = 1.0
        if lfm_optics is not None:
            pixel = lfm_optics.lenslet_pitch_object_um / nnum  # the rectified pixel in object space
        self._pending_rectified = {"name": f"{raw_layer.name} rectified", "pixel": pixel, "summary": summary}
        if lfm_optics is None:
            missing = [LF_OPTICS_FIELDS[k][0] for k in files.LFM_OPTICS_KEYS if k not in optics]
            self._add_rectified(None)
            self.status_label.setText(f"rectified; no PSF (the optics lack {', '.join(missing)})")
            return rectified
        self._start_psf(lfm_optics, depths)
        return rectified

    def _start_psf(self, lfm_optics: Any, depths: np.ndarray) -> None:
        from ..psf.lfm import PSFComputationStopped, lfm_psf

        self._psf_stop.clear()
        relay, stop = self._relay, self._psf_stop

        def compute() -> Any:
            try:
                return lfm_psf(
                    lfm_optics,
                    depths,
                    progress=lambda f: relay.progressed.emit(float(f), "computing the LFM PSF…"),
                    should_stop=stop.is_set,
                )
            except PSFComputationStopped:
                return "cancelled"
            except Exception as exc:  # reported on the main thread, never a traceback
                return exc

        self._set_busy(True, f"computing the LFM PSF ({lfm_optics.n_views} views × {len(depths)} depths)…")
        if self.sync:
            self._on_psf_done(compute())
            return
        from napari.qt.threading import create_worker

        def work() -> None:
            relay.done.emit(compute())

        worker = create_worker(work, _start_thread=False)
        self._psf_worker = worker
        worker.finished.connect(self._on_psf_worker_finished)
        worker.start()

    def _on_psf_worker_finished(self) -> None:
        self._psf_worker = None

    def _on_psf_done(self, outcome: Any) -> None:
        self._set_busy(False, "")
        if isinstance(outcome, str):
            self.status_label.setText("PSF computation cancelled; the rectified frame was not added")
            self._pending_rectified = None
            return
        if isinstance(outcome, BaseException):
            self._pending_rectified = None
            self._fail(f"Cannot compute the LFM PSF: {error_message(outcome)}")
            return
        psf = outcome
        psf.optics["lightfield_calibration"] = {
            k: self.lf_summary[k] for k in ("pitch_px", "rotation_deg", "offset_px", "measured_vs_nominal")
        }
        self.lf_psf = psf
        self.progress.setValue(_PROGRESS_STEPS)
        self._add_rectified(psf)
        self.status_label.setText(f"rectified with its PSF: {psf.describe()}")

    def _add_rectified(self, psf: Any) -> None:
        pending = self._pending_rectified
        self._pending_rectified = None
        if pending is None or self.lf_rectified is None:
            return
        name = pending["name"]
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        metadata: dict[str, Any] = {"lightfield_calibration": pending["summary"]}
        if psf is not None:
            metadata["psf"] = psf
        self.viewer.add_image(
            self.lf_rectified, name=name, scale=(pending["pixel"], pending["pixel"]), metadata=metadata
        )

    def _browse_save_lightfield(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the light-field calibration (prefix)", "", "All files (*)")
        if path:
            self.save_lightfield(path)

    def save_lightfield(self, prefix: str | Path) -> list[Path]:
        """Write the files ``lfrecon calibrate lightfield`` writes (calibration, rectified, views, PSF)."""
        if self.lf_rectified is None or self.lf_summary is None:
            self._fail("Nothing to save: detect the grid and rectify first")
            return []
        try:
            paths = files.write_lightfield_calibration(
                prefix, self.lf_summary, self.lf_rectified, self.lf_views, self.lf_psf
            )
        except Exception as exc:
            self._fail(f"Cannot save: {error_message(exc)}")
            return []
        show_info(f"wrote {', '.join(p.name for p in paths)}")
        self.status_label.setText(f"saved {len(paths)} files next to {Path(prefix).name}")
        return paths

    # ================================================================= XLFM tab
    def _xlfm_tab(self) -> QWidget:
        page = QWidget()
        self.xlfm_picker = LayerPicker(self.viewer, tip="a white (uniform) or bead XLFM frame (Y, X)")
        self.xlfm_dark = LayerPicker(self.viewer, optional=True, tip="the dark frame (optional)")
        self.xlfm_optics_path = QLineEdit()
        self.xlfm_optics_path.setPlaceholderText("nominal optics: XLFM PSF file or JSON (optional)")
        self.xlfm_view_h = _int_spin(0, 0, 4096, "view height (0: the optics' or the largest that fits)")
        self.xlfm_view_w = _int_spin(0, 0, 4096, "view width (0: the optics' or the largest that fits)")
        self.xlfm_find = QPushButton("Find views")
        self.xlfm_save = QPushButton("Save calibration…")
        self.xlfm_info = QLabel("no views yet")
        self.xlfm_info.setWordWrap(True)
        form = QFormLayout()
        form.addRow("frame", self.xlfm_picker)
        form.addRow("dark", self.xlfm_dark)
        form.addRow("optics", self.xlfm_optics_path)
        size = QHBoxLayout()
        size.addWidget(self.xlfm_view_h)
        size.addWidget(self.xlfm_view_w)
        form.addRow("view size (px)", size)
        buttons = QHBoxLayout()
        buttons.addWidget(self.xlfm_find)
        buttons.addWidget(self.xlfm_save)
        layout = QVBoxLayout(page)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.xlfm_info)
        self.xlfm_find.clicked.connect(self.find_xlfm_views)
        self.xlfm_save.clicked.connect(self._browse_save_xlfm)
        return page

    def find_xlfm_views(self) -> Any:
        """Find the view centres (the Find button): Points layer of the centres and a views layer."""
        from ..psf.calibrate_xlfm import calibrate_xlfm

        try:
            layer = self.xlfm_picker.layer()
            if layer is None:
                raise ValueError("no XLFM frame: choose an image layer or open a TIFF")
            image = _frame(layer, "XLFM")
            dark_layer = self.xlfm_dark.layer()
            dark = _frame(dark_layer, "dark") if dark_layer is not None else None
            text = self.xlfm_optics_path.text().strip()
            optics = files.read_xlfm_optics(text) if text else None
            size = (self.xlfm_view_h.value(), self.xlfm_view_w.value())
            calibration = calibrate_xlfm(image, dark=dark, optics=optics, view_size=size if min(size) > 0 else None)
            source = image if dark is None else np.asarray(image, np.float64) - np.asarray(dark, np.float64)
            views = calibration.crop(source)
        except Exception as exc:
            self._fail(f"Cannot find the XLFM views: {error_message(exc)}")
            return None
        self.xlfm_calibration = calibration
        self._xlfm_views = views
        summary = calibration.to_dict()
        scale = tuple(float(s) for s in layer.scale[-2:])
        translate = tuple(float(t) for t in layer.translate[-2:])
        for name in (f"{layer.name} view centres", f"{layer.name} views"):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        self.viewer.add_points(
            calibration.centres,
            name=f"{layer.name} view centres",
            size=POINT_SIZE_PX,
            face_color="cyan",
            border_color="cyan",
            scale=scale,
            translate=translate,
            metadata={"xlfm_calibration": summary},
        )
        self.viewer.add_image(
            views, name=f"{layer.name} views", scale=(1.0, *scale), metadata={"xlfm_calibration": summary}
        )
        lines = [
            f"{calibration.n_lenslets} views of {calibration.view_size[0]}×{calibration.view_size[1]} px; "
            f"spot radius {float(np.median(calibration.spot_radius_px)):.2f} px (median)"
        ]
        if int(np.max(calibration.focal_group, initial=0)) > 0:
            lines.append(f"two focal groups: {int(np.sum(calibration.focal_group))} views with larger spots")
        lines += [f"note: {note}" for note in calibration.notes]
        self.xlfm_info.setText("\n".join(lines))
        self.status_label.setText("XLFM views found")
        return calibration

    def _browse_save_xlfm(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the XLFM calibration (prefix)", "", "All files (*)")
        if path:
            self.save_xlfm(path)

    def save_xlfm(self, prefix: str | Path) -> list[Path]:
        """Write the files ``lfrecon calibrate xlfm`` writes (calibration JSON, views TIFF)."""
        if self.xlfm_calibration is None or self._xlfm_views is None:
            self._fail("Nothing to save: find the XLFM views first")
            return []
        try:
            paths = files.write_xlfm_calibration(prefix, self.xlfm_calibration.to_dict(), self._xlfm_views)
        except Exception as exc:
            self._fail(f"Cannot save: {error_message(exc)}")
            return []
        self.status_label.setText(f"saved {len(paths)} files next to {Path(prefix).name}")
        return paths

    # ================================================================= shared
    @property
    def busy(self) -> bool:
        """True while a bead fit or a PSF computation runs."""
        return (self.runner is not None and self.runner.running) or self.cancel_button.isEnabled()

    def cancel(self) -> None:
        """Stop the running bead fit or PSF computation (the Cancel button)."""
        if self.runner is not None and self.runner.running:
            self.runner.cancel()
        self._psf_stop.set()
        self.status_label.setText("cancelling…")

    def _set_busy(self, busy: bool, message: str) -> None:
        self.cancel_button.setEnabled(busy)
        for button in (self.bead_run, self.lf_rectify, self.lf_detect):
            button.setEnabled(not busy)
        if busy:
            self.progress.setValue(0)
        if message:
            self.status_label.setText(message)

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(round(min(max(fraction, 0.0), 1.0) * _PROGRESS_STEPS))
        self.status_label.setText(message)

    def _fail(self, message: str) -> None:
        show_error(message)
        self.status_label.setText(message)

    def _refresh_layers(self, *_: Any) -> None:
        for picker in (self.bead_picker, self.lf_raw, self.lf_white, self.lf_dark, self.xlfm_picker, self.xlfm_dark):
            picker.refresh()
