"""Differentiable forward operators (torch ``nn.Module``s with ``forward`` and, when linear, ``adjoint``); no Qt.

Every operator subclasses :class:`~napari_lfrecon.physics.base.Operator`; the
linear ones subclass :class:`~napari_lfrecon.physics.base.LinearOperator`.
Operators take arrays, never PSF objects: building the operator for a PSF is
the job of :mod:`napari_lfrecon.modalities` (``modalities.forward_model``).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .axial import AxialDegradation
from .base import LinearOperator, Operator
from .convolve import Convolve3D

_LAZY = {
    "PhaseSpaceLF": ".phase_space",
    "XLFMProjector": ".xlfm",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AxialDegradation", "Convolve3D", "LinearOperator", "Operator", "PhaseSpaceLF", "XLFMProjector"]
