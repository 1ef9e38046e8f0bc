"""Anisotropic stacks: z sampled ``factor`` times coarser than y and x; no PSF operator, an axial degradation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..physics.axial import AxialDegradation
from .base import ForwardModel, Modality


class Anisotropic(Modality):
    """A ``(Z, Y, X)`` stack with coarse z, modelled by :class:`AxialDegradation` (blur + average-pool along z)."""

    name = "anisotropic"
    title = "Anisotropic stack"
    expected_data = "a 3D (Z, Y, X) stack with z sampled coarser than y and x"
    frame_ndim = (3,)
    needs_psf = False
    default_engine = "niiv"
    sample_name = "anisotropic"
    order = 3

    def forward_model(self, psf: Any, data_shape: Sequence[int], *, boundary: str = "padded") -> ForwardModel:
        """Refused: the degradation depends on the anisotropy factor, not on a PSF; see :meth:`degradation`."""
        raise ValueError(
            "the anisotropic modality has no PSF operator: its forward model is "
            "modalities.get('anisotropic').degradation(factor, kernel)"
        )

    def degradation(
        self, factor: int, kernel: np.ndarray | torch.Tensor | None = None, axis: int = -3
    ) -> AxialDegradation:
        """The forward model: blur along ``axis`` with ``kernel`` (or none), then average-pool by ``factor``."""
        return AxialDegradation(factor, axis=axis, kernel=kernel)

    def frame_bytes(
        self, psf: Any, frame_shape: Sequence[int], volume_shape: Sequence[int], boundary: str = "padded"
    ) -> int:
        """Not modelled: anisotropic stacks are reconstructed by learned engines, whose memory is their own."""
        raise ValueError("the anisotropic modality has no RL memory model (no PSF operator)")


MODALITY = Anisotropic()
