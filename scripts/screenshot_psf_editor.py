"""Screenshot of the PSF editor widget; run under Xvfb: ``xvfb-run -a python scripts/screenshot_psf_editor.py``."""

from __future__ import annotations

import sys

import napari
from qtpy.QtWidgets import QApplication

from napari_lfrecon.gui.psf_widget import PSFEditorWidget


def main(out: str = "docs/screenshot_psf_editor.png") -> None:
    """Open the editor, apply the coma preset plus some spherical, wait for the update, save a window grab."""
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 1000)
    widget = PSFEditorWidget(viewer)
    viewer.window.add_dock_widget(widget, name="PSF editor", area="right")
    widget.n_xy.setValue(96)
    widget.preset.setCurrentText("coma")
    widget.sliders[12].setValue(0.12)
    app = QApplication.instance()
    while widget.busy or widget.computations == 0:
        app.processEvents()
    viewer.reset_view()
    for _ in range(20):
        app.processEvents()
    viewer.window._qt_window.grab().save(out)
    print(f"wrote {out}: {widget.status.text()}")
    viewer.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
