"""Memory sizes as people write them (``512MiB``, ``2G``, ``64 MB``) and back."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int | float) -> int:
    """Bytes in ``text``: a number with an optional unit (``B``, ``kB``/``MB``/``GB`` = powers of 1000,
    ``KiB``/``MiB``/``GiB`` = powers of 1024; a bare ``K``/``M``/``G`` means 1000s). Raises ``ValueError``.
    """
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        match = _SIZE.match(str(text))
        if match is None:
            raise ValueError(f"expected a memory size such as '512MiB' or '2GB', got {text!r}")
        value, unit = float(match.group(1)), match.group(2).lower()
    if unit not in _UNITS:
        raise ValueError(f"unknown size unit {unit!r} in {text!r}; use B, kB, MB, GB, KiB, MiB or GiB")
    size = int(value * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"a memory size must be positive, got {text!r}")
    return size


def format_size(nbytes: float) -> str:
    """``nbytes`` in binary units with three significant figures, e.g. ``'64.0 MiB'``."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.3g} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.3g} TiB"  # pragma: no cover  (loop always returns)
