"""Screenshots of the Reconstruct widget for the docs: mid-run preview, finished result, and after Cancel.

Run: python scripts/screenshot_reconstruct.py [--sample lfm] [--iterations 30] [--out docs]

Opens a shipped sample through the plugin's own sample contribution, docks the
Reconstruct widget through its npe2 widget contribution, runs Richardson–Lucy
in the worker thread exactly as a user's click does, and saves the whole
window. Without a display it starts its own Xvfb (and stops it at the end).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Window size of the screenshots (pixels): room for the canvas and the docked widget.
WINDOW = (1500, 950)
XVFB_DISPLAY = ":97"


def start_xvfb() -> subprocess.Popen | None:
    """Start a private Xvfb when there is no display; returns the process to stop later."""
    if os.environ.get("DISPLAY"):
        return None
    if shutil.which("Xvfb") is None:
        sys.exit("no DISPLAY and no Xvfb: apt-get install -y --no-install-recommends xvfb")
    proc = subprocess.Popen(
        ["Xvfb", XVFB_DISPLAY, "-screen", "0", "1920x1200x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ["DISPLAY"] = XVFB_DISPLAY
    time.sleep(1.0)
    return proc


def wait_for(app, condition, timeout: float = 600.0) -> None:
    """Process Qt events until ``condition()`` holds (the worker's signals arrive through the event loop)."""
    end = time.time() + timeout
    while not condition():
        if time.time() > end:
            raise TimeoutError("timed out waiting for the run")
        app.processEvents()
        time.sleep(0.01)


def settle(app, seconds: float = 0.5) -> None:
    """Let the canvas redraw before grabbing the window."""
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", default=None, help="sample name (default: lfm if shipped, else widefield)")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()

    xvfb = start_xvfb()
    os.environ.setdefault("QT_API", "pyqt6")
    runtime = tempfile.mkdtemp(prefix="xdg-")
    os.chmod(runtime, 0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", runtime)
    try:
        run(args)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(timeout=10)


def run(args: argparse.Namespace) -> None:
    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    from napari_lfrecon.samples import sample_dir

    torch.set_num_threads(2)
    name = args.sample or ("lfm" if (sample_dir() / "lfm.tif").is_file() else "widefield")
    args.out.mkdir(parents=True, exist_ok=True)

    viewer = napari.Viewer(title=f"napari-lfrecon — {name} sample")
    viewer.window._qt_window.resize(*WINDOW)
    app = QApplication.instance()
    viewer.open_sample("napari-lfrecon", name)
    _, widget = viewer.window.add_plugin_dock_widget("napari-lfrecon", "Reconstruct")
    measurement = viewer.layers[name]
    measurement.colormap = "gray"
    widget.select_input(name)
    widget.params_form.set_values({"iterations": args.iterations})
    settle(app)

    # 1. Mid-run: the single preview layer, updated in place.
    mid = max(2, args.iterations // 3)
    shots: dict[str, Path] = {}

    reconstructs_from_2d = measurement.ndim == 2

    def show_volume(layer) -> None:
        """Volumes from a 2D frame are shown as a max projection along z (3D view from above), filling the canvas."""
        layer.colormap = "magma"
        if reconstructs_from_2d:
            layer.rendering = "mip"
            measurement.visible = False
            viewer.dims.ndisplay = 3
            # Camera angles (0, 0, 0): looking down the z axis, so the picture is a max projection along z.
            viewer.reset_view(layers=[layer], margin=0.1)

    def on_preview(layer) -> None:
        if "preview" in shots or widget.runner is None:
            return
        if widget.progress.value() >= mid * widget.progress.maximum() // args.iterations:
            # Pause the worker so the status text and the preview in the picture are the same iteration.
            widget.runner.worker.pause()
            show_volume(layer)
            settle(app, 0.5)
            shots["preview"] = args.out / "screenshot_reconstruct_preview.png"
            viewer.screenshot(str(shots["preview"]), canvas_only=False)
            widget.runner.worker.resume()

    runner = widget.run()
    runner.previewed.connect(on_preview)
    wait_for(app, lambda: not widget.running)
    result = runner.result_layer
    # Leave 3D while the preview's volume visual is swapped for the result's: drawing straight after the swap
    # crashed llvmpipe (segfault in vispy's glir flush) in about half of the runs.
    viewer.dims.ndisplay = 2
    settle(app, 0.5)
    print(f"{name}: {runner.status} — {runner.message}; result {result.data.shape} scale {tuple(result.scale)}")
    show_volume(result)
    if not reconstructs_from_2d:
        # Widefield: measured stack and reconstruction side by side, same (middle) slice.
        viewer.canvas.grid.enabled = True
        viewer.reset_view()
    settle(app, 1.0)
    shots["result"] = args.out / "screenshot_reconstruct.png"
    viewer.screenshot(str(shots["result"]), canvas_only=False)

    # 2. Cancel: a long run stopped after a few iterations keeps only its last preview.
    viewer.canvas.grid.enabled = False
    for layer in list(viewer.layers):
        if layer is not measurement and layer.name != f"{name} ground truth":
            viewer.layers.remove(layer)
    widget.select_input(name)
    widget.params_form.set_values({"iterations": 1000})
    runner = widget.run()
    runner.previewed.connect(lambda layer: widget.cancel() if widget.progress.value() >= 3 else None)
    wait_for(app, lambda: not widget.running)
    if runner.cancelled_layer is not None:
        show_volume(runner.cancelled_layer)
    settle(app, 1.0)
    shots["cancel"] = args.out / "screenshot_reconstruct_cancelled.png"
    viewer.screenshot(str(shots["cancel"]), canvas_only=False)
    print(f"cancel: {runner.status} — {runner.message}")
    for label, path in shots.items():
        print(f"{label}: {path.relative_to(ROOT)}")
    viewer.close()


if __name__ == "__main__":
    main()
