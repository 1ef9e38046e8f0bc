"""Screenshots of the PSF editor in its three modes; run under Xvfb.

``xvfb-run -a -s '-screen 0 1600x1000x24' python scripts/screenshot_psf_editor.py [OUT_DIR]``
writes ``screenshot_psf_editor.png`` (widefield, coma + spherical),
``screenshot_psf_editor_lfm.png`` and ``screenshot_psf_editor_xlfm.png`` (the
shipped samples' optics) into ``OUT_DIR`` (default ``docs``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_lfrecon.gui.psf_widget import PSFEditorWidget


def _settle(widget: PSFEditorWidget, viewer: napari.Viewer) -> None:
    """Process events until the editor has shown its PSF, then frame the panels."""
    app = QApplication.instance()
    count = widget.computations
    while widget.busy or widget.computations == count:
        app.processEvents()
        time.sleep(0.01)  # an idle event loop, as in napari: a busy spin would starve the worker thread
    viewer.reset_view()
    for _ in range(30):
        app.processEvents()


def main(out_dir: str = "docs") -> None:
    """Open the editor docked in a 1400×1000 window and grab it in each mode."""
    out = Path(out_dir)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 1000)
    widget = PSFEditorWidget(viewer)
    viewer.window.add_dock_widget(widget, name="PSF editor", area="right")
    widget.n_xy.setValue(96)
    widget.preset.setCurrentText("coma")
    widget.sliders[12].setValue(0.12)
    _settle(widget, viewer)
    shots = [("screenshot_psf_editor.png", None), ("screenshot_psf_editor_lfm.png", "lfm")]
    shots.append(("screenshot_psf_editor_xlfm.png", "xlfm"))
    for name, mode in shots:
        if mode is not None:
            widget.set_mode(mode)
            _settle(widget, viewer)
        path = out / name
        viewer.window._qt_window.grab().save(str(path))
        print(f"wrote {path}: {widget.status.text()}")
    viewer.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
