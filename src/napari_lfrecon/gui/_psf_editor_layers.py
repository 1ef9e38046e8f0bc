"""The PSF editor's napari layers: the panel layers, the hand-over layer and the resample targets.

:class:`~napari_lfrecon.gui.psf_widget.PSFEditorWidget` computes panels with
:mod:`napari_lfrecon.controllers.psf_editor` and puts them on screen with these
functions; they only touch the viewer's layer list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from napari.layers import Image

from ..controllers.psf_editor import NO_RESAMPLE_NOTE, RECONSTRUCTION_LAYER, Panel, lfm_sensor_stack, place_panels
from ..psf.model import PSF

__all__ = ["draw_panels", "resample_note", "resample_targets", "resample_to_layer", "show_reconstruction_psf"]


def draw_panels(viewer: Any, layers: list[Any], panels: list[Panel], names: tuple[str, ...]) -> list[Any]:
    """Put ``panels`` side by side (µm) into ``layers`` (reused and renamed, extra ones removed); the layers now.

    Each property change refreshes the canvas, so only what changed is set.
    New layers carry ``metadata["psf_editor"]`` (the resample list skips them).
    """
    layers = [layer for layer in layers if layer in viewer.layers]
    for layer in layers[len(panels) :]:
        viewer.layers.remove(layer)
    layers = layers[: len(panels)]
    placements = place_panels(panels)
    for i, (panel, place, name) in enumerate(zip(panels, placements, names, strict=False)):
        translate = place.translate
        if i < len(layers):
            layer = layers[i]
            if layer.name != name:
                layer.name = name
            layer.data = panel.data
            if not np.allclose(layer.scale, panel.scale):
                layer.scale = panel.scale
            if not np.allclose(layer.translate, translate):
                layer.translate = translate
            if layer.colormap.name != panel.colormap:
                layer.colormap = panel.colormap
        else:
            layer = viewer.add_image(
                panel.data,
                name=name,
                scale=panel.scale,
                translate=translate,
                colormap=panel.colormap,
                metadata={"psf_editor": True},
            )
            layers.append(layer)
        if layer.gamma != place.gamma:
            layer.gamma = place.gamma
        layer.contrast_limits_range = place.contrast_range
        layer.contrast_limits = place.contrast_limits
    return layers


def show_reconstruction_psf(viewer: Any, psf: PSF) -> Any:
    """Add or update the 3-D layer :data:`RECONSTRUCTION_LAYER` holding ``psf`` in ``metadata["psf"]``; the layer.

    An LFM PSF's ``(A, D, h, w)`` phase-space array is not an image a user can
    read: the layer shows its sensor stack instead (the PSF object is intact).
    """
    if psf.modality == "lfm":
        sensor, pixel = lfm_sensor_stack(psf)
        data, scale = sensor, (psf.voxel_size[0], pixel, pixel)
    else:
        data, scale = psf.array, psf.voxel_size
    if RECONSTRUCTION_LAYER in viewer.layers:
        layer = viewer.layers[RECONSTRUCTION_LAYER]
        layer.data = data
        layer.scale = scale
        layer.metadata = {**layer.metadata, "psf": psf}
        layer.reset_contrast_limits()
        return layer
    return viewer.add_image(data, name=RECONSTRUCTION_LAYER, scale=scale, colormap="magma", metadata={"psf": psf})


def resample_targets(viewer: Any) -> list[str]:
    """Names of the image layers a widefield PSF can be resampled to (volumes not made by the editor)."""
    return [
        layer.name
        for layer in viewer.layers
        if isinstance(layer, Image)
        and layer.ndim >= 3
        and not layer.metadata.get("psf_editor")
        and layer.name != RECONSTRUCTION_LAYER
    ]


def resample_note(viewer: Any, mode: str, target: str) -> str:
    """The note under the resample combo: why there is no resampling, or the voxel size it resamples to."""
    if mode != "widefield":
        return NO_RESAMPLE_NOTE
    if target and target in viewer.layers:
        dz, dy, dx = (float(s) for s in viewer.layers[target].scale[-3:])
        return f"'Use for reconstruction' resamples to {dz:g}×{dy:g}×{dx:g} µm"
    return ""


def resample_to_layer(viewer: Any, layer_name: str, psf: PSF | Callable[[], PSF]) -> PSF:
    """A widefield ``psf`` resampled to image layer ``layer_name``'s voxel size (the last three axes of its scale).

    ``psf`` may be a callable giving the PSF, called only once the layer is
    known to be a volume. Raises ``ValueError`` for a missing layer, a layer
    that is not a volume or a PSF that is not widefield.
    """
    from ..psf.resample import resample_psf

    if layer_name not in viewer.layers:
        raise ValueError(f"no layer named {layer_name!r}")
    scale = tuple(float(s) for s in viewer.layers[layer_name].scale)
    if len(scale) < 3:
        raise ValueError(f"layer {layer_name!r} is not a volume (scale {scale}); a (Z, Y, X) layer is needed")
    psf = psf() if callable(psf) else psf
    if psf.modality != "widefield":
        raise ValueError(NO_RESAMPLE_NOTE)
    return resample_psf(psf, scale[-3:])
