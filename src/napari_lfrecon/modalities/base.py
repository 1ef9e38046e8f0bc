"""What a modality is: its measurement layout, its forward-operator factory, its memory model and GUI hints.

One :class:`Modality` subclass per module of this package describes one kind
of acquisition (widefield stack, light field, XLFM frame, …). Everything that
used to switch on ``psf.modality`` strings — building the operator for a PSF,
telling one frame from a time series, the output shape, the memory a frame
needs — asks the modality instead, so a new modality is one new module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..physics.base import LinearOperator

#: RL buffers per frame (estimate, ratio, correction, sensitivity, …), in copies of (frame + volume).
FRAME_RL_COPIES = 12
_FLOAT = 4


@dataclass
class ForwardModel:
    """A linear operator plus how data and volume arrays map onto it.

    ``operator.forward`` takes ``(B, *volume_shape)`` and returns ``(B, *data_shape)``;
    ``prepare`` turns the user's measurement array into ``data_shape``;
    ``output_slices`` crop the volume to what is returned to the user.
    """

    operator: LinearOperator
    volume_shape: tuple[int, ...]
    data_shape: tuple[int, ...]
    output_slices: tuple[slice, ...]
    voxel_size: tuple[float, float, float]
    #: Which measurement layout this model was built for (e.g. ``"lfm-raw"``, ``"lfm-views"``).
    layout: str = ""
    #: Rearranges the user's measurement into ``data_shape`` (``None``: it already is).
    to_data: Callable[[np.ndarray], np.ndarray] | None = None

    def prepare(self, data: np.ndarray) -> np.ndarray:
        """The measurement in the operator's data layout (views for LFM raw frames)."""
        return self.to_data(data) if self.to_data is not None else data

    def crop_output(self, volume: torch.Tensor) -> torch.Tensor:
        """The part of a ``(B, *volume_shape)`` volume returned to the user."""
        return volume[(...,) + self.output_slices]

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of the volume returned to the user (``volume_shape`` cropped by ``output_slices``)."""
        return tuple(len(range(*s.indices(n))) for s, n in zip(self.output_slices, self.volume_shape, strict=True))


class Modality:
    """One kind of acquisition. Subclasses set the class attributes and override what differs.

    Attributes
    ----------
    name:
        The registry key; for modalities with a PSF, the PSF object's ``modality``.
    title:
        Human-readable name (GUI labels, tables).
    expected_data:
        What one measurement looks like, for error messages.
    frame_ndim:
        Dimensionalities one measurement frame may have (a time series adds one axis in front).
    needs_psf:
        Whether reconstructing this modality needs a PSF object.
    default_engine:
        The engine the GUI proposes first (``None``: none registered yet).
    sample_name:
        The shipped sample of this modality (``napari_lfrecon.samples``), if any.
    psf_on_data_grid:
        The PSF is sampled on the data's own voxel grid, so it is resampled
        when the input's voxel size differs (widefield).
    order:
        Position in listings (``available()``), so tables keep a stable order.
    psf_array:
        ``(ndim, axes description)`` of the PSF array, for modalities whose
        layout :mod:`napari_lfrecon.psf.model` does not know yet.
    operator_psf_copies:
        Memory model: the operator's working set, in copies of the PSF array.
    """

    name: str = ""
    title: str = ""
    expected_data: str = ""
    frame_ndim: tuple[int, ...] = ()
    needs_psf: bool = True
    default_engine: str | None = "rl"
    sample_name: str | None = None
    psf_on_data_grid: bool = False
    order: int = 100
    psf_array: tuple[int, str] | None = None
    operator_psf_copies: int = 16

    # ------------------------------------------------------------------ operator
    def forward_model(self, psf: Any, data_shape: Sequence[int], *, boundary: str = "padded") -> ForwardModel:
        """The forward model for ``psf`` applied to measurements of ``data_shape``.

        Raises ``ValueError`` naming what was expected when the data does not
        fit the PSF or the modality has no PSF operator.
        """
        raise ValueError(f"the {self.name} modality has no PSF forward operator")

    # ------------------------------------------------------------------ layout
    def frame_ndim_for(self, psf: Any, shape: Sequence[int], axes: str) -> int:
        """Dimensions of one frame of an input of ``shape``/``axes`` (the default: the only accepted one)."""
        if len(self.frame_ndim) != 1:
            raise NotImplementedError(f"{type(self).__name__} accepts several frame layouts: override frame_ndim_for")
        return self.frame_ndim[0]

    def frame_layout(self, psf: Any, shape: Sequence[int], axes: str) -> tuple[bool, int]:
        """``(has_time_axis, frame_ndim)`` for an input of ``shape`` with canonical ``axes``."""
        shape = tuple(int(n) for n in shape)
        frame_ndim = self.frame_ndim_for(psf, shape, axes)
        if len(shape) == frame_ndim:
            return False, frame_ndim
        if len(shape) == frame_ndim + 1:
            return True, frame_ndim
        raise ValueError(
            f"a {self.name} input must be one frame of {frame_ndim} dimensions or a (T, …) series of them; "
            f"got shape {shape} (axes {axes!r})"
        )

    def frame_axes(self, frame_ndim: int) -> str:
        """Axis letters of one frame of ``frame_ndim`` dimensions (for layer and file metadata)."""
        return "ZYX"[-frame_ndim:] if 1 <= frame_ndim <= 3 else "?" * frame_ndim

    def output_frame_shape(self, psf: Any, frame_shape: Sequence[int], boundary: str = "padded") -> tuple[int, ...]:
        """The shape of one reconstructed frame, from the forward model (no engine run needed)."""
        return self.forward_model(psf, tuple(frame_shape), boundary=boundary).output_shape

    # ------------------------------------------------------------------ display hints
    #: Axis names of the PSF array (for a PSF shown as an image layer).
    psf_axis_labels: tuple[str, ...] = ("z", "y", "x")

    def psf_scale(self, psf: Any) -> tuple[float, ...] | None:
        """Sampling of the PSF array per axis in µm (object space), or ``None`` when the optics do not tell."""
        return tuple(float(v) for v in psf.voxel_size)

    # ------------------------------------------------------------------ memory
    def frame_bytes(
        self, psf: Any, frame_shape: Sequence[int], volume_shape: Sequence[int], boundary: str = "padded"
    ) -> int:
        """Estimated peak bytes of RL's operator and buffers on one frame (input/result copies not included).

        The default: ``operator_psf_copies`` copies of the PSF array plus
        ``FRAME_RL_COPIES`` float32 copies of frame and volume (measured for
        LFM and XLFM; see :mod:`napari_lfrecon.batch.plan`).
        """
        per_frame = _FLOAT * (math.prod(frame_shape) + math.prod(volume_shape))
        return self.operator_psf_copies * int(psf.array.nbytes) + FRAME_RL_COPIES * per_frame

    def __repr__(self) -> str:
        return f"<modality {self.name!r}: {self.title}>"
