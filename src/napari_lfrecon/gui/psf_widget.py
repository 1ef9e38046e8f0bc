"""The PSF editor dock widget: optics, one slider per Zernike mode, live PSF sections and OTF.

Every change restarts a short debounce timer; when it fires, the widefield PSF
is computed in a napari worker thread (:func:`compute_sections`, no Qt) and
four image layers are updated in place (never re-added): the in-focus XY
plane, the XZ and YZ sections through the centre and ``log10 |OTF|`` in the
(kz, kx) plane. They are laid side by side in world space (µm; the OTF panel is
drawn over the same width as the XZ panel) so one 2-D view shows all four.
A change made while a computation runs is computed right after it (the last
one wins; intermediate states are skipped).

"Use for reconstruction" adds (or updates) a 3-D layer ``"PSF [editor]"``
whose ``metadata["psf"]`` is the :class:`~napari_lfrecon.psf.model.PSF`: the
Reconstruct widget lists every such layer as a PSF.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from ..psf.model import PSF, PSF_FILE_SUFFIX
from ..psf.zernike import zernike_name

if TYPE_CHECKING:  # pragma: no cover
    import napari

#: Number of Zernike sliders (ANSI 0 .. N_MODES - 1).
N_MODES = 22
#: Slider range in waves RMS.
SLIDER_RANGE = (-0.5, 0.5)
#: Debounce delay between the last change and the computation (ms).
DEBOUNCE_MS = 120
#: Named presets: ANSI index → waves.
PRESETS: dict[str, dict[int, float]] = {
    "none (diffraction-limited)": {},
    "defocus": {4: 0.15},
    "astigmatism": {5: 0.1},
    "coma": {7: 0.1},
    "spherical": {12: 0.1},
    "trefoil": {6: 0.1},
}
#: Names of the editor's section layers.
LAYER_NAMES = ("PSF XY [editor]", "PSF XZ [editor]", "PSF YZ [editor]", "OTF log|kz,kx| [editor]")
#: The 3-D layer that hands the PSF to the Reconstruct widget.
RECONSTRUCTION_LAYER = "PSF [editor]"


@dataclass
class EditorSettings:
    """Everything the editor computes a PSF from (object-space µm)."""

    na: float = 0.8
    wavelength_um: float = 0.52
    immersion_index: float = 1.33
    magnification: float = 40.0
    camera_pixel_um: float = 6.5
    n_z: int = 33
    dz_um: float = 0.25
    n_xy: int = 64
    zernike: np.ndarray = field(default_factory=lambda: np.zeros(N_MODES))

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """``(dz, dy, dx)`` of the PSF: lateral = camera pixel / magnification."""
        dx = self.camera_pixel_um / self.magnification
        return (self.dz_um, dx, dx)


@dataclass
class Sections:
    """The computed PSF and the four 2-D views of it."""

    psf: PSF
    xy: np.ndarray
    xz: np.ndarray
    yz: np.ndarray
    otf: np.ndarray
    seconds: float


def compute_sections(settings: EditorSettings) -> Sections:
    """Compute the widefield PSF for ``settings`` and its XY / XZ / YZ sections and ``log10 |OTF|`` (kz, kx)."""
    from ..psf.widefield import widefield_psf

    started = time.perf_counter()
    zernike = np.asarray(settings.zernike, dtype=np.float64)
    psf = widefield_psf(
        (settings.n_z, settings.n_xy, settings.n_xy),
        settings.voxel_size,
        settings.na,
        settings.wavelength_um,
        settings.immersion_index,
        zernike if np.any(zernike) else None,
        magnification=settings.magnification,
        camera_pixel_um=settings.camera_pixel_um,
    )
    array = psf.array
    cz, cy, cx = (s // 2 for s in array.shape)
    # The OTF is the Fourier transform of the PSF centred at shape // 2 (ifftshift puts it at index 0).
    otf = np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(array))))
    otf_section = np.log10(otf[:, cy, :] / max(float(otf.max()), 1e-30) + 1e-6).astype(np.float32)
    return Sections(
        psf=psf,
        xy=array[cz].copy(),
        xz=array[:, cy, :].copy(),
        yz=array[:, :, cx].copy(),
        otf=otf_section,
        seconds=time.perf_counter() - started,
    )


def _short_name(j: int) -> str:
    """A mode name short enough to leave the slider's value box visible in a dock."""
    name = zernike_name(j)
    for long, short in (("vertical ", "v. "), ("horizontal ", "h. "), ("oblique ", "o. "), ("secondary ", "2nd ")):
        name = name.replace(long, short)
    return name


class PSFEditorWidget(QWidget):
    """Edit a widefield PSF live: optics fields, Zernike sliders with presets, save/load, hand-over to Reconstruct."""

    def __init__(self, napari_viewer: napari.Viewer, *, sync: bool = False) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.sync = sync
        self.sections: Sections | None = None
        self._worker: Any = None
        self._pending = False
        self.computations = 0

        self.na = self._spin(0.05, 1.7, 0.8, 3, 0.01)
        self.wavelength = self._spin(0.2, 2.0, 0.52, 3, 0.01)
        self.index = self._spin(1.0, 2.0, 1.33, 3, 0.01)
        self.magnification = self._spin(1.0, 200.0, 40.0, 1, 1.0)
        self.camera_pixel = self._spin(0.5, 50.0, 6.5, 2, 0.1)
        self.dz = self._spin(0.01, 10.0, 0.25, 3, 0.05)
        self.n_z = QSpinBox()
        self.n_z.setRange(1, 257)
        self.n_z.setValue(33)
        self.n_xy = QSpinBox()
        self.n_xy.setRange(8, 512)
        self.n_xy.setValue(64)
        optics = QFormLayout()
        optics.addRow("NA", self.na)
        optics.addRow("wavelength (µm)", self.wavelength)
        optics.addRow("immersion index", self.index)
        optics.addRow("magnification", self.magnification)
        optics.addRow("camera pixel (µm)", self.camera_pixel)
        optics.addRow("z step (µm)", self.dz)
        optics.addRow("z planes", self.n_z)
        optics.addRow("lateral size (px)", self.n_xy)
        optics_box = QGroupBox("Optics (widefield, scalar pupil)")
        optics_box.setLayout(optics)

        self.preset = QComboBox()
        self.preset.addItems(list(PRESETS))
        self.sliders: list[QLabeledDoubleSlider] = []
        modes = QFormLayout()
        modes.addRow("preset", self.preset)
        for j in range(N_MODES):
            slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            slider.setMinimumWidth(60)  # keeps the value box visible in a narrow dock
            slider.setRange(*SLIDER_RANGE)
            slider.setSingleStep(0.005)
            slider.setDecimals(3)
            slider.setValue(0.0)
            slider.setToolTip(f"ANSI Z{j}: {zernike_name(j)}, waves RMS")
            modes.addRow(f"Z{j} {_short_name(j)}", slider)
            self.sliders.append(slider)
        modes_widget = QWidget()
        modes_widget.setLayout(modes)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(modes_widget)
        modes_box = QGroupBox("Zernike aberrations (waves RMS)")
        modes_layout = QVBoxLayout()
        modes_layout.addWidget(scroll)
        modes_box.setLayout(modes_layout)

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

        layout = QVBoxLayout()
        layout.addWidget(optics_box)
        layout.addWidget(modes_box, stretch=1)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        self.setLayout(layout)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.recompute)
        for spin in (self.na, self.wavelength, self.index, self.magnification, self.camera_pixel, self.dz):
            spin.valueChanged.connect(self.schedule)
        self.n_z.valueChanged.connect(self.schedule)
        self.n_xy.valueChanged.connect(self.schedule)
        for slider in self.sliders:
            slider.valueChanged.connect(self.schedule)
        self.preset.currentTextChanged.connect(self.apply_preset)
        self.save_button.clicked.connect(self._save_dialog)
        self.load_button.clicked.connect(self._load_dialog)
        self.use_button.clicked.connect(self.use_for_reconstruction)
        self.schedule()

    @staticmethod
    def _spin(low: float, high: float, value: float, decimals: int, step: float) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setRange(low, high)
        spin.setDecimals(decimals)
        spin.setSingleStep(step)
        spin.setValue(value)
        return spin

    # ------------------------------------------------------------- settings
    def settings(self) -> EditorSettings:
        """The current form values."""
        return EditorSettings(
            na=self.na.value(),
            wavelength_um=self.wavelength.value(),
            immersion_index=self.index.value(),
            magnification=self.magnification.value(),
            camera_pixel_um=self.camera_pixel.value(),
            n_z=self.n_z.value(),
            dz_um=self.dz.value(),
            n_xy=self.n_xy.value(),
            zernike=np.array([s.value() for s in self.sliders], dtype=np.float64),
        )

    def set_zernike(self, coefficients: dict[int, float] | np.ndarray) -> None:
        """Set the sliders (unlisted modes to 0) with one recomputation."""
        values = np.zeros(N_MODES)
        if isinstance(coefficients, dict):
            for j, c in coefficients.items():
                if 0 <= int(j) < N_MODES:
                    values[int(j)] = float(c)
        else:
            array = np.asarray(coefficients, dtype=np.float64).ravel()[:N_MODES]
            values[: array.size] = array
        for slider, value in zip(self.sliders, values, strict=True):
            slider.blockSignals(True)
            slider.setValue(float(np.clip(value, *SLIDER_RANGE)))
            slider.blockSignals(False)
        self.schedule()

    def apply_preset(self, name: str) -> None:
        """Load the named preset (see :data:`PRESETS`)."""
        if name in PRESETS:
            self.set_zernike(PRESETS[name])

    # ------------------------------------------------------------ computing
    def schedule(self, *_: Any) -> None:
        """(Re)start the debounce timer; the PSF is recomputed when it fires."""
        self._timer.start()

    def recompute(self) -> None:
        """Compute the PSF for the current settings (in a worker unless ``sync``); coalesces overlapping requests."""
        if self._worker is not None:
            self._pending = True
            return
        settings = self.settings()
        if self.sync:
            self._show(self._safe_compute(settings))
            return
        from napari.qt.threading import create_worker

        worker = create_worker(self._safe_compute, settings, _start_thread=False)
        worker.returned.connect(self._show)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()

    @staticmethod
    def _safe_compute(settings: EditorSettings) -> Sections | str:
        try:
            return compute_sections(settings)
        except ValueError as exc:  # bad optics: a message, not a traceback
            return str(exc)

    def _on_finished(self) -> None:
        self._worker = None
        if self._pending:
            self._pending = False
            self.recompute()

    @property
    def busy(self) -> bool:
        """True while a computation runs or is scheduled."""
        return self._worker is not None or self._timer.isActive() or self._pending

    def _show(self, result: Sections | str) -> None:
        if isinstance(result, str):
            self.status.setText(f"cannot compute: {result}")
            return
        self.sections = result
        self.computations += 1
        dz, dy, dx = result.psf.voxel_size
        n_z, n_y, n_x = result.psf.array.shape
        width_x, height_z = n_x * dx, n_z * dz
        gap = 0.1 * width_x
        # Side by side in µm: XY | XZ | YZ | OTF(kz, kx) drawn over the XZ panel's extent.
        panels = (
            (result.xy, (dy, dx), (0.0, 0.0), "magma"),
            (result.xz, (dz, dx), (0.0, width_x + gap), "magma"),
            (result.yz, (dz, dy), (0.0, 2 * (width_x + gap)), "magma"),
            (result.otf, (dz, dx), (0.0, 3 * (width_x + gap)), "viridis"),
        )
        for name, (data, scale, translate, colormap) in zip(LAYER_NAMES, panels, strict=True):
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                layer.data = data
                layer.scale = scale
                layer.translate = translate
            else:
                layer = self.viewer.add_image(
                    data, name=name, scale=scale, translate=translate, colormap=colormap, metadata={"psf_editor": True}
                )
                if colormap == "magma":
                    layer.gamma = 0.5  # shows the dim rings and side lobes next to the bright core
            low, high = float(data.min()), float(data.max())
            layer.contrast_limits_range = (low, high if high > low else low + 1)
            layer.contrast_limits = (low, high if high > low else low + 1)
        rms = float(np.sqrt(np.sum(result.psf.zernike[3:] ** 2))) if result.psf.zernike.size > 3 else 0.0
        self.status.setText(
            f"{result.psf.describe()}; aberration {rms:.3f} waves RMS (excluding piston/tilt); "
            f"computed in {1000 * result.seconds:.0f} ms; XZ/YZ panels are {height_z:g} µm tall"
        )
        if RECONSTRUCTION_LAYER in self.viewer.layers:
            self._update_reconstruction_layer(result.psf)

    # ------------------------------------------------------ files, hand-over
    def current_psf(self) -> PSF:
        """The PSF for the current settings (computed now if the shown one is stale)."""
        settings = self.settings()
        shown = self.sections
        if (
            shown is not None
            and np.array_equal(shown.psf.zernike if shown.psf.zernike.size else np.zeros(N_MODES), settings.zernike)
            and shown.psf.array.shape == (settings.n_z, settings.n_xy, settings.n_xy)
            and np.allclose(shown.psf.voxel_size, settings.voxel_size)
            and shown.psf.optics.get("na") == settings.na
            and shown.psf.optics.get("wavelength_um") == settings.wavelength_um
            and shown.psf.optics.get("immersion_index") == settings.immersion_index
        ):
            return shown.psf
        return compute_sections(settings).psf

    def save(self, path: str | Path) -> Path:
        """Save the current PSF (``.psf.safetensors``); return the path written."""
        path = Path(path)
        if not path.name.endswith(PSF_FILE_SUFFIX):
            path = path.with_name(path.name.removesuffix(path.suffix) + PSF_FILE_SUFFIX)
        return self.current_psf().save(path)

    def load(self, path: str | Path) -> None:
        """Load a widefield PSF file's optics and Zernike coefficients into the form (the PSF is recomputed)."""
        psf = PSF.load(path)
        if psf.modality != "widefield":
            raise ValueError(f"{path} holds a {psf.modality} PSF; the editor edits widefield PSFs")
        optics = psf.optics
        for key, widget in (
            ("na", self.na),
            ("wavelength_um", self.wavelength),
            ("immersion_index", self.index),
            ("magnification", self.magnification),
        ):
            if key in optics:
                widget.setValue(float(optics[key]))
        dz, _, dx = psf.voxel_size
        self.camera_pixel.setValue(dx * self.magnification.value())
        self.dz.setValue(dz)
        self.n_z.setValue(psf.array.shape[0])
        self.n_xy.setValue(psf.array.shape[-1])
        self.set_zernike(psf.zernike)

    def use_for_reconstruction(self) -> Any:
        """Add or update the 3-D layer :data:`RECONSTRUCTION_LAYER` carrying the PSF in ``metadata["psf"]``."""
        return self._update_reconstruction_layer(self.current_psf())

    def _update_reconstruction_layer(self, psf: PSF) -> Any:
        if RECONSTRUCTION_LAYER in self.viewer.layers:
            layer = self.viewer.layers[RECONSTRUCTION_LAYER]
            layer.data = psf.array
            layer.scale = psf.voxel_size
            layer.metadata = {**layer.metadata, "psf": psf}
            return layer
        return self.viewer.add_image(
            psf.array, name=RECONSTRUCTION_LAYER, scale=psf.voxel_size, colormap="magma", metadata={"psf": psf}
        )

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
            except (ValueError, OSError) as exc:
                show_error(f"could not load the PSF: {exc}")
