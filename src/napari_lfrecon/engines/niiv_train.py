"""niiv training (``niiv-train``): self-supervised on the stack's own lateral (xy) slices.

Every xy slice is degraded along y and along x with
:class:`~napari_lfrecon.physics.axial.AxialDegradation` (optional Gaussian
blur, then average-pooling by ``af``); each step takes random crops (one
orientation at random), adds noise so the degraded inputs are as noisy as the
stack's real coarse planes, and fits the network to decode the original crop
from the degraded one (L1 loss, Adam with cosine decay). The loop (seeding per
``(seed, step)``, checkpoints, Cancel, steps/minutes/patience, streaming) is
the shared one of :mod:`napari_lfrecon.training`; the weights file records
the config, ``af``, the training command and settings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..training import Trainer
from ..training.data import DataFile, TrainingData, describe_files, stack_same_shape
from . import register
from .base import EngineInputError, Inputs, TrainingEngine, param
from .niiv import Niiv, gaussian_kernel, resolve_anisotropy, save_model
from .niiv_field import SPAN, NiivField, check_stack, intensity_range, normalise
from .niiv_model import NiivConfig, NiivNet

#: Median absolute deviation of a unit Gaussian (σ = MAD / 0.6745).
_MAD_TO_SIGMA = 0.6745


@dataclass
class NiivTrainParams:
    """niiv training settings (every field appears in the GUI form and as a CLI flag)."""

    output: str = field(default="niiv_weights.safetensors", metadata=param("where to write the trained weights"))
    anisotropy: int = field(
        default=0,
        metadata=param("z spacing / lateral spacing (integer); 0 = from the voxel size dz/dx, rounded", min=0, max=64),
    )
    steps: int = field(default=2000, metadata=param("training steps (one batch of crops each)", min=1, max=10_000_000))
    minutes: float = field(default=0.0, metadata=param("stop after this many minutes (0 = no time limit)", min=0.0))
    patience: int = field(
        default=400,
        metadata=param("stop when the loss has not improved by 1 % for this many steps (0 = never)", min=0),
    )
    model: str = field(
        default="small",
        metadata=param("network size: the shipped small one or the published one", choices=("small", "reference")),
    )
    features: int = field(default=0, metadata=param("encoder features (0 = the preset's)", min=0, max=1024))
    blocks: int = field(default=-1, metadata=param("encoder residual blocks (-1 = the preset's)", min=-1, max=128))
    mlp_width: int = field(default=0, metadata=param("decoder MLP width (0 = the preset's)", min=0, max=4096))
    mlp_depth: int = field(default=0, metadata=param("decoder MLP layers (0 = the preset's)", min=0, max=64))
    lr: float = field(
        default=1e-3, metadata=param("Adam learning rate (cosine decay to 10 % over the steps)", min=1e-7, max=1.0)
    )
    batch: int = field(default=8, metadata=param("crops per step", min=1, max=4096))
    crop: int = field(default=64, metadata=param("crop size in pixels (fine grid; cut to a multiple of af)", min=4))
    queries: int = field(default=2048, metadata=param("pixels decoded per crop and step (0 = all)", min=0))
    blur_fwhm: float = field(
        default=0.0,
        metadata=param("Gaussian blur (FWHM, fine pixels) before pooling, like the axial PSF; 0 = none", min=0.0),
    )
    noise: float = field(
        default=-1.0,
        metadata=param(
            "noise σ (stack units) of the coarse planes, matched in the training inputs; -1 = estimate, 0 = none",
            min=-1.0,
        ),
    )
    seed: int = field(default=0, metadata=param("random seed (initialisation, crops, orientations)", min=0))
    preview_every: int = field(default=500, metadata=param("send a preview volume every N steps (0 = none)", min=0))
    checkpoint: str = field(default="", metadata=param("checkpoint file for resuming (empty = none)"))
    checkpoint_every: int = field(default=200, metadata=param("write the checkpoint every N steps", min=1))
    resume: bool = field(default=True, metadata=param("continue from the checkpoint when it exists"))


def training_stacks(data: np.ndarray, factor: int) -> list[np.ndarray]:
    """One stack ``(Z, Y, X)`` or several ``(N, Z, Y, X)`` → checked float32 stacks."""
    array = np.asarray(data)
    if array.ndim == 4:
        return [check_stack(s, factor) for s in array]
    return [check_stack(array, factor)]


def build_config(params: NiivTrainParams, factor: int) -> NiivConfig:
    """The network of a training run: the preset with the non-default size fields applied."""
    base = NiivConfig.preset(params.model, factor)
    changes = {
        "features": params.features or base.features,
        "blocks": params.blocks if params.blocks >= 0 else base.blocks,
        "mlp_width": params.mlp_width or base.mlp_width,
        "mlp_depth": params.mlp_depth or base.mlp_depth,
    }
    return NiivConfig(**{**base.to_dict(), **changes})


class NiivTrainer(Trainer):
    """One niiv training run on the shared loop: the degraded slice pairs, the network and one L1 step."""

    engine_name = "niiv-train"

    def __init__(self, inputs: Inputs, params: NiivTrainParams, device: torch.device) -> None:
        from ..physics.axial import AxialDegradation

        super().__init__(inputs, params, device)
        if not params.output:
            raise EngineInputError("niiv training needs an output weights path ('output')")
        self.factor, self.why = resolve_anisotropy(params.anisotropy, inputs, None)
        self.stacks = training_stacks(inputs.data, self.factor)
        self.voxel_size = inputs.voxel_size
        kernel = gaussian_kernel(params.blur_fwhm)
        self.kernel_note = f"Gaussian blur FWHM {params.blur_fwhm:g} px" if kernel is not None else "no blur"
        if kernel is None and inputs.description.axial_kernel is not None:
            # the benchmark states the axial blur its data were made with: train with the same degradation
            kernel = np.asarray(inputs.description.axial_kernel, dtype=np.float64)
            self.kernel_note = f"the data's stated axial kernel ({kernel.size} taps)"
        # the xy slices of every stack, each stack normalised by its own intensity range
        self.intensities = [intensity_range(s) for s in self.stacks]
        slices = [normalise(s, i) for s, i in zip(self.stacks, self.intensities, strict=True)]
        fine = torch.as_tensor(np.concatenate(slices), dtype=torch.float32, device=device)  # (S, Y, X)
        _, ny, nx = fine.shape
        af = self.factor
        side = min(params.crop, (ny // af) * af, (nx // af) * af)
        self.crop = (side // af) * af
        if self.crop < af:
            raise EngineInputError(
                f"the lateral slices ({ny}×{nx}) are smaller than one coarse pixel at anisotropy {af}"
            )
        # Each whole slice is degraded once, along y and along x: a crop's coarse rows then hold the blur from
        # outside the crop, as real coarse planes do (degrading crops would zero-pad the blur at every crop
        # edge and teach the network to brighten edges); zero padding remains only at the slice's own borders.
        along_y = AxialDegradation(af, axis=-2, kernel=kernel)(fine[:, : (ny // af) * af])  # (S, Y/af, X)
        along_x = AxialDegradation(af, axis=-1, kernel=kernel)(fine[:, :, : (nx // af) * af])  # (S, Y, X/af)
        # both orientations as (fine, coarse) with the degraded axis first
        self.pairs = [(fine, along_y), (fine.transpose(1, 2), along_x.transpose(1, 2))]
        self.slices = fine
        self.noise, self.noise_note = self._input_noise(kernel)
        self.build_seeded()

    def build(self) -> tuple[NiivNet, torch.optim.Optimizer]:
        """The niiv network of the chosen size, and Adam."""
        model = NiivNet(build_config(self.params, self.factor)).to(self.device)
        return model, torch.optim.Adam(model.parameters(), lr=self.params.lr)

    def _input_noise(self, kernel: np.ndarray | None) -> tuple[float, str]:
        """Std of the noise added to degraded training inputs, so they are as noisy as real coarse planes.

        A real coarse plane carries the stack's full per-pixel noise σ, while degrading a noisy lateral slice
        averages its noise down to ``σ·√g`` (``g`` = sum of the squared blur-and-pool weights); adding
        ``σ·√(1 − g)`` restores it. σ is estimated from the lateral slices (median absolute deviation of
        second differences along x) unless the ``noise`` parameter gives it.
        """
        from ..physics.axial import AxialDegradation

        p = self.params
        if p.noise == 0:
            return 0.0, "no noise added"
        if p.noise > 0:
            lo, hi = self.intensities[0]
            sigma, source = p.noise * SPAN / (hi - lo), f"σ {p.noise:g} (given)"
        else:
            # second differences along x: smooth structure cancels, white noise has variance 6σ²
            diff = (self.slices[:, :, 2:] - 2 * self.slices[:, :, 1:-1] + self.slices[:, :, :-2]).flatten()
            sigma = float((diff - diff.median()).abs().median()) / (_MAD_TO_SIGMA * math.sqrt(6.0))
            lo, hi = self.intensities[0]
            source = f"σ {sigma * (hi - lo) / SPAN:.3g} estimated from the lateral slices"
        probe = torch.randn(64, 16 * self.factor, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        degraded = AxialDegradation(self.factor, axis=-1, kernel=kernel)(probe)[:, 2:-2]  # away from the borders
        g = float(degraded.var())
        return sigma * math.sqrt(max(1.0 - g, 0.0)), f"noise matched to real coarse planes ({source})"

    def batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(coarse crops ``(B, 1, c/af, c)``, query coordinates ``(B, N, 2)``, targets ``(B, N)``)."""
        p, c, af = self.params, self.crop, self.factor
        fines, coarses = [], []
        for _ in range(p.batch):
            fine_all, coarse_all = self.pairs[int(rng.integers(2))]  # degraded along y or along x
            s = int(rng.integers(fine_all.shape[0]))
            # block-aligned along the degraded axis, so the coarse crop is exactly the pooled fine crop
            a0 = af * int(rng.integers(coarse_all.shape[1] - c // af + 1))
            b0 = int(rng.integers(fine_all.shape[2] - c + 1))
            fine = fine_all[s, a0 : a0 + c, b0 : b0 + c]
            coarse = coarse_all[s, a0 // af : (a0 + c) // af, b0 : b0 + c]
            for axis in (0, 1):
                if rng.random() < 0.5:
                    fine, coarse = fine.flip(axis), coarse.flip(axis)
            fines.append(fine)
            coarses.append(coarse)
        fine = torch.stack(fines)  # (B, c, c), the first axis is the one degraded
        coarse = torch.stack(coarses).unsqueeze(1)
        if self.noise > 0:
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            coarse = coarse + self.noise * torch.randn(coarse.shape, generator=generator).to(coarse)
        n_pixels = c * c
        n = n_pixels if p.queries <= 0 or p.queries >= n_pixels else p.queries
        if n == n_pixels:
            picks = np.broadcast_to(np.arange(n_pixels), (p.batch, n_pixels))
        else:
            picks = np.stack([rng.choice(n_pixels, size=n, replace=False) for _ in range(p.batch)])
        index = torch.as_tensor(np.ascontiguousarray(picks), device=self.device)
        coords = torch.stack([index // c, index % c], dim=-1).to(torch.float32)
        target = fine.reshape(p.batch, n_pixels).gather(1, index)
        return coarse, coords, target

    def learning_rate(self) -> float:
        """Cosine decay from ``lr`` to ``lr / 10`` over the planned steps."""
        progress = min(self.step / max(self.params.steps, 1), 1.0)
        return self.params.lr * (0.1 + 0.9 * 0.5 * (1.0 + np.cos(np.pi * progress)))

    def optimise_step(self, step: int, rng: np.random.Generator) -> float:
        """One L1 step on a batch of degraded crops."""
        coarse, coords, target = self.batch(rng)
        for group in self.optimiser.param_groups:
            group["lr"] = self.learning_rate()
        self.model.train()
        loss = torch.nn.functional.l1_loss(self.model(coarse, coords), target)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        return float(loss.detach())

    def preview(self) -> np.ndarray:
        """The isotropic volume of the first training stack decoded by the current network."""
        self.model.eval()
        volume = NiivField(self.model, self.stacks[0], self.factor, device=self.device).decode_volume()
        assert volume is not None  # no stop function: always a volume
        return volume

    def describe(self) -> str:
        """The slices, the anisotropy and where it came from, the degradation, noise, crops and network size."""
        return (
            f"niiv training: {self.slices.shape[0]} lateral slices of {len(self.stacks)} stack(s), {self.why}, "
            f"{self.kernel_note}, {self.noise_note}, crops {self.crop}×{self.crop}, "
            f"{self.model.n_parameters()} parameters"
        )

    def data_summary(self) -> str:
        """The stacks' count and shape."""
        return f"{len(self.stacks)} stack(s) {list(self.stacks[0].shape)} given to the engine"

    def provenance(self) -> dict[str, Any]:
        """Voxel size, anisotropy source, degradation, input noise and intensity ranges."""
        return {
            "voxel_size_um": list(self.voxel_size) if self.voxel_size is not None else None,
            "anisotropy_source": self.why,
            "degradation": self.kernel_note,
            "input_noise": self.noise_note,
            "intensity_lo_hi": [list(v) for v in self.intensities],
        }

    def write_weights(self, path: str, training: dict[str, Any]) -> Path:
        """niiv weights with the config and anisotropy in the header."""
        return save_model(path, self.model, training)


@register
class NiivTrain(TrainingEngine):
    """Self-supervised niiv training on the stack's own lateral slices (no ground truth)."""

    name = "niiv-train"
    title = "niiv training (self-supervised, lateral slices)"
    modalities = ("anisotropic",)
    Params = NiivTrainParams
    needs_psf = False
    trains = "niiv"
    data_kinds = ("stacks",)
    trainer = NiivTrainer

    def output_voxel_size(self, inputs: Inputs) -> tuple[float, float, float] | None:
        """Previews and the result are the isotropic volume of the (first) training stack."""
        return Niiv().output_voxel_size(inputs)

    def training_data(
        self, files: Sequence[DataFile], psf: Any = None, simulated: TrainingData | None = None
    ) -> TrainingData:
        """One stack, or several stacks of one shape stacked ``(N, Z, Y, X)``."""
        stacks = [DataFile(f.name, np.asarray(f.data, dtype=np.float32), f.voxel_size) for f in files]
        return TrainingData(stack_same_shape(stacks, "niiv stacks"), describe_files(stacks))


__all__ = ["NiivTrain", "NiivTrainParams", "NiivTrainer", "build_config", "training_stacks"]
