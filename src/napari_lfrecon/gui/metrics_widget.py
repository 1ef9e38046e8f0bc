"""The Metrics dock widget: PSNR, SSIM, Fourier-PSNR and FSC of a prediction layer, live while an engine runs.

Two modes, by what the second layer is:

* **vs reference**: a prediction against a noise-free reference (a simulated
  ground truth); the prediction's intensity is fitted to the reference first,
  FSC threshold 0.5;
* **half-data pair**: two reconstructions of two independent halves of the
  same measurement (FSC threshold 1/7 or half-bit; PSNR/SSIM then compare the
  halves). A single measurement layer can be turned into such a pair here:
  *Split & reconstruct* splits its raw counts by binomial thinning and runs
  Richardson–Lucy on each half (never split a reconstruction: its halves share
  noise).

Numbers and the two plots (Fourier-PSNR sweep, FSC curve) update when either
layer's data changes — e.g. each preview the worker layer writes in place —
at most twice a second; the computation runs through the worker layer
(:func:`napari_lfrecon.gui.worker.start_job`) with a generation counter, so a
stale result never overwrites a newer one and the UI never waits for it. With
*follow engine output* on, the newest engine preview/result layer becomes the
prediction automatically.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..controllers.layers import is_ground_truth
from ..metrics.report import compare
from ._geometry import output_translate
from .kit import follow_renames
from .panels import scrolled_layout, theme_axes
from .worker import Job, connect_alive, on_widget_closed, start_job

if TYPE_CHECKING:  # pragma: no cover
    import napari

#: Live updates at most this often (milliseconds between computations).
THROTTLE_MS = 500
#: FSC modes: label → threshold passed to :func:`napari_lfrecon.metrics.fsc`.
MODES: dict[str, str] = {
    "vs reference (FSC 0.5)": "reference",
    "half-data pair (FSC 1/7)": "1/7",
    "half-data pair (FSC half-bit)": "half-bit",
}
_NONE = "—"


class MetricsWidget(QWidget):
    """Dock widget comparing a prediction layer with a reference (or its other half) and plotting the spectra."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.result: dict[str, Any] | None = None
        self._generation = 0
        self._busy = False
        self._pending = False
        self._connected: list[Any] = []
        #: The readouts' computation and the split-and-reconstruct run in the worker layer (the latest of each).
        self._job: Job | None = None
        self._split_job: Job | None = None

        self.pred_combo = QComboBox()
        self.pred_combo.setToolTip("the reconstruction to score (an engine's preview or result)")
        self.ref_combo = QComboBox()
        self.ref_combo.setToolTip("a noise-free reference, or the other half-data reconstruction")
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(list(MODES))
        self.mode_combo.setToolTip("what the second layer is; sets the FSC threshold")
        self.radius_spin = QDoubleSpinBox()
        self.radius_spin.setRange(0.0, 4096.0)
        self.radius_spin.setValue(8.0)
        self.radius_spin.setToolTip("Fourier-PSNR low-pass disc radius (frequency indices, xz and yz planes)")
        self.range_spin = QDoubleSpinBox()
        self.range_spin.setRange(0.0, 1e9)
        self.range_spin.setDecimals(4)
        self.range_spin.setSpecialValueText("auto (reference max − min)")
        self.range_spin.setToolTip("data range L of PSNR/SSIM (0 = from the reference)")
        self.follow_check = QCheckBox("follow engine output")
        self.follow_check.setChecked(True)
        self.follow_check.setToolTip("select each new engine preview/result layer as the prediction")

        self.labels = {k: QLabel(_NONE) for k in ("psnr", "ssim", "fourier_psnr", "resolution", "status")}
        readouts = QGroupBox("Readouts")
        form = QFormLayout(readouts)
        form.addRow("PSNR", self.labels["psnr"])
        form.addRow("SSIM", self.labels["ssim"])
        form.addRow("Fourier-PSNR", self.labels["fourier_psnr"])
        form.addRow("FSC resolution", self.labels["resolution"])
        self.labels["status"].setWordWrap(True)

        self.figure = Figure(figsize=(4, 4.2), dpi=80, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(300)
        self.sweep_ax, self.fsc_ax = self.figure.subplots(2, 1)
        self._draw_empty()

        # Split & reconstruct: one measurement layer → two half-data RL reconstructions.
        split_box = QGroupBox("Split-FSC from one measurement")
        split_form = QFormLayout(split_box)
        self.measure_combo = QComboBox()
        self.measure_combo.setToolTip("a raw measurement in photo-electrons with a PSF (samples carry one)")
        self.iter_spin = QSpinBox()
        self.iter_spin.setRange(1, 5000)
        self.iter_spin.setValue(30)
        self.split_button = QPushButton("Split && reconstruct halves")
        self.split_button.setToolTip("binomial thinning of the counts, then Richardson–Lucy on each half")
        split_form.addRow("measurement", self.measure_combo)
        split_form.addRow("RL iterations", self.iter_spin)
        split_form.addRow(self.split_button)

        top = QFormLayout()
        top.addRow("prediction", self.pred_combo)
        top.addRow("reference / half 2", self.ref_combo)
        top.addRow("mode", self.mode_combo)
        top.addRow("radius", self.radius_spin)
        top.addRow("data range", self.range_spin)
        top.addRow(self.follow_check)
        # Everything scrolls: the dock fits a laptop screen.
        layout, _footer = scrolled_layout(self)
        layout.addLayout(top)
        layout.addWidget(readouts)
        layout.addWidget(self.canvas)
        layout.addWidget(self.labels["status"])
        layout.addWidget(split_box)
        layout.addStretch(1)

        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(THROTTLE_MS)
        self.timer.timeout.connect(self.refresh)

        connect_alive(self.viewer.layers.events.inserted, self, self._on_inserted)
        connect_alive(self.viewer.layers.events.removed, self, self._refresh_layers)
        follow_renames(self.viewer, self, self._refresh_layers)
        on_widget_closed(self, self._on_closed)
        for combo in (self.pred_combo, self.ref_combo):
            combo.currentIndexChanged.connect(self._on_selection)
        for signal in (
            self.mode_combo.currentIndexChanged,
            self.radius_spin.valueChanged,
            self.range_spin.valueChanged,
        ):
            signal.connect(self.schedule)
        self.split_button.clicked.connect(self.split_and_reconstruct)
        self._refresh_layers()

    # ------------------------------------------------------------ layer choice
    def _images(self) -> list[Image]:
        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _refresh_layers(self, *_: Any) -> None:
        names = [layer.name for layer in self._images()]
        for combo, default in ((self.pred_combo, self._default_prediction), (self.ref_combo, self._default_reference)):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([_NONE, *names])
            combo.setCurrentText(current if current in names else default(names))
            combo.blockSignals(False)
        current = self.measure_combo.currentText()
        self.measure_combo.clear()
        measurements = [layer.name for layer in self._images() if "psf" in layer.metadata]
        self.measure_combo.addItems(measurements)
        if current in measurements:
            self.measure_combo.setCurrentText(current)
        self._on_selection()

    def _on_closed(self) -> None:
        """The panel was closed: its comparisons stop and report nowhere."""
        for job in (self._job, self._split_job):
            if job is not None and job.running:
                job.detach()

    def _default_prediction(self, names: list[str]) -> str:
        # a reconstruction, never a ground truth (that is the reference)
        engine_layers = [
            layer.name for layer in self._images() if "engine" in layer.metadata and not is_ground_truth(layer.metadata)
        ]
        return engine_layers[-1] if engine_layers else _NONE

    def _default_reference(self, names: list[str]) -> str:
        truths = [layer.name for layer in self._images() if layer.metadata.get("ground_truth")]
        return truths[0] if truths else _NONE

    def _on_inserted(self, event: Any) -> None:
        layer = event.value
        self._refresh_layers()
        followed = isinstance(layer, Image) and "engine" in layer.metadata and not is_ground_truth(layer.metadata)
        if self.follow_check.isChecked() and followed:
            self.pred_combo.setCurrentText(layer.name)

    def select(self, prediction: str | None = None, reference: str | None = None, mode: str | None = None) -> None:
        """Choose layers (by name) and the mode (a key of :data:`MODES` or its threshold name) from a script."""
        if prediction is not None:
            self.pred_combo.setCurrentText(prediction)
        if reference is not None:
            self.ref_combo.setCurrentText(reference)
        if mode is not None:
            label = next((k for k, v in MODES.items() if mode in (k, v)), None)
            if label is None:
                raise ValueError(f"mode must be one of {list(MODES)} or {list(MODES.values())}, got {mode!r}")
            self.mode_combo.setCurrentText(label)

    def layer(self, combo: QComboBox) -> Image | None:
        """The image layer a combo names, if it still exists."""
        name = combo.currentText()
        return next((layer for layer in self._images() if layer.name == name), None)

    def _on_selection(self, *_: Any) -> None:
        for layer in self._connected:
            layer.events.data.disconnect(self.schedule)
        self._connected = [x for x in (self.layer(self.pred_combo), self.layer(self.ref_combo)) if x is not None]
        for layer in self._connected:
            layer.events.data.connect(self.schedule)
        self.schedule()

    # ------------------------------------------------------------ computation
    def schedule(self, *_: Any) -> None:
        """Ask for a recomputation; several requests within the throttle interval become one."""
        if not self.timer.isActive():
            self.timer.start()

    def refresh(self) -> None:
        """Start computing the readouts for the current layers (in a worker; a newer request supersedes it)."""
        pred, ref = self.layer(self.pred_combo), self.layer(self.ref_combo)
        if pred is None or ref is None:
            self._show_status("choose a prediction and a reference (or the second half-data reconstruction)")
            return
        a, b = np.asarray(pred.data), np.asarray(ref.data)
        if a.shape != b.shape:
            self._show_status(f"the layers differ in shape: {a.shape} vs {b.shape}; compare volumes on one grid")
            return
        if a.ndim not in (2, 3):
            self._show_status(f"metrics need 2D images or 3D volumes, got {a.ndim}D")
            return
        if self._busy:
            self._pending = True  # picked up when the running computation returns
            return
        threshold = MODES[self.mode_combo.currentText()]
        kwargs = dict(
            voxel_size=tuple(float(s) for s in pred.scale),
            radius=self.radius_spin.value(),
            data_range=self.range_spin.value() or None,
            rescale=threshold == "reference",
            fsc_threshold=threshold,
        )
        self._generation += 1
        self._busy = True
        self._job = start_job(
            _compare, a.copy(), b.copy(), self._generation, kwargs, on_return=self._on_result, on_error=self._on_error
        )

    def _on_error(self, exc: Exception) -> None:
        self._busy = False
        self._show_status(f"metrics failed: {exc}")

    def _on_result(self, payload: tuple[int, dict[str, Any]]) -> None:
        generation, result = payload
        self._busy = False
        if generation == self._generation:
            self.result = result
            self._show(result)
        if self._pending:
            self._pending = False
            self.schedule()

    # ------------------------------------------------------------ display
    def _show_status(self, text: str) -> None:
        self.labels["status"].setText(text)

    def _show(self, r: dict[str, Any]) -> None:
        self.labels["psnr"].setText(f"{r['psnr']:.2f} dB")
        self.labels["ssim"].setText(f"{r['ssim']:.4f}")
        self.labels["fourier_psnr"].setText(f"{r['fourier_psnr']:.2f} dB  (r = {r['radius']:g})")
        ring = r["fsc"]
        res = r["resolution_um"]
        text = "none resolved" if math.isinf(res) else f"{res:.3g} µm"
        if not ring["crossed"]:
            text = f"≤ {res:.3g} µm (sampling limit)"
        self.labels["resolution"].setText(f"{text}  [threshold {ring['threshold_name']}]")
        scale = f"; intensity ×{r['scale']:.3g} fitted" if r["scale"] != 1.0 else ""
        self._show_status(f"data range {r['data_range']:.3g}{scale}")
        self._draw(r)

    def _draw_empty(self) -> None:
        self.sweep_ax.set(title="Fourier-PSNR sweep (xz + yz)", xlabel="radius (frequency index)", ylabel="dB")
        self.fsc_ax.set(title="FSC", xlabel="spatial frequency (1/µm)", ylabel="correlation")
        theme_axes(self.viewer, self.figure, [self.sweep_ax, self.fsc_ax])
        self.canvas.draw_idle()

    def _draw(self, r: dict[str, Any]) -> None:
        self.sweep_ax.clear()
        self.fsc_ax.clear()
        sweep = r["sweep"]
        self.sweep_ax.plot(sweep["radius"], sweep["fourier_psnr"], color="tab:blue")
        self.sweep_ax.axvline(r["radius"], color="tab:orange", linestyle=":", linewidth=1)
        ring = r["fsc"]
        self.fsc_ax.plot(ring["frequency"], np.nan_to_num(ring["curve"]), color="tab:blue", label="FSC")
        self.fsc_ax.plot(ring["frequency"], ring["threshold"], color="grey", linestyle="--", label="threshold")
        if ring["crossed"] and ring["crossing_frequency"] > 0:
            self.fsc_ax.axvline(ring["crossing_frequency"], color="tab:orange", linestyle=":", linewidth=1)
        self.fsc_ax.set_ylim(-0.1, 1.05)
        self.fsc_ax.legend(fontsize=7, loc="upper right")
        self._draw_empty()

    # ------------------------------------------------------------ split & reconstruct
    def split_and_reconstruct(self) -> Job | None:
        """Binomially split the chosen measurement and reconstruct both halves with RL through the worker layer."""
        layer = next((x for x in self._images() if x.name == self.measure_combo.currentText()), None)
        if layer is None or "psf" not in layer.metadata:
            show_error("choose a measurement layer that carries a PSF (metadata['psf'])")
            return None
        psf = layer.metadata["psf"]
        self.split_button.setEnabled(False)
        self._show_status(f"reconstructing two halves of {layer.name!r} ({self.iter_spin.value()} RL iterations each)…")
        self._split_job = start_job(
            _split_reconstruct,
            np.asarray(layer.data),
            psf,
            self.iter_spin.value(),
            on_return=lambda volumes: self._add_halves(layer, psf, volumes),
            on_error=self._on_split_error,
        )
        return self._split_job

    def _on_split_error(self, exc: Exception) -> None:
        self.split_button.setEnabled(True)
        show_error(f"split-FSC failed: {exc}")

    def _add_halves(self, layer: Image, psf: Any, volumes: list[Any]) -> None:
        self.split_button.setEnabled(True)
        names = []
        for k, volume in enumerate(volumes, start=1):
            scale = tuple(volume.voxel_size)[-volume.data.ndim :]
            translate = output_translate(
                layer.data.shape,
                tuple(layer.scale),
                tuple(layer.translate),
                volume.data.shape,
                scale,
                psf.z_planes_um if psf.z_planes_um.size else None,
            )
            added = self.viewer.add_image(
                volume.data,
                name=f"{layer.name} [rl half {k}]",
                scale=scale,
                translate=translate,
                metadata={"half": k, "source": layer.name, "split": "binomial"},
            )
            names.append(added.name)
        self.select(names[0], names[1], "1/7")


def _compare(a: np.ndarray, b: np.ndarray, generation: int, kwargs: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The readouts of ``a`` against ``b``, tagged with the request's generation (runs off the main thread)."""
    return generation, compare(a, b, **kwargs)


def _split_reconstruct(data: np.ndarray, psf: Any, iterations: int) -> list[Any]:
    """Binomial halves of ``data`` (seed 0), each reconstructed with RL (runs off the main thread)."""
    from ..api import reconstruct
    from ..metrics.halves import binomial_split

    return [reconstruct("rl", half, psf, iterations=iterations) for half in binomial_split(data, seed=0)]
