"""Main-thread stalls during a Reconstruct-widget run, and the widget's run time against the Python API's.

Run from the repository root under Xvfb (about a minute on 2 shared cores):

    xvfb-run -a -s '-screen 0 1600x1200x24' .venv/bin/python benchmarks/bench_gui_stall.py [--iterations 30]

A napari window (1366 × 768, the 2D view) shows the LFM sample; a ``QTimer``
ticking every 10 ms on the main thread records the gaps between its ticks.
Four phases, each with the heartbeat running:

* ``napari alone`` — the same window and layers, no run, for as long as a run takes;
* ``widget, default settings`` — RL on the LFM sample from the Reconstruct widget
  (Run button, default parameters: a preview every iteration);
* ``widget, previews off`` — the same with ``preview_every = 0``;
* the Python API's ``reconstruct("rl", …)`` on the same data and PSF, without Qt
  (its time is the reference for the widget's; the heartbeat is not running then).

An untimed API run first warms torch up, so no phase pays for it. For each phase the
worst gap, the number of gaps over 100 ms and the wall time (Run click to the
runner's ``finished`` signal) are printed as a markdown table and written to
``benchmarks/results/gui_stall.json``. Targets (issue 13, item 5): worst stall
≤ 100 ms at default settings, widget time ≤ 1.3 × the API's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("QT_API", "pyqt6")

RESULTS = Path(__file__).resolve().parent / "results" / "gui_stall.json"
HEARTBEAT_MS = 10
STALL_MS = 100.0


class Heartbeat:
    """A 10 ms QTimer on the main thread; :meth:`gaps_ms` are the intervals between its ticks."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(HEARTBEAT_MS)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def start(self) -> None:
        """Start recording (clears earlier ticks)."""
        self.ticks = [time.perf_counter()]
        self.timer.start()

    def stop(self) -> list[float]:
        """Stop; the gaps in ms, the last one up to now."""
        self.timer.stop()
        self.ticks.append(time.perf_counter())
        return [1000 * (b - a) for a, b in zip(self.ticks, self.ticks[1:], strict=False)]


def summary(name: str, gaps: list[float], seconds: float) -> dict:
    """One table row: worst gap, gaps over the stall threshold, median gap, wall time."""
    return {
        "phase": name,
        "worst_gap_ms": round(max(gaps), 1) if gaps else None,
        "gaps_over_100ms": sum(g > STALL_MS for g in gaps),
        "median_gap_ms": round(statistics.median(gaps), 1) if gaps else None,
        "seconds": round(seconds, 3),
    }


def wait(app, seconds: float) -> None:
    """Let the event loop run for ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)


def widget_run(app, widget, params: dict, heartbeat: Heartbeat) -> tuple[list[float], float, str]:
    """Click Run with ``params`` and wait for the end; ``(gaps, wall seconds, status)``."""
    widget.params_form.set_values(params)
    done: list[str] = []
    heartbeat.start()
    started = time.perf_counter()
    widget.run_button.click()
    runner = widget.runner
    runner.finished.connect(lambda status, message: done.append(status))
    while not done:
        app.processEvents()
        time.sleep(0.0005)
    seconds = time.perf_counter() - started
    wait(app, 0.3)  # the result layer's first draw belongs to the run
    return heartbeat.stop(), seconds, done[0]


def main() -> None:
    """Run the phases and print / save the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()

    import napari
    import numpy as np

    from napari_lfrecon import reconstruct
    from napari_lfrecon.gui._sample_data import sample_layers
    from napari_lfrecon.gui.reconstruct_widget import ReconstructWidget

    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1366, 768)
    for data, kwargs, _kind in sample_layers("lfm"):
        viewer.add_image(data, **kwargs)
    widget = ReconstructWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Reconstruct")
    widget.select_input("lfm")
    widget.select_engine("rl")
    app = napari.qt.get_qapp()
    wait(app, 1.0)

    lfm = viewer.layers["lfm"]
    data, psf = np.asarray(lfm.data), lfm.metadata["psf"]
    reconstruct("rl", data, psf, iterations=args.iterations)  # warm-up: torch and FFT plans

    def api_seconds() -> float:
        started = time.perf_counter()
        reconstruct("rl", data, psf, iterations=args.iterations)
        return time.perf_counter() - started

    api = [api_seconds()]
    heartbeat = Heartbeat()
    rows = []
    gaps, seconds, status = widget_run(app, widget, {"iterations": args.iterations}, heartbeat)
    rows.append(summary(f"widget, default settings ({status})", gaps, seconds))
    gaps, seconds, status = widget_run(app, widget, {"iterations": args.iterations, "preview_every": 0}, heartbeat)
    rows.append(summary(f"widget, previews off ({status})", gaps, seconds))
    api.append(api_seconds())
    heartbeat.start()
    wait(app, max(row["seconds"] for row in rows))
    rows.insert(0, summary("napari alone", heartbeat.stop(), max(row["seconds"] for row in rows)))
    api_time = min(api)
    rows.append(
        {"phase": "API reconstruct()", "seconds": round(api_time, 3), "all_seconds": [round(a, 3) for a in api]}
    )
    for row in rows:
        if row["phase"].startswith("widget"):
            row["x_api"] = round(row["seconds"] / api_time, 2)

    print(f"\nRL-{args.iterations} on the LFM sample, napari {napari.__version__}, {os.cpu_count()} CPUs\n")
    print("| phase | worst gap (ms) | gaps > 100 ms | median gap (ms) | time (s) | × API |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['phase']} | {row.get('worst_gap_ms', '')} | {row.get('gaps_over_100ms', '')} | "
            f"{row.get('median_gap_ms', '')} | {row['seconds']} | {row.get('x_api', '')} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "iterations": args.iterations,
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "napari": napari.__version__,
                "rows": rows,
            },
            indent=2,
        )
    )
    viewer.close()


if __name__ == "__main__":
    main()
