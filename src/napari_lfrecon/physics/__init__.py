"""Differentiable forward operators (torch ``nn.Module``s with ``forward`` and ``adjoint``); no Qt."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .axial import AxialDegradation
from .convolve import Convolve3D

_LAZY = {
    "PhaseSpaceLF": ".phase_space",
    "XLFMProjector": ".xlfm",
    "operator_for_psf": ".operators",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AxialDegradation", "Convolve3D", "PhaseSpaceLF", "XLFMProjector", "operator_for_psf"]
