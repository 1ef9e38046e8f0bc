"""The PSF editor's forms: the optics group boxes per mode and the Zernike slider box.

These builders only create and lay out widgets (defaults, ranges, labels,
tooltips); :class:`~napari_lfrecon.gui.psf_widget.PSFEditorWidget` connects
their signals and reads their values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from ..controllers.psf_editor import (
    LFM_SHOWN_DEPTH_FRACTION,
    N_MODES,
    PRESETS,
    EditorSettings,
    nearest_plane,
    plane_step,
    z_planes,
)
from ..psf.model import PSF
from ..psf.zernike import zernike_name
from .kit import int_spin

if TYPE_CHECKING:  # pragma: no cover
    from ..psf.lfm import LFMOptics
    from ..psf.xlfm import XLFMOptics

#: Slider range in waves RMS.
SLIDER_RANGE = (-0.5, 0.5)

#: Form labels of the LFM fields (every field has one).
LFM_LABELS = {
    "lenslet_pitch_um": "lenslet pitch (µm)",
    "lenslet_focal_um": "lenslet focal length (µm)",
    "magnification": "objective magnification",
    "na": "NA",
    "wavelength_um": "wavelength (µm)",
    "immersion_index": "medium index",
    "camera_pixel_um": "camera pixel (µm)",
    "pixels_per_lenslet": "pixels per lenslet",
    "supersample": "voxels per lenslet",
    "z_from": "z from (µm)",
    "z_to": "z to (µm)",
    "z_step": "z step (µm)",
    "show_z": "show depth (µm)",
}
#: Form labels of the XLFM fields; the sensor and view sizes get paired rows instead.
XLFM_LABELS = {
    "na": "NA",
    "wavelength_um": "wavelength (µm)",
    "immersion_index": "immersion index",
    "pixel_um": "pixel, object space (µm)",
    "n_lenslets": "lenslets",
    "supersample": "sub-pixels",
    "z_from": "z from (µm)",
    "z_to": "z to (µm)",
    "z_step": "z step (µm)",
    "show_z": "show depth (µm)",
}

Fields = dict[str, QDoubleSpinBox | QSpinBox]


# ----------------------------------------------------------------------------- small helpers
def spin(low: float, high: float, value: float, decimals: int, step: float, tip: str = "") -> QDoubleSpinBox:
    """A double spin box with its range, precision, step, value and tooltip."""
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tip)
    return box


def pair_row(first: QWidget, second: QWidget) -> QWidget:
    """``first × second`` on one row (a height × width pair)."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(first)
    layout.addWidget(QLabel("×"))
    layout.addWidget(second)
    return row


def spin_value(widget: QWidget) -> float:
    """A spin box's value as a float."""
    return float(widget.value())  # type: ignore[attr-defined]


def short_zernike_name(j: int) -> str:
    """A mode name short enough to leave the slider's value box visible in a dock."""
    name = zernike_name(j)
    for long, short in (
        ("vertical ", "v. "),
        ("horizontal ", "h. "),
        ("oblique ", "o. "),
        ("secondary ", "2nd "),
        ("primary ", ""),
        ("astigmatism", "astig."),
    ):
        name = name.replace(long, short)
    return name


def form_box(title: str, fields: Fields, labels: dict[str, str]) -> QGroupBox:
    """A group box with a form row for every field that has a label (in the fields' order)."""
    form = QFormLayout()
    for name, widget in fields.items():
        if name in labels:
            form.addRow(labels[name], widget)
    box = QGroupBox(title)
    box.setLayout(form)
    return box


# ----------------------------------------------------------------------------- widefield
@dataclass
class WidefieldForm:
    """The widefield optics box and its inputs."""

    box: QGroupBox
    na: QDoubleSpinBox
    wavelength: QDoubleSpinBox
    index: QDoubleSpinBox
    magnification: QDoubleSpinBox
    camera_pixel: QDoubleSpinBox
    dz: QDoubleSpinBox
    n_z: QSpinBox
    n_xy: QSpinBox
    vectorial: QCheckBox
    vectorial_hint: QLabel
    mismatch: QCheckBox
    sample_index: QDoubleSpinBox
    depth: QDoubleSpinBox


def widefield_form(supported: bool) -> WidefieldForm:
    """The widefield optics form; ``supported`` = whether the vectorial / index-mismatch options can be used."""
    na = spin(0.05, 1.7, 0.8, 3, 0.01)
    wavelength = spin(0.2, 2.0, 0.52, 3, 0.01)
    index = spin(1.0, 2.0, 1.33, 3, 0.01)
    magnification = spin(1.0, 200.0, 40.0, 1, 1.0)
    camera_pixel = spin(0.5, 50.0, 6.5, 2, 0.1)
    dz = spin(0.01, 10.0, 0.25, 3, 0.05)
    n_z = int_spin(33, 1, 257)
    n_xy = int_spin(64, 8, 512)
    vectorial = QCheckBox("Vectorial (high NA)")
    vectorial.setToolTip("polarisation-resolved (vectorial) model; matters for NA ≳ 0.9")
    vectorial_hint = QLabel("")
    vectorial_hint.setStyleSheet("color: #d9a400")
    mismatch = QCheckBox("Index mismatch (Gibson–Lanni)")
    mismatch.setToolTip("imaging below the coverslip into a sample of another refractive index")
    sample_index = spin(1.0, 2.0, 1.33, 3, 0.01, "refractive index of the sample")
    depth = spin(0.0, 1000.0, 10.0, 1, 1.0, "depth of the focal plane below the coverslip (µm)")
    if not supported:
        note = "needs a psf.widefield with model / sample_index / depth_um (not in this version)"
        for widget in (vectorial, mismatch):
            widget.setEnabled(False)
            widget.setToolTip(note)
    sample_index.setEnabled(False)
    depth.setEnabled(False)

    form = QFormLayout()
    form.addRow("NA", na)
    form.addRow("wavelength (µm)", wavelength)
    form.addRow("immersion index", index)
    form.addRow("magnification", magnification)
    form.addRow("camera pixel (µm)", camera_pixel)
    form.addRow("z step (µm)", dz)
    form.addRow("z planes", n_z)
    form.addRow("lateral size (px)", n_xy)
    form.addRow(vectorial, vectorial_hint)
    form.addRow(mismatch)
    form.addRow("sample index", sample_index)
    form.addRow("depth below coverslip (µm)", depth)
    box = QGroupBox("Optics (widefield)")
    box.setLayout(form)
    return WidefieldForm(
        box, na, wavelength, index, magnification, camera_pixel, dz, n_z, n_xy,
        vectorial, vectorial_hint, mismatch, sample_index, depth,
    )  # fmt: skip


def read_widefield(form: WidefieldForm, zernike: np.ndarray) -> EditorSettings:
    """The widefield form's values (with the Zernike sliders' ``zernike``, waves) as :class:`EditorSettings`."""
    mismatch = form.mismatch.isChecked()
    return EditorSettings(
        na=form.na.value(),
        wavelength_um=form.wavelength.value(),
        immersion_index=form.index.value(),
        magnification=form.magnification.value(),
        camera_pixel_um=form.camera_pixel.value(),
        n_z=form.n_z.value(),
        dz_um=form.dz.value(),
        n_xy=form.n_xy.value(),
        zernike=np.asarray(zernike, dtype=np.float64),
        model="vectorial" if form.vectorial.isChecked() else "scalar",
        sample_index=form.sample_index.value() if mismatch else None,
        depth_um=form.depth.value() if mismatch else 0.0,
    )


def fill_widefield(form: WidefieldForm, psf: PSF) -> None:
    """Set the widefield form from a widefield PSF's optics and grid (the Zernike sliders are the caller's)."""
    optics = psf.optics
    for key, widget in (
        ("na", form.na),
        ("wavelength_um", form.wavelength),
        ("immersion_index", form.index),
        ("magnification", form.magnification),
    ):
        if key in optics:
            widget.setValue(float(optics[key]))
    dz, _, dx = psf.voxel_size
    form.camera_pixel.setValue(dx * form.magnification.value())
    form.dz.setValue(dz)
    form.n_z.setValue(psf.array.shape[0])
    form.n_xy.setValue(psf.array.shape[-1])
    if form.vectorial.isEnabled():
        form.vectorial.setChecked("vectorial" in str(optics.get("psf_model", "")))
    if form.mismatch.isEnabled():
        sample_index = optics.get("sample_index")
        form.mismatch.setChecked(sample_index is not None)
        if sample_index is not None:
            form.sample_index.setValue(float(sample_index))
            form.depth.setValue(float(optics.get("depth_um", 0.0)))


# ----------------------------------------------------------------------------- light field
def lfm_fields(psf: PSF) -> Fields:
    """The LFM inputs, defaulting to ``psf``'s optics and depths (shown depth: half-way out)."""
    optics = psf.optics
    planes = psf.z_planes_um
    step = plane_step(planes)
    shown = float(planes[nearest_plane(psf, LFM_SHOWN_DEPTH_FRACTION * float(np.abs(planes).max()))])
    return {
        "lenslet_pitch_um": spin(1.0, 1000.0, optics["lenslet_pitch_um"], 2, 0.5, "lenslet pitch (µm)"),
        "lenslet_focal_um": spin(10.0, 20000.0, optics["lenslet_focal_um"], 1, 10.0, "lenslet focal length (µm)"),
        "magnification": spin(1.0, 200.0, optics["magnification"], 1, 1.0),
        "na": spin(0.05, 1.7, optics["na"], 3, 0.01),
        "wavelength_um": spin(0.2, 2.0, optics["wavelength_um"], 3, 0.01),
        "immersion_index": spin(1.0, 2.0, optics["immersion_index"], 3, 0.01, "medium (immersion) index"),
        "camera_pixel_um": spin(0.1, 100.0, optics["camera_pixel_um"], 3, 0.1, "pitch / pixels per lenslet"),
        "pixels_per_lenslet": int_spin(int(optics["pixels_per_lenslet"]), 1, 61, "odd (Nnum)", step=2),
        "supersample": int_spin(int(optics.get("supersample", 1)), 1, 15, "volume voxels per lenslet (odd)", step=2),
        "z_from": spin(-1000.0, 1000.0, float(planes[0]), 2, 1.0),
        "z_to": spin(-1000.0, 1000.0, float(planes[-1]), 2, 1.0),
        "z_step": spin(0.01, 100.0, step, 2, 0.5),
        "show_z": spin(-1000.0, 1000.0, shown, 2, step, "depth shown in the sensor panel (nearest plane)"),
    }


def xlfm_fields(psf: PSF) -> Fields:
    """The XLFM inputs, defaulting to ``psf``'s optics and depths (shown depth: the nearest to focus)."""
    from ..psf.xlfm import XLFMOptics

    optics = psf.optics
    planes = psf.z_planes_um
    step = plane_step(planes)
    shown = float(planes[nearest_plane(psf, 0.0)])
    sensor = optics.get("sensor_shape", XLFMOptics.sensor_shape)
    view = optics.get("view_size", XLFMOptics.view_size)
    fields: Fields = {
        "na": spin(0.05, 1.7, optics.get("na", XLFMOptics.na), 3, 0.01),
        "wavelength_um": spin(0.2, 2.0, optics.get("wavelength_um", XLFMOptics.wavelength_um), 3, 0.01),
        "immersion_index": spin(1.0, 2.0, optics.get("immersion_index", XLFMOptics.immersion_index), 3, 0.01),
        "pixel_um": spin(0.01, 50.0, optics.get("pixel_um", XLFMOptics.pixel_um), 3, 0.05, "object space"),
        "n_lenslets": int_spin(int(optics.get("n_lenslets", 27)), 1, 200, "hexagonal layout in the pupil"),
        "sensor_h": int_spin(int(sensor[0]), 8, 8192, step=8),
        "sensor_w": int_spin(int(sensor[1]), 8, 8192, step=8),
        "view_h": int_spin(int(view[0]), 4, 2048, step=2),
        "view_w": int_spin(int(view[1]), 4, 2048, step=2),
        "supersample": int_spin(0, 0, 15, "sub-pixels per pixel (odd); 0 = automatic"),
        "z_from": spin(-1000.0, 1000.0, float(planes[0]), 2, 1.0),
        "z_to": spin(-1000.0, 1000.0, float(planes[-1]), 2, 1.0),
        "z_step": spin(0.01, 100.0, step, 2, 0.5),
        "show_z": spin(-1000.0, 1000.0, shown, 2, step, "depth shown in the sensor panels (nearest plane)"),
    }
    fields["supersample"].setSpecialValueText("auto")
    return fields


def xlfm_box(fields: Fields) -> tuple[QGroupBox, QLabel]:
    """The XLFM optics box (sensor and view sizes as h × w rows) and its lenslet-layout label."""
    box = form_box("Optics (XLFM, Fourier light field)", fields, XLFM_LABELS)
    form = box.layout()
    assert isinstance(form, QFormLayout)
    form.insertRow(5, "sensor (px)", pair_row(fields["sensor_h"], fields["sensor_w"]))
    form.insertRow(6, "view (px)", pair_row(fields["view_h"], fields["view_w"]))
    layout_label = QLabel("")
    layout_label.setStyleSheet("color: gray")
    form.insertRow(5, "layout", layout_label)
    return box, layout_label


# ----------------------------------------------------------------------------- Zernike sliders
@dataclass
class ZernikeBox:
    """The Zernike group box: preset combo, one slider per mode, the scroll area holding them, a note."""

    box: QGroupBox
    preset: QComboBox
    sliders: list[QLabeledDoubleSlider]
    scroll: QScrollArea
    note: QLabel


def zernike_box() -> ZernikeBox:
    """The preset combo and one slider per ANSI mode (0 .. N_MODES - 1) in a vertically scrolling box."""
    preset = QComboBox()
    preset.addItems(list(PRESETS))
    sliders: list[QLabeledDoubleSlider] = []
    modes = QFormLayout()
    modes.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    modes.addRow("preset", preset)
    for j in range(N_MODES):
        slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        slider.setMinimumWidth(110)  # groove + the value box, which must stay visible
        slider.setRange(*SLIDER_RANGE)
        slider.setSingleStep(0.005)
        slider.setDecimals(3)
        slider.setValue(0.0)
        slider.setToolTip(f"ANSI Z{j}: {zernike_name(j)}, waves RMS")
        label = QLabel(f"Z{j} {short_zernike_name(j)}")
        label.setToolTip(zernike_name(j))
        modes.addRow(label, slider)
        sliders.append(slider)
    modes_widget = QWidget()
    modes_widget.setLayout(modes)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
    scroll.setWidget(modes_widget)
    fit_scroll_width(scroll)
    note = QLabel("")
    note.setWordWrap(True)
    note.setStyleSheet("color: gray")
    box = QGroupBox("Zernike aberrations (waves RMS)")
    box_layout = QVBoxLayout()
    box_layout.addWidget(note)
    box_layout.addWidget(scroll)
    box.setLayout(box_layout)
    return ZernikeBox(box, preset, sliders, scroll, note)


def fit_scroll_width(scroll: QScrollArea) -> None:
    """Keep ``scroll`` at least as wide as its rows need, so the slider value boxes are never cut off.

    napari's stylesheet (applied when the widget is docked) widens the rows
    after construction, so the widget calls this again on every show.
    """
    needed = scroll.widget().minimumSizeHint().width()
    needed += scroll.verticalScrollBar().sizeHint().width() + 2 * scroll.frameWidth() + 2
    if scroll.minimumWidth() != needed:
        scroll.setMinimumWidth(needed)


# ----------------------------------------------------------------------------- reading and filling the forms
def _depths(fields: Fields) -> np.ndarray:
    return z_planes(spin_value(fields["z_from"]), spin_value(fields["z_to"]), spin_value(fields["z_step"]))


def read_lfm(fields: Fields) -> tuple[LFMOptics, np.ndarray]:
    """The LFM fields as optics and depths (raises ``ValueError`` for inconsistent optics)."""
    from ..psf.lfm import LFMOptics

    f = fields
    optics = LFMOptics(
        magnification=spin_value(f["magnification"]),
        na=spin_value(f["na"]),
        immersion_index=spin_value(f["immersion_index"]),
        wavelength_um=spin_value(f["wavelength_um"]),
        lenslet_pitch_um=spin_value(f["lenslet_pitch_um"]),
        lenslet_focal_um=spin_value(f["lenslet_focal_um"]),
        camera_pixel_um=spin_value(f["camera_pixel_um"]),
        pixels_per_lenslet=int(f["pixels_per_lenslet"].value()),
        supersample=int(f["supersample"].value()),
    )
    return optics, _depths(f)


def read_xlfm(fields: Fields, layout: dict[str, Any] | None = None) -> tuple[XLFMOptics, np.ndarray]:
    """The XLFM fields as optics and depths; ``layout`` is a lenslet layout loaded from a file (else hexagonal)."""
    from ..psf.xlfm import XLFMOptics, default_lenslet_layout

    f = fields
    layout = layout or {}
    supersample = int(f["supersample"].value())
    optics = XLFMOptics(
        na=spin_value(f["na"]),
        immersion_index=spin_value(f["immersion_index"]),
        wavelength_um=spin_value(f["wavelength_um"]),
        pixel_um=spin_value(f["pixel_um"]),
        sensor_shape=(int(f["sensor_h"].value()), int(f["sensor_w"].value())),
        view_size=(int(f["view_h"].value()), int(f["view_w"].value())),
        lenslet_pupil_centres=layout.get("pupil_centres", default_lenslet_layout(int(f["n_lenslets"].value()))),
        lenslet_radius=layout.get("radius"),
        centres_px=layout.get("centres_px"),
        supersample=supersample if supersample > 0 else None,
    )
    return optics, _depths(f)


def set_fields(fields: Fields, values: dict[str, Any]) -> None:
    """Set the named fields without emitting their change signals (the caller recomputes once)."""
    for name, new in values.items():
        widget = fields[name]
        widget.blockSignals(True)
        widget.setValue(int(new) if isinstance(widget, QSpinBox) else float(new))
        widget.blockSignals(False)


def set_depths(fields: Fields, psf: PSF) -> None:
    """Set the depth fields to ``psf``'s planes (the shown depth is clamped into them)."""
    planes = psf.z_planes_um
    if planes.size:
        step = plane_step(planes, spin_value(fields["z_step"]))
        shown = min(max(spin_value(fields["show_z"]), planes[0]), planes[-1])
        set_fields(fields, {"z_from": planes[0], "z_to": planes[-1], "z_step": step, "show_z": shown})


def fill_lfm(fields: Fields, psf: PSF) -> None:
    """Set the LFM fields from an LFM PSF's optics and depths."""
    from ..psf.lfm import LFMOptics

    set_fields(fields, LFMOptics.from_dict(psf.optics).to_dict())
    set_depths(fields, psf)


def fill_xlfm(fields: Fields, psf: PSF) -> None:
    """Set the XLFM fields from an XLFM PSF's optics and depths (its lenslet layout: see ``xlfm_file_layout``)."""
    optics = psf.optics
    values: dict[str, Any] = {k: optics[k] for k in ("na", "wavelength_um", "immersion_index", "pixel_um")}
    sensor, view = optics.get("sensor_shape", psf.array.shape[-2:]), optics["view_size"]
    values.update(sensor_h=sensor[0], sensor_w=sensor[1], view_h=view[0], view_w=view[1])
    values.update(n_lenslets=optics["n_lenslets"], supersample=optics.get("supersample") or 0)
    set_fields(fields, values)
    set_depths(fields, psf)
