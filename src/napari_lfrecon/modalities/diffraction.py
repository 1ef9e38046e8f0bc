"""Diffraction (refractive-index tomography from 6–20 diffraction images): NOT YET implemented.

This is a placeholder so that listings (the benchmark's tasks, the GUI) know
the modality exists. Its forward model, a beam-propagation operator, and its
engine (NVP) are still to be built; every method that would need them raises
``NotImplementedError`` saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import ForwardModel, Modality

_NOT_YET = "the diffraction modality is not implemented yet: physics/ has no beam-propagation operator (NVP is coming)"


class Diffraction(Modality):
    """Placeholder: a stack of ``(N, Y, X)`` diffraction images; no operator yet."""

    name = "diffraction"
    title = "Diffraction (not yet implemented)"
    expected_data = "a stack of (N, Y, X) diffraction images"
    frame_ndim = (3,)
    needs_psf = False
    default_engine = None
    order = 4

    def forward_model(self, psf: Any, data_shape: Sequence[int], *, boundary: str = "padded") -> ForwardModel:
        """Not yet: raises ``NotImplementedError``."""
        raise NotImplementedError(_NOT_YET)

    def output_frame_shape(self, psf: Any, frame_shape: Sequence[int], boundary: str = "padded") -> tuple[int, ...]:
        """Not yet: raises ``NotImplementedError``."""
        raise NotImplementedError(_NOT_YET)

    def frame_bytes(
        self, psf: Any, frame_shape: Sequence[int], volume_shape: Sequence[int], boundary: str = "padded"
    ) -> int:
        """Not yet: raises ``NotImplementedError``."""
        raise NotImplementedError(_NOT_YET)


MODALITY = Diffraction()
