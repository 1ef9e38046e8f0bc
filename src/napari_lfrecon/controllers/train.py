"""What the Train widget decides without Qt: which trainers need what, where weights go, the loss curve.

Everything is read from the registry's declarations: a training engine's
``trains`` (the engine that uses its weights, for "Use in Reconstruct" and
the default weights name), its ``data_kinds`` (the input hint and the axes an
input may have, :mod:`napari_lfrecon.training.data`) and its ``modalities``
(whether it needs a PSF).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import engines
from ..engines.base import Engine, param_specs
from ..training.data import allowed_ndim, describe_kinds

#: Where weights go by default: the user's home, never the installed package.
DEFAULT_WEIGHTS_DIR = Path.home() / "lfrecon-weights"
#: Suffix of the checkpoint file derived from the weights path.
CHECKPOINT_SUFFIX = ".checkpoint.safetensors"
#: Modalities whose engines need a PSF (the physics of the measurement).
PSF_MODALITIES = frozenset({"widefield", "lfm", "xlfm"})
#: Training steps read from an engine's progress message ("step 12/2000, loss …").
STEP_PATTERN = re.compile(r"\bstep (\d+)")


def needs_psf(engine: Engine) -> bool:
    """True when ``engine`` trains through a measurement's physics and so needs a PSF."""
    return bool(PSF_MODALITIES.intersection(engine.modalities))


def input_hint(engine: Engine) -> str:
    """One line telling the user what ``engine`` trains on (from its ``data_kinds``)."""
    kinds = describe_kinds([k for k in engine.data_kinds if k != "simulated"])
    if needs_psf(engine):
        psf = "/".join(m for m in engine.modalities if m in PSF_MODALITIES)
        return f"needs: {kinds}, and its {psf} PSF (a layer carrying one, or a PSF file)"
    return f"needs: {kinds}; no PSF"


def input_ndim(engine: Engine) -> list[int]:
    """The numbers of axes a training input layer may have for ``engine``."""
    return allowed_ndim(engine.data_kinds) or [2, 3, 4]


def wanted_psf(engine: Engine) -> str:
    """The PSF modalities ``engine`` trains with, e.g. ``"lfm"``."""
    return "/".join(m for m in engine.modalities if m in PSF_MODALITIES)


def check_input(engine: Engine, layer_name: str, shape: tuple[int, ...]) -> None:
    """``ValueError`` when an input of ``shape`` has a number of axes ``engine`` cannot train on."""
    allowed = input_ndim(engine)
    if len(shape) not in allowed:
        raise ValueError(
            f"{engine.name} trains on data with {allowed} axes ({input_hint(engine)}); "
            f"layer {layer_name!r} has shape {tuple(shape)}"
        )


def check_weights_path(text: str) -> Path:
    """The weights path typed by the user; ``ValueError`` when empty or not a ``.safetensors`` file."""
    text = text.strip()
    if not text:
        raise ValueError("choose where to write the weights ('weights' path)")
    if not text.endswith(".safetensors"):
        raise ValueError(f"the weights path must end in .safetensors, got {text!r}")
    return Path(text).expanduser()


def inference_engine(train_engine: str) -> str | None:
    """The reconstruction engine that uses weights from ``train_engine`` (its ``trains``), if it takes weights."""
    try:
        target = engines.get(train_engine).trains
    except KeyError:
        return None
    if target is None or target not in engines.available(kind="reconstruct"):
        return None
    names = {spec["name"] for spec in param_specs(engines.get(target).Params)}
    return target if "weights" in names else None


def checkpoint_for(weights: str | Path) -> Path:
    """The checkpoint path kept next to a weights file: ``w.safetensors`` → ``w.checkpoint.safetensors``."""
    path = Path(weights)
    return path.with_name(path.name.removesuffix(".safetensors") + CHECKPOINT_SUFFIX)


def default_weights(engine: Engine | None, input_name: str | None) -> Path:
    """``~/lfrecon-weights/<engine it trains>-<input>.safetensors``."""
    base = (engine.trains or engine.name) if engine is not None else "weights"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(input_name)).strip("_") if input_name else ""
    return DEFAULT_WEIGHTS_DIR / f"{base}-{slug or 'weights'}.safetensors"


def checkpoint_note(checkpoint: str) -> str:
    """What a cancelled run left behind at ``checkpoint`` (for the status line)."""
    if checkpoint and Path(checkpoint).is_file():
        return f"checkpoint kept at {checkpoint}: train again with 'resume' on to continue"
    if checkpoint:
        return f"no checkpoint written yet at {checkpoint} (the engine writes one every few steps)"
    return "no checkpoint kept (set 'checkpoint' to keep one)"


def series_frame(
    psf: Any, shape: tuple[int, ...], scale: tuple[float, ...], translate: tuple[float, ...]
) -> tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...]] | None:
    """Shape, scale and translate of ONE frame when an input of ``shape`` is a time series, else ``None``."""
    if psf is None:
        return None
    frame_ndim = 3 if psf.modality == "widefield" else 2
    if psf.modality == "lfm" and len(shape) >= 3 and shape[-3] == psf.array.shape[0]:
        frame_ndim = 3  # views (A, Ny, Nx) are one frame
    if len(shape) <= frame_ndim:
        return None
    return shape[1:], scale[1:], translate[1:]


@dataclass
class LossCurve:
    """The loss points of a run: training step and value, per metric name."""

    points: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    last_step: int = 0

    def progress(self, fraction: float, message: str, planned_steps: int) -> None:
        """Follow the step from a progress message (or the fraction of the planned steps)."""
        match = STEP_PATTERN.search(message)
        if match:
            self.last_step = int(match.group(1))
        elif planned_steps:
            self.last_step = round(fraction * planned_steps)

    def add(self, name: str, value: float) -> bool:
        """Record a loss metric at the last step; False (ignored) for other metrics and non-finite values."""
        if "loss" not in name or not math.isfinite(value):
            return False
        steps, values = self.points.setdefault(name, ([], []))
        # An engine that names no step still gets a monotone x axis.
        steps.append(self.last_step if self.last_step > (steps[-1] if steps else 0) else len(steps) + 1)
        values.append(float(value))
        return True

    def final(self) -> float | None:
        """The last loss value (the ``"loss"`` metric when there are several)."""
        if not self.points:
            return None
        _, values = self.points.get("loss") or next(iter(self.points.values()))
        return values[-1] if values else None


__all__ = [
    "CHECKPOINT_SUFFIX",
    "DEFAULT_WEIGHTS_DIR",
    "LossCurve",
    "check_input",
    "check_weights_path",
    "checkpoint_for",
    "checkpoint_note",
    "default_weights",
    "inference_engine",
    "input_hint",
    "input_ndim",
    "needs_psf",
    "series_frame",
    "wanted_psf",
]


def preferred_trainer(trainers: list[Engine], layers: list[tuple[str | None, int]]) -> str | None:
    """The training engine the loaded layers suit, or ``None`` when no layer fits any.

    ``layers`` are ``(psf_modality or None, ndim)`` of the candidate input layers
    (ground truths and results left out). A trainer that needs a PSF fits a layer
    carrying a PSF of its modality (an LFM sample → SeReNet); one that needs none
    fits a layer without a PSF whose number of axes it trains on (a stack → niiv).
    Trainers are tried in registry order; the newest layer decides between them.
    """
    for modality, ndim in reversed(layers):
        for engine in trainers:
            if needs_psf(engine):
                if modality is not None and modality in engine.modalities:
                    return engine.name
            elif modality is None and ndim in input_ndim(engine):
                return engine.name
    return None
