"""niiv (Troidl et al.): isotropic volumes from anisotropic stacks with a self-supervised neural field.

``niiv``: a stack ``(Z, Y, X)`` whose z is ``af`` times coarser than y and x
→ the isotropic volume with ``round(Z·af·z_scale)`` planes. The trained
network (:mod:`.niiv_model`) decodes every xz slice (one per y) and every yz
slice (one per x) at the output's z positions, and the two passes are
averaged (:class:`~.niiv_field.NiivField`); streamed per batch of slices.
Its weights come from ``niiv-train`` (:mod:`.niiv_train`), self-supervised
on the stack's own lateral slices.

Units: the network sees the stack's ``[lo, hi]`` (a low percentile and the
maximum of the stack at hand, :func:`~.niiv_field.intensity_range`) mapped
to ``[0.1, 0.9]``, and its sigmoid output is mapped back, so the volume is in
the input's units.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io.weights import check_tensors
from . import register
from .base import Engine, EngineInputError, Inputs, StopFlag, Update, Volume, never, param
from .niiv_field import NiivField, check_stack
from .niiv_model import NiivConfig, NiivNet

ENGINE_NAME = "niiv"
#: Version of the niiv weights layout (bump when the network or its input changes meaning).
WEIGHTS_VERSION = 1
#: File name of the weights shipped with the anisotropic sample, in ``sample_data/``.
SHIPPED_WEIGHTS_NAME = "niiv_anisotropic.safetensors"


# ----------------------------------------------------------------------------- weights files


def shipped_weights_path() -> Path:
    """Where the weights for the shipped anisotropic sample live (may be missing in a source checkout)."""
    from ..io.resources import sample_dir

    return sample_dir() / SHIPPED_WEIGHTS_NAME


def save_model(path: str | Path, model: NiivNet, training: dict[str, Any]) -> Path:
    """Write ``model`` as niiv weights (config and anisotropy in the JSON header)."""
    from ..training.weights import weights_header, write_weights

    config = model.config.to_dict()
    header = weights_header(ENGINE_NAME, WEIGHTS_VERSION, config, training, anisotropy=model.config.anisotropy)
    return write_weights(path, model, header)


def load_model(path: str | Path, anisotropy: int | None = None) -> tuple[NiivNet, dict[str, Any]]:
    """Build the network from a niiv weights file; with ``anisotropy``, refuse weights for another factor.

    Raises :class:`EngineInputError` saying what the file holds and what was expected.
    """
    from ..training.weights import read_weights

    tensors, header = read_weights(path, engine=ENGINE_NAME, version=WEIGHTS_VERSION, retrain="lfrecon train niiv")
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
    check_tensors(path, tensors, model.state_dict())
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise EngineInputError(
            f"{path}: the tensors do not fit the network described in the header ({config.to_dict()}): "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    model.eval()
    return model, header


def gaussian_kernel(fwhm: float) -> np.ndarray | None:
    """A normalised 1D Gaussian with ``fwhm`` pixels (±3σ), or ``None`` for ``fwhm = 0``."""
    if fwhm <= 0:
        return None
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    radius = max(1, int(np.ceil(3 * sigma)))
    z = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (z / sigma) ** 2)
    return kernel / kernel.sum()


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
        self, inputs: Inputs, params: NiivParams, *, device: torch.device, should_stop: StopFlag = never
    ) -> Iterator[Update]:
        """Load the weights, encode and decode the xz and yz slices in batches, yield the fused volume."""
        started = time.perf_counter()
        weights = params.weights
        weights_factor = _weights_header(params).get("anisotropy") or None
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

    def output_shape(self, inputs: Inputs, params: NiivParams) -> tuple[int, ...] | None:
        """``(round(D·af·z_scale), Y, X)`` for a stack ``(D, Y, X)``."""
        d, y, x = (int(n) for n in np.shape(inputs.data))
        factor, _ = resolve_anisotropy(params.anisotropy, inputs, _weights_header(params).get("anisotropy") or None)
        return (max(1, int(round(d * factor * params.z_scale))), y, x)

    def halo(self, inputs: Inputs, params: NiivParams) -> tuple[int, ...] | None:
        """The whole depth (every slice is encoded over all of z) and the encoder's reach plus the decoder's 3×3.

        The encoder is a head, two 3×3 convolutions per residual block and a
        tail; the decoder reads the 3×3 latent cells around a query.
        """
        config = _weights_header(params).get("config") or {}
        blocks = int(config.get("blocks", NiivConfig.reference().blocks))
        reach = 2 * blocks + 2 + 1
        return (int(np.shape(inputs.data)[0]), reach, reach)

    def memory_bytes(self, inputs: Inputs, params: NiivParams) -> int:
        """Stack copies, the output, the slice-table cache, one batch of decoded points and its queries."""
        d, y, x = (int(n) for n in np.shape(inputs.data))
        depth_out = (self.output_shape(inputs, params) or (d,))[0]
        config = _weights_header(params).get("config") or {}
        width = int(config.get("mlp_width", NiivConfig.reference().mlp_width))
        layers = int(config.get("mlp_depth", NiivConfig.reference().mlp_depth))
        attention = int(config.get("attn_dim", NiivConfig.reference().attn_dim))
        floats = 2 * d * y * x + depth_out * y * x + params.batch_points * width * (layers + 4)
        floats += 16 * depth_out * max(y, x)  # where each point of one slice falls in the latent grid
        # the decoder tables of every xz and yz slice (as NiivField sizes them), up to the cache's bound
        tables = 4 * (2 * attention + 1 + 2 * width) * d * max(y, x) * (y + x)
        return 4 * floats + min(tables, params.cache_mib * 2**20)


def _weights_header(params: NiivParams) -> dict[str, Any]:
    """The header of the weights ``params`` name, else of the shipped weights; ``{}`` when there are none."""
    from ..io.weights import read_header

    if params.weights:
        header = dict(read_header(params.weights))
    elif shipped_weights_path().is_file():
        header = dict(read_header(shipped_weights_path()))
    else:
        return {}
    header["anisotropy"] = int(header.get("anisotropy", 0) or 0)
    return header


__all__ = [
    "Niiv",
    "NiivParams",
    "gaussian_kernel",
    "load_model",
    "resolve_anisotropy",
    "save_model",
    "shipped_weights_path",
    "voxel_anisotropy",
]
