"""Trained weights: the header every trainer writes, version checks, and weights ↔ optics matching.

A weights file (see :mod:`napari_lfrecon.io.weights`) names the ``engine``
it is for, a ``version`` of its layout, the network ``config``, how it was
trained (``training``: command, data, settings, steps, losses) and, for
engines whose weights only apply to one optical set-up, the ``optics`` they
were trained for. :func:`optics_signature` records those optics from a PSF
object (any object with ``optics``, ``z_planes_um``, ``array`` and
``voxel_size``: this module does not import :mod:`napari_lfrecon.psf`), and
:func:`optics_mismatches` / :func:`check_optics` compare a recorded signature
with the PSF at hand, so an engine refuses mismatching weights with a
message that says exactly what differs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io.weights import load_weights, save_weights
from ..jobs.protocol import EngineInputError

#: Numbers in an optics signature agree when within this relative difference.
OPTICS_REL_TOLERANCE = 1e-6
#: Geometry every signature records besides the named optics fields (compared unless told otherwise).
GEOMETRY_FIELDS = ("psf_shape", "z_planes_um")


class OpticsMismatch(EngineInputError):
    """Weights trained for other optics than the PSF at hand; the message lists every difference."""


def weights_header(
    engine: str, version: int, config: Mapping[str, Any], training: Mapping[str, Any], **extra: Any
) -> dict[str, Any]:
    """The JSON header of a trained-weights file (``extra``: e.g. ``optics`` or ``anisotropy``)."""
    return {
        "engine": engine,
        "version": int(version),
        "config": dict(config),
        **extra,
        "training": dict(training),
        "torch": torch.__version__,
    }


def write_weights(path: str | Path, model: torch.nn.Module, header: Mapping[str, Any]) -> Path:
    """Write ``model``'s ``state_dict`` with ``header`` (from :func:`weights_header`); return the path."""
    return save_weights(path, model.state_dict(), header)


def read_weights(
    path: str | Path, *, engine: str, version: int, retrain: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, header)`` of weights for ``engine`` at layout ``version``.

    Raises :class:`EngineInputError` for another engine's file, a foreign
    file, or another version (``retrain`` names the command that makes new
    weights, e.g. ``"lfrecon train niiv"``).
    """
    try:
        tensors, header = load_weights(path, engine=engine)
    except ValueError as exc:
        raise EngineInputError(str(exc)) from exc
    if int(header.get("version", -1)) != int(version):
        raise EngineInputError(
            f"{path}: {engine} weights version {header.get('version')} cannot be read by this version "
            f"(expects {version}); retrain with `{retrain}`"
        )
    return tensors, header


def psf_fingerprint(psf: Any) -> str:
    """A short hash of the PSF array (float32 bytes): tells whether two PSFs are the same computation."""
    data = np.ascontiguousarray(np.asarray(psf.array, dtype=np.float32))
    return hashlib.sha256(memoryview(data).cast("B")).hexdigest()[:16]


def optics_signature(psf: Any, fields: Sequence[str], *, with_hash: bool = True) -> dict[str, Any]:
    """What weights record about the PSF they were trained for (JSON-able).

    ``fields`` are keys of ``psf.optics`` (NA, wavelength, …); the depths,
    the array's shape and the voxel size are always recorded, and
    ``with_hash`` adds a hash of the array (costly for large PSFs).
    """
    signature: dict[str, Any] = {k: psf.optics.get(k) for k in fields}
    signature["z_planes_um"] = [float(z) for z in psf.z_planes_um]
    signature["psf_shape"] = [int(n) for n in psf.array.shape]
    signature["voxel_size_um"] = [float(v) for v in psf.voxel_size]
    if with_hash:
        signature["psf_sha256_16"] = psf_fingerprint(psf)
    return signature


def optics_mismatches(
    expected: Mapping[str, Any], given: Mapping[str, Any], fields: Sequence[str], *, what: str = "weights"
) -> list[str]:
    """``"key: weights expect A, the PSF has B"`` for every field of ``fields`` that differs (empty: they match).

    Numbers are compared to a relative :data:`OPTICS_REL_TOLERANCE` (the same
    optics recomputed elsewhere may differ in the last bits); other values
    must be equal, and a value missing on one side only is a difference.
    """
    problems = []
    for key in fields:
        want, have = expected.get(key), given.get(key)
        if not values_close(want, have):
            problems.append(f"{key}: {what} expect {want}, the PSF has {have}")
    return problems


def check_optics(
    expected: Mapping[str, Any], psf: Any, fields: Sequence[str], *, weights_name: str, remedy: str
) -> None:
    """Raise :class:`OpticsMismatch` listing what differs when weights for ``expected`` do not fit ``psf``.

    ``fields`` are the optics fields compared (the depths and the PSF's shape
    are compared too); ``remedy`` ends the message (e.g. the training command).
    """
    given = optics_signature(psf, fields, with_hash=False)
    problems = optics_mismatches(expected, given, (*fields, *GEOMETRY_FIELDS))
    if problems:
        raise OpticsMismatch(f"{weights_name} were trained for other optics: " + "; ".join(problems) + f". {remedy}")


def values_close(a: Any, b: Any) -> bool:
    """True when two recorded values agree (numbers and number lists to a relative 1e-6; others exactly)."""
    if a is None or b is None:
        return a is b
    try:
        x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    except (TypeError, ValueError):
        return a == b
    if x.shape != y.shape:
        return False
    return bool(np.all(np.abs(x - y) <= OPTICS_REL_TOLERANCE * np.maximum(np.abs(x), np.abs(y)) + 1e-12))


__all__ = [
    "GEOMETRY_FIELDS",
    "OPTICS_REL_TOLERANCE",
    "OpticsMismatch",
    "check_optics",
    "optics_mismatches",
    "optics_signature",
    "psf_fingerprint",
    "read_weights",
    "values_close",
    "weights_header",
    "write_weights",
]
