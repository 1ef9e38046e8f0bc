"""Build the forward operator that matches a PSF's modality and the data's shape.

This is the one place that knows how measurement arrays map onto operators,
so the RL engine, the simulators and later engines agree on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..psf.model import PSF
from .convolve import Convolve3D
from .fft_util import crop_centred

#: The measurement layouts accepted per modality, for error messages.
EXPECTED_DATA = {
    "widefield": "a 3D (Z, Y, X) stack",
    "lfm": "a 2D lenslet-aligned raw light field (Y, X) or its views (A, Y', X')",
    "xlfm": "a 2D raw XLFM sensor frame (Y, X)",
}


@dataclass
class ForwardModel:
    """A linear operator plus how data and volume arrays map onto it.

    ``operator.forward`` takes ``(B, *volume_shape)`` and returns ``(B, *data_shape)``;
    ``prepare`` turns the user's measurement array into ``data_shape``;
    ``output_slices`` crop the volume to what is returned to the user.
    """

    operator: nn.Module
    volume_shape: tuple[int, ...]
    data_shape: tuple[int, ...]
    output_slices: tuple[slice, ...]
    voxel_size: tuple[float, float, float]
    layout: str = ""

    def prepare(self, data: np.ndarray) -> np.ndarray:
        """The measurement in the operator's data layout (views for LFM raw frames)."""
        if self.layout == "lfm-raw":
            from .lightfield import raw_to_views

            return raw_to_views(data, int(self._nnum))
        return data

    def crop_output(self, volume: torch.Tensor) -> torch.Tensor:
        """The part of a ``(B, *volume_shape)`` volume returned to the user."""
        return volume[(...,) + self.output_slices]

    _nnum: int = 0


def operator_for_psf(psf: PSF, data_shape: tuple[int, ...], *, boundary: str = "padded") -> ForwardModel:
    """The forward model for ``psf`` applied to measurements of ``data_shape``.

    Raises ``ValueError`` naming what was expected when the data does not fit
    the PSF's modality or size.
    """
    data_shape = tuple(int(n) for n in data_shape)
    modality = psf.modality
    if modality == "widefield":
        if len(data_shape) != 3:
            raise ValueError(f"a widefield PSF needs {EXPECTED_DATA['widefield']}, got data of shape {data_shape}")
        kernel = torch.as_tensor(np.asarray(psf.array, dtype=np.float32))
        if boundary == "circular":
            kernel = crop_centred(kernel, data_shape)
        op = Convolve3D(kernel, data_shape, boundary=boundary)  # type: ignore[arg-type]
        slices = tuple(slice(o, o + n) for o, n in zip(op.data_offset, data_shape, strict=True))
        return ForwardModel(op, op.volume_shape, data_shape, slices, psf.voxel_size, "widefield")
    if modality == "lfm":
        return _lfm_model(psf, data_shape)
    if modality == "xlfm":
        return _xlfm_model(psf, data_shape)
    raise ValueError(f"unknown PSF modality {modality!r}")


def _lfm_model(psf: PSF, data_shape: tuple[int, ...]) -> ForwardModel:
    from .phase_space import PhaseSpaceLF

    n_views, depth = psf.array.shape[:2]
    nnum = int(psf.optics.get("pixels_per_lenslet", 0))
    s = int(psf.optics.get("supersample", 1))
    if len(data_shape) == 2:
        if nnum <= 0 or data_shape[0] % nnum or data_shape[1] % nnum:
            raise ValueError(
                f"a raw light field must be a whole number of lenslets of {nnum}×{nnum} pixels; got {data_shape}"
            )
        layout = "lfm-raw"
        lenslets = (data_shape[0] // nnum, data_shape[1] // nnum)
        views_shape = (n_views, *lenslets)
    elif len(data_shape) == 3:
        if data_shape[0] != n_views:
            raise ValueError(f"the light-field views have {data_shape[0]} angles but the PSF has {n_views}")
        layout = "lfm-views"
        lenslets = (data_shape[1], data_shape[2])
        views_shape = data_shape
    else:
        raise ValueError(f"an LFM PSF needs {EXPECTED_DATA['lfm']}, got data of shape {data_shape}")
    volume_shape = (depth, lenslets[0] * s, lenslets[1] * s)
    op = PhaseSpaceLF(psf.array, s, volume_shape)
    volume_shape = tuple(getattr(op, "volume_shape", volume_shape))
    model = ForwardModel(
        op, volume_shape, tuple(views_shape), tuple(slice(0, n) for n in volume_shape), psf.voxel_size, layout
    )
    model._nnum = nnum
    return model


def _xlfm_model(psf: PSF, data_shape: tuple[int, ...]) -> ForwardModel:
    from .xlfm import XLFMProjector

    if len(data_shape) != 2:
        raise ValueError(f"an XLFM PSF needs {EXPECTED_DATA['xlfm']}, got data of shape {data_shape}")
    depth, height, width = psf.array.shape
    if (height, width) != data_shape:
        raise ValueError(f"the XLFM frame is {data_shape} but the PSF's sensor is {(height, width)}")
    view_size = tuple(int(v) for v in psf.optics["view_size"])
    volume_shape = tuple(int(v) for v in psf.optics.get("volume_shape", (depth, *view_size)))
    op = XLFMProjector(psf.array, psf.arrays["centres"], view_size, volume_shape)
    return ForwardModel(op, volume_shape, data_shape, tuple(slice(0, n) for n in volume_shape), psf.voxel_size, "xlfm")


def describe_expected(modality: str) -> str:
    """What measurement layout a modality expects (for messages)."""
    return EXPECTED_DATA.get(modality, "?")


__all__: list[Any] = ["ForwardModel", "operator_for_psf", "describe_expected"]
