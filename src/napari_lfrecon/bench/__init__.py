"""LFRecon-Bench: seeded synthetic data sets per modality, every registered engine and the baselines, one table.

``lfrecon bench [--quick] [--out DIR]`` calls :func:`run_benchmark`. No Qt.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..device import select_device
from .config import FULL, QUICK, SPLIT_FAMILIES, TASKS, BenchConfig
from .memory import PeakMemory
from .report import write_results
from .runner import Row, methods_for, score_method
from .tasks import Item, Task, build_task, save_task

#: Default output folder of ``lfrecon bench``.
DEFAULT_OUT = Path("benchmarks") / "results"


def run_benchmark(
    config: BenchConfig = FULL,
    out_dir: str | Path = DEFAULT_OUT,
    *,
    tasks: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    save_data: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the data sets, run every method, write the table and plots; return rows, tasks and paths.

    ``tasks`` restricts the run to some of :data:`TASKS`. Results go to
    ``out_dir/lfrecon-bench-<config>.md`` / ``.json`` and
    ``lfrecon-bench-<config>-<task>.png``. With ``save_data`` the data sets go
    to ``out_dir/lfrecon-bench-data/<task>/`` (npz items, PSF file, manifest)
    and trained weights to ``out_dir/lfrecon-bench-weights/``, so other tools
    can train and evaluate on exactly the same splits; otherwise weights live in
    a temporary folder.
    """
    out = Path(out_dir)
    names = list(tasks) if tasks else list(TASKS)
    unknown = sorted(set(names) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown benchmark task(s) {unknown}; expected some of {', '.join(TASKS)}")
    dev = select_device(device)
    started = time.perf_counter()
    built: list[Task] = []
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="lfrecon-bench-") as scratch:
        weights_dir = out / "lfrecon-bench-weights" if save_data else Path(scratch)
        for name in names:
            t0 = time.perf_counter()
            task = build_task(name, config)
            built.append(task)
            log(f"{name}: built in {time.perf_counter() - t0:.1f} s — {task.description}")
            if save_data:
                save_task(task, out / "lfrecon-bench-data")
            for method in methods_for(task, config, dev, weights_dir):
                rows.append(score_method(task, method, log))
    paths = write_results(out, config, built, rows, PeakMemory().method)
    log(f"bench '{config.name}' done in {time.perf_counter() - started:.1f} s; table: {paths['markdown']}")
    return {"rows": rows, "tasks": built, "paths": paths, "seconds": time.perf_counter() - started}


__all__ = [
    "DEFAULT_OUT",
    "FULL",
    "QUICK",
    "SPLIT_FAMILIES",
    "TASKS",
    "BenchConfig",
    "Item",
    "Row",
    "Task",
    "build_task",
    "run_benchmark",
    "save_task",
]
