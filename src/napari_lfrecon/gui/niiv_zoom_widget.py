"""The niiv zoom dock widget: pick a niiv result (or a stack with niiv weights), tick *Live zoom*, read the status.

The zoom itself is :class:`napari_lfrecon.gui.niiv_zoom.NiivZoom` (Qt glue)
over :mod:`napari_lfrecon.controllers.niiv_zoom` (no Qt); this module only
builds the field for the chosen layer and shows the status line.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error
from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QWidget

from ..controllers.niiv_zoom import build_field, zoom_source
from ..controllers.niiv_zoom_geometry import FieldDecoder
from .niiv_zoom import NiivZoom
from .panels import scrolled_layout
from .worker import connect_alive, on_widget_closed

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["NiivZoomWidget"]


class NiivZoomWidget(QWidget):
    """Dock widget: choose a niiv result (or a stack with niiv weights) and follow the camera with live decodes."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.zoom = NiivZoom(parent=self)
        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("a niiv result, or an anisotropic stack opened with niiv weights")
        self.live_check = QCheckBox("Live zoom")
        self.live_check.setToolTip("re-decode the visible region at the screen's resolution while you zoom and pan")
        self.status_label = QLabel("pick a layer and tick Live zoom")
        self.status_label.setWordWrap(True)
        form = QFormLayout()
        form.addRow("layer", self.layer_combo)
        layout, _footer = scrolled_layout(self)  # small minimum height, like every dock
        layout.addLayout(form)
        layout.addWidget(self.live_check)
        layout.addWidget(self.status_label)
        layout.addStretch(1)
        self.live_check.toggled.connect(self._on_live_toggled)
        self.layer_combo.currentIndexChanged.connect(self._on_layer_changed)
        self.zoom.status_changed.connect(self.status_label.setText)
        connect_alive(self.viewer.layers.events.inserted, self, self._refresh_layers)
        connect_alive(self.viewer.layers.events.removed, self, self._on_layer_removed)
        on_widget_closed(self, self._on_closed)
        self._refresh_layers()

    def _on_closed(self) -> None:
        """The panel was closed: decoding stops and the zoom tile goes."""
        with contextlib.suppress(RuntimeError):  # the zoom's Qt timers may already be gone with the panel
            self.zoom.detach()

    def _candidates(self) -> list[str]:
        return [layer.name for layer in self.viewer.layers if zoom_source(self.viewer, layer) is not None]

    def _refresh_layers(self, event: Any = None) -> None:
        current = self.layer_combo.currentText()
        names = self._candidates()
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)
        self.live_check.setEnabled(bool(names) or self.live_check.isChecked())

    def _on_layer_removed(self, event: Any) -> None:
        followed = self.zoom.base_layer
        self._refresh_layers()
        if followed is not None and getattr(event, "value", None) is followed:
            self.zoom.detach()
            self._set_live(False)
            self.status_label.setText(f"live zoom off: layer {followed.name!r} was removed")

    def _set_live(self, on: bool) -> None:
        """Tick or untick *Live zoom* without re-entering the toggle handler."""
        self.live_check.blockSignals(True)
        self.live_check.setChecked(on)
        self.live_check.blockSignals(False)

    def _on_layer_changed(self, index: int = 0) -> None:
        if self.live_check.isChecked():
            self.start()

    def _on_live_toggled(self, on: bool) -> None:
        if on:
            self.start()
        else:
            self.zoom.detach()
            self.status_label.setText("live zoom off")

    def start(self, field: FieldDecoder | None = None) -> bool:
        """Attach the zoom to the chosen layer (building its field unless ``field`` is given); True on success.

        Errors (no niiv model, a weights file for another anisotropy, a layer
        the zoom cannot follow) go to ``show_error`` and the status line, and
        untick *Live zoom*.
        """
        self._set_live(True)
        self.zoom.detach()
        name = self.layer_combo.currentText()
        try:
            if not name or name not in self.viewer.layers:
                raise ValueError("no niiv result or stack with niiv weights to follow")
            layer = self.viewer.layers[name]
            if field is None:
                source = zoom_source(self.viewer, layer)
                if source is None:
                    raise ValueError(f"layer {name!r} has no niiv model attached")
                field = build_field(source["stack"], source["weights"], source["anisotropy"])
            self.zoom.attach(self.viewer, layer, field)
        except Exception as exc:  # a bad layer or weights file is a message, never a traceback
            message = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            show_error(f"niiv zoom: {message}")
            self.status_label.setText(message)
            self._set_live(False)
            return False
        return True

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt name
        """Detach before the widget goes (no thread left behind)."""
        self.zoom.detach()
        super().closeEvent(event)
