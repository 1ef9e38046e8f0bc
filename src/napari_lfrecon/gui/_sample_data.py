"""npe2 sample-data contributions: each sample opens with its PSF (no Qt import here).

Each command returns napari ``LayerData`` tuples: the measurement (scale =
the sample's ``data_scale``, ``metadata["psf"]`` = its PSF object, which the
Reconstruct widget picks up) and, for simulated samples, the ground truth on
the reconstructed volume's grid (hidden by default).
"""

from __future__ import annotations

from typing import Any

from ..controllers.layers import axes_kwargs
from ._geometry import output_translate

LayerData = tuple[Any, dict[str, Any], str]


def sample_layers(name: str) -> list[LayerData]:
    """The layers of shipped sample ``name`` (``"widefield"``, ``"lfm"``, ``"xlfm"`` or ``"anisotropic"``)."""
    from ..samples import load_sample

    sample = load_sample(name)
    data = sample["data"]
    scale = tuple(float(s) for s in sample.get("data_scale") or ()) or None
    if scale is not None and len(scale) != data.ndim:
        # A sampling that does not match the array would misplace the layer: say so, do not guess.
        raise ValueError(f"sample {name!r}: data_scale {scale} does not match data of shape {data.shape}")
    metadata: dict[str, Any] = {"psf": sample["psf"], "sample": name, "description": sample.get("description", "")}
    if "niiv_weights" in sample:
        # the niiv engine and the zoom layer pick these up: the stack opens with its trained field attached
        metadata["niiv_weights"] = sample["niiv_weights"]
        metadata["anisotropy"] = sample["anisotropy"]
        # the Reconstruct widget preselects niiv with these weights for this layer
        params = {"weights": sample["niiv_weights"], "anisotropy": sample["anisotropy"]}
        metadata["engine_hint"] = {"engine": "niiv", "params": params}
    measurement_kwargs: dict[str, Any] = {"name": name, "metadata": metadata}
    if scale is not None:
        # µm on the spatial axes (the scale bar and sliders read µm) and z/y/x labels
        measurement_kwargs["scale"] = scale
        measurement_kwargs.update(axes_kwargs(data.ndim, min(data.ndim, 3)))
    layers: list[LayerData] = [(data, measurement_kwargs, "image")]
    truth = sample.get("ground_truth")
    if truth is not None:
        voxel = tuple(float(v) for v in sample["voxel_size"])[-truth.ndim :]
        psf = sample["psf"]
        # Placed exactly where the Reconstruct widget puts a result, so the two overlay.
        translate = output_translate(
            data.shape,
            scale or (1.0,) * data.ndim,
            (0.0,) * data.ndim,
            truth.shape,
            voxel,
            psf.z_planes_um if psf is not None and psf.z_planes_um.size else None,
        )
        layers.append(
            (
                truth,
                {
                    "name": f"{name} ground truth",
                    "scale": voxel,
                    "translate": translate,
                    "visible": False,
                    # never a default input of Reconstruct, Train or the Metrics prediction
                    "metadata": {"sample": name, "ground_truth": True},
                    **axes_kwargs(truth.ndim, min(truth.ndim, 3)),
                },
                "image",
            )
        )
    return layers


def make_widefield_sample() -> list[LayerData]:
    """Widefield beads (simulated): a 3D bead stack with its widefield PSF."""
    return sample_layers("widefield")


def make_lfm_sample() -> list[LayerData]:
    """Light field: bubtub (simulated): a raw light-field frame with its LFM PSF."""
    return sample_layers("lfm")


def make_xlfm_sample() -> list[LayerData]:
    """XLFM: zebrafish-like (simulated): a raw XLFM frame with its XLFM PSF."""
    return sample_layers("xlfm")


def make_anisotropic_sample() -> list[LayerData]:
    """Anisotropic stack (simulated): z 8× coarser than x and y, with niiv weights trained on it attached."""
    return sample_layers("anisotropic")
