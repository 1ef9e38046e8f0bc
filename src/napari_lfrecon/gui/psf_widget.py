"""The PSF editor dock widget: widefield, light-field (LFM) and XLFM PSFs, computed live.

Modes
-----
- **Widefield**: optics fields, one slider per Zernike mode (ANSI 0–21) with
  presets, a "vectorial (high NA)" option and a refractive-index-mismatch
  (Gibson–Lanni) option. Four panels: the in-focus XY plane, the XZ and YZ
  sections through the centre and ``log10 |OTF|`` in the (kz, kx) plane.
- **Light field (LFM)**: the lenslet geometry (:class:`~napari_lfrecon.psf.lfm.LFMOptics`).
  Two panels: the raw-sensor image of an on-axis point at the chosen depth
  (the pattern behind the lenslets) and the sensor's centre row across all
  depths (each depth scaled to its own peak, so defocused planes stay visible).
- **XLFM**: the sub-aperture layout (:class:`~napari_lfrecon.psf.xlfm.XLFMOptics`).
  Three panels: the sensor image of an on-axis point at the chosen depth, a
  sensor row through a row of views across depths (the parallax shows as
  tilted traces) and a zoom on the outermost view of that row at the chosen
  depth.

Defaults of the LFM and XLFM forms are read from the shipped samples' PSF
files (their ``optics`` and ``z_planes_um``), so the editor opens on the
geometry the samples were simulated with.

Every change restarts a short debounce timer; when it fires, the PSF is
computed through the worker layer (:func:`napari_lfrecon.gui.worker.start_job`;
synchronously when ``sync``), after an estimate of its time and memory: a
request beyond ``MAX_ESTIMATED_SECONDS`` or ``MAX_ESTIMATED_BYTES`` is refused
with a message instead of freezing the machine. The panels are image layers laid side by side in world space
(µm), updated in place; switching mode renames and reuses them. A change made
while a computation runs is computed right after it (the last one wins; a
running LFM computation is stopped early). Changing only the displayed depth
re-slices the PSF already computed.

"Use for reconstruction" adds (or updates) a 3-D layer ``"PSF [editor]"``
whose ``metadata["psf"]`` is the :class:`~napari_lfrecon.psf.model.PSF`: the
Reconstruct widget lists every such layer as a PSF. A widefield PSF can first
be resampled to the voxel size of an image layer ("resample to layer").

The Qt-free computations (settings, estimates, PSFs, panels) live in
:mod:`napari_lfrecon.controllers.psf_editor`, the form builders in
:mod:`napari_lfrecon.gui._psf_editor_forms` and the layer updates in
:mod:`napari_lfrecon.gui._psf_editor_layers`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QWidget,
)

from ..controllers.psf_editor import (
    MODE_LAYER_NAMES,
    MODES,
    NO_ABERRATION_NOTE,
    PRESETS,
    RECONSTRUCTION_LAYER,
    VECTORIAL_NA,
    EditorSettings,
    Estimate,
    Sections,
    SensorStack,
    compute_lfm,
    compute_sections,
    compute_xlfm,
    estimate_lfm,
    estimate_widefield,
    estimate_xlfm,
    lfm_key,
    lfm_stack,
    nearest_plane,
    sample_psf,
    sections_details,
    sensor_details,
    sensor_panels,
    widefield_key,
    widefield_options_supported,
    widefield_panels,
    xlfm_file_layout,
    xlfm_key,
    xlfm_stack,
    zernike_values,
)
from ..psf.model import PSF, PSF_FILE_SUFFIX
from ._psf_editor_forms import (
    LFM_LABELS,
    SLIDER_RANGE,
    fill_lfm,
    fill_widefield,
    fill_xlfm,
    fit_scroll_width,
    form_box,
    lfm_fields,
    read_lfm,
    read_widefield,
    read_xlfm,
    spin_value,
    widefield_form,
    xlfm_box,
    xlfm_fields,
    zernike_box,
)
from ._psf_editor_layers import (
    draw_panels,
    resample_note,
    resample_targets,
    resample_to_layer,
    show_reconstruction_psf,
)
from .panels import scrolled_layout
from .worker import Job, connect_alive, on_widget_closed, start_job

if TYPE_CHECKING:  # pragma: no cover
    import napari

    from ..psf.lfm import LFMOptics
    from ..psf.xlfm import XLFMOptics

__all__ = ["DEBOUNCE_MS", "PSFEditorWidget"]

#: Debounce delay between the last change and the computation (ms).
DEBOUNCE_MS = 120


class PSFEditorWidget(QWidget):
    """Edit widefield, LFM and XLFM PSFs live; save/load them and hand them to the Reconstruct widget."""

    def __init__(self, napari_viewer: napari.Viewer, *, sync: bool = False) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.sync = sync
        #: The result on screen (widefield :class:`Sections` or light-field :class:`SensorStack`).
        self.sections: Sections | SensorStack | None = None
        self._shown_key: tuple | None = None
        #: The computation running in the worker layer (``None`` when idle).
        self._job: Job | None = None
        self._pending = False
        self._generation = 0
        self._panel_layers: list[Any] = []
        self.computations = 0
        self._xlfm_layout: dict[str, Any] | None = None  # a lenslet layout loaded from a file
        self._superseded: object | None = None  # the token of a running computation whose result must not be shown
        self._token: object | None = None  # the running computation's token

        self.mode_combo = QComboBox()
        for key, label in MODES.items():
            self.mode_combo.addItem(label, key)
        mode_row = QFormLayout()
        mode_row.addRow("Mode", self.mode_combo)

        self.pages = QStackedWidget()
        self.pages.addWidget(self._widefield_page())
        self.pages.addWidget(self._lfm_page())
        self.pages.addWidget(self._xlfm_page())

        modes_box = self._zernike_box()

        self.resample_combo = QComboBox()
        self.resample_combo.setToolTip(
            "resample the PSF handed to Reconstruct to this image layer's voxel size (widefield only)"
        )
        resample_form = QFormLayout()
        resample_form.addRow("Resample to layer…", self.resample_combo)
        self.resample_note = QLabel("")
        self.resample_note.setWordWrap(True)
        self.resample_note.setStyleSheet("color: gray")
        resample_form.addRow(self.resample_note)

        self.save_button = QPushButton("Save…")
        self.load_button = QPushButton("Load…")
        self.use_button = QPushButton("Use for reconstruction")
        self.use_button.setToolTip(f"add the PSF as the layer {RECONSTRUCTION_LAYER!r}, which Reconstruct lists")
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.load_button)
        buttons.addWidget(self.use_button)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: gray")

        layout, footer = scrolled_layout(self)
        layout.addLayout(mode_row)
        layout.addWidget(self.pages)
        layout.addWidget(modes_box, stretch=1)
        layout.addLayout(resample_form)
        footer.addLayout(buttons)
        footer.addWidget(self.status)
        # closing the panel stops a computation still running and drops its result
        on_widget_closed(self, lambda: self._job.detach() if self._job is not None else None)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.recompute)
        self.mode_combo.currentIndexChanged.connect(self._on_mode_changed)
        self.preset.currentTextChanged.connect(self.apply_preset)
        self.save_button.clicked.connect(self._save_dialog)
        self.load_button.clicked.connect(self._load_dialog)
        self.use_button.clicked.connect(self._use_clicked)
        self.resample_combo.currentIndexChanged.connect(self._on_resample_changed)
        connect_alive(self.viewer.layers.events.inserted, self, self._refresh_resample_layers)
        connect_alive(self.viewer.layers.events.removed, self, self._refresh_resample_layers)
        self._refresh_resample_layers()
        self._on_mode_changed()

    # ------------------------------------------------------------------ form pages
    def _widefield_page(self) -> QWidget:
        form = widefield_form(widefield_options_supported())
        self.widefield_form = form
        self.na, self.wavelength, self.index = form.na, form.wavelength, form.index
        self.magnification, self.camera_pixel, self.dz = form.magnification, form.camera_pixel, form.dz
        self.n_z, self.n_xy = form.n_z, form.n_xy
        self.vectorial, self.vectorial_hint, self.mismatch = form.vectorial, form.vectorial_hint, form.mismatch
        self.sample_index, self.depth = form.sample_index, form.depth
        for spin in (self.na, self.wavelength, self.index, self.magnification, self.camera_pixel, self.dz):
            spin.valueChanged.connect(self.schedule)
        for spin in (self.n_z, self.n_xy, self.sample_index, self.depth):
            spin.valueChanged.connect(self.schedule)
        self.na.valueChanged.connect(self._update_vectorial_hint)
        self.vectorial.toggled.connect(self._update_vectorial_hint)
        self.vectorial.toggled.connect(self.schedule)
        self.mismatch.toggled.connect(self._on_mismatch_toggled)
        return form.box

    def _lfm_page(self) -> QWidget:
        self.lfm_fields: dict[str, QDoubleSpinBox | QSpinBox] = lfm_fields(sample_psf("lfm"))
        self._connect_fields(self.lfm_fields)
        return form_box("Optics (light field, wave optics)", self.lfm_fields, LFM_LABELS)

    def _xlfm_page(self) -> QWidget:
        self.xlfm_fields: dict[str, QDoubleSpinBox | QSpinBox] = xlfm_fields(sample_psf("xlfm"))
        self._connect_fields(self.xlfm_fields)
        page, self.xlfm_layout_label = xlfm_box(self.xlfm_fields)
        for name in ("n_lenslets", "sensor_h", "sensor_w", "view_h", "view_w"):
            self.xlfm_fields[name].valueChanged.connect(self._forget_xlfm_layout)
        self._forget_xlfm_layout()
        return page

    def _connect_fields(self, fields: dict[str, QDoubleSpinBox | QSpinBox]) -> None:
        """A changed optics field recomputes; a changed shown depth only re-slices."""
        for name, widget in fields.items():
            if name == "show_z":
                widget.valueChanged.connect(self._render_current)
            else:
                widget.valueChanged.connect(self.schedule)

    def _zernike_box(self) -> QWidget:
        zernike = zernike_box()
        self.preset, self.sliders = zernike.preset, zernike.sliders
        self._zernike_scroll, self.zernike_note, self.zernike_box = zernike.scroll, zernike.note, zernike.box
        for slider in self.sliders:
            slider.valueChanged.connect(self.schedule)
        return zernike.box

    def _fit_zernike_width(self) -> None:
        fit_scroll_width(self._zernike_scroll)

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        """Refit the Zernike rows' width once the final style is known (napari's stylesheet widens them)."""
        super().showEvent(event)
        self._fit_zernike_width()
        QTimer.singleShot(0, self._fit_zernike_width)  # after the stylesheet's polish has run

    # ------------------------------------------------------------------ mode & options
    @property
    def mode(self) -> str:
        """The current mode: ``"widefield"``, ``"lfm"`` or ``"xlfm"``."""
        return str(self.mode_combo.currentData())

    def set_mode(self, mode: str) -> None:
        """Switch to ``mode`` (a key of :data:`MODES`)."""
        index = self.mode_combo.findData(mode)
        if index < 0:
            raise ValueError(f"mode must be one of {tuple(MODES)}, got {mode!r}")
        self.mode_combo.setCurrentIndex(index)

    def _on_mode_changed(self, *_: Any) -> None:
        mode = self.mode
        self.pages.setCurrentIndex(list(MODES).index(mode))
        for i in range(self.pages.count()):
            # A stacked widget is as tall as its tallest page unless the hidden pages are ignored.
            policy = QSizePolicy.Policy.Preferred if i == self.pages.currentIndex() else QSizePolicy.Policy.Ignored
            self.pages.widget(i).setSizePolicy(policy, policy)
        self.pages.adjustSize()
        widefield = mode == "widefield"
        self._zernike_scroll.setEnabled(widefield)
        self.preset.setEnabled(widefield)
        self.zernike_note.setText("" if widefield else NO_ABERRATION_NOTE.format(mode=MODES[mode]))
        self.zernike_note.setVisible(not widefield)
        self.resample_combo.setEnabled(widefield)
        self._on_resample_changed()
        self._update_vectorial_hint()
        self.schedule()

    def _update_vectorial_hint(self, *_: Any) -> None:
        high = self.na.value() >= VECTORIAL_NA
        recommend = high and not self.vectorial.isChecked()
        if recommend and not widefield_options_supported():
            self.vectorial_hint.setText("NA ≥ 0.9: vectorial model advised (not available)")
        else:
            self.vectorial_hint.setText("← recommended at NA ≥ 0.9" if recommend else "")

    def _on_mismatch_toggled(self, checked: bool) -> None:
        self.sample_index.setEnabled(checked)
        self.depth.setEnabled(checked)
        self.schedule()

    def _forget_xlfm_layout(self, *_: Any) -> None:
        self._xlfm_layout = None
        n = self.xlfm_fields["n_lenslets"].value()
        self.xlfm_layout_label.setText(f"hexagonal, {n} sub-apertures")

    # ------------------------------------------------------------------ settings
    def settings(self) -> EditorSettings:
        """The current widefield form values."""
        return read_widefield(self.widefield_form, np.array([s.value() for s in self.sliders], dtype=np.float64))

    def lfm_optics(self) -> tuple[LFMOptics, np.ndarray]:
        """The LFM form as optics and depths (raises ``ValueError`` for inconsistent optics)."""
        return read_lfm(self.lfm_fields)

    def xlfm_optics(self) -> tuple[XLFMOptics, np.ndarray]:
        """The XLFM form as optics and depths (raises ``ValueError`` for inconsistent optics)."""
        return read_xlfm(self.xlfm_fields, self._xlfm_layout)

    def _request(self) -> tuple[tuple, Estimate | None, Callable[[], Any]]:
        """``(key, estimate, job)`` for the current form: the key identifies the PSF, the job computes it."""
        generation = self._generation
        if self.mode == "widefield":
            settings = self.settings()
            key = widefield_key(settings)
            return key, estimate_widefield(settings), functools.partial(compute_sections, settings)
        if self.mode == "lfm":
            optics, planes = self.lfm_optics()
            key = lfm_key(optics, planes)
            stop = lambda: self._generation != generation  # noqa: E731 - a newer request supersedes this one
            return key, estimate_lfm(optics, planes), functools.partial(compute_lfm, optics, planes, should_stop=stop)
        optics, planes = self.xlfm_optics()
        key = xlfm_key(optics, planes)
        return key, estimate_xlfm(optics, planes), functools.partial(compute_xlfm, optics, planes)

    def set_zernike(self, coefficients: dict[int, float] | np.ndarray) -> None:
        """Set the sliders (unlisted modes to 0) with one recomputation."""
        for slider, coefficient in zip(self.sliders, zernike_values(coefficients), strict=True):
            slider.blockSignals(True)
            slider.setValue(float(np.clip(coefficient, *SLIDER_RANGE)))
            slider.blockSignals(False)
        self.schedule()

    def apply_preset(self, name: str) -> None:
        """Load the named preset (see :data:`PRESETS`)."""
        if name in PRESETS:
            self.set_zernike(PRESETS[name])

    # ------------------------------------------------------------------ computing
    def schedule(self, *_: Any) -> None:
        """(Re)start the debounce timer; the PSF is recomputed when it fires."""
        self._generation += 1
        self._timer.start()

    def recompute(self) -> None:
        """Compute the PSF for the current form (in a worker unless ``sync``); coalesces overlapping requests."""
        if self.computing:
            self._pending = True
            return
        try:
            key, estimate, job = self._request()
        except ValueError as exc:  # inconsistent optics in the form: a message, not a traceback
            self.status.setText(f"cannot compute: {exc}")
            return
        if key == self._shown_key and self.sections is not None:
            self._render_current()
            return
        refusal = estimate.refusal() if estimate is not None else None
        if refusal is not None:
            self.status.setText(f"not computed: {refusal}")
            return
        self.status.setText(f"computing the {MODES[self.mode]} PSF… (estimated ~{max(estimate.seconds, 0.1):.1f} s)")
        token = self._token = object()
        self._job = start_job(
            self._keyed_compute,
            key,
            job,
            # a result that a file load superseded while it ran is dropped
            on_return=lambda keyed: None if token is self._superseded else self._show(keyed),
            on_error=self._compute_failed,
            on_finish=self._on_finished,
            sync=True if self.sync else None,
        )

    @classmethod
    def _keyed_compute(cls, key: tuple, job: Callable[[], Any]) -> tuple[tuple, Any]:
        return key, cls._safe_compute(job)

    @staticmethod
    def _safe_compute(job: Callable[[], Any]) -> Sections | SensorStack | str | None:
        from ..psf.lfm import PSFComputationStopped

        try:
            return job()
        except PSFComputationStopped:  # superseded by a newer request, which runs next
            return None
        except ValueError as exc:  # bad optics: a message, not a traceback
            return str(exc)

    def _compute_failed(self, exc: BaseException) -> None:
        """An unexpected error in the computation (bad optics are messages already): say it, keep the editor."""
        self.status.setText(f"cannot compute: {exc}")
        show_error(f"PSF editor: {type(exc).__name__}: {exc}")

    def _on_finished(self) -> None:
        self._token = None
        if self._pending:
            self._pending = False
            self.recompute()

    @property
    def computing(self) -> bool:
        """True while a computation runs in the worker layer."""
        return self._job is not None and self._job.running

    @property
    def busy(self) -> bool:
        """True while a computation runs or is scheduled."""
        return self.computing or self._timer.isActive() or self._pending

    def _show(self, keyed: tuple[tuple, Sections | SensorStack | str | None]) -> None:
        key, result = keyed
        if result is None:
            return
        if isinstance(result, str):
            self.status.setText(f"cannot compute: {result}")
            return
        if result.psf.modality != self.mode:
            return  # the mode changed while this ran; the new mode's request follows
        self.sections = result
        self._shown_key = key
        self.computations += 1
        self._render_current()
        if RECONSTRUCTION_LAYER in self.viewer.layers:
            show_reconstruction_psf(self.viewer, self.reconstruction_psf(compute=False))

    def _render_current(self, *_: Any) -> None:
        """Draw the panels of the shown result (re-slicing when only the displayed depth changed)."""
        result = self.sections
        if result is None:
            return
        if isinstance(result, Sections):
            if self.mode != "widefield":
                return
            panels = widefield_panels(result)
            details = sections_details(result)
        else:
            if result.psf.modality != self.mode:
                return
            fields = self.lfm_fields if self.mode == "lfm" else self.xlfm_fields
            index = nearest_plane(result.psf, spin_value(fields["show_z"]))
            panels = sensor_panels(result, index)
            details = sensor_details(result, index)
        self._panel_layers = draw_panels(self.viewer, self._panel_layers, panels, MODE_LAYER_NAMES[self.mode])
        self.status.setText(f"{result.psf.describe()}; computed in {result.seconds:.2f} s; {details}")

    # ------------------------------------------------------------------ files, hand-over
    def current_psf(self) -> PSF:
        """The PSF for the current form (computed now if the shown one is stale; refused if too large)."""
        key, estimate, job = self._request()
        if key == self._shown_key and self.sections is not None:
            return self.sections.psf
        refusal = estimate.refusal() if estimate is not None else None
        if refusal is not None:
            raise ValueError(refusal)
        if self.mode != "widefield" and self.busy:
            # computing it again here would block the UI for seconds: wait for the worker instead
            raise ValueError(f"the {MODES[self.mode]} PSF is still being computed; try again when it is shown")
        result = job()
        return result.psf

    def reconstruction_psf(self, *, compute: bool = True) -> PSF:
        """The PSF "Use for reconstruction" hands over: the current PSF, resampled if a layer is chosen."""
        psf = self.current_psf() if compute or self.sections is None else self.sections.psf
        target = self.resample_combo.currentData()
        if psf.modality == "widefield" and target:
            return self.resample_to_layer(target, psf)
        return psf

    def resample_to_layer(self, layer_name: str, psf: PSF | None = None) -> PSF:
        """``psf`` (default: the current widefield PSF) resampled to image layer ``layer_name``'s voxel size."""
        return resample_to_layer(self.viewer, layer_name, psf if psf is not None else self.current_psf)

    def save(self, path: str | Path) -> Path:
        """Save the current PSF (``.psf.safetensors``); return the path written."""
        path = Path(path)
        if not path.name.endswith(PSF_FILE_SUFFIX):
            path = path.with_name(path.name.removesuffix(path.suffix) + PSF_FILE_SUFFIX)
        return self.current_psf().save(path)

    def load(self, path: str | Path) -> None:
        """Load a PSF file: switch to its mode and fill the form from its optics (the PSF is shown as loaded)."""
        psf = PSF.load(path)
        if psf.modality == "widefield":
            self._load_widefield(psf)
            return
        if psf.modality == "lfm":
            self._load_lfm(psf)
            stack = lfm_stack(psf)
        else:
            self._load_xlfm(psf)
            stack = xlfm_stack(psf)
        self.set_mode(psf.modality)
        self._timer.stop()
        self._generation += 1  # stops a running LFM computation early
        self._superseded = self._token
        self._pending = False
        # The file's PSF is shown as it is (it may use a kernel size or layout the form does not hold).
        try:
            key = self._request()[0]
        except ValueError:
            key = None
        self.sections = stack
        self._shown_key = key
        self.computations += 1
        self._render_current()

    def _load_widefield(self, psf: PSF) -> None:
        fill_widefield(self.widefield_form, psf)
        self.set_mode("widefield")
        self.set_zernike(psf.zernike)

    def _load_lfm(self, psf: PSF) -> None:
        fill_lfm(self.lfm_fields, psf)

    def _load_xlfm(self, psf: PSF) -> None:
        fill_xlfm(self.xlfm_fields, psf)
        self._xlfm_layout, description = xlfm_file_layout(psf)
        self.xlfm_layout_label.setText(description)

    def use_for_reconstruction(self) -> Any:
        """Add or update the 3-D layer :data:`RECONSTRUCTION_LAYER` carrying the PSF in ``metadata["psf"]``."""
        return show_reconstruction_psf(self.viewer, self.reconstruction_psf())

    # ------------------------------------------------------------------ resampling UI
    def _refresh_resample_layers(self, *_: Any) -> None:
        current = self.resample_combo.currentData()
        names = resample_targets(self.viewer)
        self.resample_combo.blockSignals(True)
        self.resample_combo.clear()
        self.resample_combo.addItem("no (the PSF's own grid)", "")
        for name in names:
            self.resample_combo.addItem(name, name)
        index = self.resample_combo.findData(current)
        self.resample_combo.setCurrentIndex(max(index, 0))
        self.resample_combo.blockSignals(False)
        self._on_resample_changed()

    def _on_resample_changed(self, *_: Any) -> None:
        self.resample_note.setText(resample_note(self.viewer, self.mode, self.resample_combo.currentData()))

    # ------------------------------------------------------------------ dialogs
    def _use_clicked(self) -> None:
        try:
            layer = self.use_for_reconstruction()
        except ValueError as exc:
            show_error(f"could not hand the PSF over: {exc}")
            return
        self.status.setText(f"{layer.name!r} now holds {layer.metadata['psf'].describe()}; Reconstruct lists it")

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the PSF", "psf" + PSF_FILE_SUFFIX, "PSF (*.psf.safetensors)")
        if path:
            try:
                self.status.setText(f"wrote {self.save(path)}")
            except (ValueError, OSError) as exc:
                show_error(f"could not save the PSF: {exc}")

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load a PSF", "", "PSF (*.psf.safetensors);;All files (*)")
        if path:
            try:
                self.load(path)
            except (ValueError, OSError, KeyError) as exc:
                show_error(f"could not load the PSF: {exc}")
