"""The one training loop: seeded steps, checkpoints, resume, Cancel, stopping rules, streamed updates.

A trainer subclasses :class:`Trainer` and provides the model, the optimiser
and one optimisation step; the loop does everything else, the same way for
every network engine:

* **seeded steps**: step ``k`` draws its randomness from
  ``numpy.random.default_rng([seed, k])`` only, so a resumed run continues
  exactly where a straight run would be;
* **checkpoints** (:mod:`.checkpoints`) of model AND optimiser every
  ``checkpoint_every`` steps, at the end, and on Cancel — both when
  ``should_stop()`` turns true and when the consumer closes the generator
  (``GeneratorExit``, as the job runner does after a Cancel);
* **resume** from the checkpoint when it exists and ``resume`` is on, or
  else start from ``init_weights`` (fine-tuning a pretrained network);
* **stopping** by ``steps``, by ``minutes`` (of this run) or by ``patience``
  (no 1 % improvement of the windowed loss for that many steps);
* **streaming**: a progress update every step, the loss (mean over
  :attr:`Trainer.loss_window` steps) as a ``("loss", value)`` metric,
  previews every ``preview_every`` steps, and at the end the weights written
  with their header (engine, version, config, training provenance including
  the exact command of :class:`~napari_lfrecon.jobs.protocol.TrainInputs`)
  and the trained network's result volume (a per-sample fit, whose
  ``Params`` have no ``output``, returns its volume and writes no weights).

The loop reads its settings from the trainer's ``Params`` by name
(:class:`LoopSettings`); a ``Params`` without e.g. ``patience`` simply never
stops by convergence.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..jobs.params import jsonable
from ..jobs.protocol import EngineInputError, Inputs, Update
from .checkpoints import load_checkpoint, save_checkpoint

#: The windowed loss must improve by this relative amount to count as progress (patience).
CONVERGENCE_REL = 0.01


@dataclass(frozen=True)
class LoopSettings:
    """The loop's settings, read by name from a trainer's ``Params`` (absent fields take these defaults)."""

    output: str = ""
    steps: int = 1000
    minutes: float = 0.0
    patience: int = 0
    seed: int = 0
    preview_every: int = 0
    checkpoint: str = ""
    checkpoint_every: int = 200
    resume: bool = True
    #: Weights to start from (fine-tuning a pretrained network); ignored when resuming from a checkpoint.
    init_weights: str = ""

    @classmethod
    def from_params(cls, params: Any) -> LoopSettings:
        """The settings of ``params`` (any object with some of these attribute names)."""
        values = {f.name: getattr(params, f.name) for f in dataclasses.fields(cls) if hasattr(params, f.name)}
        return cls(**values)


class Trainer:
    """One training run. Subclasses set :attr:`engine_name` and implement the hooks; :meth:`run` is the loop.

    Hooks: :meth:`build` (model and optimiser, called seeded by
    :meth:`build_seeded`), :meth:`optimise_step` (one step from a seeded
    generator → the loss), :meth:`preview`, :meth:`describe`,
    :meth:`write_weights` and optionally :meth:`result_volume`,
    :meth:`provenance`, :meth:`data_summary`, :meth:`normalise_config`.
    """

    #: The training engine's registry name, written into checkpoints (``"niiv-train"``).
    engine_name: ClassVar[str] = ""
    #: Loss values are reported as the mean over this many steps.
    loss_window: ClassVar[int] = 10

    def __init__(self, inputs: Inputs, params: Any, device: torch.device) -> None:
        self.inputs, self.params, self.device = inputs, params, device
        self.settings = LoopSettings.from_params(params)
        self.model: torch.nn.Module | None = None
        self.optimiser: torch.optim.Optimizer | None = None
        #: Optimiser steps done (over every resumed session).
        self.step = 0
        #: Training time before the current session (seconds), restored from checkpoints.
        self.seconds_before = 0.0
        #: The windowed loss values so far.
        self.history: list[float] = []
        self._session_start: float | None = None
        self._saved_step = -1

    # ------------------------------------------------------------ hooks
    def build(self) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        """The network (on ``self.device``) and its optimiser; called after seeding torch with ``seed``."""
        raise NotImplementedError

    def optimise_step(self, step: int, rng: np.random.Generator) -> float:
        """One optimiser step (step ``step``, randomness from ``rng`` only); return the loss to report."""
        raise NotImplementedError

    def preview(self) -> np.ndarray | None:
        """A volume showing the current network's output (``None``: no preview)."""
        return None

    def describe(self) -> str:
        """One sentence on the run (data, network size), streamed at the start."""
        return f"{self.engine_name}: {self.n_parameters()} parameters"

    def write_weights(self, path: str, training: dict[str, Any]) -> Path:
        """Write the trained network with its header (engine, version, config, ``training``); return the path."""
        raise NotImplementedError

    def result_volume(self) -> np.ndarray | None:
        """The volume the finished run returns (by default the preview)."""
        return self.preview()

    def provenance(self) -> dict[str, Any]:
        """Engine-specific facts added to the weights header's ``training`` (data sources, noise, …)."""
        return {}

    def data_summary(self) -> str:
        """A sentence on the data when the inputs state none (``TrainInputs.data_description``)."""
        return f"data of shape {list(np.shape(self.inputs.data))} given to the engine"

    def config(self) -> dict[str, Any]:
        """The network's configuration (JSON-able), compared when resuming from a checkpoint."""
        return dict(self.model.config.to_dict())  # type: ignore[union-attr]

    def normalise_config(self, saved: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint's recorded config in today's form (e.g. new fields filled with their defaults)."""
        return saved

    # ------------------------------------------------------------ pieces
    def build_seeded(self) -> None:
        """Seed torch with ``seed`` and :meth:`build` the model and optimiser (the same start every run)."""
        torch.manual_seed(self.settings.seed)
        self.model, self.optimiser = self.build()

    def n_parameters(self) -> int:
        """Trainable parameters of the model."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad) if self.model is not None else 0

    def rng(self, step: int) -> np.random.Generator:
        """The generator of step ``step``: seeded from ``(seed, step)`` only."""
        return np.random.default_rng([self.settings.seed, step])

    def train_step(self) -> float:
        """One seeded optimiser step (advances :attr:`step`); return its loss."""
        value = self.optimise_step(self.step, self.rng(self.step))
        self.step += 1
        return float(value)

    def seconds(self) -> float:
        """Training time so far, over every session (seconds)."""
        if self._session_start is None:
            return self.seconds_before
        return self.seconds_before + time.perf_counter() - self._session_start

    def save_checkpoint(self, path: str | Path) -> Path:
        """Model, optimiser state, step, time, loss history, config and params in one safetensors file."""
        if self.model is None or self.optimiser is None:
            raise RuntimeError("build the model before checkpointing it")
        written = save_checkpoint(
            path,
            engine=self.engine_name,
            model=self.model,
            optimiser=self.optimiser,
            step=self.step,
            seconds=self.seconds(),
            history=self.history,
            config=self.config(),
            params=jsonable(dataclasses.asdict(self.params)) if dataclasses.is_dataclass(self.params) else {},
        )
        self._saved_step = self.step
        return written

    def load_initial_weights(self, path: str | Path) -> str:
        """Start from the network in weights file ``path`` (e.g. a pretraining run's); return a sentence.

        The default loads every tensor whose name and shape the model shares
        and says how many it took; a trainer whose pretrained and fine-tuned
        networks differ more overrides this.
        """
        from ..io.weights import load_weights

        try:
            tensors, header = load_weights(path)
        except ValueError as exc:
            raise EngineInputError(f"cannot start from {path}: {exc}") from exc
        own = self.model.state_dict()  # type: ignore[union-attr]
        shared = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
        if not shared:
            raise EngineInputError(f"{path} ({header['engine']} weights) shares no tensor with this network")
        self.model.load_state_dict(shared, strict=False)  # type: ignore[union-attr]
        return f"started from {path} ({header['engine']}): {len(shared)} of {len(own)} tensors"

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint written for the same network (:class:`EngineInputError` otherwise)."""
        if self.model is None or self.optimiser is None:
            raise RuntimeError("build the model before loading a checkpoint into it")
        state = load_checkpoint(
            path,
            engine=self.engine_name,
            model=self.model,
            optimiser=self.optimiser,
            config=self.config(),
            normalise_config=self.normalise_config,
        )
        self.step, self.seconds_before, self.history = state.step, state.seconds, state.history
        self._saved_step = self.step

    def _keep_checkpoint(self) -> None:
        if self.settings.checkpoint and self._saved_step != self.step:
            self.save_checkpoint(self.settings.checkpoint)

    def training_record(self, stopped_by: str) -> dict[str, Any]:
        """The ``training`` block of the weights header: command, data, settings, steps, time, losses."""
        params = jsonable(dataclasses.asdict(self.params)) if dataclasses.is_dataclass(self.params) else {}
        return {
            "command": getattr(self.inputs, "command", ""),
            "data": getattr(self.inputs, "data_description", "") or self.data_summary(),
            **self.provenance(),
            "params": params,
            "seed": self.settings.seed,
            "steps_done": self.step,
            "stopped_by": stopped_by,
            "seconds": round(self.seconds(), 1),
            "final_loss": self.history[-1] if self.history else None,
            f"loss_history_every_{self.loss_window}_steps": [round(v, 5) for v in self.history],
        }

    # ------------------------------------------------------------ the loop
    def run(self, should_stop: Callable[[], bool] = lambda: False) -> Iterator[Update]:
        """Train until steps, minutes or convergence; yield progress, loss metrics, previews, then the result.

        ``should_stop`` is asked once per step (after that step's updates);
        when it is true the run keeps its checkpoint and ends with a
        ``"cancelled at step N …"`` progress update and no result.
        """
        s = self.settings
        if self.model is None:
            self.build_seeded()
        if not s.output and hasattr(self.params, "output"):
            raise EngineInputError(f"{self.engine_name} needs an output weights path ('output')")
        total = max(s.steps, 1)
        if s.checkpoint and s.resume and Path(s.checkpoint).is_file():
            self.load_checkpoint(s.checkpoint)
            yield Update("progress", min(self.step / total, 1.0), f"resumed from {s.checkpoint} at step {self.step}")
        elif s.init_weights:
            yield Update("progress", 0.0, self.load_initial_weights(s.init_weights))
        yield Update("progress", min(self.step / total, 1.0), self.describe())
        self._session_start = started = time.perf_counter()
        window: list[float] = []
        best, best_step = float("inf"), self.step
        cancelled, stopped_by = False, "steps"
        try:
            while self.step < s.steps:
                value = self.train_step()
                window.append(value)
                session_minutes = (time.perf_counter() - started) / 60
                fraction = self.step / total
                if s.minutes > 0:
                    fraction = max(fraction, min(session_minutes / s.minutes, 1.0))
                yield Update("progress", fraction, f"step {self.step}/{s.steps}, loss {value:.4f}")
                if len(window) >= self.loss_window or self.step == s.steps:
                    mean = float(np.mean(window))
                    self.history.append(mean)
                    window = []
                    yield Update("metric", fraction, f"loss {mean:.4f}", ("loss", mean))
                    if mean < best * (1.0 - CONVERGENCE_REL):
                        best, best_step = mean, self.step
                if s.preview_every and self.step % s.preview_every == 0 and self.step < s.steps:
                    preview = self.preview()
                    if preview is not None:
                        yield Update("preview", fraction, f"step {self.step}", preview)
                if s.checkpoint and self.step % s.checkpoint_every == 0:
                    self.save_checkpoint(s.checkpoint)
                if should_stop():
                    cancelled = True
                    break
                if s.minutes > 0 and session_minutes >= s.minutes:
                    stopped_by = "minutes"
                    break
                if s.patience and self.step - best_step >= s.patience:
                    stopped_by = "convergence"
                    break
        except GeneratorExit:
            # The job runner closes this generator at the first update after Cancel (GeneratorExit at a
            # yield): keep the state on that path too, so a cancelled run always leaves its checkpoint.
            self._keep_checkpoint()
            raise
        self._keep_checkpoint()
        if cancelled:
            kept = f"checkpoint kept at {s.checkpoint}" if s.checkpoint else "no checkpoint path set"
            yield Update("progress", min(self.step / total, 1.0), f"cancelled at step {self.step} ({kept})")
            return
        # A per-sample fit (no ``output`` parameter) returns its volume and writes no weights.
        written = ""
        if s.output:
            written = f"; weights written to {self.write_weights(s.output, self.training_record(stopped_by))}"
        self.seconds_before, self._session_start = self.seconds(), None
        yield Update("metric", 1.0, "seconds", ("seconds", self.seconds_before))
        yield Update(
            "result", 1.0, f"trained {self.step} steps (stopped by {stopped_by}){written}", self.result_volume()
        )


__all__ = ["CONVERGENCE_REL", "LoopSettings", "Trainer"]
