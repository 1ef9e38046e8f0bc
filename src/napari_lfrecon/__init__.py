"""napari-lfrecon: physics-informed volume reconstruction for light-field, XLFM and widefield microscopy.

Scripting API (stable): :func:`load_sample`, :func:`reconstruct`,
:func:`napari_lfrecon.engines.available`. Every subpackage the README names
(``engines``, ``jobs``, ``physics``, ``psf``, ``data``, ``io``, ``metrics``,
``device``) is reachable right after ``import napari_lfrecon``, loaded on first
use. Importing this package does not import Qt or napari.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from .jobs.protocol import Volume

#: Subpackages and modules loaded on first attribute access (``nl.engines.available()`` works at once).
_SUBMODULES = ("engines", "jobs", "physics", "psf", "data", "io", "metrics", "device", "camera", "modalities")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return import_module(f".{name}", __name__)
    if name == "Volume":
        from .jobs.protocol import Volume

        return Volume
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_sample(name: str) -> dict[str, Any]:
    """Load a shipped sample: a mapping with ``data``, ``psf``, ``voxel_size`` and, when simulated, ``ground_truth``.

    See :func:`napari_lfrecon.samples.load_sample`.
    """
    from .samples import load_sample as _load

    return _load(name)


def reconstruct(engine_name: str, data: Any, psf: Any = None, **params: Any) -> Volume:
    """Run engine ``engine_name`` on ``data`` to completion and return a :class:`Volume`.

    See :func:`napari_lfrecon.api.reconstruct` for the arguments.
    """
    from .api import reconstruct as _reconstruct

    return _reconstruct(engine_name, data, psf, **params)


__all__ = ["Volume", "__version__", "load_sample", "reconstruct"]
