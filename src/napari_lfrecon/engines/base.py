"""The engine base class. The protocol it speaks (``Update``, ``Inputs``, ``Volume``, ``Params``) is in
:mod:`napari_lfrecon.jobs`, re-exported here for engine modules.

An engine is a class with ``name``, ``kind``, ``modalities``, a ``Params``
dataclass, the ``Inputs`` type it takes and
``run(inputs, params, *, device, should_stop) -> Iterator[Update]``. The GUI
form and the CLI flags are generated from ``Params``. Every interface runs it
through :mod:`napari_lfrecon.jobs.runner`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch

from ..jobs.params import make_params, param, param_specs
from ..jobs.protocol import (
    CalibrateInputs,
    DataDescription,
    EngineInputError,
    Inputs,
    StopFlag,
    TrainInputs,
    Update,
    UpdateKind,
    Volume,
    never,
)

#: Float32 copies of (input + output) the default memory model assumes an engine holds at its peak.
DEFAULT_MEMORY_COPIES = 8


class Engine:
    """Base class of every engine. Subclasses set the class attributes and implement ``run``."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    #: ``"reconstruct"`` (measurement → volume), ``"train"`` (writes weights) or ``"calibrate"`` (fits optics):
    #: the Reconstruct widget and the benchmark list only reconstruction engines.
    kind: ClassVar[str] = "reconstruct"
    modalities: ClassVar[tuple[str, ...]] = ()
    #: False for engines that work from the data alone (niiv): the GUI then asks for no PSF.
    needs_psf: ClassVar[bool] = True
    Params: ClassVar[type] = object
    #: The :class:`Inputs` type ``run`` takes (``TrainInputs`` for trainers, ``CalibrateInputs`` for calibrations).
    inputs_type: ClassVar[type[Inputs]] = Inputs
    #: For training engines: the name of the engine whose weights this one writes (e.g. ``"niiv"``).
    trains: ClassVar[str | None] = None
    #: For training engines: the kinds of data it learns from (``"stacks"``, ``"raw-frames"``, ``"simulated"``,
    #: ``"pairs"``; see :mod:`napari_lfrecon.training.data`).
    data_kinds: ClassVar[tuple[str, ...]] = ()

    def run(
        self, inputs: Inputs, params: Any, *, device: torch.device, should_stop: StopFlag = never
    ) -> Iterator[Update]:
        """Yield ``Update``s; the last one is ``kind="result"``. Check ``should_stop()`` at each yield."""
        raise NotImplementedError

    def check(self, inputs: Inputs) -> None:
        """Raise :class:`EngineInputError` for inputs this engine cannot use, before any work starts."""

    def output_voxel_size(self, inputs: Inputs) -> tuple[float, float, float] | None:
        """The voxel size of the volume this engine returns for ``inputs`` (µm), if known before the run."""
        if inputs.psf is not None:
            return inputs.psf.voxel_size
        return inputs.voxel_size

    # The three methods below let the batch runner plan chunked runs without running the engine. Their
    # ``inputs.data`` may be a placeholder of one frame's (or tile's) shape: read its shape, never its values.

    def output_shape(self, inputs: Inputs, params: Any) -> tuple[int, ...] | None:
        """The shape of the volume ``run`` returns for one frame of ``inputs.data.shape``; ``None``: not known."""
        return None

    def halo(self, inputs: Inputs, params: Any) -> tuple[int, ...] | None:
        """Voxels of context per axis a spatial tile of ``inputs.data`` needs around its core.

        ``None`` (the default, always safe): the engine needs whole frames and
        is never cut into tiles (a time series is still cut into frames).
        Tiles are used only when the output lies on the input's grid.
        """
        return None

    def memory_bytes(self, inputs: Inputs, params: Any) -> int:
        """Rough peak bytes of one run on a frame (or tile) of ``inputs.data.shape`` (batch memory budgets).

        The default counts float32 copies of input and output plus the PSF array.
        """
        frame = math.prod(np.shape(inputs.data))
        volume = math.prod(self.output_shape(inputs, params) or np.shape(inputs.data))
        psf_bytes = int(inputs.psf.array.nbytes) if getattr(inputs.psf, "array", None) is not None else 0
        return DEFAULT_MEMORY_COPIES * 4 * (frame + volume) + psf_bytes


class TrainingEngine(Engine):
    """A trainer: its ``run`` is its :attr:`trainer`'s loop (:class:`napari_lfrecon.training.loop.Trainer`).

    Subclasses declare ``trains`` (the engine whose weights they write),
    ``data_kinds``, ``Params`` and ``trainer`` (the ``Trainer`` subclass built as
    ``trainer(inputs, params, device)``): the model, the loss and the data;
    the loop, checkpoints, Cancel and stopping are shared.
    """

    kind: ClassVar[str] = "train"
    inputs_type: ClassVar[type[Inputs]] = TrainInputs
    trainer: ClassVar[Any] = None

    def run(
        self, inputs: Inputs, params: Any, *, device: torch.device, should_stop: StopFlag = never
    ) -> Iterator[Update]:
        """Train on the shared loop: progress every step, the loss, previews, weights and result at the end."""
        yield from self.trainer(inputs, params, device).run(should_stop)


class CalibrationEngine(Engine):
    """A calibration: fits optics to calibration data given as :class:`CalibrateInputs`; returns its object."""

    kind: ClassVar[str] = "calibrate"
    inputs_type: ClassVar[type[Inputs]] = CalibrateInputs
    needs_psf: ClassVar[bool] = False


__all__ = [
    "StopFlag",
    "never",
    "CalibrateInputs",
    "CalibrationEngine",
    "TrainingEngine",
    "DataDescription",
    "Engine",
    "EngineInputError",
    "Inputs",
    "TrainInputs",
    "Update",
    "UpdateKind",
    "Volume",
    "make_params",
    "param",
    "param_specs",
]
