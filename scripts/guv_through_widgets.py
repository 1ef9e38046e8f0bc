"""The real GUV light field from raw frame to volume through the widgets, with two screenshots for the docs.

Run under Xvfb (see HEADLESS_QT.md):

    xvfb-run -a -s '-screen 0 1600x1000x24' .venv/bin/python scripts/guv_through_widgets.py [DATA_DIR] [OUT_DIR]

Loads the three GUV TIFFs as layers, fills the optics from its metadata.txt in
the Calibrate widget, detects the lenslet grid (screenshot of the raw frame,
zoomed, with the lenslet-centre Points), rectifies with the implied LFM PSF
(computed in the widget's worker), reconstructs the rectified layer with
Richardson–Lucy in the Reconstruct widget and shows the result's xy maximum
intensity projection (second screenshot, the Reconstruct widget docked). About a minute on 2 CPU cores.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real" / "lightfield_GUV_experimental"
#: Window size of the screenshots (pixels).
WINDOW = (1500, 950)
#: RL iterations: few, this is a demonstration of the path, not a converged reconstruction.
ITERATIONS = 10


def wait_for(app, condition, timeout: float = 600.0) -> None:
    """Process Qt events until ``condition()`` holds (worker signals arrive through the event loop)."""
    end = time.time() + timeout
    while not condition():
        if time.time() > end:
            raise TimeoutError("timed out")
        app.processEvents()
        time.sleep(0.01)


def settle(app, seconds: float = 0.7) -> None:
    """Let the canvas redraw before grabbing the window."""
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.02)


def main(data_dir: Path = DATA, out_dir: Path = ROOT / "docs") -> None:
    """Run the whole chain through the widgets and write the two screenshots."""
    import napari
    import tifffile
    from qtpy.QtWidgets import QApplication

    from napari_lfrecon.gui.calibrate_widget import CalibrateWidget
    from napari_lfrecon.gui.reconstruct_widget import ReconstructWidget

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*WINDOW)
    app = QApplication.instance()
    for name, stem in (("GUV raw", "Lightfield"), ("GUV white", "Radiometry"), ("GUV dark", "DarkFrame")):
        viewer.add_image(tifffile.imread(data_dir / f"{stem}_GUVExperim1.tif"), name=name, colormap="gray")
    calibrate = CalibrateWidget(viewer, sync=False)
    viewer.window.add_dock_widget(calibrate, name="Calibrate", area="right")
    calibrate.tabs.setCurrentIndex(1)
    calibrate.lf_raw.select("GUV raw")
    calibrate.lf_white.select("GUV white")
    calibrate.lf_dark.select("GUV dark")
    calibrate.load_metadata(data_dir / "metadata.txt")
    calibrate.detect_grid()  # runs in the worker layer: wait for it
    wait_for(app, lambda: not calibrate.busy)
    if calibrate.lf_calibration is None:
        sys.exit(f"grid detection failed: {calibrate.status_label.text()}")
    print(calibrate.lf_info.text())
    for name in ("GUV white", "GUV dark"):
        viewer.layers[name].visible = False
    # zoom on a few lenslets near the frame centre so the centre markers are visible over the lenslet images
    viewer.camera.center = (218.0, 218.0)
    viewer.camera.zoom = 9.0
    settle(app)
    out_dir.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out_dir / "screenshot_calibrate_lightfield.png"), canvas_only=False)

    calibrate.rectify()
    wait_for(app, lambda: "GUV raw rectified" in viewer.layers or "Cannot" in calibrate.status_label.text())
    if "GUV raw rectified" not in viewer.layers:
        sys.exit(f"rectification failed: {calibrate.status_label.text()}")
    print(calibrate.status_label.text())

    reconstruct = ReconstructWidget(viewer, sync=False)
    viewer.window.add_dock_widget(reconstruct, name="Reconstruct", area="right", tabify=True)
    reconstruct.select_input("GUV raw rectified")
    reconstruct.select_engine("rl")
    reconstruct.params_form.set_values({"iterations": ITERATIONS})
    print("PSF:", reconstruct.psf_info.text())
    runner = reconstruct.run()
    if runner is None:
        sys.exit(f"reconstruction refused: {reconstruct.status_label.text()}")
    wait_for(app, lambda: not runner.running)
    if runner.result_layer is None:
        sys.exit(f"reconstruction failed: {runner.message}")
    result = runner.result_layer
    volume = np.asarray(result.data)
    print(f"volume {volume.shape}, voxel {tuple(result.scale)} µm, {runner.seconds:.1f} s")
    for layer in viewer.layers:
        layer.visible = False
    mip = viewer.add_image(
        volume.max(axis=0), name="GUV xy MIP", scale=result.scale[1:], translate=result.translate[1:], colormap="magma"
    )
    viewer.layers.selection.active = mip
    # centre and fit the MIP itself (reset_view would fit every layer, the raw frame in pixels included)
    extent = np.asarray(mip.extent.world)
    viewer.camera.center = tuple((extent[0] + extent[1]) / 2)
    canvas = viewer.window._qt_viewer.canvas.native
    viewer.camera.zoom = 0.9 * min(canvas.width(), canvas.height()) / float(np.max(extent[1] - extent[0]))
    settle(app, 1.0)
    viewer.screenshot(str(out_dir / "screenshot_guv_rl_widgets.png"), canvas_only=False)
    print(f"wrote {out_dir / 'screenshot_calibrate_lightfield.png'} and {out_dir / 'screenshot_guv_rl_widgets.png'}")
    viewer.close()


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:3]))
