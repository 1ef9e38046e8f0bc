"""Axial degradation (niiv's and MicroFM's forward model): blur along one axis, then average-pool."""

from __future__ import annotations

import numpy as np
import torch

from .base import LinearOperator


class AxialDegradation(LinearOperator):
    """Blur along ``axis`` with a 1D kernel (or none), then average-pool by ``factor`` along that axis.

    ``forward`` maps a ``(B, Z, Y, X)`` volume (or any batched N-D array) to one
    whose ``axis`` is ``factor`` times shorter (the length must be a multiple
    of ``factor``); ``adjoint`` spreads each sample back over its ``factor``
    voxels (divided by ``factor``) and correlates with the kernel. The blur is
    a zero-padded linear convolution, centre at ``len // 2``, cropped to the
    input length, so the pair is exactly adjoint.
    """

    def __init__(self, factor: int, axis: int = -3, kernel: np.ndarray | torch.Tensor | None = None) -> None:
        super().__init__()
        if int(factor) < 1:
            raise ValueError(f"the anisotropy factor must be a positive integer, got {factor}")
        self.factor = int(factor)
        self.axis = axis
        if kernel is None:
            kernel_t = torch.ones(1, dtype=torch.float64)
        else:
            kernel_t = torch.as_tensor(np.asarray(kernel, dtype=np.float64)).ravel()
            if kernel_t.numel() == 0 or float(kernel_t.sum()) <= 0:
                raise ValueError("the axial blur kernel must be non-empty with a positive sum")
            kernel_t = kernel_t / kernel_t.sum()
        self._kernel = kernel_t

    def _blur(self, x: torch.Tensor, flip: bool) -> torch.Tensor:
        k = self._kernel.to(device=x.device, dtype=x.dtype)
        if k.numel() == 1:
            return x * k[0]
        moved = x.movedim(self.axis, -1)
        shape = moved.shape
        flat = moved.reshape(-1, 1, shape[-1])
        n = k.numel()
        centre = n // 2
        # conv1d is a correlation: flip the kernel for convolution; the adjoint uses it unflipped.
        weight = (k if flip else k.flip(0)).view(1, 1, n)
        left = n - 1 - centre if not flip else centre
        right = centre if not flip else n - 1 - centre
        out = torch.nn.functional.conv1d(torch.nn.functional.pad(flat, (left, right)), weight)
        return out.reshape(shape).movedim(-1, self.axis)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``input_shape`` with ``axis`` ``factor`` times shorter (any size is accepted)."""
        shape = [int(n) for n in input_shape]
        if shape[self.axis] % self.factor:
            raise ValueError(f"axis length {shape[self.axis]} is not a multiple of the anisotropy factor {self.factor}")
        shape[self.axis] //= self.factor
        return tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Blur then pool: the axis shrinks by ``factor``."""
        length = x.shape[self.axis]
        if length % self.factor:
            raise ValueError(f"axis length {length} is not a multiple of the anisotropy factor {self.factor}")
        blurred = self._blur(x, flip=False)
        moved = blurred.movedim(self.axis, -1)
        pooled = moved.reshape(*moved.shape[:-1], length // self.factor, self.factor).mean(-1)
        return pooled.movedim(-1, self.axis)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Spread back (each sample / factor over its voxels), then correlate with the kernel."""
        moved = y.movedim(self.axis, -1)
        spread = (moved / self.factor).repeat_interleave(self.factor, dim=-1)
        return self._blur(spread.movedim(-1, self.axis), flip=True)
