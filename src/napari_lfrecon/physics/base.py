"""The operator base classes: every forward model in :mod:`napari_lfrecon.physics` is one of these.

``Operator`` is any differentiable forward model ``volume → measurement`` (an
``nn.Module``); nonlinear ones (the coming beam propagation) subclass it and get
their gradients from autograd. ``LinearOperator`` adds the exact transpose
``adjoint`` that Richardson–Lucy, the self-supervised losses and the simulators
use, and :meth:`LinearOperator.adjointness_error` checks ``<Ax, y> = <x, Aᵀy>``
for any of them (one parametrised test runs it over every linear operator).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

Shape = tuple[int, ...]


class Operator(nn.Module):
    """A forward model: ``forward`` maps a batched volume ``(B, *volume_shape)`` to data ``(B, *data_shape)``.

    Subclasses set ``volume_shape`` and ``data_shape`` (shapes of one item,
    without the batch axis) when they are fixed at construction; operators that
    accept any size (e.g. :class:`~napari_lfrecon.physics.axial.AxialDegradation`)
    leave them ``None`` and override :meth:`output_shape`.
    """

    #: Shape of one input volume (no batch axis), or ``None`` when any size is accepted.
    volume_shape: Shape | None = None
    #: Shape of one output measurement (no batch axis), or ``None`` when it follows the input.
    data_shape: Shape | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The measurement of the batched volume ``x``."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        """Shape of ``forward``'s output for an input of ``input_shape`` (leading batch axes kept)."""
        if self.volume_shape is None or self.data_shape is None:
            raise NotImplementedError(f"{type(self).__name__} has no fixed shapes: override output_shape")
        shape = tuple(int(n) for n in input_shape)
        n = len(self.volume_shape)
        if shape[len(shape) - n :] != tuple(self.volume_shape):
            raise ValueError(f"{type(self).__name__} maps volumes of shape {self.volume_shape}, got {shape}")
        return shape[: len(shape) - n] + tuple(self.data_shape)


class LinearOperator(Operator):
    """A linear forward model ``A`` with its exact transpose ``adjoint`` (``Aᵀ``)."""

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``Aᵀy``: batched data ``(B, *data_shape)`` back to a volume ``(B, *volume_shape)``."""
        raise NotImplementedError(f"{type(self).__name__} does not define adjoint")

    def adjointness_error(
        self,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        seed: int = 0,
        batch: int = 2,
        volume_shape: Sequence[int] | None = None,
    ) -> float:
        """``|<Ax, y> − <x, Aᵀy>| / max(|<Ax, y>|, |<x, Aᵀy>|)`` for seeded Gaussian ``x`` and ``y``.

        The operator is moved to ``device`` (its index buffers must live where
        the data does). ``volume_shape`` is needed only for operators without a
        fixed one.
        """
        self.to(device)
        shape = tuple(volume_shape) if volume_shape is not None else self.volume_shape
        if shape is None:
            raise ValueError(f"{type(self).__name__} accepts any volume shape: pass volume_shape")
        full = (int(batch), *(int(n) for n in shape))
        return adjointness_error(
            self.forward, self.adjoint, full, self.output_shape(full), dtype=dtype, device=device, seed=seed
        )


def adjointness_error(
    forward: Callable[[torch.Tensor], torch.Tensor],
    adjoint: Callable[[torch.Tensor], torch.Tensor],
    input_shape: Sequence[int],
    output_shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> float:
    """Relative adjointness error of any ``forward``/``adjoint`` pair (see :meth:`LinearOperator.adjointness_error`).

    ``x`` and ``y`` are drawn on the CPU in float64 from one seeded generator,
    then cast, so every device sees the same test vectors.
    """
    generator = torch.Generator().manual_seed(int(seed))
    x = torch.randn(tuple(input_shape), generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    y = torch.randn(tuple(output_shape), generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    with torch.no_grad():
        lhs = float(torch.sum(forward(x) * y))
        rhs = float(torch.sum(x * adjoint(y)))
    scale = max(abs(lhs), abs(rhs))
    return abs(lhs - rhs) / scale if scale > 0 else 0.0
