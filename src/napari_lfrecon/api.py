"""The scripting API: run any registered engine to completion on numpy data."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import engines
from .camera import Camera
from .device import select_device
from .engines.base import EngineInputError, Inputs, make_params
from .psf.model import PSF
from .volume import Volume


def as_psf(psf: PSF | str | Path | np.ndarray | None, voxel_size: tuple[float, float, float] | None) -> PSF | None:
    """A PSF object from a PSF object, a PSF file, or a plain 3D array (read as widefield at ``voxel_size``)."""
    if psf is None or isinstance(psf, PSF):
        return psf
    if isinstance(psf, (str, Path)):
        path = Path(psf)
        if path.suffix.lower() in (".tif", ".tiff"):
            from .io.tiff import read_tiff

            image = read_tiff(path)
            return as_psf(np.asarray(image.data), image.voxel_size or voxel_size)
        return PSF.load(path)
    array = np.asarray(psf, dtype=np.float32)
    if array.ndim != 3:
        raise EngineInputError(
            f"a plain-array PSF is read as a widefield (Z, Y, X) PSF; got shape {array.shape}. "
            "Light-field and XLFM PSFs must be PSF objects or files (they carry their optics)."
        )
    if voxel_size is None:
        raise EngineInputError("a plain-array PSF needs the data's voxel size (pass voxel_size=(dz, dy, dx) in µm)")
    return PSF(array=array, modality="widefield", voxel_size=voxel_size)


def reconstruct(
    engine_name: str,
    data: Any,
    psf: PSF | str | Path | np.ndarray | None = None,
    *,
    voxel_size: tuple[float, float, float] | None = None,
    camera: Camera | None = None,
    channel_axis: int | None = None,
    device: str | None = None,
    progress: Callable[[float, str], None] | None = None,
    **params: Any,
) -> Volume:
    """Run ``engine_name`` on ``data`` to completion and return a :class:`Volume`.

    ``data`` is the measurement (numpy-like): a widefield ``(Z, Y, X)`` stack, a
    raw light field ``(Y, X)`` or its views ``(A, Y, X)``, or an XLFM frame
    ``(Y, X)``. ``psf`` is a :class:`PSF`, a PSF file path, or (widefield only)
    a plain array at the data's ``voxel_size``. ``camera`` converts raw ADU to
    photo-electrons first. With ``channel_axis``, each channel is run on its
    own with ``psf[i]`` (a sequence of PSFs, one per channel and wavelength)
    and the result is ``(C, Z, Y, X)``. ``params`` are the engine's ``Params``
    fields (e.g. ``iterations=30`` for ``rl``). ``progress(fraction, message)``
    is called as the engine runs. The input array is never modified.
    """
    engine = engines.get(engine_name)
    array = np.asarray(data)
    if channel_axis is not None:
        return _per_channel(engine_name, array, psf, channel_axis, voxel_size, camera, device, progress, params)
    if camera is not None:
        array = camera.to_electrons(array)
    psf_obj = as_psf(psf, voxel_size)
    if psf_obj is not None and psf_obj.modality not in engine.modalities:
        raise EngineInputError(
            f"engine {engine_name!r} handles {', '.join(engine.modalities)} data, not a {psf_obj.modality} PSF"
        )
    settings = make_params(engine.Params, params)
    inputs = Inputs(data=array, psf=psf_obj, voxel_size=voxel_size)
    started = time.perf_counter()
    result = None
    dev = select_device(device)
    for update in engine.run(inputs, settings, device=dev, should_stop=lambda: False):
        if progress is not None and update.kind == "progress":
            progress(update.fraction, update.message)
        if update.kind == "result":
            result = update.data
    if result is None:
        raise RuntimeError(f"engine {engine_name!r} finished without a result")
    out_voxel = engine.output_voxel_size(inputs)
    if out_voxel is None:
        raise EngineInputError("the output voxel size is unknown: pass voxel_size=(dz, dy, dx) in µm")
    metadata = {
        "engine": engine_name,
        "params": _jsonable(vars(settings)),
        "seconds": round(time.perf_counter() - started, 3),
        "device": str(dev),
        "input_shape": list(array.shape),
    }
    if psf_obj is not None:
        metadata["psf"] = psf_obj.describe()
    return Volume(data=result, voxel_size=out_voxel, metadata=metadata)


def _per_channel(engine_name, array, psf, channel_axis, voxel_size, camera, device, progress, params) -> Volume:
    channels = np.moveaxis(array, channel_axis, 0)
    psfs = list(psf) if isinstance(psf, (list, tuple)) else [psf] * channels.shape[0]
    if len(psfs) != channels.shape[0]:
        raise EngineInputError(
            f"{channels.shape[0]} channels need {channels.shape[0]} PSFs (one per wavelength), got {len(psfs)}"
        )
    volumes = [
        reconstruct(
            engine_name, channel, p, voxel_size=voxel_size, camera=camera, device=device, progress=progress, **params
        )
        for channel, p in zip(channels, psfs, strict=True)
    ]
    metadata = dict(volumes[0].metadata, channel_axis=0, channels=[v.metadata for v in volumes])
    return Volume(np.stack([v.data for v in volumes]), volumes[0].voxel_size, metadata)


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, (int, float, str, bool, type(None), list)) else str(v)) for k, v in values.items()}
