"""Richardson–Lucy deconvolution for widefield, light-field and XLFM data.

Maximum-likelihood under Poisson noise with the multiplicative update
``x ← x / (Aᵀ1 − λ·div(∇x/|∇x|)) · Aᵀ(y / (Ax + b))``: the classical baseline,
the ground-truth generator for learned engines, and the reference every other
engine is measured against. The operator comes from the PSF's modality
(:func:`napari_lfrecon.modalities.forward_model`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch

from ..jobs.protocol import LazyPreview
from ..modalities import for_psf, forward_model
from . import register
from .base import Engine, EngineInputError, Inputs, StopFlag, Update, never, param
from .validation import checked_measurement

#: Smallest model value a ratio divides by: keeps empty regions from producing Inf.
_EPS = 1e-6
#: Voxels whose sensitivity Aᵀ1 is below this fraction of the maximum are not observable (the far
#: corners of a padded volume): they are held at 0, since dividing FFT round-off by a near-zero
#: sensitivity makes the multiplicative update blow up.
_MIN_SENSITIVITY = 1e-3
#: Fraction of the flat start added under an ``initial`` volume (see :func:`richardson_lucy`).
_INITIAL_FLOOR = 1e-3


@dataclass
class RLParams:
    """Richardson–Lucy settings (every field appears in the GUI form and as a CLI flag)."""

    iterations: int = field(default=30, metadata=param("number of RL iterations", min=1, max=5000))
    tv_weight: float = field(
        default=0.0, metadata=param("total-variation regularisation weight λ (0 = plain RL)", min=0.0, max=0.1)
    )
    background: float = field(
        default=0.0, metadata=param("constant background b in the model Ax + b (photo-electrons per pixel)", min=0.0)
    )
    estimate_background: bool = field(
        default=False, metadata=param("estimate b as the data's 1st percentile (overrides 'background')")
    )
    boundary: str = field(
        default="padded",
        metadata=param(
            "widefield edges: 'padded' models light from outside the field; 'circular' wraps (faster)",
            choices=("padded", "circular"),
        ),
    )
    preview_every: int = field(default=1, metadata=param("send a preview every N iterations (0 = none)", min=0))


def richardson_lucy(
    forward: Callable[[torch.Tensor], torch.Tensor],
    adjoint: Callable[[torch.Tensor], torch.Tensor],
    y: torch.Tensor,
    volume_shape: tuple[int, ...],
    iterations: int,
    *,
    background: float = 0.0,
    tv_weight: float = 0.0,
    initial: torch.Tensor | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(iteration, estimate)`` after each RL iteration (batched ``(1, *volume_shape)`` tensors).

    ``y`` is the measurement in photo-electrons, batched ``(1, *data_shape)``.
    The estimate starts flat with the data's total flux, or from ``initial``
    (e.g. a network's volume; raised to a small floor, since RL's
    multiplicative update can never revive a voxel that is exactly 0). The
    estimate tensor is updated in place: copy it if you keep it past the next
    iteration.
    """
    ones = torch.ones_like(y)
    sensitivity = adjoint(ones)
    observable = sensitivity >= _MIN_SENSITIVITY * float(sensitivity.max())
    sensitivity = torch.clamp(sensitivity, min=_MIN_SENSITIVITY * float(sensitivity.max()))
    # A circular, normalised PSF has Aᵀ1 ≡ 1: skip that division (one full pass per iteration).
    uniform = float(sensitivity.max() - sensitivity.min()) <= 1e-5 * float(sensitivity.max())
    flux = float(torch.clamp(y - background, min=0).sum())
    unit = torch.ones((1, *volume_shape), dtype=y.dtype, device=y.device)
    modelled = float(forward(unit).sum())
    x = unit * (flux / max(modelled, _EPS)) * observable
    if initial is not None:
        start = torch.as_tensor(initial, dtype=y.dtype, device=y.device).reshape(x.shape)
        # the floor: 1e-3 of the flat start's level, so voxels the initial volume zeroed can still grow
        # unobservable voxels stay at 0 as in the flat start (their tiny sensitivity would amplify round-off)
        x = (torch.clamp(start, min=0) * observable) + x * _INITIAL_FLOOR
    if uniform and tv_weight == 0:
        # Aᵀ is linear: dividing y by the constant Aᵀ1 once replaces a division per iteration.
        y = y / float(sensitivity.mean())
    for k in range(iterations):
        estimate = forward(x)
        if background:
            estimate.add_(background)
        # The ratio is computed in place in the model's buffer: no extra volume-sized temporaries.
        ratio = torch.div(y, estimate.clamp_(min=_EPS), out=estimate)
        # FFT round-off can make the correction slightly negative where the truth is ~0; RL stays ≥ 0.
        correction = adjoint(ratio).clamp_(min=0)
        if tv_weight > 0:
            denominator = torch.clamp(sensitivity - tv_weight * _tv_divergence(x), min=_EPS)
            x.mul_(correction).div_(denominator)
        elif uniform:
            x.mul_(correction)
        else:
            x.mul_(correction).div_(sensitivity)
        yield k + 1, x


def _tv_divergence(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``div(∇x / |∇x|)`` over the last three axes: forward differences, and their negative adjoint for div."""
    grads = [torch.diff(x, dim=d, append=x.narrow(d, x.shape[d] - 1, 1)) for d in (-3, -2, -1)]
    norm = torch.sqrt(sum(g * g for g in grads) + eps)
    div = torch.zeros_like(x)
    for d, g in zip((-3, -2, -1), grads, strict=True):
        n = g / norm
        # Backward difference with n[-1] = 0: the negative adjoint of the forward difference above.
        before = torch.cat([torch.zeros_like(n.narrow(d, 0, 1)), n.narrow(d, 0, n.shape[d] - 1)], dim=d)
        div += n - before
    return div


@register
class RichardsonLucy(Engine):
    """Richardson–Lucy (optionally with total-variation regularisation) for any modality with a PSF."""

    name = "rl"
    title = "Richardson–Lucy"
    modalities = ("widefield", "lfm", "xlfm")
    Params = RLParams

    def run(
        self, inputs: Inputs, params: RLParams, *, device: torch.device, should_stop: StopFlag = never
    ) -> Iterator[Update]:
        """Stream RL: a progress and (by default) a preview every iteration, then the result."""
        if inputs.psf is None:
            raise EngineInputError("Richardson–Lucy needs a PSF (a PSF file, a PSF object or, for widefield, an array)")
        data = checked_measurement(inputs.data, non_negative=True)
        # RL runs on the data divided by its maximum, and the result is scaled back: its floors (_EPS, the
        # flat start's division) are absolute numbers, which would dim or zero data far from photon counts
        # (1e-6 came back 100× too dim, 1e-40 all zeros). RL itself is scale-equivariant, so this only
        # removes the floors' dependence on the data's units.
        scale = float(data.max())
        if not params.estimate_background and params.background >= scale:
            raise EngineInputError(
                f"the background {params.background:g} is at or above every data value (max {scale:.4g} "
                "photo-electrons): nothing would remain to reconstruct; give a smaller background"
            )
        data /= scale
        model = forward_model(inputs.psf, data.shape, boundary=params.boundary)
        model.operator.to(device)
        y = torch.as_tensor(model.prepare(data), device=device)[None]
        background = float(np.percentile(data, 1)) if params.estimate_background else params.background / scale
        started = time.perf_counter()
        yield Update("progress", 0.0, f"RL on {inputs.psf.modality} data {data.shape} → volume {model.volume_shape}")
        steps = richardson_lucy(
            model.operator.forward,
            model.operator.adjoint,
            y,
            model.volume_shape,
            params.iterations,
            background=background,
            tv_weight=params.tv_weight,
        )
        x = None
        with torch.no_grad():
            for k, x in steps:
                fraction = k / params.iterations
                yield Update("progress", fraction, f"iteration {k}/{params.iterations}")
                if should_stop():
                    yield Update("progress", fraction, f"cancelled after iteration {k}")
                    return
                if params.preview_every and (k % params.preview_every == 0) and k < params.iterations:
                    # made only if a consumer shows it: the GUI shows a few per second, the API none
                    preview = LazyPreview(partial(_cropped_numpy, model, x, scale))
                    yield Update("preview", fraction, f"iteration {k}", preview)
        assert x is not None
        elapsed = time.perf_counter() - started
        yield Update("metric", 1.0, "seconds", ("seconds", elapsed))
        yield Update(
            "result",
            1.0,
            f"done: {params.iterations} iterations in {elapsed:.2f} s",
            _to_numpy(model.crop_output(x), scale),
        )

    def output_voxel_size(self, inputs: Inputs) -> tuple[float, float, float] | None:
        """RL returns a volume on the PSF's volume grid."""
        return inputs.psf.voxel_size if inputs.psf is not None else inputs.voxel_size

    def output_shape(self, inputs: Inputs, params: RLParams) -> tuple[int, ...] | None:
        """The volume of one frame: the data's grid when the PSF lives on it (widefield), else the operator's."""
        if inputs.psf is None:
            return None
        frame = tuple(int(n) for n in np.shape(inputs.data))
        modality = for_psf(inputs.psf)
        if modality.psf_on_data_grid:
            return frame  # the padded volume is cropped back to the data (no operator built: planning stays cheap)
        return tuple(modality.output_frame_shape(inputs.psf, frame, params.boundary))

    def halo(self, inputs: Inputs, params: RLParams) -> tuple[int, ...] | None:
        """The whole PSF size on each axis when the volume lies on the data grid (widefield); else whole frames.

        Not half the PSF: every iteration spreads information by the PSF's reach
        again, so a tile needs more context than one blur (measured: 1e-3 of the
        peak after 15 iterations with this halo, ``tests/test_batch.py``).
        """
        if inputs.psf is None or not for_psf(inputs.psf).psf_on_data_grid:
            return None
        return tuple(int(n) for n in inputs.psf.array.shape)

    def memory_bytes(self, inputs: Inputs, params: RLParams) -> int:
        """RL's working set on one frame or tile: the PSF modality's memory model."""
        if inputs.psf is None:
            return super().memory_bytes(inputs, params)
        frame = tuple(int(n) for n in np.shape(inputs.data))
        volume = self.output_shape(inputs, params) or frame
        return int(for_psf(inputs.psf).frame_bytes(inputs.psf, frame, volume, params.boundary))


def _cropped_numpy(model: Any, x: torch.Tensor, scale: float) -> np.ndarray:
    """The model's output crop of the estimate ``x`` as a float32 numpy copy in the data's units."""
    return _to_numpy(model.crop_output(x), scale)


def _to_numpy(volume: torch.Tensor, scale: float = 1.0) -> np.ndarray:
    """The first volume of a batch as a float32 numpy copy, multiplied by ``scale`` (the data's units)."""
    out = volume[0].detach().to("cpu", torch.float32).numpy().copy()
    if scale != 1.0:
        out *= np.float32(scale)
    return out
