"""The PSF editor's update time: one slider move on a 64×128×128 widefield PSF (issue 3: within 200 ms).

Run from the repository root (no display needed; the editor's computation lives in
the Qt-free ``controllers/psf_editor.py``):

    .venv/bin/python benchmarks/bench_psf_editor.py [--updates 20] [--repeats 3] [--threads 2]

What is timed, all on the CPU in float32 (the editor's settings):

- ``editor``: :func:`napari_lfrecon.controllers.psf_editor.compute_sections` — the
  computation behind every editor update (the PSF, its XY/XZ/YZ sections and
  the ``log10 |OTF|`` section) — for ``--updates`` successive slider moves,
  each changing one Zernike coefficient of a typical aberration (astigmatism,
  coma, spherical) by a small step, as dragging a slider does. Caches are
  warmed first (one update), as a slider drag repeats the same grid.
- ``psf only``: the raw :func:`napari_lfrecon.psf.widefield.widefield_psf` call
  for the same moves, scalar and vectorial.

Median and max wall time per repeat (``--repeats`` runs, interleaved) and the
median process CPU time (all threads; less sensitive to other load) go to
``benchmarks/results/psf_editor.json`` and are printed as a markdown table.
The machine may be shared: rerun on a quiet one for the numbers to publish.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

#: Editor grid of issue 3: 64 planes of 128 × 128 pixels.
SHAPE_ZYX = (64, 128, 128)
#: A typical aberration (waves, ANSI): vertical astigmatism, horizontal coma, primary spherical.
BASE_ZERNIKE = {5: 0.08, 8: 0.06, 12: 0.10}
#: The slider that moves, and its step per update (waves).
MOVED_MODE, STEP_WAVES = 12, 0.01


def _zernike(step: int, n_modes: int) -> np.ndarray:
    """The coefficients after ``step`` slider moves."""
    coefficients = np.zeros(n_modes)
    for j, value in BASE_ZERNIKE.items():
        coefficients[j] = value
    coefficients[MOVED_MODE] += step * STEP_WAVES
    return coefficients


def _time_updates(update: Callable[[int], object], n_updates: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of ``update(i)`` for ``i = 1..n`` after one untimed warm-up call.

    CPU time (summed over threads) is less sensitive to other processes on a
    shared machine than wall time; with T threads it is up to T × the wall time.
    """
    update(0)
    wall, cpu = [], []
    for i in range(1, n_updates + 1):
        started, started_cpu = time.perf_counter(), time.process_time()
        update(i)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return wall, cpu


def main() -> None:
    """Parse the options, time every case for each repeat and write the JSON and the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=20, help="slider moves timed per case and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every case")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", default="benchmarks/results/psf_editor.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from napari_lfrecon.controllers.psf_editor import N_MODES, EditorSettings, compute_sections  # no Qt
    from napari_lfrecon.psf.widefield import widefield_psf

    n_z, n_xy = SHAPE_ZYX[0], SHAPE_ZYX[1]
    base = EditorSettings(n_z=n_z, n_xy=n_xy)  # editor defaults: NA 0.8 water, λ 0.52 µm, 40×, 6.5 µm pixels
    has_model = "model" in {f.name for f in dataclasses.fields(EditorSettings)}

    def editor(model: str) -> Callable[[int], object]:
        def update(step: int) -> object:
            changes: dict[str, object] = {"zernike": _zernike(step, N_MODES)}
            if has_model:
                changes["model"] = model
            return compute_sections(dataclasses.replace(base, **changes))

        return update

    def raw(model: str) -> Callable[[int], object]:
        def update(step: int) -> object:
            return widefield_psf(
                SHAPE_ZYX,
                base.voxel_size,
                base.na,
                base.wavelength_um,
                base.immersion_index,
                _zernike(step, N_MODES),
                model=model,
            )

        return update

    cases: dict[str, Callable[[int], object]] = {
        "editor update (compute_sections), scalar": editor("scalar"),
        "widefield_psf only, scalar": raw("scalar"),
        "widefield_psf only, vectorial": raw("vectorial"),
    }
    if has_model:
        cases["editor update (compute_sections), vectorial"] = editor("vectorial")
    runs: dict[str, list[list[float]]] = {name: [] for name in cases}
    cpu_runs: dict[str, list[list[float]]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, update in cases.items():
            wall, cpu = _time_updates(update, args.updates)
            runs[name].append(wall)
            cpu_runs[name].append(cpu)

    summary = {
        name: {
            "median_ms_per_repeat": [1e3 * statistics.median(r) for r in repeats],
            "max_ms_per_repeat": [1e3 * max(r) for r in repeats],
            "median_ms": 1e3 * statistics.median([t for r in repeats for t in r]),
            "cpu_median_ms": 1e3 * statistics.median([t for r in cpu_runs[name] for t in r]),
        }
        for name, repeats in runs.items()
    }
    record = {
        "shape_zyx": list(SHAPE_ZYX),
        "voxel_size_um": list(base.voxel_size),
        "na": base.na,
        "wavelength_um": base.wavelength_um,
        "immersion_index": base.immersion_index,
        "zernike_base": {str(j): v for j, v in BASE_ZERNIKE.items()},
        "moved_mode": MOVED_MODE,
        "step_waves": STEP_WAVES,
        "updates": args.updates,
        "repeats": args.repeats,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.platform(),
        "processor": platform.processor(),
        "cases": summary,
        "seconds": runs,
        "cpu_seconds": cpu_runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))

    print(f"PSF editor update, {'×'.join(map(str, SHAPE_ZYX))} float32, {args.threads} threads, {args.updates} moves")
    print()
    print("| case | median (ms) | median per repeat (ms) | max per repeat (ms) | CPU median (ms) |")
    print("|---|---|---|---|---|")
    for name, values in summary.items():
        medians = ", ".join(f"{v:.0f}" for v in values["median_ms_per_repeat"])
        maxima = ", ".join(f"{v:.0f}" for v in values["max_ms_per_repeat"])
        print(f"| {name} | {values['median_ms']:.0f} | {medians} | {maxima} | {values['cpu_median_ms']:.0f} |")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
