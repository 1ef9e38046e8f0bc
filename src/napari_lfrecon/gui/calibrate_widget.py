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
  optics (or a napari-LF ``metadata.txt``). *Detect grid* runs the
  ``lightfield-calibrate`` engine through the worker layer (progress, Cancel)
  and shows the centres as a Points layer over the raw frame; *Rectify*
  resamples the raw frame to an odd integer number of pixels per lenslet and,
  with complete optics, computes the implied LFM PSF off the main thread
  (:func:`~napari_lfrecon.gui.worker.start_job`: progress, Cancel) and attaches
  it to the rectified layer; *Save* writes the same files as ``lfrecon calibrate lightfield``.
* **XLFM** — a white or bead frame (optional dark frame and nominal optics):
  the ``xlfm-calibrate`` engine finds the view centres (Points) and the cropped
  views become a layer; *Save* writes the same files as ``lfrecon calibrate xlfm``.

The file helpers are :mod:`napari_lfrecon.io.calibration_files`, shared with the CLI.

Errors are shown with ``show_error`` and the reason; input layers are never modified.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_info
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..controllers import calibrate as control
from ..controllers.calibrate import LF_OPTICS_FIELDS
from ..engines.bead_fit import BeadFitParams
from ..engines.calibrate_lightfield import LightFieldCalibrateParams
from ..engines.calibrate_xlfm import OPTICS_OBJECT_KEY, XLFMCalibrateParams
from ..io import calibration_files as files
from ..psf.calibrate_bead import BeadCalibration
from .kit import PROGRESS_STEPS as _PROGRESS_STEPS
from .kit import LayerPicker, RunPanel, follow_layers, hbox, int_spin, number_field, spin
from .panels import scrolled_layout
from .params_form import ParamsForm
from .worker import EngineRunner, RunRequest, error_message, sync_requested

if TYPE_CHECKING:  # pragma: no cover
    import napari

#: Size (data pixels) of the centre markers: visible over a lenslet image without hiding it.
POINT_SIZE_PX = 3.0


# --------------------------------------------------------------------------- the widget
class CalibrateWidget(QWidget):
    """Dock widget with the bead, light-field and XLFM calibrations (see the module docstring)."""

    def __init__(self, napari_viewer: napari.Viewer, *, sync: bool | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.sync = sync_requested(sync)
        self.bead_calibration: BeadCalibration | None = None
        self.lf_calibration: Any = None
        self.lf_summary: dict[str, Any] | None = None
        self.lf_rectified: np.ndarray | None = None
        self.lf_psf: Any = None
        self.xlfm_calibration: Any = None
        self._xlfm_views: np.ndarray | None = None
        self._pending_rectified: dict[str, Any] | None = None

        self.tabs = QTabWidget()
        self.tabs.addTab(self._bead_tab(), "Bead")
        self.tabs.addTab(self._lightfield_tab(), "Light field")
        self.tabs.addTab(self._xlfm_tab(), "XLFM")

        self.panel = RunPanel(self.viewer, sync=sync, cancel_tip="stop the fit, grid detection or PSF computation")
        self.panel.locked = [self.bead_run, self.lf_rectify, self.lf_detect, self.xlfm_find]
        self.progress, self.cancel_button, self.status_label = (
            self.panel.progress,
            self.panel.cancel_button,
            self.panel.status_label,
        )
        self._fail, self._start_engine = self.panel.fail, self.panel.start_engine
        # The tabs scroll (the dock fits a laptop screen); progress and Cancel stay in view.
        body, footer = scrolled_layout(self)
        body.addWidget(self.tabs)
        body.addStretch(1)
        footer.addWidget(self.panel)
        self.panel.stop_on_close(self)
        follow_layers(self.viewer, self._refresh_layers)
        self._refresh_layers()

    # ================================================================= bead tab
    def _bead_tab(self) -> QWidget:
        page = QWidget()
        self.bead_picker = LayerPicker(self.viewer, tip="the bead stack (Z, Y, X)")
        self.bead_na = spin(0.85, 0.05, 1.7, "objective numerical aperture", 3)
        self.bead_wavelength = spin(0.52, 0.2, 2.0, "emission wavelength (µm)", 3)
        self.bead_index = spin(1.0, 1.0, 2.0, "immersion refractive index", 3)
        self.bead_dz = spin(0.3, 0.001, 100.0, "z step of the stack (µm); from the layer's scale", 4)
        self.bead_dy = spin(0.13, 0.001, 100.0, "lateral pixel (µm, object space); from the layer's scale", 4)
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
            params = self.bead_params.values()
            request = self._calibration_request("bead-fit", layer, data, optics, {}, params, scale=voxel)
        except Exception as exc:  # bad input is a message, never a traceback
            self._fail(f"Cannot fit: {error_message(exc)}")
            return None
        self.bead_calibration = None
        self.bead_table.setRowCount(0)
        self.bead_loss.setText("loss: —")
        self.bead_chi2.setText("χ²: —")
        message = f"fitting the bead in {request.input_name}…"
        return self._start_engine(request, self._on_bead_calibrated, message, on_metric=self._on_bead_metric)

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
        rows = control.bead_rows(calibration)
        self.bead_table.setRowCount(len(rows))
        for row, texts in enumerate(rows):
            for col, text in enumerate(texts):
                self.bead_table.setItem(row, col, QTableWidgetItem(text))
        self.bead_table.resizeColumnsToContents()
        self.bead_chi2.setText(control.bead_chi2_text(calibration))
        if layer is not None:
            voxel = calibration.voxel_size
            origin = calibration.fit.crop_origin
            translate = control.residual_translate(layer.input_translate, origin, voxel)
            self.viewer.add_image(
                calibration.residual,
                name=f"{layer.input_name} [bead-fit residual]",
                scale=voxel,
                translate=translate,
                colormap="twilight_shifted",
                metadata={"bead_fit": calibration.summary()},
            )

    # ================================================================= light-field tab
    def _lightfield_tab(self) -> QWidget:
        page = QWidget()
        self.lf_raw = LayerPicker(self.viewer, tip="the raw light-field frame (Y, X)")
        self.lf_white = LayerPicker(self.viewer, optional=True, tip="the radiometry (white) frame, as the light field")
        self.lf_dark = LayerPicker(self.viewer, optional=True, tip="the dark frame (optional)")
        # Each picker defaults by role (names, metadata) until the user (or select()) chooses; see _guess_lf_roles.
        self.lf_roles, self._lf_pickers = control.LightFieldRoles(), {"lightfield": self.lf_raw}
        self._lf_pickers.update(radiometry=self.lf_white, dark=self.lf_dark)
        for role, picker in self._lf_pickers.items():
            picker.combo.currentIndexChanged.connect(
                lambda _i, r=role, p=picker: self.lf_roles.choose(r, p.combo.currentData())
            )
        self.lf_fields = {name: number_field(tip) for name, (_, tip) in LF_OPTICS_FIELDS.items()}
        self.lf_metadata_button = QPushButton("Load metadata.txt…")
        self.lf_metadata_button.setToolTip("fill the optics from a napari-LF metadata.txt")
        self.lf_supersample = int_spin(files.DEFAULT_SUPERSAMPLE, 1, 15, "volume voxels per lenslet (odd)", step=2)
        self.lf_z_from = spin(files.DEFAULT_Z_RANGE_UM[0], -500, 500, "first PSF depth (µm)", 2)
        self.lf_z_to = spin(files.DEFAULT_Z_RANGE_UM[1], -500, 500, "last PSF depth (µm)", 2)
        self.lf_z_step = spin(files.DEFAULT_Z_STEP_UM, 0.01, 100, "PSF depth step (µm)", 2)
        self.lf_params = ParamsForm(LightFieldCalibrateParams)
        self.lf_detect = QPushButton("Detect grid")
        self.lf_rectify = QPushButton("Rectify")
        self.lf_save = QPushButton("Save calibration…")
        self.lf_info = QLabel("no grid yet")
        self.lf_info.setWordWrap(True)

        inputs = QFormLayout()
        inputs.addRow("light field", self.lf_raw)
        inputs.addRow("radiometry", self.lf_white)
        inputs.addRow("dark", self.lf_dark)
        optics_box = QGroupBox("Nominal optics (complete optics give the PSF)")
        optics_form = QFormLayout(optics_box)
        optics_form.addRow(self.lf_metadata_button)
        for name, (label, _) in LF_OPTICS_FIELDS.items():
            optics_form.addRow(label, self.lf_fields[name])
        # On a row of their own: three spin boxes with napari's +/- buttons do not fit in the field column.
        optics_form.addRow(QLabel("PSF depths z: from, to, step (µm)"))
        optics_form.addRow(hbox(self.lf_z_from, self.lf_z_to, self.lf_z_step, stretch_first=False))
        optics_form.addRow("supersample", self.lf_supersample)
        layout = QVBoxLayout(page)
        layout.addLayout(inputs)
        layout.addWidget(optics_box)
        layout.addWidget(self.lf_params)
        layout.addLayout(hbox(self.lf_detect, self.lf_rectify, self.lf_save, stretch_first=False))
        layout.addWidget(self.lf_info)
        self.lf_metadata_button.clicked.connect(self._browse_metadata)
        self.lf_detect.clicked.connect(self.detect_grid)
        self.lf_rectify.clicked.connect(self.rectify)
        self.lf_save.clicked.connect(lambda: self._ask_prefix("light-field", self.save_lightfield))
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
            first, last, step = control.depth_range(values["z_planes_um"])
            self.lf_z_from.setValue(first)
            self.lf_z_to.setValue(last)
            if step is not None:
                self.lf_z_step.setValue(step)
        self.status_label.setText(f"optics from {Path(path).name}")
        return values

    def lf_optics(self) -> dict[str, float]:
        """The optics typed in the form (empty fields left out); ``ValueError`` for non-numbers."""
        return control.parse_optics({name: edit.text() for name, edit in self.lf_fields.items()})

    def _lf_frames(self) -> tuple[Image, np.ndarray, np.ndarray, np.ndarray | None]:
        raw_layer, white_layer = self.lf_raw.layer(), self.lf_white.layer()
        if raw_layer is None or white_layer is None:
            raise ValueError("choose the light-field and the radiometry layers (or open their TIFFs)")
        raw, white = control.frame_2d(raw_layer, "light-field"), control.frame_2d(white_layer, "radiometry")
        dark_layer = self.lf_dark.layer()
        dark = control.frame_2d(dark_layer, "dark") if dark_layer is not None else None
        control.check_same_size(raw, {"radiometry": white, "dark": dark})
        return raw_layer, raw, white, dark

    def detect_grid(self, then: Callable[[], Any] | None = None) -> EngineRunner | None:
        """Measure the lenslet grid (the Detect button) with the ``lightfield-calibrate`` engine, off the main thread.

        When it is done, the centres are a Points layer on the raw frame and
        ``then`` (e.g. :meth:`rectify`) runs. Returns the runner, or ``None``
        when the input is refused (the error is shown).
        """
        if self.busy:
            return self.runner
        try:
            raw_layer, raw, white, dark = self._lf_frames()
            optics = self.lf_optics()
            frames = {"radiometry": white} if dark is None else {"radiometry": white, "dark": dark}
            params = self.lf_params.values()
            request = self._calibration_request("lightfield-calibrate", raw_layer, raw, optics, frames, params)
        except Exception as exc:
            self._fail(f"Cannot detect the lenslet grid: {error_message(exc)}")
            return None
        self.lf_calibration = None
        frame_layers = [picker.layer() for picker in (self.lf_raw, self.lf_white, self.lf_dark)]

        def measured(calibration: Any) -> None:
            self._show_grid(raw_layer, calibration, optics, frame_layers)
            if then is not None:
                # after the runner has finished (the widget is no longer busy)
                self.runner.finished.connect(lambda *_: then())  # type: ignore[union-attr]

        return self._start_engine(request, measured, f"detecting the lenslet grid in {request.input_name}…")

    def _show_grid(self, raw_layer: Image, calibration: Any, optics: dict[str, float], frames: list[Any]) -> None:
        self.lf_calibration = calibration
        nnum = calibration.pixels_per_lenslet()
        self.lf_summary = files.lightfield_summary(calibration, nnum, optics)
        placement = control.raw_frame_placement(calibration, optics)
        # in object-space µm under the rectified frame and the volume: only scale/translate change, never the data
        for layer in [frame for frame in frames if frame is not None and placement is not None]:
            for key, value in placement.items():
                setattr(layer, key, value)
        self._add_centres(
            raw_layer, "lenslet centres", calibration.lenslet_centres(), {"lightfield_calibration": self.lf_summary}
        )
        self.lf_info.setText(control.grid_report(calibration))

    def rectify(self) -> Any:
        """Rectify the raw frame (the Rectify button); with complete optics, compute the implied PSF in a worker.

        Without a grid measured on a frame of this size, the grid is detected
        first (in a worker) and rectification follows.
        """
        if self.busy:
            return None
        try:
            raw_layer, raw, _white, dark = self._lf_frames()
            if self.lf_calibration is None or self.lf_calibration.frame_shape != raw.shape:
                self.detect_grid(then=self._rectify_if_measured)
                return None
            z_range = (self.lf_z_from.value(), self.lf_z_to.value())
            made = control.rectify_lightfield(
                raw,
                self.lf_calibration,
                self.lf_optics(),
                dark=dark,
                supersample=self.lf_supersample.value(),
                z_range=z_range,
                z_step=self.lf_z_step.value(),
            )
        except Exception as exc:
            self._fail(f"Cannot rectify: {error_message(exc)}")
            return None
        self.lf_summary, self.lf_rectified, self.lf_views = made["summary"], made["rectified"], made["views"]
        self.lf_psf = None
        self._pending_rectified = {"name": f"{raw_layer.name} rectified", **made}
        if made["lfm_optics"] is None:
            self._add_rectified(None)
            self.status_label.setText(f"rectified; no PSF (the optics lack {', '.join(made['missing_optics'])})")
        else:
            self._start_psf(made["lfm_optics"], made["depths"])
        return made["rectified"]

    def _rectify_if_measured(self) -> None:
        if self.lf_calibration is not None:
            self.rectify()

    def _start_psf(self, lfm_optics: Any, depths: np.ndarray) -> None:
        self.panel.start_work(
            control.lfm_psf_updates,
            lfm_optics,
            depths,
            message=f"computing the LFM PSF ({lfm_optics.n_views} views × {len(depths)} depths)…",
            on_return=self._on_psf_done,
            failure="Cannot compute the LFM PSF",
        )

    def _on_psf_done(self, psf: Any) -> None:
        if psf is None or isinstance(psf, BaseException):
            self._pending_rectified = None
            if psf is None:
                self.status_label.setText("PSF computation cancelled; the rectified frame was not added")
            else:
                self._fail(f"Cannot compute the LFM PSF: {error_message(psf)}")
            return
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
        metadata: dict[str, Any] = {"lightfield_calibration": self.lf_summary}
        if psf is not None:
            metadata["psf"] = psf
        scale = (pending["pixel_um"], pending["pixel_um"])
        self.viewer.add_image(self.lf_rectified, name=name, scale=scale, metadata=metadata, **pending["axes"])

    def _ask_prefix(self, what: str, save: Callable[[str], Any]) -> None:
        path, _ = QFileDialog.getSaveFileName(self, f"Save the {what} calibration (prefix)", "", "All files (*)")
        if path:
            save(path)

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
        self.xlfm_params = ParamsForm(XLFMCalibrateParams)
        self.xlfm_find = QPushButton("Find views")
        self.xlfm_save = QPushButton("Save calibration…")
        self.xlfm_info = QLabel("no views yet")
        self.xlfm_info.setWordWrap(True)
        form = QFormLayout()
        form.addRow("frame", self.xlfm_picker)
        form.addRow("dark", self.xlfm_dark)
        form.addRow("optics", self.xlfm_optics_path)
        layout = QVBoxLayout(page)
        layout.addLayout(form)
        layout.addWidget(self.xlfm_params)
        layout.addLayout(hbox(self.xlfm_find, self.xlfm_save, stretch_first=False))
        layout.addWidget(self.xlfm_info)
        layout.addStretch(1)  # keep the rows at the top of the (taller) tab
        self.xlfm_find.clicked.connect(self.find_xlfm_views)
        self.xlfm_save.clicked.connect(lambda: self._ask_prefix("XLFM", self.save_xlfm))
        return page

    def find_xlfm_views(self) -> EngineRunner | None:
        """Find the view centres (the Find button) with the ``xlfm-calibrate`` engine, off the main thread.

        When it is done: a Points layer of the centres and a layer of the
        cropped views. Returns the runner, or ``None`` when the input is refused.
        """
        if self.busy:
            return self.runner
        try:
            layer = self.xlfm_picker.layer()
            if layer is None:
                raise ValueError("no XLFM frame: choose an image layer or open a TIFF")
            image = control.frame_2d(layer, "XLFM")
            dark_layer = self.xlfm_dark.layer()
            dark = control.frame_2d(dark_layer, "dark") if dark_layer is not None else None
            text = self.xlfm_optics_path.text().strip()
            optics = {OPTICS_OBJECT_KEY: files.read_xlfm_optics(text)} if text else {}
            params = self.xlfm_params.values()
            frames = {} if dark is None else {"dark": dark}
            request = self._calibration_request("xlfm-calibrate", layer, image, optics, frames, params)
        except Exception as exc:
            self._fail(f"Cannot find the XLFM views: {error_message(exc)}")
            return None
        self.xlfm_calibration = None

        def found(calibration: Any) -> None:
            source = image if dark is None else np.asarray(image, np.float64) - np.asarray(dark, np.float64)
            self._show_xlfm(layer, calibration, calibration.crop(source))

        return self._start_engine(request, found, f"finding the XLFM views in {layer.name}…")

    def _show_xlfm(self, layer: Image, calibration: Any, views: np.ndarray) -> None:
        self.xlfm_calibration = calibration
        self._xlfm_views = views
        summary = calibration.to_dict()
        scale = tuple(float(s) for s in layer.scale[-2:])
        if f"{layer.name} views" in self.viewer.layers:
            self.viewer.layers.remove(f"{layer.name} views")
        self._add_centres(layer, "view centres", calibration.centres, {"xlfm_calibration": summary})
        self.viewer.add_image(
            views, name=f"{layer.name} views", scale=(1.0, *scale), metadata={"xlfm_calibration": summary}
        )
        self.xlfm_info.setText(control.xlfm_report(calibration))

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
    def _calibration_request(
        self,
        engine: str,
        layer: Image,
        data: np.ndarray,
        optics: dict[str, Any],
        frames: dict[str, np.ndarray],
        params: dict[str, Any] | None = None,
        scale: tuple[float, ...] | None = None,
    ) -> RunRequest:
        return RunRequest(
            engine=engine,
            data=data,
            psf=None,
            params=params or {},
            input_name=layer.name,
            input_scale=scale or tuple(float(v) for v in layer.scale[-data.ndim :]),
            input_translate=tuple(float(t) for t in layer.translate[-data.ndim :]),
            input_fields={"optics": optics, "frames": frames},
        )

    def _add_centres(self, layer: Image, what: str, centres: np.ndarray, metadata: dict[str, Any]) -> None:
        """Replace the Points layer ``"<layer> <what>"`` by ``centres`` drawn over ``layer``."""
        name = f"{layer.name} {what}"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        scale, translate = (tuple(float(v) for v in values[-2:]) for values in (layer.scale, layer.translate))
        style = {"size": POINT_SIZE_PX, "face_color": "cyan", "border_color": "cyan", "units": layer.units[-2:]}
        self.viewer.add_points(centres, name=name, scale=scale, translate=translate, metadata=metadata, **style)

    @property
    def runner(self) -> EngineRunner | None:
        """The last engine run (bead fit, grid detection or XLFM views)."""
        return self.panel.runner

    @property
    def busy(self) -> bool:
        """True while a calibration engine or a PSF computation runs."""
        return self.panel.busy

    def cancel(self) -> None:
        """Stop the running engine or PSF computation (the Cancel button); it stops within one step."""
        self.panel.cancel()

    def _guess_lf_roles(self) -> None:
        """Default the light-field pickers by role; the choices still shown are kept."""
        current = {role: picker.combo.currentData() for role, picker in self._lf_pickers.items()}
        layers = [(layer.name, layer.metadata, layer.ndim) for layer in self.viewer.layers if isinstance(layer, Image)]
        with self.lf_roles.guessing():
            for role, name in self.lf_roles.defaults(layers, current).items():
                self._lf_pickers[role].select(name)

    def _refresh_layers(self, *_: Any) -> None:
        for picker in (self.bead_picker, self.lf_raw, self.lf_white, self.lf_dark, self.xlfm_picker, self.xlfm_dark):
            picker.refresh()
        self._guess_lf_roles()
