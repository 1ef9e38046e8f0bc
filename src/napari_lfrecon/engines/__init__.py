"""Engines and their registry: the GUI, the CLI and the scripting API all read it."""

from __future__ import annotations

from ..jobs.protocol import UnknownName
from .base import Engine, EngineInputError, Inputs, Update, make_params, param, param_specs

_REGISTRY: dict[str, type[Engine]] = {}
_BUILTINS_LOADED = False


def register(engine_cls: type[Engine]) -> type[Engine]:
    """Add an engine class to the registry (usable as a class decorator)."""
    if not engine_cls.name:
        raise ValueError(f"{engine_cls.__name__} has no name")
    _REGISTRY[engine_cls.name] = engine_cls
    return engine_cls


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        from . import (
            bead_fit,  # noqa: F401  (registers bead-fit)
            calibrate_lightfield,  # noqa: F401  (registers lightfield-calibrate)
            calibrate_xlfm,  # noqa: F401  (registers xlfm-calibrate)
            niiv,  # noqa: F401  (registers niiv)
            niiv_train,  # noqa: F401  (registers niiv-train)
            rl,  # noqa: F401  (registers itself)
            serenet,  # noqa: F401  (registers serenet)
            serenet_train,  # noqa: F401  (registers serenet-train)
        )


def available(kind: str | None = None) -> list[str]:
    """Names of the registered engines, sorted; with ``kind`` (e.g. ``"reconstruct"``) only engines of that kind."""
    _load_builtins()
    return sorted(name for name, cls in _REGISTRY.items() if kind is None or cls.kind == kind)


def trainer_for(engine_name: str) -> str | None:
    """The registered training engine that writes weights for ``engine_name`` (its ``trains``), if any."""
    _load_builtins()
    for name in sorted(_REGISTRY):
        if _REGISTRY[name].trains == engine_name:
            return name
    return None


def get(name: str) -> Engine:
    """An instance of the engine called ``name``; unknown names raise :class:`UnknownName` listing the known ones."""
    _load_builtins()
    try:
        return _REGISTRY[name]()
    except (KeyError, TypeError):  # TypeError: an unhashable "name"
        raise UnknownName(f"unknown engine {name!r}; available engines: {', '.join(sorted(_REGISTRY))}") from None


__all__ = [
    "Engine",
    "EngineInputError",
    "Inputs",
    "Update",
    "available",
    "get",
    "make_params",
    "param",
    "param_specs",
    "register",
    "trainer_for",
]
