"""SeReNet: self-supervised light-field reconstruction (Lu et al., Nature Methods 2025).

Two engines:

- ``serenet``: views → psfshift stack (each view shifted per depth by its PSF
  kernel's centre of mass) → Conv3d network → volume on the PSF's volume grid.
  Runs on the whole frame or in overlapping tiles blended with linear ramps;
  any subset of views (missing ones are zero-filled); optional per-view
  registration against the centre view.
- ``serenet-train``: trains that network with no ground truth. Each step the
  predicted volume of a (cropped) frame is projected through
  :class:`~napari_lfrecon.physics.phase_space.PhaseSpaceLF` — the operator RL
  uses — and compared with a random subset of the measured views by the mixed
  Poisson–Gaussian NLL (or L2), plus a non-negativity penalty. Seeded (every
  step draws from ``(seed, step)``, so a resumed run continues exactly),
  checkpointed, and streamed as ``Update``s (progress, loss, preview).

Units: the views are photo-electrons; the network sees them divided by the
frame's mean view intensity and its output is scaled back, so the volume is in
the same units as an RL reconstruction with the same PSF.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from weakref import WeakKeyDictionary

import numpy as np
import torch

from ..psf.model import PSF
from . import register
from .base import Engine, EngineInputError, Inputs, TrainInputs, Update, Volume, param
from .serenet_data import (
    default_view_indices,
    frames_to_views,
    measurement_to_views,
    parse_view_indices,
    registration_corrections,
    shift_views,
)
from .serenet_loss import l2_loss, nll_mpg, non_negativity_penalty
from .serenet_model import SeReNetConfig, SeReNetNet, refocus, view_shifts_lenslets
from .serenet_weights import default_weights_for, load_model, save_model

#: Smallest frame scale (mean view intensity, electrons) the input is divided by.
_MIN_SCALE = 1e-3
#: Loss values reported as a running mean over this many steps.
_LOSS_WINDOW = 10


# ----------------------------------------------------------------------------- shared pieces


def _check_lfm_psf(psf: PSF | None, what: str) -> PSF:
    if psf is None:
        raise EngineInputError(f"{what} needs the light field's PSF (an LFM PSF file or object)")
    if psf.modality != "lfm":
        raise EngineInputError(f"{what} needs an LFM PSF (A, D, h, w), got a {psf.modality} PSF")
    if psf.array.shape[1] < 1:
        raise EngineInputError(f"{what} needs a PSF with depth planes; this PSF has {psf.array.shape[1]}")
    return psf


def _supersample(psf: PSF) -> int:
    return int(psf.optics.get("supersample", 1))


#: Per-PSF view shifts (the centres of mass of hundreds of MB of kernels take ~0.1 s to compute).
_SHIFTS_CACHE: WeakKeyDictionary[PSF, tuple[int, np.ndarray]] = WeakKeyDictionary()


def psf_view_shifts(psf: PSF) -> np.ndarray:
    """``(A, D, 2)`` psfshift displacements of every PSF view, in lenslets (cached per PSF object and array)."""
    cached = _SHIFTS_CACHE.get(psf)
    if cached is not None and cached[0] == id(psf.array):
        return cached[1]
    shifts = view_shifts_lenslets(psf.array, _supersample(psf))
    _SHIFTS_CACHE[psf] = (id(psf.array), shifts)
    return shifts


def flux_factor(psf: PSF, n_views_with_light: int) -> float:
    """Voxel intensity of a uniform volume whose views have mean 1: ``A_lit / (s²·D)``.

    Each voxel sends 1 in total to the sensor; one lenslet holds ``s²·D`` voxels
    and shares their light among the ``A_lit`` views inside the aperture.
    """
    s, depth = _supersample(psf), int(psf.array.shape[1])
    return float(n_views_with_light) / float(s * s * depth)


def frame_scale(views: torch.Tensor) -> torch.Tensor:
    """Per-frame normaliser ``(B,)``: the mean view intensity (≥ 1e-3 electrons)."""
    return torch.clamp(views.mean(dim=(1, 2, 3)), min=_MIN_SCALE)


def network_input(
    views: torch.Tensor, shifts: torch.Tensor, scale: torch.Tensor, available: torch.Tensor | None = None
) -> torch.Tensor:
    """The normalised psfshift stack ``(B, A, D, Ny, Nx)`` of views ``(B, A, Ny, Nx)`` (model channel order).

    ``available`` (``(A,)`` bool) marks views actually measured; the others are
    zero and the rest scaled up by ``A / A_available`` so the stack's sum is kept.
    """
    x = views / scale[:, None, None, None]
    if available is not None:
        n_avail = int(available.sum())
        if n_avail == 0:
            raise EngineInputError("no views left to reconstruct from")
        x = x * available[None, :, None, None].to(x.dtype) * (available.numel() / n_avail)
    return refocus(x, shifts)


def blend_weights(length: int, start: int, size: int, total: int, cut: int, overlap: int) -> np.ndarray:
    """1D blending weight of a tile ``[start, start + size)`` on an axis of ``total`` samples.

    Near an edge shared with another tile the weight is 0 for ``cut`` samples
    (where the tile's output is affected by its border), then ramps linearly to
    1 across the rest of the overlap; at the frame's own edges it stays 1.
    """
    d = np.arange(length, dtype=np.float64)
    w = np.ones(length)
    ramp = max(overlap - 2 * cut, 1)
    if start > 0:
        w = np.minimum(w, np.clip((d - cut + 0.5) / ramp, 0.0, 1.0))
    if start + size < total:
        w = np.minimum(w, np.clip((length - 1 - d - cut + 0.5) / ramp, 0.0, 1.0))
    return w


def tile_starts(total: int, size: int, overlap: int) -> list[int]:
    """Starts of tiles of ``size`` covering ``[0, total)`` with at least ``overlap`` shared samples."""
    if size >= total:
        return [0]
    step = max(size - overlap, 1)
    starts = list(range(0, total - size, step))
    starts.append(total - size)
    return sorted(set(starts))


def predict_volume(
    model: SeReNetNet,
    stack: torch.Tensor,
    scale: torch.Tensor,
    *,
    tile: int = 0,
    overlap: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """The volume ``(B, D, s·Ny, s·Nx)`` from a normalised stack, whole or in blended lateral tiles.

    ``tile`` and ``overlap`` are in lenslets (``tile = 0``: one pass). Tiles
    are cut from the stack of the whole frame, so their inputs are exact; with
    ``overlap ≥ 2·r + 1`` (``r`` = the network's receptive radius) every voxel
    is taken only from tiles whose output there is unaffected by their border,
    and the tiled result equals the untiled one.
    """
    s = model.config.supersample
    ny, nx = stack.shape[-2:]
    if tile <= 0 or (tile >= ny and tile >= nx):
        out = model(stack) * scale[:, None, None, None]
        if progress is not None:
            progress(1, 1)
        return out
    overlap = min(max(int(overlap), 0), tile - 1)
    cut = min(model.receptive_radius_lenslets(), overlap // 2)
    ys, xs = tile_starts(ny, tile, overlap), tile_starts(nx, tile, overlap)
    depth = stack.shape[2]
    acc = stack.new_zeros((stack.shape[0], depth, s * ny, s * nx))
    norm = stack.new_zeros((s * ny, s * nx))
    n_tiles, done = len(ys) * len(xs), 0
    for y0 in ys:
        ty = min(tile, ny)
        wy = blend_weights(s * ty, s * y0, s * ty, s * ny, s * cut, s * overlap)
        for x0 in xs:
            tx = min(tile, nx)
            wx = blend_weights(s * tx, s * x0, s * tx, s * nx, s * cut, s * overlap)
            weight = torch.as_tensor(np.outer(wy, wx), dtype=stack.dtype, device=stack.device)
            part = model(stack[..., y0 : y0 + ty, x0 : x0 + tx])
            region = (..., slice(s * y0, s * (y0 + ty)), slice(s * x0, s * (x0 + tx)))
            acc[region] += part * weight
            norm[region[1:]] += weight
            done += 1
            if progress is not None:
                progress(done, n_tiles)
    return acc / torch.clamp(norm, min=1e-12) * scale[:, None, None, None]


# ----------------------------------------------------------------------------- inference engine


@dataclass
class SeReNetParams:
    """SeReNet inference settings (every field appears in the GUI form and as a CLI flag)."""

    weights: str = field(
        default="",
        metadata=param("SeReNet weights file (.safetensors); empty = the shipped weights when the optics match"),
    )
    tile_lenslets: int = field(
        default=0, metadata=param("process in lateral tiles of this many lenslets (0 = whole frame)", min=0, max=4096)
    )
    overlap_lenslets: int = field(
        default=20, metadata=param("overlap between tiles in lenslets (blended)", min=0, max=1024)
    )
    background: float = field(
        default=0.0, metadata=param("constant background subtracted from the views (photo-electrons)", min=0.0)
    )
    view_indices: str = field(
        default="",
        metadata=param("views present, raster order, e.g. '0-8,12' (empty = all); missing views are zero-filled"),
    )
    register_views: bool = field(
        default=False, metadata=param("register every view to the centre view (cross-correlation) first")
    )


def prepare_views(
    data: np.ndarray, psf: PSF, view_indices: str, background: float
) -> tuple[np.ndarray, list[int] | None]:
    """Views ``(A_psf, Ny, Nx)`` (absent ones zero) and the list of views present (``None`` = all)."""
    n_psf = int(psf.array.shape[0])
    present = parse_view_indices(view_indices, n_psf)
    array = np.asarray(data, dtype=np.float32)
    if present is not None and array.ndim == 3 and array.shape[0] == len(present) and len(present) != n_psf:
        views = np.zeros((n_psf, *array.shape[1:]), np.float32)
        views[present] = array
    else:
        views = measurement_to_views(array, psf)
    if background:
        views = np.clip(views - np.float32(background), 0.0, None)
    return views, present


@register
class SeReNet(Engine):
    """SeReNet inference: a trained network turns one light-field frame into a volume in one pass."""

    name = "serenet"
    title = "SeReNet (self-supervised network)"
    modalities = ("lfm",)
    Params = SeReNetParams

    def run(
        self,
        inputs: Inputs,
        params: SeReNetParams,
        *,
        device: torch.device,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[Update]:
        """Load the weights, build the psfshift stack, run the network (tiled if asked), yield the volume."""
        from .validation import checked_measurement

        psf = _check_lfm_psf(inputs.psf, "SeReNet")
        started = time.perf_counter()
        weights = params.weights or str(default_weights_for(psf))
        model, header = load_model(weights, psf)
        model.to(device)
        data = checked_measurement(inputs.data, non_negative=True)
        views, present = prepare_views(data, psf, params.view_indices, params.background)
        yield Update("progress", 0.05, f"SeReNet ({Path(weights).name}): views {views.shape}")
        if should_stop():
            return
        used = model.config.view_indices
        if params.register_views:
            views = register_to_centre(views, psf, used, present)
            yield Update("progress", 0.15, "views registered to the centre view")
        v = torch.as_tensor(views[used], device=device)[None]
        available = None
        if present is not None:
            available = torch.as_tensor([i in set(present) for i in used], device=device)
        shifts = torch.as_tensor(psf_view_shifts(psf)[used], device=device)
        with torch.no_grad():
            scale = frame_scale(v if available is None else v[:, available])
            stack = network_input(v, shifts, scale, available)
            volume = predict_volume(model, stack, scale, tile=params.tile_lenslets, overlap=params.overlap_lenslets)
            volume = torch.clamp(volume, min=0.0)
        elapsed = time.perf_counter() - started
        yield Update("metric", 1.0, "seconds", ("seconds", elapsed))
        out = volume[0].to("cpu", torch.float32).numpy().copy()
        yield Update("result", 1.0, f"done in {elapsed:.2f} s", out)

    def output_voxel_size(self, inputs: Inputs) -> tuple[float, float, float] | None:
        """SeReNet returns a volume on the PSF's volume grid (the same as RL)."""
        return inputs.psf.voxel_size if inputs.psf is not None else inputs.voxel_size


def register_to_centre(views: np.ndarray, psf: PSF, used: list[int], present: list[int] | None) -> np.ndarray:
    """Remove each used view's misregistration (cross-correlation with the centre view, parallax fitted out)."""
    from ..psf.lfm import LFMOptics

    nnum = int(psf.optics.get("pixels_per_lenslet", 1))
    centre = (nnum * nnum) // 2
    candidates = [i for i in used if present is None or i in present]
    if centre not in candidates:
        raise EngineInputError("view registration needs the centre view, which is not among the views present")
    angles = LFMOptics.from_dict(psf.optics).view_angles()[candidates]
    residual, _ = registration_corrections(views[candidates], angles, candidates.index(centre))
    out = views.copy()
    moved = shift_views(torch.as_tensor(views[candidates])[None], torch.as_tensor(residual, dtype=torch.float32))
    out[candidates] = moved[0].numpy()
    return out


# ----------------------------------------------------------------------------- training engine


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


@register
class SeReNetTrain(Engine):
    """Self-supervised SeReNet training on raw light-field frames and their PSF (no ground truth)."""

    name = "serenet-train"
    kind = "train"
    title = "SeReNet training (self-supervised)"
    modalities = ("lfm",)
    Params = SeReNetTrainParams
    inputs_type = TrainInputs

    def run(
        self,
        inputs: Inputs,
        params: SeReNetTrainParams,
        *,
        device: torch.device,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[Update]:
        """Train; stream progress every step, the loss every few steps, previews; write weights at the end."""
        trainer = _Trainer(inputs, params, device)
        yield from trainer.run(should_stop)

    def output_voxel_size(self, inputs: Inputs) -> tuple[float, float, float] | None:
        """The preview/result volume is on the PSF's volume grid."""
        return inputs.psf.voxel_size if inputs.psf is not None else inputs.voxel_size


#: Lenslets per side a training crop must keep after removing the rim that outside light reaches.
_MIN_CROP_INTERIOR = 4


class _Trainer:
    """State of one training run (kept out of the engine class so the engine stays stateless)."""

    def __init__(self, inputs: Inputs, params: SeReNetTrainParams, device: torch.device) -> None:
        from ..physics.phase_space import PhaseSpaceLF

        self.psf = psf = _check_lfm_psf(inputs.psf, "SeReNet training")
        self.params, self.device = params, device
        self.inputs = inputs
        if not params.output:
            raise EngineInputError("SeReNet training needs an output weights path ('output')")
        frames = frames_to_views(inputs.data, psf)
        if not np.all(np.isfinite(frames)):
            raise EngineInputError("the training frames contain NaN or Inf values")
        frames = np.clip(frames - np.float32(params.background), 0.0, None)
        self.frames = torch.as_tensor(frames, device=device)  # (N, A_psf, Ny, Nx), background removed
        self.used = default_view_indices(psf)
        n_frames, _, ny, nx = frames.shape
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
        torch.manual_seed(params.seed)
        config = SeReNetConfig(
            view_indices=self.used,
            depths=depth,
            supersample=s,
            width=params.width,
            flux_factor=flux_factor(psf, len(self.used)),
            view_mix=params.view_mix,
        )
        self.model = SeReNetNet(config).to(device)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=params.lr)
        self.shifts = torch.as_tensor(psf_view_shifts(psf)[self.used], device=device)
        self.operator = PhaseSpaceLF(psf.array[self.used], s, (depth, s * self.crop[0], s * self.crop[1])).to(device)
        self.step = 0
        self.seconds_before = 0.0
        self.history: list[float] = []

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str) -> None:
        """Model, optimiser moments and the step, in one safetensors file (no pickle)."""
        from ..io.weights import save_weights

        tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        state = self.optimiser.state_dict()
        for index, values in state["state"].items():
            for name, value in values.items():
                tensors[f"optim.{index}.{name}"] = torch.as_tensor(value)
        header = {
            "engine": "serenet-train",
            "version": 1,
            "step": self.step,
            "seconds": self.seconds_before,
            "config": self.model.config.to_dict(),
            "param_groups": state["param_groups"],
            "params": asdict(self.params),
            "history": self.history[-1000:],
        }
        save_weights(path, tensors, header)

    def load_checkpoint(self, path: str) -> None:
        """Restore a checkpoint made with the same settings (the network must be the same)."""
        from ..io.weights import load_weights

        tensors, header = load_weights(path, engine="serenet-train")
        if SeReNetConfig.from_dict(header["config"]).to_dict() != self.model.config.to_dict():
            raise EngineInputError(
                f"the checkpoint {path} is for another network ({header['config']}); "
                f"this run builds {self.model.config.to_dict()}: delete it or choose another checkpoint path"
            )
        self.model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
        optim_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                optim_state.setdefault(int(index), {})[name] = value
        self.optimiser.load_state_dict({"state": optim_state, "param_groups": header["param_groups"]})
        self.step = int(header["step"])
        self.seconds_before = float(header.get("seconds", 0.0))
        self.history = list(header.get("history", []))

    # ------------------------------------------------------------ one step
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

    def train_step(self) -> float:
        """One optimiser step; the randomness comes from ``(seed, step)`` only."""
        p = self.params
        rng = np.random.default_rng([p.seed, self.step])
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
        self.step += 1
        return float(fit.detach())

    def preview(self) -> np.ndarray:
        """The current reconstruction of the first training frame."""
        self.model.eval()
        with torch.no_grad():
            views = self.frames[:1, self.used]
            scale = frame_scale(views)
            volume = predict_volume(self.model, network_input(views, self.shifts, scale), scale)
        return torch.clamp(volume[0], min=0).to("cpu", torch.float32).numpy().copy()

    # ------------------------------------------------------------ the loop
    def run(self, should_stop: Callable[[], bool]) -> Iterator[Update]:
        p = self.params
        if p.checkpoint and p.resume and Path(p.checkpoint).is_file():
            self.load_checkpoint(p.checkpoint)
            yield Update("progress", self.step / p.steps, f"resumed from {p.checkpoint} at step {self.step}")
        n_params = self.model.n_parameters()
        yield Update(
            "progress",
            self.step / p.steps,
            f"SeReNet training: {self.frames.shape[0]} frame(s), {len(self.used)} views, "
            f"{n_params} parameters, loss {p.loss}",
        )
        started = time.perf_counter()
        window: list[float] = []
        stopped = False
        try:
            while self.step < p.steps:
                value = self.train_step()
                window.append(value)
                elapsed_min = (time.perf_counter() - started) / 60
                fraction = self.step / p.steps
                if p.minutes > 0:
                    fraction = max(fraction, min(elapsed_min / p.minutes, 1.0))
                yield Update("progress", fraction, f"step {self.step}/{p.steps}, loss {value:.4f}")
                if len(window) >= _LOSS_WINDOW or self.step == p.steps:
                    mean = float(np.mean(window))
                    self.history.append(mean)
                    window = []
                    yield Update("metric", fraction, f"loss {mean:.4f}", ("loss", mean))
                if p.preview_every and self.step % p.preview_every == 0 and self.step < p.steps:
                    yield Update("preview", fraction, f"step {self.step}", self.preview())
                if p.checkpoint and self.step % p.checkpoint_every == 0:
                    self.seconds_before += time.perf_counter() - started
                    started = time.perf_counter()
                    self.save_checkpoint(p.checkpoint)
                if should_stop():
                    stopped = True
                    break
                if p.minutes > 0 and elapsed_min >= p.minutes:
                    break
        except GeneratorExit:
            # The GUI's worker layer closes this generator at the first update after Cancel (GeneratorExit
            # at a yield): keep the state on that path too, so a cancelled run always leaves its checkpoint.
            if p.checkpoint:
                self.seconds_before += time.perf_counter() - started
                self.save_checkpoint(p.checkpoint)
            raise
        self.seconds_before += time.perf_counter() - started
        if p.checkpoint:
            self.save_checkpoint(p.checkpoint)
        if stopped:
            yield Update("progress", self.step / p.steps, f"cancelled at step {self.step} (checkpoint kept)")
            return
        training = {
            "command": getattr(self.inputs, "command", ""),
            "data": getattr(self.inputs, "data_description", "")
            or f"{self.frames.shape[0]} frame(s) given to the engine",
            "params": asdict(p),
            "steps_done": self.step,
            "seconds": round(self.seconds_before, 1),
            "final_loss": self.history[-1] if self.history else None,
            "loss_history_every_10_steps": [round(v, 5) for v in self.history],
        }
        path = save_model(p.output, self.model.cpu(), self.psf, training)
        self.model.to(self.device)
        yield Update("metric", 1.0, "seconds", ("seconds", self.seconds_before))
        yield Update("result", 1.0, f"trained {self.step} steps; weights written to {path}", self.preview())


def describe_weights(path: str | Path) -> str:
    """One paragraph about a weights file: engine, optics and training command (for GUIs and logs)."""
    from ..io.weights import read_header

    header = read_header(path)
    optics = header.get("optics", {})
    training = header.get("training", {})
    return json.dumps(
        {
            "engine": header.get("engine"),
            "views": len(header.get("config", {}).get("view_indices", [])),
            "psf_shape": optics.get("psf_shape"),
            "steps": training.get("steps_done"),
            "command": training.get("command"),
        }
    )


__all__ = [
    "SeReNet",
    "SeReNetParams",
    "SeReNetTrain",
    "SeReNetTrainParams",
    "blend_weights",
    "describe_weights",
    "flux_factor",
    "frame_scale",
    "network_input",
    "predict_volume",
    "prepare_views",
    "register_to_centre",
    "tile_starts",
]
