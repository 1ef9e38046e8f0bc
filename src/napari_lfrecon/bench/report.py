"""Write LFRecon-Bench results: a markdown table, a JSON file and one plot per task. No Qt."""

from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .config import SPLIT_FAMILIES, BenchConfig
from .tasks import Task

TABLE_HEADER = (
    "| task | method | settings | PSNR (dB) | SSIM | Fourier-PSNR (dB) @ r | FSC res. (µm) | time (s) | peak MiB |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def _num(value: float, fmt: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def table(rows: list[Any], tasks: list[Task]) -> str:
    """The markdown results table (one line per method per task; placeholder tasks say why they are empty)."""
    lines = [TABLE_HEADER]
    for task in tasks:
        task_rows = [r for r in rows if r.task == task.name]
        if not task_rows:
            reason = task.note or "no registered engine or baseline handles this modality yet"
            lines.append(f"| {task.name} | — | {reason} | — | — | — | — | — | — |")
            continue
        for r in task_rows:
            if r.note:
                lines.append(f"| {r.task} | {r.method} | {r.settings} | {r.note} | | | | | |")
                continue
            lines.append(
                f"| {r.task} | {r.method} | {r.settings} | {_num(r.psnr, '.2f')} | {_num(r.ssim, '.3f')} | "
                f"{_num(r.fourier_psnr, '.2f')} @ {_num(r.radius, '.0f')} | {_num(r.resolution_um, '.2f')} | "
                f"{_num(r.seconds, '.2f')} | {_num(r.peak_mib, '.0f')} |"
            )
    return "\n".join(lines)


def describe(config: BenchConfig, tasks: list[Task], memory_method: str) -> str:
    """The markdown text around the table: data sets, splits, how numbers were measured."""
    import torch

    families = "; ".join(f"{split}: {', '.join(f)}" for split, f in SPLIT_FAMILIES.items())
    lines = [
        f"Configuration `{config.name}`, seed {config.seed}; splits {config.items} items ({families}). "
        f"Measurements: {config.photons:g} photo-electrons at the brightest pixel, "
        f"background {config.background_e:g} e⁻, "
        f"read noise {config.read_noise_e:g} e⁻ RMS.",
        "",
        "Tasks:",
    ]
    lines += [f"- **{t.name}**: {t.description}" + (f" — {t.note}" if t.note else "") for t in tasks]
    lines += [
        "",
        "Scores on the test split (families never seen in training), averaged over its items: intensity fitted to the "
        "ground truth by least squares, data range 1; Fourier-PSNR on the xz and yz planes with an ideal low-pass disc "
        "of radius r frequency indices; FSC resolution against the noise-free ground truth (threshold 0.5; shells up "
        "to the lowest Nyquist frequency, so a coarse z step caps it); time = wall time per item; peak MiB = "
        f"{memory_method}.",
        f"Python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.machine()}.",
    ]
    return "\n".join(lines)


def plot_task(task: Task, rows: list[Any], path: Path) -> Path | None:
    """Fourier-PSNR sweep and FSC curve of every method on ``task`` (first test item's FSC); needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError:
        return None
    task_rows = [r for r in rows if r.task == task.name and not r.note and r.sweep_mean]
    if not task_rows:
        return None
    figure = Figure(figsize=(9, 3.6), dpi=110, layout="constrained")
    sweep_ax, fsc_ax = figure.subplots(1, 2)
    for r in task_rows:
        label = f"{r.method} ({r.settings})"
        sweep_ax.plot(r.sweep_radius, r.sweep_mean, label=label)
        fsc_ax.plot(r.fsc_frequency, r.fsc_curve, label=label)
    sweep_ax.set(
        title=f"{task.name}: Fourier-PSNR sweep (xz + yz)",
        xlabel="low-pass radius (frequency index)",
        ylabel="Fourier-PSNR (dB)",
    )
    fsc_ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="threshold 0.5")
    fsc_ax.set(
        title=f"{task.name}: FSC vs ground truth", xlabel="spatial frequency (1/µm)", ylabel="FSC", ylim=(-0.1, 1.05)
    )
    fsc_ax.legend(fontsize=7)
    figure.savefig(path)
    return path


def write_results(
    out_dir: Path, config: BenchConfig, tasks: list[Task], rows: list[Any], memory_method: str
) -> dict[str, Path]:
    """Write ``lfrecon-bench-<config>.md`` / ``.json`` and one ``…-<task>.png`` per task; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    markdown = f"# LFRecon-Bench ({config.name})\n\n{describe(config, tasks, memory_method)}\n\n{table(rows, tasks)}\n"
    stem = f"lfrecon-bench-{config.name}"
    written["markdown"] = out_dir / f"{stem}.md"
    written["markdown"].write_text(markdown)
    payload = {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        "memory_method": memory_method,
        "tasks": [{"name": t.name, "description": t.description, "note": t.note} for t in tasks],
        "rows": [_jsonable(asdict(r)) for r in rows],
    }
    written["json"] = out_dir / f"{stem}.json"
    written["json"].write_text(json.dumps(payload, indent=1))
    for task in tasks:
        path = plot_task(task, rows, out_dir / f"{stem}-{task.name}.png")
        if path is not None:
            written[f"plot-{task.name}"] = path
    return written


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    return value
