"""The kinds of data a trainer learns from, and how files on the command line reach a trainer.

A training engine declares ``trains`` (the engine whose weights it writes)
and ``data_kinds`` (names from :data:`DATA_KINDS`). The CLI (``lfrecon train
ENGINE``) and the Train widget read those declarations instead of knowing
each trainer: the kinds say what one input looks like (for hints and shape
checks), whether it comes from files, and whether the trainer can simulate
its own data. A trainer that takes files implements
:meth:`TrainingDataSource.training_data`; one with the ``"simulated"`` kind
also :meth:`TrainingDataSource.simulate` and a ``Simulation`` params class
(its fields become ``--simulate-<name>`` flags).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from ..jobs.protocol import EngineInputError, UnknownName


@dataclass(frozen=True)
class DataKind:
    """What one kind of training data is: a description, the axes of one input, and where it comes from."""

    name: str
    description: str
    #: Axes one input of this kind may have (e.g. a frame or a series of frames).
    ndim: tuple[int, ...]
    #: Command-line name of one input file.
    metavar: str = "INPUT"
    #: False for data the trainer makes itself (simulated).
    from_files: bool = True


#: Every data kind a trainer may declare.
DATA_KINDS: dict[str, DataKind] = {
    kind.name: kind
    for kind in (
        DataKind(
            "raw-frames",
            "raw frames (Y, X), a series (T, Y, X) or light-field views (A, Ny, Nx)",
            (2, 3, 4),
        ),
        DataKind("stacks", "anisotropic 3-D stacks (Z coarse, Y, X)", (3,), metavar="STACK"),
        DataKind("pairs", "measurement / ground-truth volume pairs", (3, 4), metavar="PAIR"),
        DataKind("images", "a set of 2-D images of one sample (N, Y, X)", (3,), metavar="IMAGES"),
        DataKind("simulated", "frames simulated from phantoms through the PSF", (), from_files=False),
    )
}


def data_kind(name: str) -> DataKind:
    """The :class:`DataKind` called ``name`` (``KeyError`` listing the known ones otherwise)."""
    try:
        return DATA_KINDS[name]
    except KeyError:
        raise UnknownName(f"unknown data kind {name!r}; known: {', '.join(DATA_KINDS)}") from None


def file_kinds(kinds: Sequence[str]) -> list[DataKind]:
    """The kinds among ``kinds`` that are read from files."""
    return [data_kind(k) for k in kinds if data_kind(k).from_files]


def describe_kinds(kinds: Sequence[str]) -> str:
    """One phrase listing what a trainer with ``kinds`` learns from (for hints and help)."""
    return " or ".join(data_kind(k).description for k in kinds) or "an image"


def allowed_ndim(kinds: Sequence[str]) -> list[int]:
    """The numbers of axes an input file/layer may have for a trainer with ``kinds``."""
    return sorted({n for kind in file_kinds(kinds) for n in kind.ndim})


@dataclass
class DataFile:
    """One training input read from a file: its name, its array and its voxel size when stated."""

    name: str
    data: np.ndarray
    voxel_size: tuple[float, ...] | None = None


@dataclass
class TrainingData:
    """The data handed to a trainer: the array (batch axis first) and a sentence on where it came from."""

    data: np.ndarray
    description: str


class TrainingDataSource(Protocol):
    """What a training engine provides so that files (or a simulation) become its training data."""

    trains: ClassVar[str | None]
    data_kinds: ClassVar[tuple[str, ...]]

    def training_data(self, files: Sequence[DataFile], psf: Any, simulated: TrainingData | None = None) -> TrainingData:
        """Combine the files (and simulated data) into the array the trainer's ``run`` takes."""
        ...

    def simulate(self, psf: Any, count: int, options: Any) -> TrainingData:
        """``count`` simulated inputs for ``psf`` (only for the ``"simulated"`` kind)."""
        ...


def stack_same_shape(files: Sequence[DataFile], what: str) -> np.ndarray:
    """The arrays of ``files`` as one batch (one file: its own array); refuses files of different shapes."""
    if not files:
        raise EngineInputError(f"nothing to train on: give {what}")
    shapes = {f.data.shape for f in files}
    if len(shapes) > 1:
        raise EngineInputError(f"the {what} must have one shape; got {sorted(shapes)} (train on one at a time)")
    return files[0].data if len(files) == 1 else np.stack([f.data for f in files])


def describe_files(files: Sequence[DataFile]) -> str:
    """``"a.tif [4, 64, 64], b.tif [4, 64, 64]"``: the files' names and shapes."""
    return ", ".join(f"{Path(f.name).name} {list(f.data.shape)}" for f in files)


__all__ = [
    "DATA_KINDS",
    "DataFile",
    "DataKind",
    "TrainingData",
    "TrainingDataSource",
    "allowed_ndim",
    "data_kind",
    "describe_files",
    "describe_kinds",
    "file_kinds",
    "stack_same_shape",
]
