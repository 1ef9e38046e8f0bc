"""Screenshot the Metrics widget during and after a Richardson–Lucy run on a shipped sample.

Run: python scripts/screenshot_metrics.py [--sample lfm] [--iterations 30] [--out docs]

Opens the sample (measurement + hidden ground truth) through the plugin's sample
contribution, docks the Reconstruct widget and the Metrics widget, runs RL in
the worker thread as a click does, and saves the window mid-run (live numbers
from the preview layer) and after the run (result layer). Without a display it
starts its own Xvfb (and stops it at the end).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshot_reconstruct import settle, start_xvfb, wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WINDOW = (1600, 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", default="lfm")
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

    from napari_lfrecon.gui.metrics_widget import MetricsWidget

    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title=f"napari-lfrecon — metrics on the {args.sample} sample")
    viewer.window._qt_window.resize(*WINDOW)
    app = QApplication.instance()
    viewer.open_sample("napari-lfrecon", args.sample)
    _, recon = viewer.window.add_plugin_dock_widget("napari-lfrecon", "Reconstruct")
    metrics = MetricsWidget(viewer)
    viewer.window.add_dock_widget(metrics, name="Metrics", area="right")
    metrics.radius_spin.setValue(12)
    recon.select_input(args.sample)
    recon.params_form.set_values({"iterations": args.iterations})
    viewer.layers[args.sample].visible = False
    settle(app)

    shots: dict[str, Path] = {}
    mid = max(3, args.iterations // 2)

    def on_preview(layer) -> None:
        if "live" in shots or recon.runner is None:
            return
        if recon.progress.value() >= mid * recon.progress.maximum() // args.iterations:
            recon.runner.worker.pause()
            layer.colormap = "magma"
            viewer.reset_view()
            # Let the throttled metrics computation for this preview finish and draw.
            generation = metrics._generation
            wait_for(app, lambda: metrics._generation > generation and not metrics._busy, timeout=60)
            settle(app, 1.0)
            shots["live"] = args.out / "screenshot_metrics_live.png"
            viewer.screenshot(str(shots["live"]), canvas_only=False)
            print(f"live: {metrics.labels['psnr'].text()}, {metrics.labels['resolution'].text()}")
            recon.runner.worker.resume()

    runner = recon.run()
    runner.previewed.connect(on_preview)
    wait_for(app, lambda: not recon.running)
    result = runner.result_layer
    result.colormap = "magma"
    wait_for(app, lambda: metrics.pred_combo.currentText() == result.name)
    generation = metrics._generation
    metrics.schedule()
    wait_for(app, lambda: metrics._generation > generation and not metrics._busy, timeout=60)
    settle(app, 1.0)
    shots["result"] = args.out / "screenshot_metrics.png"
    viewer.screenshot(str(shots["result"]), canvas_only=False)
    print(
        f"result: {metrics.labels['psnr'].text()}, {metrics.labels['ssim'].text()}, "
        f"{metrics.labels['fourier_psnr'].text()}, {metrics.labels['resolution'].text()}"
    )
    for label, path in shots.items():
        print(f"{label}: {path.relative_to(ROOT)}")
    viewer.close()
    time.sleep(0.2)


if __name__ == "__main__":
    main()
