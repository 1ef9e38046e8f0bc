"""niiv interactive zoom: worst main-thread stall and time to coarse / full tile on a 1024×1024 canvas.

Run from the repository root under Xvfb (about 5 minutes on 2 shared cores):

    xvfb-run -a -s '-screen 0 1600x1200x24' .venv/bin/python benchmarks/bench_niiv_zoom.py \
        [--field auto|shipped|random|fake] [--steps 20] [--no-screenshots | --screenshots-only]

A napari window whose canvas is resized to exactly 1024 × 1024 px shows an
anisotropic stack and its niiv result at scale 1; the niiv zoom widget then
follows the camera with a FRESH field (empty latent cache, as after ticking
*Live zoom*). The canvas first runs a scripted sequence of zooms, pans, slice
changes and an xy → xz switch with the zoom detached (napari's own rendering
stall, for comparison), then the same sequence with it attached, waiting
after each step for that request's full tile. A ``QTimer`` ticking every 5 ms
on the main thread records the largest gap between ticks (the worst stall).
Times run from the first view event of a step (the 80 ms debounce included)
to the tile being on its layer; "apply" is the main-thread time of putting a
tile on the layer.

``--field``: ``shipped`` = the user's path: the anisotropic sample's layers
(the stack carries its weights), niiv run through the worker layer as the
Reconstruct widget runs it, and the widget building its field from the result
layer; ``random`` = a randomly initialised network of the shipped
configuration on a synthetic filament stack 16×128×128 (af 8), timing only;
``fake`` = an analytic field (no torch), to check the harness; ``auto`` =
shipped when the weights exist, else random. Results go to
``benchmarks/results/niiv_zoom.json`` (and a markdown table on stdout);
screenshots to ``docs/screenshot_niiv_zoom_1x.png`` (the xz view fitted) and
``docs/screenshot_niiv_zoom_8x.png`` (8× closer on the busiest part of that
view). ``NIIV_ZOOM_BASE_SHOT=path.png`` also saves the 8× view without the
tile (the base layer's voxels), for a side-by-side check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CANVAS = (1024, 1024)
TICK_MS = 5
#: Longest wait for one step's full tile before it is recorded as missing.
STEP_TIMEOUT_S = 120.0
#: Idle time between steps (the user looks at the result).
IDLE_S = 0.25
ANISOTROPY = 8


# ------------------------------------------------------------------ fields
class AnalyticField:
    """A smooth analytic volume with sub-voxel detail (no torch): checks the harness, not niiv."""

    def __init__(self, shape_out: tuple[int, int, int]) -> None:
        self.shape_out = shape_out

    def decode_grid(self, zs, ys, xs, *, should_stop=None):
        """Cosines of the continuous coordinates."""
        z, y, x = np.meshgrid(zs, ys, xs, indexing="ij")
        return (np.cos(0.3 * x + 0.1 * z) * np.cos(0.25 * y) + 0.3 * np.cos(6.0 * y)).astype(np.float32)


def shipped_inputs() -> dict[str, Any]:
    """The anisotropic sample with its shipped weights: the user's path (raises when either is missing).

    The scene is built as a user gets it: the sample's layers (the stack carries
    its weights in ``metadata``), niiv run through the worker layer (as the
    Reconstruct widget runs it), and the zoom widget building its own field
    from the result layer.
    """
    from napari_lfrecon.engines.niiv import shipped_weights_path
    from napari_lfrecon.gui._sample_data import sample_layers

    if not shipped_weights_path().is_file():
        raise FileNotFoundError(f"no shipped niiv weights at {shipped_weights_path()}")
    layers = sample_layers("anisotropic")
    data, kwargs, _ = layers[0]
    meta = kwargs.get("metadata", {})
    return {
        "label": f"shipped weights ({shipped_weights_path().name}) on the anisotropic sample",
        "layers": layers,
        "stack": np.asarray(data, dtype=np.float32),
        "voxel": tuple(float(v) for v in kwargs["scale"]),
        "anisotropy": int(meta.get("anisotropy", ANISOTROPY)),
        "params": dict((meta.get("engine_hint") or {}).get("params", {})),
        "make_field": None,  # the widget builds it from the result layer
        "meaningful": True,
    }


def random_inputs() -> dict[str, Any]:
    """A randomly initialised shipped-size network on a synthetic filament stack (timing only)."""
    import torch

    from napari_lfrecon.data.phantoms import filaments
    from napari_lfrecon.engines.niiv_field import NiivField
    from napari_lfrecon.engines.niiv_model import NiivConfig, NiivNet

    voxel_iso = 0.2
    volume = filaments((128, 128, 128), voxel_iso, n_filaments=40, seed=5).astype(np.float32)
    stack = volume.reshape(16, ANISOTROPY, 128, 128).mean(axis=1)  # average pooling along z
    torch.manual_seed(0)
    model = NiivNet(NiivConfig.small(ANISOTROPY))
    return {
        "label": "randomly initialised NiivConfig.small() on a synthetic 16×128×128 stack (timing only)",
        "stack": stack,
        "voxel": (voxel_iso * ANISOTROPY, voxel_iso, voxel_iso),
        "anisotropy": ANISOTROPY,
        "make_field": lambda: NiivField(model, stack, ANISOTROPY),
        "meaningful": False,
    }


def fake_inputs() -> dict[str, Any]:
    """The analytic field over a synthetic stack."""
    stack = np.random.default_rng(0).random((16, 128, 128)).astype(np.float32)
    return {
        "label": "analytic field (harness check, no network)",
        "stack": stack,
        "voxel": (1.6, 0.2, 0.2),
        "anisotropy": ANISOTROPY,
        "make_field": lambda: AnalyticField((16 * ANISOTROPY, 128, 128)),
        "meaningful": False,
    }


def pick_inputs(kind: str) -> dict[str, Any]:
    """The inputs for ``--field``."""
    if kind == "fake":
        return fake_inputs()
    if kind == "random":
        return random_inputs()
    try:
        return shipped_inputs()
    except Exception as exc:
        if kind == "shipped":
            raise
        print(f"shipped weights/sample unavailable ({type(exc).__name__}: {exc}); using a random network", flush=True)
        return random_inputs()


# ------------------------------------------------------------------ Qt harness
class StallMeter:
    """A 5 ms main-thread timer; :attr:`worst` is the largest gap between ticks since :meth:`reset`."""

    def __init__(self, app: Any) -> None:
        from qtpy.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.last = time.perf_counter()
        self.worst = 0.0
        self.gaps: list[float] = []

    def _tick(self) -> None:
        now = time.perf_counter()
        gap = now - self.last
        self.last = now
        self.gaps.append(gap)
        self.worst = max(self.worst, gap)

    def reset(self) -> None:
        """Forget the gaps seen so far."""
        self.last = time.perf_counter()
        self.worst = 0.0
        self.gaps = []

    def start(self) -> None:
        """Start ticking."""
        self.reset()
        self.timer.start()

    def stop(self) -> None:
        """Stop ticking."""
        self.timer.stop()


def pump(app: Any, seconds: float, until: Callable[[], bool] | None = None) -> bool:
    """Run the event loop for ``seconds`` (or until ``until()``); True if ``until`` became true."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        if until is not None and until():
            return True
        time.sleep(0.001)
    return until is not None and until()


def size_canvas(viewer: Any, app: Any) -> tuple[int, int]:
    """Resize the main window until the canvas is exactly :data:`CANVAS` (height, width) px."""
    window = viewer.window._qt_window
    for _ in range(6):
        pump(app, 0.3)
        h, w = (int(v) for v in viewer.canvas.size)
        if (h, w) == CANVAS:
            break
        window.resize(window.width() + CANVAS[1] - w, window.height() + CANVAS[0] - h)
    pump(app, 0.3)
    return tuple(int(v) for v in viewer.canvas.size)  # type: ignore[return-value]


def scripted_steps(viewer: Any, n: int) -> list[tuple[str, Callable[[], None]]]:
    """``n`` view changes: zooms in and out, pans, slice changes, an xy → xz switch and back."""
    camera = viewer.scene.camera
    dims = viewer.dims

    def zoom(f: float) -> Callable[[], None]:
        return lambda: setattr(camera, "zoom", camera.zoom * f)

    def pan(fy: float, fx: float) -> Callable[[], None]:
        def run() -> None:
            h, w = viewer.canvas.size
            c = list(camera.center)
            c[-2] += fy * h / camera.zoom
            c[-1] += fx * w / camera.zoom
            camera.center = tuple(c)

        return run

    def slice_by(k: int) -> Callable[[], None]:
        def run() -> None:
            axis = dims.not_displayed[0]
            dims.set_current_step(axis, dims.current_step[axis] + k)

        return run

    def order(o: tuple[int, int, int]) -> Callable[[], None]:
        def run() -> None:
            dims.order = o
            viewer.reset_view()

        return run

    plan = [
        ("zoom ×1.5", zoom(1.5)),
        ("zoom ×1.5", zoom(1.5)),
        ("pan right 20 %", pan(0.0, 0.2)),
        ("slice +4", slice_by(4)),
        ("zoom ×2", zoom(2.0)),
        ("pan down 20 %", pan(0.2, 0.0)),
        ("slice −2", slice_by(-2)),
        ("zoom out ×0.5", zoom(0.5)),
        ("xz view (reset)", order((1, 0, 2))),
        ("zoom ×2", zoom(2.0)),
        ("pan left 20 %", pan(0.0, -0.2)),
        ("slice +8", slice_by(8)),
        ("zoom ×2", zoom(2.0)),
        ("pan up 15 %", pan(-0.15, 0.0)),
        ("zoom ×2", zoom(2.0)),
        ("zoom out ×0.25", zoom(0.25)),
        ("slice −6", slice_by(-6)),
        ("xy view (reset)", order((0, 1, 2))),
        ("zoom ×3", zoom(3.0)),
        ("pan right 30 %", pan(0.0, 0.3)),
    ]
    while len(plan) < n:
        plan += plan[: n - len(plan)]
    return plan[:n]


def run_sequence(viewer: Any, app: Any, meter: StallMeter, zoom: Any, steps: list, *, live: bool) -> list[dict]:
    """Run ``steps``; with ``live``, wait for each step's full tile and record its times."""
    shown: list[tuple[str, int, float, float]] = []
    if live:
        zoom.tile_shown.connect(lambda level, gen, latency, decode: shown.append((level, gen, latency, decode)))
    rows = []
    meter.start()
    for name, action in steps:
        meter.reset()
        before = zoom.gen if live else 0
        started = time.perf_counter()
        action()
        row: dict[str, Any] = {"step": name}
        if live:
            ok = pump(
                app,
                STEP_TIMEOUT_S,
                lambda b=before: zoom.gen > b and any(lv == "full" and g == zoom.gen for lv, g, _, _ in shown),
            )
            gen = zoom.gen
            mine = [s for s in shown if s[1] == gen]
            coarse = [s for s in mine if s[0] == "coarse"]
            full = [s for s in mine if s[0] == "full"]
            plan = zoom.last_plan
            row.update(
                {
                    "done": bool(ok),
                    "coarse_s": round(coarse[0][2], 4) if coarse else None,
                    "coarse_decode_s": round(coarse[0][3], 4) if coarse else None,
                    "full_s": round(full[-1][2], 4) if full else None,
                    "full_decode_s": round(full[-1][3], 4) if full else None,
                    "tile": list(plan.shape) if plan is not None else None,
                    "samples_per_voxel": round(min(plan.samples_per_voxel), 3) if plan is not None else None,
                    "clamped": bool(plan.clamped) if plan is not None else None,
                }
            )
        else:
            pump(app, 0.5)
        pump(app, IDLE_S)
        row["worst_stall_ms"] = round(meter.worst * 1000, 1)
        row["wall_s"] = round(time.perf_counter() - started, 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    meter.stop()
    return rows


def screenshot(viewer: Any, app: Any, path: Path) -> None:
    """The whole napari window (canvas and docks) as a PNG."""
    pump(app, 0.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(path), canvas_only=False)
    print(f"wrote {path}", flush=True)


def user_scene(viewer: Any, inputs: dict[str, Any]) -> Any:
    """Sample layers + niiv through the worker layer (the Reconstruct widget's path); returns the result layer."""
    from napari_lfrecon.gui.worker import RunRequest, run_blocking

    for data, kwargs, _kind in inputs["layers"]:  # all image layers
        viewer.add_image(data, **kwargs)
    stack_layer = viewer.layers[inputs["layers"][0][1]["name"]]
    runner = run_blocking(
        viewer,
        RunRequest(
            engine="niiv",
            data=stack_layer.data,
            psf=None,
            params=inputs["params"],
            input_name=stack_layer.name,
            input_scale=tuple(stack_layer.scale),
            input_translate=tuple(stack_layer.translate),
        ),
    )
    if runner.result_layer is None:
        raise RuntimeError(f"niiv did not run: {runner.status} {runner.message}")
    stack_layer.visible = False
    result = runner.result_layer
    result.colormap = "magma"
    return result


def synthetic_scene(viewer: Any, inputs: dict[str, Any]) -> Any:
    """The stack and its field's volume at scale 1 (decoded here), placed like a Reconstruct result."""
    from napari_lfrecon.gui._geometry import output_translate

    stack, voxel, af = inputs["stack"], inputs["voxel"], inputs["anisotropy"]
    base_field = inputs["make_field"]()
    if hasattr(base_field, "decode_volume"):
        volume = base_field.decode_volume()
    else:
        volume = base_field.decode_grid(*(np.arange(n, dtype=float) for n in base_field.shape_out))
    out_voxel = (voxel[0] / af, voxel[1], voxel[2])
    stack_layer = viewer.add_image(stack, name="anisotropic", scale=voxel, colormap="gray", visible=False)
    lo, hi = (float(v) for v in np.percentile(volume, [0.5, 99.8]))
    hi = hi if hi > lo else lo + 1.0
    return viewer.add_image(
        volume,
        name="anisotropic [niiv]",
        scale=out_voxel,
        translate=output_translate(stack.shape, voxel, (0.0, 0.0, 0.0), volume.shape, out_voxel),
        colormap="magma",
        contrast_limits=(lo, hi),
        metadata={"engine": "niiv", "input_layer": stack_layer.name, "params": {"weights": "", "anisotropy": af}},
    )


def act_and_wait_full(app: Any, zoom: Any, action: Callable[[], None]) -> bool:
    """Run ``action`` and wait until the full tile of the request it causes is on the layer."""
    shown: list[tuple[str, int]] = []

    def record(level: str, gen: int, *_: float) -> None:
        shown.append((level, gen))

    zoom.tile_shown.connect(record)
    before = zoom.gen
    action()
    try:
        return pump(app, STEP_TIMEOUT_S, lambda: zoom.gen > before and ("full", zoom.gen) in shown)
    finally:
        zoom.tile_shown.disconnect(record)


def close_notifications(viewer: Any) -> None:
    """Close napari's toast notifications (they would cover part of the canvas in a screenshot)."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()


def take_screenshots(viewer: Any, app: Any, widget: Any, result: Any, docs: Path) -> dict[str, str]:
    """The xz view of the result fitted to the canvas, then 8× closer around its brightest point."""
    zoom = widget.zoom
    camera = viewer.scene.camera
    y_mid = result.data.shape[1] // 2

    def fitted_xz() -> None:
        viewer.dims.order = (1, 0, 2)  # xz: niiv restores the coarse (z) axis here
        viewer.dims.set_current_step(1, y_mid)
        viewer.reset_view()

    act_and_wait_full(app, zoom, fitted_xz)
    pump(app, 0.5)
    close_notifications(viewer)
    pump(app, 0.5)
    shots = {"1x": str(docs / "screenshot_niiv_zoom_1x.png")}
    screenshot(viewer, app, Path(shots["1x"]))
    # Centre the close-up on the busiest part of the plane: the window of 1/8 of the view with most contrast.
    from scipy.ndimage import uniform_filter

    plane = np.asarray(result.data[:, y_mid, :], dtype=np.float64)
    window = max(3, min(plane.shape) // 8)
    local_var = uniform_filter(plane**2, window) - uniform_filter(plane, window) ** 2
    margin = window // 2
    inner = local_var[margin:-margin, margin:-margin]
    z, x = np.unravel_index(int(np.argmax(inner)), inner.shape)
    world = np.asarray(result.data_to_world((z + margin, y_mid, x + margin)), dtype=float)

    def closer() -> None:
        camera.center = (0.0, float(world[0]), float(world[2]))
        camera.zoom = camera.zoom * 8

    act_and_wait_full(app, zoom, closer)
    pump(app, 0.5)
    close_notifications(viewer)
    pump(app, 0.5)
    shots["8x"] = str(docs / "screenshot_niiv_zoom_8x.png")
    screenshot(viewer, app, Path(shots["8x"]))
    if os.environ.get("NIIV_ZOOM_BASE_SHOT"):  # the same view without the tile, for a side-by-side check
        zoom.tile_layer.visible = False
        pump(app, 0.5)
        screenshot(viewer, app, Path(os.environ["NIIV_ZOOM_BASE_SHOT"]))
        zoom.tile_layer.visible = True
    return shots


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--field", choices=("auto", "shipped", "random", "fake"), default="auto")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--setup-threads", type=int, default=2, help="torch threads for decoding the base volume")
    parser.add_argument("--out", default="benchmarks/results/niiv_zoom.json")
    parser.add_argument("--docs", default="docs")
    parser.add_argument("--no-screenshots", action="store_true")
    parser.add_argument("--screenshots-only", action="store_true", help="skip the timed sequences")
    args = parser.parse_args(argv)

    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    from napari_lfrecon.gui.niiv_zoom_widget import NiivZoomWidget

    torch.set_num_threads(args.setup_threads)
    inputs = pick_inputs(args.field)
    print(f"field: {inputs['label']}", flush=True)

    viewer = napari.Viewer(show=True, title="napari-lfrecon: niiv zoom")
    app = QApplication.instance()
    started = time.perf_counter()
    if inputs["make_field"] is None:
        result = user_scene(viewer, inputs)
    else:
        result = synthetic_scene(viewer, inputs)
    base_seconds = time.perf_counter() - started
    print(f"base volume {result.data.shape} made in {base_seconds:.1f} s", flush=True)
    widget = NiivZoomWidget(viewer)
    viewer.window.add_dock_widget(widget, name="niiv zoom", area="right")
    canvas = size_canvas(viewer, app)
    print(f"canvas (h, w) = {canvas}", flush=True)
    viewer.reset_view()
    pump(app, 0.5)

    meter = StallMeter(app)
    steps = scripted_steps(viewer, args.steps)

    if args.screenshots_only:
        steps = []
    # napari alone (no zoom attached): the rendering stall of the same sequence.
    baseline = run_sequence(viewer, app, meter, widget.zoom, steps, live=False)
    viewer.dims.order = (0, 1, 2)
    viewer.reset_view()
    pump(app, 0.5)

    widget.layer_combo.setCurrentText(result.name)
    # A fresh field (empty latent cache), as after ticking Live zoom; the widget builds it for a real niiv result.
    zoom_field = inputs["make_field"]() if inputs["make_field"] is not None else None
    if not widget.start(field=zoom_field):
        print(f"could not attach: {widget.status_label.text()}", flush=True)
        return 1
    # The first tile of a fresh field (cold latent cache) at the fitted view.
    first = run_sequence(
        viewer, app, meter, widget.zoom, [("attach (cold cache)", lambda: widget.zoom.schedule())], live=True
    )  # a cold start is also what the screenshots need first
    rows = run_sequence(viewer, app, meter, widget.zoom, steps, live=True)

    shots = {}
    if not args.no_screenshots and args.field != "fake":
        shots = take_screenshots(viewer, app, widget, result, Path(args.docs))
    if args.screenshots_only:
        widget.zoom.detach()
        viewer.close()
        return 0

    debounce_ms = widget.zoom._timer.interval()
    apply_ms = [1000 * v for v in widget.zoom.apply_seconds]
    widget.zoom.detach()
    viewer.close()

    coarse = [r["coarse_s"] for r in rows if r.get("coarse_s") is not None]
    full = [r["full_s"] for r in rows if r.get("full_s") is not None]
    full_1024 = [r["full_s"] for r in rows if r.get("full_s") is not None and r["tile"] and max(r["tile"]) >= 900]
    summary = {
        "field": inputs["label"],
        "meaningful_images": inputs["meaningful"],
        "canvas_hw": list(canvas),
        "steps": len(rows),
        "steps_done": sum(bool(r.get("done")) for r in rows),
        "worst_stall_ms": max(r["worst_stall_ms"] for r in rows),
        "worst_stall_ms_napari_alone": max(r["worst_stall_ms"] for r in baseline),
        "median_stall_ms_per_step": _median([r["worst_stall_ms"] for r in rows]),
        "median_stall_ms_per_step_napari_alone": _median([r["worst_stall_ms"] for r in baseline]),
        "tile_apply_ms_median": _median(apply_ms),
        "tile_apply_ms_max": round(max(apply_ms), 1) if apply_ms else None,
        "coarse_s_median": _median(coarse),
        "coarse_s_max": max(coarse) if coarse else None,
        "full_s_median": _median(full),
        "full_s_max": max(full) if full else None,
        "full_s_median_tiles_ge_900px": _median(full_1024),
        "first_tile_cold_cache": first[0],
        "base_volume_decode_s": round(base_seconds, 2),
        "debounce_ms": debounce_ms,
        "decoder_torch_threads": 1,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "napari": napari.__version__,
        "machine": platform.machine(),
        "screenshots": shots,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "steps": rows, "napari_alone": baseline}, indent=2))
    print(f"\nwrote {out}\n")
    print(f"niiv zoom on a {canvas[1]}×{canvas[0]} canvas — {inputs['label']}\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| worst main-thread stall (zoom attached) | {summary['worst_stall_ms']:.0f} ms |")
    print(f"| worst main-thread stall (napari alone, same steps) | {summary['worst_stall_ms_napari_alone']:.0f} ms |")
    print(
        f"| per-step worst stall, median (attached / alone) | {summary['median_stall_ms_per_step']:.0f} / "
        f"{summary['median_stall_ms_per_step_napari_alone']:.0f} ms |"
    )
    if apply_ms:
        print(
            f"| main-thread time to put a tile on its layer, median / max | {summary['tile_apply_ms_median']:.0f} / "
            f"{summary['tile_apply_ms_max']:.0f} ms |"
        )
    if coarse:
        print(
            f"| time to coarse tile, median / max | {summary['coarse_s_median']:.2f} / "
            f"{summary['coarse_s_max']:.2f} s |"
        )
    if full:
        print(f"| time to full tile, median / max | {summary['full_s_median']:.2f} / {summary['full_s_max']:.2f} s |")
    print(f"| first tile, cold cache (full) | {first[0].get('full_s')} s |")
    print(f"| steps completed | {summary['steps_done']}/{summary['steps']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
