"""Training checkpoints: a model, its optimiser's state and the loop's counters in one safetensors file.

File layout (read by every trainer, and by checkpoints written before this
module existed): tensors ``model.<name>`` (the model's ``state_dict``) and
``optim.<index>.<name>`` (the optimiser's per-parameter state, e.g. Adam's
moments); the JSON header (see :mod:`napari_lfrecon.io.weights`) holds
``engine`` (the training engine's name), ``version``, ``step``, ``seconds``
(training time so far), ``config`` (what network was built),
``param_groups`` (the optimiser's settings), ``params`` (the run's
parameters) and ``history`` (the last windowed loss values). Nothing in the
file can run code when read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..io.weights import check_tensors, load_weights, save_weights
from ..jobs.protocol import EngineInputError

#: Version of the checkpoint layout.
CHECKPOINT_VERSION = 1
#: Loss-history entries kept in a checkpoint header.
HISTORY_KEPT = 1000
_MODEL_PREFIX = "model."
_OPTIM_PREFIX = "optim."


@dataclass
class CheckpointState:
    """What a checkpoint restores besides the tensors: the step, the training time and the loss history."""

    step: int
    seconds: float
    history: list[float] = field(default_factory=list)
    header: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | Path,
    *,
    engine: str,
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    step: int,
    seconds: float,
    history: list[float],
    config: Mapping[str, Any],
    params: Mapping[str, Any],
) -> Path:
    """Write model, optimiser moments and the loop's counters to ``path`` (atomically); return the path."""
    tensors: dict[str, torch.Tensor] = {_MODEL_PREFIX + k: v for k, v in model.state_dict().items()}
    state = optimiser.state_dict()
    for index, values in state["state"].items():
        for name, value in values.items():
            tensors[f"{_OPTIM_PREFIX}{index}.{name}"] = torch.as_tensor(value)
    header = {
        "engine": engine,
        "version": CHECKPOINT_VERSION,
        "step": int(step),
        "seconds": float(seconds),
        "config": dict(config),
        "param_groups": state["param_groups"],
        "params": dict(params),
        "history": list(history[-HISTORY_KEPT:]),
    }
    return save_weights(path, tensors, header)


def load_checkpoint(
    path: str | Path,
    *,
    engine: str,
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    config: Mapping[str, Any],
    normalise_config: Callable[[dict[str, Any]], dict[str, Any]] = dict,
) -> CheckpointState:
    """Restore ``model`` and ``optimiser`` from a checkpoint written for the same network; return the counters.

    ``config`` is the network this run builds; the checkpoint's recorded
    config (passed through ``normalise_config``, e.g. to fill fields added
    since) must equal it. Raises :class:`EngineInputError` naming the file
    and both configs otherwise, or when the file is another engine's.
    """
    try:
        tensors, header = load_weights(path, engine=engine)
    except ValueError as exc:
        raise EngineInputError(f"cannot resume from {path}: {exc}") from exc
    saved = normalise_config(dict(header.get("config") or {}))
    if saved != dict(config):
        raise EngineInputError(
            f"the checkpoint {path} is for another network ({header.get('config')}); "
            f"this run builds {dict(config)}: delete it or choose another checkpoint path"
        )
    weights = {k.removeprefix(_MODEL_PREFIX): v for k, v in tensors.items() if k.startswith(_MODEL_PREFIX)}
    check_tensors(path, weights, model.state_dict())
    model.load_state_dict(weights)
    optim_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(_OPTIM_PREFIX):
            _, index, name = key.split(".", 2)
            optim_state.setdefault(int(index), {})[name] = value
    optimiser.load_state_dict({"state": optim_state, "param_groups": header["param_groups"]})
    return CheckpointState(
        step=int(header["step"]),
        seconds=float(header.get("seconds", 0.0)),
        history=[float(v) for v in header.get("history", [])],
        header=header,
    )


__all__ = ["CHECKPOINT_VERSION", "CheckpointState", "load_checkpoint", "save_checkpoint"]
