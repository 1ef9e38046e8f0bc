"""Engine parameters: one ``Params`` dataclass per engine drives the GUI form, the CLI flags and validation.

Each field has a default and ``metadata`` built with :func:`param` (range,
one-line help, choices). :func:`make_params` checks type, finiteness and
range once, for every interface.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .protocol import EngineInputError

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


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


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, (bool, int)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise EngineInputError(f"parameter {name!r} must be true or false, got {value!r}")


def _as_number(name: str, value: Any, kind: type) -> float | int:
    if isinstance(value, bool) or value is None:
        raise EngineInputError(f"parameter {name!r} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise EngineInputError(f"parameter {name!r} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise EngineInputError(f"parameter {name!r} must be a finite number, got {value!r}")
    if kind is int:
        if not number.is_integer():
            raise EngineInputError(f"parameter {name!r} must be an integer, got {value!r}")
        return int(number)
    return number


def make_params(params_cls: type, values: dict[str, Any]) -> Any:
    """Build and validate a ``Params`` instance.

    Unknown names, wrong types, NaN/Inf and out-of-range values raise
    :class:`EngineInputError` (a ``ValueError``) naming the parameter and what
    it accepts.
    """
    specs = {s["name"]: s for s in param_specs(params_cls)}
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise EngineInputError(f"unknown parameter(s) {unknown}; this engine takes {sorted(specs)}")
    checked: dict[str, Any] = {}
    for name, value in values.items():
        spec = specs[name]
        kind = spec["type"]
        if kind is bool:
            value = _as_bool(name, value)
        elif kind in (int, float):
            value = _as_number(name, value, kind)
        elif kind is str:
            if not isinstance(value, str):
                raise EngineInputError(f"parameter {name!r} must be text, got {value!r}")
        if spec["choices"] is not None and value not in spec["choices"]:
            raise EngineInputError(f"parameter {name!r} must be one of {spec['choices']}, got {value!r}")
        if spec["min"] is not None and value < spec["min"]:
            raise EngineInputError(f"parameter {name!r} must be ≥ {spec['min']}, got {value}")
        if spec["max"] is not None and value > spec["max"]:
            raise EngineInputError(f"parameter {name!r} must be ≤ {spec['max']}, got {value}")
        checked[name] = value
    return params_cls(**checked)


def jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with everything that is not a plain JSON scalar or list turned into its string."""
    plain = (int, float, str, bool, type(None), list)
    return {k: (v if isinstance(v, plain) else str(v)) for k, v in values.items()}
