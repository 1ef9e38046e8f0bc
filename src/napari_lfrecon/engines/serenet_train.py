"""SeReNet training (``serenet-train``): the network learns from raw light-field frames and their PSF only.

Each step the predicted volume of a (cropped) frame is projected through
:class:`~napari_lfrecon.physics.phase_space.PhaseSpaceLF` — the operator RL
uses — and compared with a random subset of the measured views by the mixed
Poisson–Gaussian NLL (or L2), plus a non-negativity penalty. The loop
(seeding per ``(seed, step)``, checkpoints, Cancel, stopping, streaming) is
the shared one of :mod:`napari_lfrecon.training`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..psf.model import PSF
from ..training import Trainer
from ..training.data import DataFile, TrainingData
from . import register
from .base import EngineInputError, Inputs, TrainingEngine, param
from .serenet import (
    _check_lfm_psf,
    _supersample,
    flux_factor,
    frame_scale,
    network_input,
    predict_volume,
    psf_view_shifts,
)
from .serenet_data import PHANTOM_FAMILIES, default_view_indices, frames_to_views, measurement_to_views
from .serenet_loss import l2_loss, nll_mpg, non_negativity_penalty
from .serenet_model import SeReNetConfig, SeReNetNet
from .serenet_weights import save_model

#: Lenslets per side a training crop must keep after removing the rim that outside light reaches.
_MIN_CROP_INTERIOR = 4


@dataclass
class SeReNetTrainParams:
    """SeReNet training settings (every field appears in the GUI form and as a CLI flag)."""

    output: str = field(default="serenet_weights.safetensors", metadata=param("where to write the trained weights"))
    steps: int = field(default=2000, metadata=param("training steps (one frame crop each)", min=1, max=10_000_000))
    minutes: float = field(default=0.0, metadata=param("stop after this many minutes (0 = no time limit)", min=0.0))
    lr: float = field(default=1e-3, metadata=param("Adam learning rate", min=1e-7, max=1.0))
    loss: str = field(
        default="nll-mpg",
        metadata=param("re-projection loss: mixed Poisson–Gaussian NLL or L2", choices=("nll-mpg", "l2")),
    )
    read_noise_e: float = field(default=1.5, metadata=param("camera read noise σ (electrons RMS) in the NLL", min=0.0))
    background: float = field(
        default=0.0, metadata=param("constant background in the views (photo-electrons per pixel)", min=0.0)
    )
    views_per_step: int = field(
        default=13, metadata=param("views compared per step, drawn at random (0 = all)", min=0, max=100_000)
    )
    crop_lenslets: int = field(
        default=24, metadata=param("train on random crops of this many lenslets (0 = whole frames)", min=0)
    )
    width: float = field(default=1.0, metadata=param("network width relative to the published one", min=0.1, max=4.0))
    view_mix: int = field(
        default=0,
        metadata=param(
            "mix the views into this many channels (1×1×1) before the first 3×3×3 layer (0 = published design)",
            min=0,
            max=4096,
        ),
    )
    view_dropout: float = field(
        default=0.1,
        metadata=param("chance of hiding each input view per step (robustness to missing views)", min=0.0, max=0.9),
    )
    nonneg_weight: float = field(default=1.0, metadata=param("weight of the non-negativity penalty", min=0.0))
    seed: int = field(default=0, metadata=param("random seed (initialisation, crops, view subsets)", min=0))
    preview_every: int = field(default=100, metadata=param("send a preview volume every N steps (0 = none)", min=0))
    checkpoint: str = field(default="", metadata=param("checkpoint file for resuming (empty = none)"))
    checkpoint_every: int = field(default=200, metadata=param("write the checkpoint every N steps", min=1))
    resume: bool = field(default=True, metadata=param("continue from the checkpoint when it exists"))


@dataclass
class SeReNetSimulation:
    """How ``lfrecon train serenet --simulate N`` makes its frames (each field is a ``--simulate-<name>`` flag)."""

    lenslets: int = field(default=32, metadata=param("lenslets per side of simulated frames", min=4))
    family: str = field(default="bubtub", metadata=param("phantom family", choices=PHANTOM_FAMILIES))
    seed: int = field(default=1, metadata=param("seed of the simulated frames", min=0))


class SeReNetTrainer(Trainer):
    """One SeReNet training run on the shared loop: frames, network, re-projection operator and one step."""

    engine_name = "serenet-train"

    def __init__(self, inputs: Inputs, params: SeReNetTrainParams, device: torch.device) -> None:
        from ..physics.phase_space import PhaseSpaceLF

        super().__init__(inputs, params, device)
        self.psf = psf = _check_lfm_psf(inputs.psf, "SeReNet training")
        if not params.output:
            raise EngineInputError("SeReNet training needs an output weights path ('output')")
        frames = frames_to_views(inputs.data, psf)
        if not np.all(np.isfinite(frames)):
            raise EngineInputError("the training frames contain NaN or Inf values")
        frames = np.clip(frames - np.float32(params.background), 0.0, None)
        self.frames = torch.as_tensor(frames, device=device)  # (N, A_psf, Ny, Nx), background removed
        self.used = default_view_indices(psf)
        _, _, ny, nx = frames.shape
        crop = params.crop_lenslets if 0 < params.crop_lenslets < min(ny, nx) else 0
        self.crop = (crop or ny, crop or nx)
        s, depth = _supersample(psf), int(psf.array.shape[1])
        self.margin = int(psf.array.shape[-1]) // (2 * s)  # lenslets a point's light reaches
        if crop and crop - 2 * self.margin < _MIN_CROP_INTERIOR:
            raise EngineInputError(
                f"crops of {crop} lenslets leave no interior to compare: light from outside a crop reaches "
                f"{self.margin} lenslets into it with this PSF; use crop_lenslets ≥ "
                f"{2 * self.margin + _MIN_CROP_INTERIOR} or 0 (whole frames)"
            )
        self.build_seeded()
        self.shifts = torch.as_tensor(psf_view_shifts(psf)[self.used], device=device)
        self.operator = PhaseSpaceLF(psf.array[self.used], s, (depth, s * self.crop[0], s * self.crop[1])).to(device)

    def build(self) -> tuple[SeReNetNet, torch.optim.Optimizer]:
        """The SeReNet network for this PSF's views and depths, and Adam."""
        psf, p = self.psf, self.params
        config = SeReNetConfig(
            view_indices=self.used,
            depths=int(psf.array.shape[1]),
            supersample=_supersample(psf),
            width=p.width,
            flux_factor=flux_factor(psf, len(self.used)),
            view_mix=p.view_mix,
        )
        model = SeReNetNet(config).to(self.device)
        return model, torch.optim.Adam(model.parameters(), lr=p.lr)

    def normalise_config(self, saved: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint's config with fields added since (e.g. ``view_mix``) at their defaults."""
        return SeReNetConfig.from_dict(saved).to_dict()

    def _batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(network input, measured crop views, frame scale, loss mask) for one random frame crop."""
        n_frames, _, ny, nx = self.frames.shape
        frame = self.frames[int(rng.integers(n_frames))][None]  # (1, A_psf, Ny, Nx)
        cy, cx = self.crop
        y0 = int(rng.integers(ny - cy + 1))
        x0 = int(rng.integers(nx - cx + 1))
        views = frame[:, self.used]
        dropped = rng.random(len(self.used)) < self.params.view_dropout
        available = torch.as_tensor(~dropped, device=self.device) if dropped.any() and not dropped.all() else None
        scale = frame_scale(views)
        stack = network_input(views, self.shifts, scale, available)[..., y0 : y0 + cy, x0 : x0 + cx]
        measured = views[..., y0 : y0 + cy, x0 : x0 + cx]
        # light from outside the crop reaches `margin` lenslets into it, except where the crop meets the frame edge
        mask = torch.ones((cy, cx), dtype=torch.bool, device=self.device)
        m = self.margin
        if y0 > 0:
            mask[:m] = False
        if y0 + cy < ny:
            mask[cy - m :] = False
        if x0 > 0:
            mask[:, :m] = False
        if x0 + cx < nx:
            mask[:, cx - m :] = False
        return stack, measured, scale, mask

    def optimise_step(self, step: int, rng: np.random.Generator) -> float:
        """One re-projection step on a random frame crop and view subset; returns the data-fit term."""
        p = self.params
        stack, measured, scale, mask = self._batch(rng)
        subset = np.arange(len(self.used))
        if 0 < p.views_per_step < len(self.used):
            subset = np.sort(rng.choice(len(self.used), size=p.views_per_step, replace=False))
        index = torch.as_tensor(subset, device=self.device)
        self.model.train()
        volume = self.model(stack) * scale[:, None, None, None]
        projected = self.operator(volume, views=index)  # (1, a, cy, cx): only the compared views
        target = measured[:, index]
        rate, data = projected[..., mask], target[..., mask]
        if p.loss == "nll-mpg":
            # the background was subtracted from the data; it is part of the expected signal λ
            fit = nll_mpg(rate + p.background, data + p.background, p.read_noise_e)
        else:
            fit = l2_loss(rate, data, scale=float(scale))
        loss = fit + p.nonneg_weight * non_negativity_penalty(volume, scale=float(scale))
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        return float(fit.detach())

    def preview(self) -> np.ndarray:
        """The current reconstruction of the first training frame."""
        self.model.eval()
        with torch.no_grad():
            views = self.frames[:1, self.used]
            scale = frame_scale(views)
            volume = predict_volume(self.model, network_input(views, self.shifts, scale), scale)
        return torch.clamp(volume[0], min=0).to("cpu", torch.float32).numpy().copy()

    def describe(self) -> str:
        """Frames, views, network size and loss."""
        return (
            f"SeReNet training: {self.frames.shape[0]} frame(s), {len(self.used)} views, "
            f"{self.model.n_parameters()} parameters, loss {self.params.loss}"
        )

    def data_summary(self) -> str:
        """The number of frames."""
        return f"{self.frames.shape[0]} frame(s) given to the engine"

    def write_weights(self, path: str, training: dict[str, Any]) -> Path:
        """SeReNet weights for this PSF's optics (written from the CPU)."""
        written = save_model(path, self.model.cpu(), self.psf, training)
        self.model.to(self.device)
        return written


@register
class SeReNetTrain(TrainingEngine):
    """Self-supervised SeReNet training on raw light-field frames and their PSF (no ground truth)."""

    name = "serenet-train"
    title = "SeReNet training (self-supervised)"
    modalities = ("lfm",)
    Params = SeReNetTrainParams
    trains = "serenet"
    data_kinds = ("raw-frames", "simulated")
    trainer = SeReNetTrainer
    Simulation = SeReNetSimulation

    def output_voxel_size(self, inputs: Inputs) -> tuple[float, float, float] | None:
        """The preview/result volume is on the PSF's volume grid."""
        return inputs.psf.voxel_size if inputs.psf is not None else inputs.voxel_size

    def simulate(self, psf: PSF, count: int, options: SeReNetSimulation) -> TrainingData:
        """``count`` phantom frames seen through ``psf`` (views ``(N, A, Ny, Nx)``, photo-electrons)."""
        from .serenet_data import simulate_training_frames

        lenslets = (options.lenslets, options.lenslets)
        views, _, _ = simulate_training_frames(psf, count, lenslets, family=options.family, seed=options.seed)
        described = f"{count} simulated {options.family} frames, {lenslets} lenslets, seed {options.seed}"
        return TrainingData(np.asarray(views, dtype=np.float32), described)

    def training_data(self, files: Sequence[DataFile], psf: PSF, simulated: TrainingData | None = None) -> TrainingData:
        """Every frame of the files (raw ``(Y, X)``, series ``(N, Y, X)`` or views) as views ``(N, A, Ny, Nx)``."""
        psf = _check_lfm_psf(psf, "SeReNet training")
        frames: list[np.ndarray] = []
        described = []
        for item in files:
            frame = np.asarray(item.data, dtype=np.float32)
            frames.extend(frame if frame.ndim == 3 and frame.shape[0] != psf.array.shape[0] else [frame])
            described.append(Path(item.name).name)
        views = [measurement_to_views(f, psf) for f in frames]
        if simulated is not None:
            views.extend(simulated.data)
            described.append(simulated.description)
        if not views:
            raise EngineInputError("nothing to train on: give raw light-field TIFFs or --simulate N")
        return TrainingData(np.stack(views), "; ".join(described))


__all__ = ["SeReNetSimulation", "SeReNetTrain", "SeReNetTrainParams", "SeReNetTrainer"]
