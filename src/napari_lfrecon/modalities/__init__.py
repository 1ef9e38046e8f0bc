"""The modality registry: one module per kind of acquisition (layout, operator factory, memory model, GUI hints).

Every module of this package other than ``base`` defines ``MODALITY``, an
instance of a :class:`~napari_lfrecon.modalities.base.Modality` subclass, and
is registered when the package is imported: adding a modality is adding one
module (or calling :func:`register` from elsewhere). Callers ask the registry
instead of switching on strings::

    model = modalities.forward_model(psf, data.shape, boundary="padded")
    has_time, frame_ndim = modalities.for_psf(psf).frame_layout(psf, shape, axes)

No Qt; imports ``physics`` and ``psf`` only.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Sequence
from importlib import import_module
from typing import Any

from ..jobs.protocol import UnknownName
from .base import FRAME_RL_COPIES, ForwardModel, Modality

_REGISTRY: dict[str, Modality] = {}


def register(modality: Modality) -> Modality:
    """Add ``modality`` to the registry (replacing one of the same name) and return it.

    A modality with a PSF whose array layout :mod:`napari_lfrecon.psf.model`
    does not know must declare it in ``psf_array``; it is registered there so
    PSF objects of the new modality can be made and loaded.
    """
    if not isinstance(modality, Modality) or not modality.name:
        raise ValueError(f"register() takes a named Modality instance, got {modality!r}")
    if modality.needs_psf:
        from ..psf.model import psf_modalities, register_psf_layout

        if modality.psf_array is not None:
            register_psf_layout(modality.name, *modality.psf_array)
        elif modality.name not in psf_modalities():
            raise ValueError(f"modality {modality.name!r} needs a PSF: declare its PSF array layout in psf_array")
    _REGISTRY[modality.name] = modality
    return modality


def get(name: str) -> Modality:
    """The registered modality called ``name``; ``KeyError`` naming the available ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownName(f"unknown modality {name!r}; available: {', '.join(available())}") from None


def available() -> tuple[str, ...]:
    """Names of the registered modalities, in display order."""
    return tuple(sorted(_REGISTRY, key=lambda n: (_REGISTRY[n].order, n)))


def for_psf(psf: Any) -> Modality:
    """The modality of a PSF object (``ValueError`` for a missing PSF or an unknown modality)."""
    if psf is None:
        raise ValueError("no PSF given: the modality of the data cannot be told")
    name = getattr(psf, "modality", None)
    if name not in _REGISTRY:
        raise ValueError(f"unknown PSF modality {name!r}")
    return _REGISTRY[name]


def forward_model(psf: Any, data_shape: Sequence[int], *, boundary: str = "padded") -> ForwardModel:
    """The forward model for ``psf`` applied to measurements of ``data_shape`` (see :meth:`Modality.forward_model`)."""
    return for_psf(psf).forward_model(psf, data_shape, boundary=boundary)


def _register_builtin() -> None:
    """Import every module of this package and register its ``MODALITY``."""
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = import_module(f".{info.name}", __name__)
        register(module.MODALITY)


_register_builtin()

__all__ = [
    "FRAME_RL_COPIES",
    "ForwardModel",
    "Modality",
    "available",
    "for_psf",
    "forward_model",
    "get",
    "register",
]
