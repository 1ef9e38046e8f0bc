"""Widefield: a 3D stack, reconstructed through a 3D convolution with the PSF (:class:`Convolve3D`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..physics.convolve import Convolve3D
from ..physics.fft_util import crop_centred, next_fast_len
from .base import ForwardModel, Modality

#: Peak RL working set on a widefield tile, in float32 copies of its FFT grid (measured ≈13.3).
RL_FFT_COPIES = 14
#: Input copy, result and written chunk of a tile, in float32 copies of the tile.
TILE_COPIES = 3
_FLOAT = 4


def tile_bytes(extent: Sequence[int], psf_shape: Sequence[int], boundary: str = "padded") -> int:
    """Estimated peak bytes of RL on one widefield tile of ``extent`` voxels (``benchmarks/bench_batch.py``)."""
    if boundary == "padded":
        grid = math.prod(next_fast_len(e + p - 1) for e, p in zip(extent, psf_shape, strict=True))
    else:
        grid = math.prod(extent)
    return RL_FFT_COPIES * _FLOAT * grid + TILE_COPIES * _FLOAT * math.prod(extent)


class Widefield(Modality):
    """A ``(Z, Y, X)`` stack; the PSF lives on the same voxel grid."""

    name = "widefield"
    title = "Widefield"
    expected_data = "a 3D (Z, Y, X) stack"
    frame_ndim = (3,)
    sample_name = "widefield"
    psf_on_data_grid = True
    order = 0

    def forward_model(self, psf: Any, data_shape: Sequence[int], *, boundary: str = "padded") -> ForwardModel:
        """``Convolve3D`` of the PSF; ``"padded"`` reconstructs a volume grown by the PSF support, cropped back."""
        data_shape = tuple(int(n) for n in data_shape)
        if len(data_shape) != 3:
            raise ValueError(f"a widefield PSF needs {self.expected_data}, got data of shape {data_shape}")
        kernel = torch.as_tensor(np.asarray(psf.array, dtype=np.float32))
        if boundary == "circular":
            kernel = crop_centred(kernel, data_shape)
        op = Convolve3D(kernel, data_shape, boundary=boundary)  # type: ignore[arg-type]
        slices = tuple(slice(o, o + n) for o, n in zip(op.data_offset, data_shape, strict=True))
        return ForwardModel(op, op.volume_shape, data_shape, slices, psf.voxel_size, "widefield")

    def frame_bytes(
        self, psf: Any, frame_shape: Sequence[int], volume_shape: Sequence[int], boundary: str = "padded"
    ) -> int:
        """RL on one stack: :func:`tile_bytes` of the whole frame."""
        return tile_bytes(frame_shape, psf.array.shape, boundary)


MODALITY = Widefield()
