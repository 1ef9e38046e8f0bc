"""The engine base class. The protocol it speaks (``Update``, ``Inputs``, ``Volume``, ``Params``) is in
:mod:`napari_lfrecon.jobs`, re-exported here for engine modules.

An engine is a class with ``name``, ``kind``, ``modalities``, a ``Params``
dataclass, the ``Inputs`` type it takes and
``run(inputs, params, *, device, should_stop) -> Iterator[Update]``. The GUI
form and the CLI flags are generated from ``Params``. Every interface runs it
through :mod:`napari_lfrecon.jobs.runner`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch

from ..jobs.params import make_params, param, param_specs
from ..jobs.protocol import (
    CalibrateInputs,
    DataDescription,
    EngineInputError,
    Inputs,
    TrainInputs,
    Update,
    UpdateKind,
    Volume,
)


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

    def run(
        self,
        inputs: Inputs,
        params: Any,
        *,
        device: torch.device,
        should_stop: Callable[[], bool] = lambda: False,
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


__all__ = [
    "CalibrateInputs",
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
