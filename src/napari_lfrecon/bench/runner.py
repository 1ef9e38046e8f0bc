"""Run every registered engine and the baselines on each task's test split; score them against ground truth.

Which methods run on a task:

* every engine in :func:`napari_lfrecon.engines.available` whose ``modalities``
  include the task's modality (a new engine appears by being registered). Its
  settings are ``BASELINE_SETTINGS[name]`` for the baselines (RL at the fixed
  iteration counts of the config), else the engine class's optional
  ``benchmark_params`` (a sequence of parameter dicts), else its defaults.
  A training engine (one whose ``trains`` names a registered ``<name>``)
  is not a row of its own; instead it trains ``<name>`` once per task on the
  stacked training measurements (its ``output``, ``steps``, ``minutes`` set
  from the config when it has such parameters) and ``<name>`` then runs on the
  test items with ``weights`` = the trained file.
  Engines get ``Inputs(data, psf, voxel_size, description)`` where ``description`` holds
  what the task states about its data (anisotropic: ``factor`` and ``kernel``);
  trainers get the stacked training measurements (train and test phantom
  families differ);
* for the anisotropic task, nearest / linear / cubic interpolation along z.

Scores per test item (then averaged): the prediction's intensity is fitted
to the ground truth by least squares (reconstructions come in photo-electrons),
then PSNR, SSIM and Fourier-PSNR (xz + yz planes, radius = half the xz plane's
half-diagonal) with data range 1, and the FSC resolution against the noise-free
ground truth (threshold 0.5). Wall time is per item; peak memory is the peak
resident-set growth during the item's run (see :mod:`.memory`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import engines
from ..jobs import DataDescription, Inputs, Volume, make_params, run_job
from ..metrics.report import compare
from .baselines import INTERPOLATIONS, upsample_z
from .config import BenchConfig
from .memory import PeakMemory
from .tasks import Item, Task

#: Settings of the baseline engines (the rest use their ``benchmark_params`` or defaults).
BASELINE_SETTINGS: dict[str, Callable[[BenchConfig], list[dict[str, Any]]]] = {
    "rl": lambda config: [{"iterations": n, "preview_every": 0} for n in config.rl_iterations],
}
#: Ground truths are normalised to a maximum of 1.
DATA_RANGE = 1.0


@dataclass
class Method:
    """One row of the table: a named way to turn an item's measurement into a volume."""

    name: str
    kind: str  # "engine" or "baseline"
    settings: dict[str, Any]
    run: Callable[[Task, Item], np.ndarray]
    training: Any = None

    @property
    def settings_text(self) -> str:
        """The settings as ``key=value`` pairs (internal knobs such as previews left out)."""
        shown = {k: v for k, v in self.settings.items() if k != "preview_every"}
        return ", ".join(f"{k}={v}" for k, v in shown.items()) or "defaults"


@dataclass
class Row:
    """The averaged scores of one method on one task, plus curves for the plots."""

    task: str
    method: str
    kind: str
    settings: str
    n_test: int = 0
    psnr: float = math.nan
    ssim: float = math.nan
    fourier_psnr: float = math.nan
    radius: float = math.nan
    resolution_um: float = math.nan
    seconds: float = math.nan
    peak_mib: float = math.nan
    note: str = ""
    sweep_radius: list[float] = field(default_factory=list)
    sweep_mean: list[float] = field(default_factory=list)
    fsc_frequency: list[float] = field(default_factory=list)
    fsc_curve: list[float] = field(default_factory=list)


def fourier_radius(shape: Sequence[int]) -> float:
    """The table's Fourier-PSNR radius: half the half-diagonal of the xz plane (frequency-index units)."""
    return float(round(0.5 * math.hypot(shape[0], shape[-1]) / 2))


def trainer_of(name: str) -> str | None:
    """The registered training engine that declares it ``trains`` engine ``name``, if any."""
    return engines.trainer_for(name)


def is_trainer(name: str) -> bool:
    """True for training engines whose target engine is registered (they run through that engine)."""
    target = engines.get(name).trains
    return target is not None and target in engines.available()


def _field_names(params_cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(params_cls)} if dataclasses.is_dataclass(params_cls) else set()


def _description(task: Task) -> DataDescription:
    """What the task states about how its data were made (anisotropic: the factor and axial kernel)."""
    kernel = task.extra.get("kernel")
    factor = task.extra.get("factor")
    return DataDescription(
        anisotropy=int(factor) if factor else None,
        axial_kernel=np.asarray(kernel, dtype=np.float64) if kernel is not None else None,
    )


def _run_to_result(name: str, inputs: Inputs, settings: dict[str, Any], device: torch.device) -> Any:
    engine = engines.get(name)
    inputs = engine.inputs_type(**vars(inputs))
    result = run_job(engine, inputs, make_params(engine.Params, settings), device=device)
    return result.data if isinstance(result, Volume) else result


class _Training:
    """Train engine ``name`` once per task with its training engine; remembers the weights file."""

    def __init__(self, name: str, trainer: str, config: BenchConfig, weights_dir: Path, device: torch.device) -> None:
        self.name, self.trainer, self.config, self.device = name, trainer, config, device
        self.weights_dir = weights_dir
        self.weights: dict[str, Path] = {}
        self.summary = ""

    def weights_for(self, task: Task) -> Path:
        if task.name in self.weights:
            return self.weights[task.name]
        path = self.weights_dir / task.name / f"{self.name}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        wanted = {
            "output": str(path),
            "steps": self.config.train_steps,
            "minutes": self.config.train_minutes,
            "preview_every": 0,
            "checkpoint_every": 10**9,
            "resume": False,
            "seed": 0,
        }
        fields = _field_names(engines.get(self.trainer).Params)
        settings = {k: v for k, v in wanted.items() if k in fields}
        frames = np.stack([item.measurement for item in task.splits["train"]])
        inputs = Inputs(data=frames, psf=task.psf, voxel_size=task.data_voxel_size, description=_description(task))
        started = time.perf_counter()
        _run_to_result(self.trainer, inputs, settings, self.device)
        seconds = time.perf_counter() - started
        self.summary = f"trained {settings.get('steps', '?')} steps on {len(frames)} frames in {seconds:.0f} s"
        self.weights[task.name] = path
        return path


def _engine_method(
    name: str, settings: dict[str, Any], device: torch.device, training: _Training | None = None
) -> Method:
    def run(task: Task, item: Item) -> np.ndarray:
        used = dict(settings)
        if training is not None:
            used["weights"] = str(training.weights_for(task))
        inputs = Inputs(
            data=item.measurement, psf=task.psf, voxel_size=task.data_voxel_size, description=_description(task)
        )
        return np.asarray(_run_to_result(name, inputs, used, device), dtype=np.float32)

    method = Method(name, "engine", dict(settings), run)
    method.training = training
    return method


def _interp_method(method: str) -> Method:
    def run(task: Task, item: Item) -> np.ndarray:
        assert item.measurement is not None
        return upsample_z(item.measurement, int(task.extra["factor"]), method)

    return Method(f"interp-{method}", "baseline", {"factor": "task"}, run)


def methods_for(
    task: Task, config: BenchConfig, device: torch.device, weights_dir: Path = Path("benchmark-weights")
) -> list[Method]:
    """Every registered engine that handles ``task.modality`` (trainers through their engine), then the baselines."""
    methods: list[Method] = []
    if not task.has_measurements:
        return methods
    for name in engines.available():
        engine = engines.get(name)
        if task.modality not in engine.modalities or is_trainer(name) or engine.kind == "calibrate":
            continue
        trainer = trainer_of(name)
        training = _Training(name, trainer, config, weights_dir, device) if trainer else None
        if name in BASELINE_SETTINGS:
            settings_list = BASELINE_SETTINGS[name](config)
        else:
            settings_list = list(getattr(engine, "benchmark_params", None) or [{}])
        methods.extend(_engine_method(name, s, device, training) for s in settings_list)
    if task.modality == "anisotropic":
        methods.extend(_interp_method(m) for m in INTERPOLATIONS)
    return methods


def score_method(task: Task, method: Method, log: Callable[[str], None] = lambda _: None) -> Row:
    """Run ``method`` on every test item of ``task`` and average the scores."""
    row = Row(task.name, method.name, method.kind, method.settings_text)
    items = task.splits["test"]
    if method.training is not None:
        try:
            method.training.weights_for(task)
            log(f"  {task.name} / {method.name}: {method.training.summary}")
        except (ValueError, RuntimeError, KeyError) as exc:
            row.note = f"training failed: {exc}"
            log(f"  {task.name} / {method.name}: {row.note}")
            return row
    scores: dict[str, list[float]] = {
        k: [] for k in ("psnr", "ssim", "fourier_psnr", "resolution_um", "seconds", "peak")
    }
    sweeps = []
    for k, item in enumerate(items):
        try:
            with PeakMemory() as memory:
                started = time.perf_counter()
                prediction = method.run(task, item)
                seconds = time.perf_counter() - started
        except (ValueError, RuntimeError, KeyError) as exc:
            row.note = f"failed: {exc}"
            log(f"  {task.name} / {method.name}: {row.note}")
            return row
        if prediction.shape != item.ground_truth.shape:
            row.note = f"output {prediction.shape} ≠ ground truth {item.ground_truth.shape}"
            return row
        if not np.all(np.isfinite(prediction)):
            row.note = f"non-finite output on test item {k} ({item.family})"
            log(f"  {task.name} / {method.name}: {row.note}")
            return row
        radius = fourier_radius(item.ground_truth.shape)
        result = compare(
            prediction,
            item.ground_truth,
            task.voxel_size,
            radius=radius,
            data_range=DATA_RANGE,
            fsc_threshold="reference",
        )
        scores["psnr"].append(result["psnr"])
        scores["ssim"].append(result["ssim"])
        scores["fourier_psnr"].append(result["fourier_psnr"])
        scores["resolution_um"].append(result["resolution_um"])
        scores["seconds"].append(seconds)
        scores["peak"].append(memory.peak_mib)
        sweeps.append(result["sweep"]["fourier_psnr"])
        row.radius = radius
        if k == 0:
            row.sweep_radius = result["sweep"]["radius"].tolist()
            row.fsc_frequency = result["fsc"]["frequency"].tolist()
            row.fsc_curve = np.nan_to_num(result["fsc"]["curve"]).tolist()
        log(
            f"  {task.name} / {method.name} [{method.settings_text}] item {k} ({item.family}): "
            f"PSNR {result['psnr']:.2f} dB, {seconds:.2f} s"
        )
    if method.training is not None and method.training.summary:
        row.settings = f"{row.settings}; {method.training.summary}"
    row.n_test = len(items)
    row.psnr = float(np.mean(scores["psnr"]))
    row.ssim = float(np.mean(scores["ssim"]))
    row.fourier_psnr = float(np.mean(scores["fourier_psnr"]))
    row.resolution_um = float(np.mean(scores["resolution_um"]))
    row.seconds = float(np.mean(scores["seconds"]))
    row.peak_mib = float(np.max(scores["peak"]))
    row.sweep_mean = np.mean(sweeps, axis=0).tolist()
    return row
