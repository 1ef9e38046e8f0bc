"""The real GUV light field reconstructed by SeReNet and by RL side by side in napari (a screenshot for the docs).

Run under Xvfb (see HEADLESS_QT.md):

    xvfb-run -a -s '-screen 0 1600x1000x24' .venv/bin/python scripts/guv_serenet_vs_rl.py WEIGHTS [DATA_DIR] [OUT_PNG]

WEIGHTS are SeReNet weights trained for the GUV optics (60×/1.2 NA, 15 px per
lenslet, 31 depths −15…15 µm; see BENCHMARKS.md for the command). The chain is
the one a user clicks through: the three GUV TIFFs as layers, the Calibrate
widget (optics from metadata.txt, PSF depths −15…15 µm), Rectify (the implied
LFM PSF rides on the rectified layer), then the Reconstruct widget twice —
RL (10 iterations) and SeReNet with WEIGHTS. The two xy maximum-intensity
projections are laid side by side (RL left, SeReNet right).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from guv_through_widgets import DATA, ROOT, settle, wait_for  # noqa: E402

#: PSF depths the weights were trained for (µm).
Z_RANGE_UM = (-15.0, 15.0)
RL_ITERATIONS = 10


def run(reconstruct, app, engine: str, values: dict) -> object:
    """Run one engine on the rectified layer through the Reconstruct widget; return the result layer."""
    reconstruct.select_input("GUV raw rectified")
    reconstruct.select_engine(engine)
    reconstruct.params_form.set_values(values)
    runner = reconstruct.run()
    if runner is None:
        sys.exit(f"{engine} refused: {reconstruct.status_label.text()}")
    wait_for(app, lambda: not runner.running, timeout=1800)
    if runner.result_layer is None:
        sys.exit(f"{engine} failed: {runner.message}")
    print(f"{engine}: {runner.result_layer.data.shape}, {runner.seconds:.2f} s")
    return runner.result_layer


def main(weights: str, data_dir: Path = DATA, out: Path = ROOT / "docs" / "screenshot_guv_serenet_vs_rl.png") -> None:
    """Calibrate, rectify, reconstruct twice and write the side-by-side screenshot."""
    import napari
    import tifffile
    from qtpy.QtWidgets import QApplication

    from napari_lfrecon.gui.calibrate_widget import CalibrateWidget
    from napari_lfrecon.gui.reconstruct_widget import ReconstructWidget

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
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
    calibrate.lf_z_from.setValue(Z_RANGE_UM[0])
    calibrate.lf_z_to.setValue(Z_RANGE_UM[1])
    calibrate.lf_z_step.setValue(1.0)
    calibrate.detect_grid()  # runs in the worker layer: wait for it
    wait_for(app, lambda: not calibrate.busy)
    if calibrate.lf_calibration is None:
        sys.exit(f"grid detection failed: {calibrate.status_label.text()}")
    calibrate.rectify()
    wait_for(app, lambda: "GUV raw rectified" in viewer.layers or "Cannot" in calibrate.status_label.text())
    if "GUV raw rectified" not in viewer.layers:
        sys.exit(f"rectification failed: {calibrate.status_label.text()}")

    reconstruct = ReconstructWidget(viewer, sync=False)
    viewer.window.add_dock_widget(reconstruct, name="Reconstruct", area="right", tabify=True)
    rl = run(reconstruct, app, "rl", {"iterations": RL_ITERATIONS})
    sn = run(reconstruct, app, "serenet", {"weights": str(weights)})
    for layer in viewer.layers:
        layer.visible = False
    width = float(rl.extent.world[1][-1] - rl.extent.world[0][-1])
    mips = []
    for k, (layer, title) in enumerate(((rl, "RL 10 it."), (sn, "SeReNet"))):
        volume = np.asarray(layer.data)
        mip = viewer.add_image(
            volume.max(axis=0),
            name=f"GUV xy MIP — {title} ({layer.metadata.get('seconds', 0):.2f} s)",
            scale=layer.scale[1:],
            translate=(layer.translate[1], layer.translate[2] + k * 1.05 * width),
            colormap="magma",
        )
        mips.append(mip)
    viewer.layers.selection.active = mips[-1]
    lo = np.min([np.asarray(m.extent.world)[0] for m in mips], axis=0)
    hi = np.max([np.asarray(m.extent.world)[1] for m in mips], axis=0)
    viewer.camera.center = tuple((lo + hi) / 2)
    canvas = viewer.window._qt_viewer.canvas.native
    viewer.camera.zoom = 0.95 * min(canvas.width() / float(hi[1] - lo[1]), canvas.height() / float(hi[0] - lo[0]))
    settle(app, 1.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False)
    print(f"wrote {out}")
    viewer.close()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], *(Path(a) for a in sys.argv[2:4]))
