"""Screenshot of the Train widget for the docs: SeReNet trained briefly on the LFM sample.

Run (no display needed; the Xvfb recipe of HEADLESS_QT.md)::

    xvfb-run -a -s '-screen 0 1600x1000x24' .venv/bin/python scripts/screenshot_train.py [--steps 200] [--out docs]

Opens the shipped light-field sample, docks the Train widget, trains
``serenet-train`` for a few steps in the worker thread exactly as a click on
*Train* does (weights go to a temporary directory), then shows the trained
network's volume (z max projection) beside the simulated ground truth and saves
the whole window as ``docs/screenshot_train_serenet.png`` — the loss curve, the
status line and the volume are all in the picture.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Window size (pixels): room for the canvas and the tall docked form.
WINDOW = (1560, 980)
#: A small network and crops: a few seconds per ten steps on a laptop CPU.
SETTINGS = {"width": 0.5, "crop_lenslets": 16, "views_per_step": 13, "lr": 1e-3, "checkpoint_every": 50}


def wait_for(app, condition, timeout: float = 900.0) -> None:
    """Process Qt events until ``condition()`` holds (the worker's signals arrive through the event loop)."""
    end = time.time() + timeout
    while not condition():
        if time.time() > end:
            raise TimeoutError("timed out waiting for the training run")
        app.processEvents()
        time.sleep(0.01)


def settle(app, seconds: float = 0.8) -> None:
    """Let the canvas and the plot redraw before grabbing the window."""
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    os.environ.setdefault("QT_API", "pyqt6")

    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    from napari_lfrecon.gui._sample_data import sample_layers
    from napari_lfrecon.gui.train_widget import TrainWidget

    torch.set_num_threads(1)  # shared machine; the result does not depend on it
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*WINDOW)
    for data, kwargs, _kind in sample_layers("lfm"):
        viewer.add_image(data, **kwargs)
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train", area="right")
    app = QApplication.instance()

    out_dir = Path(tempfile.mkdtemp(prefix="lfrecon-train-"))
    widget.select_engine("serenet-train")
    widget.weights_path.setText(str(out_dir / "serenet-lfm.safetensors"))
    widget.params_form.set_values({**SETTINGS, "steps": args.steps, "preview_every": max(args.steps // 6, 1)})
    runner = widget.run()
    if runner is None:
        raise SystemExit(f"training did not start: {widget.status_label.text()}")
    done: list[str] = []
    runner.finished.connect(lambda status, message: done.append(status))
    wait_for(app, lambda: bool(done))
    print(done[0], widget.status_label.text())

    # The trained network's volume next to the simulated truth: max projections along z, side by side.
    viewer.layers["lfm"].visible = False
    result, truth = runner.result_layer, viewer.layers["lfm ground truth"]
    if result is not None:
        for layer in (result, truth):
            layer.visible = True
            layer.projection_mode = "max"
        depth = float(result.scale[0] * result.data.shape[0])
        viewer.dims.set_point(0, float(result.translate[0] + depth / 2))
        viewer.dims.thickness = (2 * depth, *viewer.dims.thickness[1:])
        viewer.grid.enabled = True
        viewer.layers.selection.active = result
        viewer.text_overlay.visible = True
        viewer.text_overlay.position = "top_center"
        viewer.text_overlay.font_size = 10
        viewer.text_overlay.text = f"z max projections. Left: ground truth. Right: SeReNet, {args.steps} steps"
    settle(app)
    viewer.reset_view()
    viewer.camera.zoom *= 0.9  # a margin around the grid (after the canvas has its final size)
    settle(app)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "screenshot_train_serenet.png"
    viewer.window._qt_window.grab().save(str(path))
    print("wrote", path)
    viewer.close()


if __name__ == "__main__":
    main()
