"""Model weights files: ``safetensors`` tensors plus one JSON header; loading never runs code.

File format: a ``safetensors`` file whose tensors are the model's ``state_dict``
(any extra tensors, e.g. optimiser moments in a checkpoint, use their own name
prefix) and whose string metadata holds one JSON document under the key
``napari_lfrecon.weights``. The header names at least the ``engine`` and a
``version``; engines add their ``config`` (how to build the network), the
``optics`` the weights were trained for and the ``training`` command and
settings. ``safetensors`` stores raw arrays only, so reading a file can never
execute code from it (unlike pickle-based ``torch.load``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..jobs.protocol import DamagedFile
from .damage import describe, reading

#: The safetensors metadata key that holds the JSON header.
HEADER_KEY = "napari_lfrecon.weights"
#: Header fields every weights file must have.
REQUIRED_FIELDS = ("engine", "version")


def save_weights(path: str | Path, tensors: Mapping[str, torch.Tensor | np.ndarray], header: Mapping[str, Any]) -> Path:
    """Write ``tensors`` and the JSON-able ``header`` to ``path`` (one safetensors file); return the path.

    The header must name ``engine`` and ``version``. Tensors are stored
    contiguous on the CPU in their own dtype. The file is written to a
    temporary name first and renamed, so a crash never leaves half a file
    under ``path`` (checkpoints are overwritten while training).
    """
    from safetensors.torch import save_file

    missing = [name for name in REQUIRED_FIELDS if name not in header]
    if missing:
        raise ValueError(f"a weights header needs {list(REQUIRED_FIELDS)}; missing {missing}")
    try:
        text = json.dumps(dict(header))
    except TypeError as exc:
        raise ValueError(f"the weights header must be JSON-serialisable: {exc}") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = {name: torch.as_tensor(value).detach().to("cpu").contiguous() for name, value in tensors.items()}
    partial = path.with_name(path.name + ".partial")
    save_file(stored, str(partial), metadata={HEADER_KEY: text})
    partial.replace(path)
    return path


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a weights file, without reading its tensors.

    A file that is not safetensors, or whose header is not a JSON object
    naming ``engine`` and ``version``, raises :class:`DamagedFile` (a ``ValueError``).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    with reading(path):
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
        except Exception as exc:  # safetensors raises its own error types for foreign files
            raise DamagedFile(path, f"not a safetensors weights file ({describe(exc)})") from exc
        if HEADER_KEY not in metadata:
            raise DamagedFile(path, f"a safetensors file but not napari-lfrecon weights (no '{HEADER_KEY}' header)")
        try:
            header = json.loads(metadata[HEADER_KEY])
        except (json.JSONDecodeError, TypeError) as exc:
            raise DamagedFile(path, f"the weights header is not JSON ({describe(exc)})") from exc
    if not isinstance(header, dict) or any(name not in header for name in REQUIRED_FIELDS):
        raise DamagedFile(path, f"the weights header must be a JSON object with {list(REQUIRED_FIELDS)}")
    if not isinstance(header["engine"], str):
        raise DamagedFile(path, f"the weights header's 'engine' must be a name, got {header['engine']!r}")
    return header


def load_weights(path: str | Path, *, engine: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read ``(tensors, header)`` from a weights file written by :func:`save_weights`.

    With ``engine``, a file made for another engine raises ``ValueError``
    naming both. Tensors come back on the CPU. A damaged file (header or
    tensors) raises :class:`DamagedFile`.
    """
    from safetensors.torch import load_file

    header = read_header(path)
    if engine is not None and header["engine"] != engine:
        raise ValueError(f"{path} holds weights for engine {header['engine']!r}, not {engine!r}")
    with reading(path):
        try:
            tensors = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for truncated or mangled tensors
            raise DamagedFile(path, f"its tensors cannot be read ({describe(exc)})") from exc
    return tensors, header


def check_tensors(path: str | Path, tensors: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """Refuse weights whose tensor names or shapes differ from ``expected`` (e.g. a model's ``state_dict``).

    Raises :class:`DamagedFile` naming the missing, unexpected and wrongly
    shaped tensors (a few of each), before ``load_state_dict`` would fail with
    a raw ``RuntimeError``. Extra tensors under other prefixes (e.g. optimiser
    state in a checkpoint) are the caller's to drop first.
    """
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{name} {tuple(tensors[name].shape)} (expected {tuple(expected[name].shape)})"
        for name in sorted(set(tensors) & set(expected))
        if tuple(tensors[name].shape) != tuple(expected[name].shape)
    ]
    problems = [
        f"{label}: {', '.join(names[:_LISTED])}{' …' if len(names) > _LISTED else ''}"
        for label, names in (("missing tensors", missing), ("unexpected tensors", unexpected), ("shapes", wrong))
        if names
    ]
    if problems:
        raise DamagedFile(path, "weights do not fit the network (" + "; ".join(problems) + ")")


#: How many names of each kind a tensor-mismatch message lists.
_LISTED = 5


__all__ = ["HEADER_KEY", "check_tensors", "load_weights", "read_header", "save_weights"]
