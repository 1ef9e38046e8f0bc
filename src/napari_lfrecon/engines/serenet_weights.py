"""SeReNet weights: the optics they were trained for, matching against a PSF, the shipped default.

A weights file (see :mod:`napari_lfrecon.io.weights`) carries the network's
``config`` and the ``optics`` of the PSF used in training. Weights only make
sense for the same optics (views, depths, supersampling, kernels), so loading
compares them with the PSF at hand and says exactly what differs (the
generic matching is :mod:`napari_lfrecon.training.weights`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io.weights import check_tensors
from ..psf.model import PSF
from ..training.weights import GEOMETRY_FIELDS, check_optics, read_weights, write_weights
from ..training.weights import optics_mismatches as generic_mismatches
from ..training.weights import optics_signature as generic_signature
from ..training.weights import weights_header as generic_header
from .base import EngineInputError
from .serenet_model import SeReNetConfig, SeReNetNet

ENGINE_NAME = "serenet"
#: Version of the SeReNet weights layout (bump when the network or its input changes meaning).
WEIGHTS_VERSION = 1
#: File name of the weights shipped for the LFM sample's optics, in ``sample_data/``.
SHIPPED_WEIGHTS_NAME = "serenet_lfm.safetensors"
#: Optics fields that must agree for weights to apply (numbers compared to a relative 1e-6).
MATCHED_OPTICS = (
    "magnification",
    "na",
    "immersion_index",
    "wavelength_um",
    "lenslet_pitch_um",
    "lenslet_focal_um",
    "camera_pixel_um",
    "pixels_per_lenslet",
    "supersample",
)


def shipped_weights_path() -> Path:
    """Where the weights for the shipped LFM sample live (the file may be missing in a source checkout)."""
    from ..io.resources import sample_dir

    return sample_dir() / SHIPPED_WEIGHTS_NAME


def optics_signature(psf: PSF, *, with_hash: bool = True) -> dict[str, Any]:
    """What weights record about the PSF they were trained for (JSON-able); ``with_hash`` adds the array's hash."""
    return generic_signature(psf, MATCHED_OPTICS, with_hash=with_hash)


def optics_mismatches(expected: dict[str, Any], psf: PSF) -> list[str]:
    """Human-readable differences between recorded optics and ``psf`` (empty when the weights apply).

    The PSF array's hash is not compared: the same optics recomputed on
    another machine may differ in the last bits; everything physical is.
    """
    given = optics_signature(psf, with_hash=False)  # hashing a large PSF costs ~1 s per call
    return generic_mismatches(expected, given, (*MATCHED_OPTICS, *GEOMETRY_FIELDS))


def weights_header(config: SeReNetConfig, psf: PSF, training: dict[str, Any]) -> dict[str, Any]:
    """The JSON header of a SeReNet weights file."""
    return generic_header(ENGINE_NAME, WEIGHTS_VERSION, config.to_dict(), training, optics=optics_signature(psf))


def save_model(path: str | Path, model: SeReNetNet, psf: PSF, training: dict[str, Any]) -> Path:
    """Write ``model`` as SeReNet weights for ``psf``'s optics."""
    return write_weights(path, model, weights_header(model.config, psf, training))


def load_model(path: str | Path, psf: PSF | None = None) -> tuple[SeReNetNet, dict[str, Any]]:
    """Build the network from a weights file; with ``psf``, refuse weights trained for other optics.

    Raises :class:`EngineInputError` naming what the weights expect and what was given.
    """
    tensors, header = read_weights(path, engine=ENGINE_NAME, version=WEIGHTS_VERSION, retrain="lfrecon train serenet")
    if psf is not None:
        check_optics(
            header.get("optics", {}),
            psf,
            MATCHED_OPTICS,
            weights_name=f"the SeReNet weights {Path(path).name}",
            remedy="Train weights for this PSF with `lfrecon train serenet INPUT… --psf PSF --out WEIGHTS` "
            "(or the Train widget) and pass them as 'weights'.",
        )
    config = SeReNetConfig.from_dict(header["config"])
    model = SeReNetNet(config)
    check_tensors(path, tensors, model.state_dict())
    model.load_state_dict(tensors)
    model.eval()
    return model, header


def default_weights_for(psf: PSF) -> Path:
    """The shipped weights if they fit ``psf``; otherwise an :class:`EngineInputError` saying what is needed."""
    from ..io.weights import read_header

    path = shipped_weights_path()
    if not path.is_file():
        raise EngineInputError(
            "no SeReNet weights given and none are shipped in this installation: train weights with "
            "`lfrecon train serenet INPUT… --psf PSF --out WEIGHTS` and pass them as 'weights'"
        )
    problems = optics_mismatches(read_header(path).get("optics", {}), psf)
    if problems:
        raise EngineInputError(
            "no SeReNet weights given, and the shipped weights (for the LFM sample's optics) do not fit this PSF: "
            + "; ".join(problems)
            + ". Train weights for this PSF with `lfrecon train serenet INPUT… --psf PSF --out WEIGHTS` "
            "and pass them as 'weights'."
        )
    return path
