"""How result and sample layers are named and labelled, without Qt.

* :func:`result_name` — ``"<input> [<engine>]"`` for the first result; a repeat
  says what differs (``"lfm [rl 30 it, tv 0.01]"``) instead of napari's
  ``[1]``, ``[2]`` suffixes.
* :func:`axes_kwargs` — napari ``units`` and ``axis_labels`` layer keywords for
  an array whose last axes are spatial (µm) and whose leading axis may be time.
* :func:`is_ground_truth` and :func:`input_candidates` — ground-truth layers are
  never a default input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

#: The spatial unit napari shows on the scale bar and the sliders.
SPATIAL_UNIT = "µm"
#: Parameters that never change a result (how often previews are sent): left out of names.
NAME_SKIPPED_PARAMS = frozenset({"preview_every", "checkpoint_every", "log_every"})
#: Short forms of frequent parameter names in result names.
PARAM_ABBREVIATIONS = {"iterations": "it", "tv_weight": "tv", "background": "bg", "anisotropy": "×", "steps": "steps"}
#: Parameters shown in a repeat's name even at their default (the run's size).
ALWAYS_NAMED = ("iterations", "steps")


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and ("/" in value or "\\" in value):
        return Path(value).name  # a weights file: its name says enough
    return str(value)


def describe_params(params: Any) -> str:
    """``"30 it, tv 0.01"``: the run size and every parameter that differs from its default.

    ``params`` is an engine's ``Params`` dataclass instance (a mapping is
    described in full, without defaults to compare against).
    """
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        values = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
        defaults = {
            f.name: f.default if f.default is not dataclasses.MISSING else None for f in dataclasses.fields(params)
        }
    elif isinstance(params, Mapping):
        values, defaults = dict(params), {}
    else:
        return ""
    parts = []
    for name, value in values.items():
        if name in NAME_SKIPPED_PARAMS:
            continue
        if name in defaults and value == defaults[name] and name not in ALWAYS_NAMED:
            continue
        short = PARAM_ABBREVIATIONS.get(name, name)
        text = _format_value(value)
        parts.append(f"{text} {short}" if short in ("it", "steps") else f"{short} {text}")
    return ", ".join(parts)


def result_name(input_name: str, engine: str, params: Any, existing: Collection[str], suffix: str = "") -> str:
    """The name of a new result layer of ``engine`` on ``input_name``.

    The first result is ``"<input> [<engine><suffix>]"``; when a layer of that
    name exists, the name says the run's parameters (``"lfm [rl 30 it, tv 0.01]"``).
    If that too exists napari's own numbering is the last resort.
    """
    plain = f"{input_name} [{engine}{suffix}]"
    if plain not in existing:
        return plain
    described = describe_params(params)
    return f"{input_name} [{engine} {described}{suffix}]" if described else plain


def axes_kwargs(ndim: int, spatial_ndim: int, *, time_first: bool = False) -> dict[str, Any]:
    """napari ``units`` and ``axis_labels`` for an array whose last ``spatial_ndim`` axes are in µm.

    ``spatial_ndim`` is 2 (y, x) or 3 (z, y, x); a leading time axis (``time_first``)
    is labelled ``t``; other leading axes (batch, views) keep napari's defaults.
    """
    spatial_ndim = min(max(spatial_ndim, 0), ndim, 3)
    spatial = ("z", "y", "x")[3 - spatial_ndim :]
    leading = ndim - spatial_ndim
    if time_first and leading >= 1:
        lead_labels: tuple[str, ...] = (*(f"axis {i}" for i in range(leading - 1)), "t")
    else:
        lead_labels = tuple(f"axis {i}" for i in range(leading))
    labels = (*lead_labels, *spatial)
    # a time axis's step is a frame unless the file says otherwise: no unit claimed for it
    units = ("pixel",) * leading + (SPATIAL_UNIT,) * spatial_ndim
    return {"units": units, "axis_labels": labels}


def is_ground_truth(metadata: Mapping[str, Any] | None) -> bool:
    """True for layers marked ``metadata["ground_truth"]`` (sample answers: never an input by default)."""
    return bool((metadata or {}).get("ground_truth"))


def input_candidates(names: Sequence[str], truths: Collection[str]) -> list[str]:
    """``names`` without the ground-truth layers (the ones a default input may be chosen from)."""
    return [name for name in names if name not in truths]
