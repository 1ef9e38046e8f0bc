"""The engine protocol: every reconstruction, training and fitting job streams ``Update``s.

An engine is a class with ``name``, ``modalities``, a ``Params`` dataclass and
``run(inputs, params, *, device, should_stop) -> Iterator[Update]``. The GUI
form and the CLI flags are generated from ``Params``: each field has a default
and ``metadata`` built with :func:`param` (range, one-line help, choices).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from ..psf.model import PSF

UpdateKind = Literal["progress", "preview", "metric", "result"]


class EngineInputError(ValueError):
    """Raised for input an engine cannot use; the message says what was expected."""


@dataclass
class Update:
    """One step of a running engine.

    ``kind``: ``progress`` (``fraction`` and ``message`` only), ``preview`` (``data``
    is a full-size float32 volume, partial or improving), ``metric`` (``data`` is
    ``(name, value)``) or ``result`` (the last update; ``data`` is the final volume).
    """

    kind: UpdateKind
    fraction: float = 0.0
    message: str = ""
    data: Any = None


@dataclass
class Inputs:
    """What an engine reconstructs from.

    ``data`` is the measurement in photo-electrons (already converted by
    :class:`napari_lfrecon.camera.Camera`), never modified by the engine.
    ``voxel_size`` is the data's ``(dz, dy, dx)`` in µm when known.
    """

    data: np.ndarray
    psf: PSF | None = None
    voxel_size: tuple[float, float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def param(
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[Any, ...] | None = None,
) -> dict[str, Any]:
    """Metadata for a ``Params`` field: one-line help, numeric range or choices."""
    return {"help": help, "min": min, "max": max, "choices": choices}


def param_specs(params_cls: type) -> list[dict[str, Any]]:
    """The fields of a ``Params`` dataclass as plain dicts (name, type, default, help, range, choices)."""
    specs = []
    for f in dataclasses.fields(params_cls):
        meta = dict(f.metadata)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        specs.append(
            {
                "name": f.name,
                "type": type(default),
                "default": default,
                "help": meta.get("help", ""),
                "min": meta.get("min"),
                "max": meta.get("max"),
                "choices": meta.get("choices"),
            }
        )
    return specs


def make_params(params_cls: type, values: dict[str, Any]) -> Any:
    """Build and validate a ``Params`` instance; unknown names and out-of-range values raise ``ValueError``."""
    specs = {s["name"]: s for s in param_specs(params_cls)}
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; this engine takes {sorted(specs)}")
    checked: dict[str, Any] = {}
    for name, value in values.items():
        spec = specs[name]
        kind = spec["type"]
        if kind is bool:
            value = bool(value)
        elif kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"parameter {name!r} must be an integer, got {value}")
            value = int(value)
        elif kind is float:
            value = float(value)
        if spec["choices"] is not None and value not in spec["choices"]:
            raise ValueError(f"parameter {name!r} must be one of {spec['choices']}, got {value!r}")
        if spec["min"] is not None and value < spec["min"]:
            raise ValueError(f"parameter {name!r} must be ≥ {spec['min']}, got {value}")
        if spec["max"] is not None and value > spec["max"]:
            raise ValueError(f"parameter {name!r} must be ≤ {spec['max']}, got {value}")
        checked[name] = value
    return params_cls(**checked)


class Engine:
    """Base class of every engine. Subclasses set the class attributes and implement ``run``."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    #: ``"reconstruct"`` (measurement → volume), ``"train"`` (writes weights) or ``"calibrate"`` (fits a PSF):
    #: the Reconstruct widget and the benchmark list only reconstruction engines.
    kind: ClassVar[str] = "reconstruct"
    modalities: ClassVar[tuple[str, ...]] = ()
    #: False for engines that work from the data alone (niiv): the GUI then asks for no PSF.
    needs_psf: ClassVar[bool] = True
    Params: ClassVar[type] = object

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

    def output_voxel_size(self, inputs: Inputs) -> tuple[float, float, float] | None:
        """The voxel size of the volume this engine returns for ``inputs`` (µm), if known."""
        if inputs.psf is not None:
            return inputs.psf.voxel_size
        return inputs.voxel_size
