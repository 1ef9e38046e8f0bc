"""niiv (Troidl et al.): isotropic volumes from anisotropic stacks with a self-supervised neural field.

Two engines:

- ``niiv``: a stack ``(Z, Y, X)`` whose z is ``af`` times coarser than y and
  x → the isotropic volume with ``round(Z·af·z_scale)`` planes. The trained
  network (:mod:`.niiv_model`) decodes every xz slice (one per y) and every
  yz slice (one per x) at the output's z positions, and the two passes are
  averaged (:class:`~.niiv_field.NiivField`); streamed per batch of slices.
- ``niiv-train``: self-supervised training on the stack's own lateral (xy)
  slices. Every xy slice is degraded along y and along x with
  :class:`~napari_lfrecon.physics.axial.AxialDegradation` (optional Gaussian
  blur, then average-pooling by ``af``); each step takes random crops (one
  orientation at random), adds noise so the degraded inputs are as noisy as
  the stack's real coarse planes, and fits the network to decode the original
  crop from the degraded one (L1 loss, Adam).
  Seeded per ``(seed, step)`` (a resumed run continues exactly), checkpointed,
  streamed as ``Update``s, stopped by steps, minutes or convergence; the
  weights file records the config, ``af``, the training command and settings.

Units: the network sees the stack's ``[lo, hi]`` (a low percentile and the
maximum of the stack at hand, :func:`~.niiv_field.intensity_range`) mapped
to ``[0.1, 0.9]``, and its sigmoid output is mapped back, so the volume is in
the input's units.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import register
from .base import Engine, EngineInputError, Inputs, TrainInputs, Update, Volume, param
from .niiv_field import SPAN, NiivField, check_stack, intensity_range, normalise
from .niiv_model import NiivConfig, NiivNet

ENGINE_NAME = "niiv"
#: Version of the niiv weights layout (bump when the network or its input changes meaning).
WEIGHTS_VERSION = 1
#: File name of the weights shipped with the anisotropic sample, in ``sample_data/``.
SHIPPED_WEIGHTS_NAME = "niiv_anisotropic.safetensors"
#: Loss values are reported as a running mean over this many steps.
_LOSS_WINDOW = 10
#: Median absolute deviation of a unit Gaussian (σ = MAD / 0.6745).
_MAD_TO_SIGMA = 0.6745
#: Convergence: the windowed loss must improve by this relative amount to count as progress.
_CONVERGENCE_REL = 0.01


# ----------------------------------------------------------------------------- weights files


def shipped_weights_path() -> Path:
    """Where the weights for the shipped anisotropic sample live (may be missing in a source checkout)."""
    from ..samples import sample_dir

    return sample_dir() / SHIPPED_WEIGHTS_NAME


def save_model(path: str | Path, model: NiivNet, training: dict[str, Any]) -> Path:
    """Write ``model`` as niiv weights (config and anisotropy in the JSON header)."""
    from ..io.weights import save_weights

    header = {
        "engine": ENGINE_NAME,
        "version": WEIGHTS_VERSION,
        "config": model.config.to_dict(),
        "anisotropy": model.config.anisotropy,
        "training": training,
        "torch": torch.__version__,
    }
    return save_weights(path, model.state_dict(), header)


def load_model(path: str | Path, anisotropy: int | None = None) -> tuple[NiivNet, dict[str, Any]]:
    """Build the network from a niiv weights file; with ``anisotropy``, refuse weights for another factor.

    Raises :class:`EngineInputError` saying what the file holds and what was expected.
    """
    from ..io.weights import load_weights

    try:
        tensors, header = load_weights(path, engine=ENGINE_NAME)
    except ValueError as exc:
        raise EngineInputError(str(exc)) from exc
    if int(header.get("version", -1)) != WEIGHTS_VERSION:
        raise EngineInputError(
            f"{path}: niiv weights version {header.get('version')} cannot be read by this version "
            f"(expects {WEIGHTS_VERSION}); retrain with `lfrecon train niiv`"
        )
    try:
        config = NiivConfig.from_dict(header["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EngineInputError(f"{path}: the niiv config in the header is not usable ({exc})") from exc
    if anisotropy is not None and int(anisotropy) != config.anisotropy:
        raise EngineInputError(
            f"the niiv weights {Path(path).name} were trained for anisotropy factor {config.anisotropy}, "
            f"not {anisotropy}: train weights for this factor with "
            f"`lfrecon train niiv STACK.tif --anisotropy {anisotropy} --out WEIGHTS` and pass them as 'weights'"
        )
    model = NiivNet(config)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise EngineInputError(
            f"{path}: the tensors do not fit the network described in the header ({config.to_dict()}): "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    model.eval()
    return model, header


def voxel_anisotropy(voxel_size: tuple[float, float, float] | None) -> tuple[int | None, str]:
    """The integer ``dz / dx`` of a voxel size (rounded), with a sentence saying where it came from."""
    if voxel_size is None or len(voxel_size) != 3:
        return None, "no voxel size"
    dz, dy, dx = (float(v) for v in voxel_size)
    if min(dz, dy, dx) <= 0:
        return None, "no usable voxel size"
    ratio = dz / dx
    factor = max(1, int(round(ratio)))
    return factor, f"anisotropy {factor} from the voxel size dz/dx = {dz:g}/{dx:g} = {ratio:.3g} (rounded)"


def resolve_anisotropy(requested: int, inputs: Inputs, weights_factor: int | None) -> tuple[int, str]:
    """The anisotropy factor to use and why: the parameter, else the data's, else the weights'."""
    from_voxel, voxel_note = voxel_anisotropy(inputs.voxel_size)
    if requested > 0:
        if from_voxel is not None and from_voxel != requested:
            warnings.warn(
                f"anisotropy {requested} was given but the voxel size says {from_voxel} ({voxel_note}); "
                f"using {requested}",
                stacklevel=3,
            )
        return int(requested), f"anisotropy {requested} (given)"
    if inputs.description.anisotropy:
        stated = int(inputs.description.anisotropy)
        return stated, f"anisotropy {stated} (from the data's description)"
    if from_voxel is not None and from_voxel > 1:
        return from_voxel, voxel_note
    if weights_factor is not None:
        return weights_factor, f"anisotropy {weights_factor} (from the weights; the data state no voxel size)"
    raise EngineInputError(
        "the anisotropy factor is unknown: give 'anisotropy' (e.g. 8 for dz = 8·dx) or a voxel size (dz, dy, dx)"
    )


# ----------------------------------------------------------------------------- inference engine


@dataclass
class NiivParams:
    """niiv inference settings (every field appears in the GUI form and as a CLI flag)."""

    weights: str = field(
        default="",
        metadata=param("niiv weights file (.safetensors); empty = the shipped weights when the anisotropy matches"),
    )
    anisotropy: int = field(
        default=0,
        metadata=param("z spacing / lateral spacing (integer); 0 = from the voxel size dz/dx, rounded", min=0, max=64),
    )
    z_scale: float = field(
        default=1.0,
        metadata=param("output planes per isotropic plane (1 = isotropic, 2 = twice as many)", min=0.05, max=16.0),
    )
    passes: str = field(
        default="both", metadata=param("decode xz and yz slices and average, or one pass", choices=("both", "xz", "yz"))
    )
    batch_points: int = field(
        default=8192, metadata=param("points decoded per batch (memory bound)", min=256, max=10_000_000)
    )
    cache_mib: int = field(default=256, metadata=param("memory for cached slice encodings (MiB)", min=1))


def _output_voxel(inputs: Inputs, factor: int, depth_in: int, depth_out: int) -> tuple[float, float, float] | None:
    if inputs.voxel_size is None or len(inputs.voxel_size) != 3:
        return None
    dz, dy, dx = (float(v) for v in inputs.voxel_size)
    return (dz * depth_in / depth_out, dy, dx)


@register
class Niiv(Engine):
    """niiv inference: an anisotropic stack → an isotropic volume at any z sampling."""

    name = "niiv"
    title = "niiv (isotropic volume from an anisotropic stack)"
    modalities = ("anisotropic",)
    Params = NiivParams
    #: niiv learns the axial degradation from the stack itself: no PSF (read by the Reconstruct widget).
    needs_psf = False

    def run(
        self,
        inputs: Inputs,
        params: NiivParams,
        *,
        device: torch.device,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[Update]:
        """Load the weights, encode and decode the xz and yz slices in batches, yield the fused volume."""
        from ..io.weights import read_header

        started = time.perf_counter()
        weights = params.weights
        weights_factor = None
        if weights:
            weights_factor = int(read_header(weights).get("anisotropy", 0)) or None
        elif shipped_weights_path().is_file():
            weights_factor = int(read_header(shipped_weights_path()).get("anisotropy", 0)) or None
        factor, why = resolve_anisotropy(params.anisotropy, inputs, weights_factor)
        stack = check_stack(inputs.data, factor)
        if not weights:
            path = shipped_weights_path()
            if not path.is_file():
                raise EngineInputError(
                    "no niiv weights given and none are shipped in this installation: train weights with "
                    f"`lfrecon train niiv STACK.tif --anisotropy {factor} --out WEIGHTS` and pass them as 'weights'"
                )
            if weights_factor != factor:
                raise EngineInputError(
                    f"no niiv weights given, and the shipped weights are for anisotropy {weights_factor}, "
                    f"not {factor} ({why}): train weights for this stack with "
                    f"`lfrecon train niiv STACK.tif --anisotropy {factor} --out WEIGHTS`"
                )
            weights = str(path)
        model, _ = load_model(weights, factor)
        field_ = NiivField(
            model,
            stack,
            factor,
            device=device,
            max_batch_points=params.batch_points,
            cache_bytes=params.cache_mib * 2**20,
            passes=params.passes,
        )
        depth_out = field_.depth_out(params.z_scale)
        out_voxel = _output_voxel(inputs, factor, stack.shape[0], depth_out)
        if out_voxel is None:
            raise EngineInputError("the stack's voxel size is unknown: give (dz, dy, dx) in µm")
        yield Update(
            "progress",
            0.0,
            f"niiv ({Path(weights).name}, {model.n_parameters()} parameters): {stack.shape} → "
            f"{(depth_out, *stack.shape[1:])}; {why}",
        )
        if should_stop():
            return
        _, y, x = stack.shape
        steps = field_.decode_steps(field_.z_coordinates(params.z_scale), np.arange(y), np.arange(x))
        volume = None
        try:
            for fraction, result in steps:
                if result is not None:
                    volume = result
                    break
                yield Update("progress", 0.99 * fraction, f"decoded {fraction:.0%} of the slices")
                if should_stop():
                    return
        finally:
            steps.close()
        elapsed = time.perf_counter() - started
        yield Update("metric", 1.0, "seconds", ("seconds", elapsed))
        yield Update("result", 1.0, f"done in {elapsed:.2f} s", Volume(volume, out_voxel))

    def output_voxel_size(self, inputs: Inputs) -> tuple[float, float, float] | None:
        """``(dz / af, dy, dx)`` before a run (``af`` from the voxel size); the result carries the exact one."""
        factor, _ = voxel_anisotropy(inputs.voxel_size)
        if factor is None or inputs.voxel_size is None:
            return None
        dz, dy, dx = (float(v) for v in inputs.voxel_size)
        factor = int(inputs.description.anisotropy or factor)
        return (dz / factor, dy, dx)


# ----------------------------------------------------------------------------- training engine


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


def gaussian_kernel(fwhm: float) -> np.ndarray | None:
    """A normalised 1D Gaussian with ``fwhm`` pixels (±3σ), or ``None`` for ``fwhm = 0``."""
    if fwhm <= 0:
        return None
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    radius = max(1, int(np.ceil(3 * sigma)))
    z = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (z / sigma) ** 2)
    return kernel / kernel.sum()


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


@register
class NiivTrain(Engine):
    """Self-supervised niiv training on the stack's own lateral slices (no ground truth)."""

    name = "niiv-train"
    kind = "train"
    title = "niiv training (self-supervised, lateral slices)"
    modalities = ("anisotropic",)
    Params = NiivTrainParams
    inputs_type = TrainInputs
    needs_psf = False

    def run(
        self,
        inputs: Inputs,
        params: NiivTrainParams,
        *,
        device: torch.device,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[Update]:
        """Train; stream progress every step, the loss every 10 steps, previews; write weights at the end."""
        trainer = NiivTrainer(inputs, params, device)
        yield from trainer.run(should_stop)

    def output_voxel_size(self, inputs: Inputs) -> tuple[float, float, float] | None:
        """Previews and the result are the isotropic volume of the (first) training stack."""
        return Niiv().output_voxel_size(inputs)


class NiivTrainer:
    """State of one niiv training run (kept out of the engine class so the engine stays stateless)."""

    def __init__(self, inputs: Inputs, params: NiivTrainParams, device: torch.device) -> None:
        from ..physics.axial import AxialDegradation

        if not params.output:
            raise EngineInputError("niiv training needs an output weights path ('output')")
        self.params, self.device, self.inputs = params, device, inputs
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

        torch.manual_seed(params.seed)
        self.model = NiivNet(build_config(params, self.factor)).to(device)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=params.lr)
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
            "engine": "niiv-train",
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
        """Restore a checkpoint made with the same network."""
        from ..io.weights import load_weights

        tensors, header = load_weights(path, engine="niiv-train")
        if header["config"] != self.model.config.to_dict():
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

    def train_step(self) -> float:
        """One optimiser step; the randomness comes from ``(seed, step)`` only."""
        rng = np.random.default_rng([self.params.seed, self.step])
        coarse, coords, target = self.batch(rng)
        for group in self.optimiser.param_groups:
            group["lr"] = self.learning_rate()
        self.model.train()
        loss = torch.nn.functional.l1_loss(self.model(coarse, coords), target)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.step += 1
        return float(loss.detach())

    def preview(self) -> np.ndarray:
        """The isotropic volume of the first training stack decoded by the current network."""
        self.model.eval()
        volume = NiivField(self.model, self.stacks[0], self.factor, device=self.device).decode_volume()
        assert volume is not None  # no stop function: always a volume
        return volume

    # ------------------------------------------------------------ the loop
    def run(self, should_stop: Callable[[], bool]) -> Iterator[Update]:
        """Train until steps, minutes or convergence; yield progress, loss metrics and previews."""
        p = self.params
        if p.checkpoint and p.resume and Path(p.checkpoint).is_file():
            self.load_checkpoint(p.checkpoint)
            yield Update("progress", self.step / p.steps, f"resumed from {p.checkpoint} at step {self.step}")
        yield Update(
            "progress",
            self.step / p.steps,
            f"niiv training: {self.slices.shape[0]} lateral slices of {len(self.stacks)} stack(s), {self.why}, "
            f"{self.kernel_note}, {self.noise_note}, crops {self.crop}×{self.crop}, "
            f"{self.model.n_parameters()} parameters",
        )
        started = time.perf_counter()
        window: list[float] = []
        best, best_step = float("inf"), self.step
        stopped, reason = False, "steps"
        while self.step < p.steps:
            value = self.train_step()
            window.append(value)
            elapsed_min = (time.perf_counter() - started + self.seconds_before) / 60
            fraction = self.step / p.steps
            if p.minutes > 0:
                fraction = max(fraction, min(elapsed_min / p.minutes, 1.0))
            yield Update("progress", fraction, f"step {self.step}/{p.steps}, loss {value:.4f}")
            if len(window) >= _LOSS_WINDOW or self.step == p.steps:
                mean = float(np.mean(window))
                self.history.append(mean)
                window = []
                yield Update("metric", fraction, f"loss {mean:.4f}", ("loss", mean))
                if mean < best * (1.0 - _CONVERGENCE_REL):
                    best, best_step = mean, self.step
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
                reason = "minutes"
                break
            if p.patience and self.step - best_step >= p.patience:
                reason = "convergence"
                break
        self.seconds_before += time.perf_counter() - started
        if p.checkpoint:
            self.save_checkpoint(p.checkpoint)
        if stopped:
            yield Update("progress", self.step / p.steps, f"cancelled at step {self.step}")
            return
        training = {
            "command": getattr(self.inputs, "command", ""),
            "data": getattr(self.inputs, "data_description", "")
            or f"{len(self.stacks)} stack(s) {list(self.stacks[0].shape)} given to the engine",
            "voxel_size_um": list(self.voxel_size) if self.voxel_size is not None else None,
            "anisotropy_source": self.why,
            "degradation": self.kernel_note,
            "input_noise": self.noise_note,
            "intensity_lo_hi": [list(v) for v in self.intensities],
            "params": asdict(p),
            "seed": p.seed,
            "steps_done": self.step,
            "stopped_by": reason,
            "seconds": round(self.seconds_before, 1),
            "final_loss": self.history[-1] if self.history else None,
            "loss_history_every_10_steps": [round(v, 5) for v in self.history],
        }
        path = save_model(p.output, self.model, training)
        yield Update("metric", 1.0, "seconds", ("seconds", self.seconds_before))
        yield Update(
            "result", 1.0, f"trained {self.step} steps (stopped by {reason}); weights written to {path}", self.preview()
        )


__all__ = [
    "Niiv",
    "NiivParams",
    "NiivTrain",
    "NiivTrainParams",
    "NiivTrainer",
    "build_config",
    "gaussian_kernel",
    "load_model",
    "resolve_anisotropy",
    "save_model",
    "shipped_weights_path",
    "voxel_anisotropy",
]
