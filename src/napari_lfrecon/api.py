"""The scripting API: run any registered engine to completion on numpy data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import engines
from .camera import Camera
from .device import select_device
from .jobs import EngineInputError, MissingVoxelSize, Update, Volume, make_params, run_job
from .psf.model import PSF


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


#: Largest PSF (voxels) :func:`psf_on_data_grid` makes by resampling (a data grid far finer than the PSF's).
MAX_RESAMPLED_PSF_VOXELS = 2**26


def psf_on_data_grid(psf: PSF | None, voxel_size: tuple[float, ...] | None) -> PSF | None:
    """``psf`` sampled at the data's ``voxel_size`` when its modality lives on the data grid (widefield).

    The data's sampling is honoured, never overridden: a widefield PSF at
    another voxel size is resampled (:func:`napari_lfrecon.psf.resample.resample_psf`).
    Without a ``voxel_size`` the data is taken at the PSF's own sampling.
    Light-field and XLFM PSFs carry their own optics and object grid and are
    returned as they are. Every output format (TIFF, OME-Zarr, the API) goes
    through here, so they agree.
    """
    if psf is None or voxel_size is None:
        return psf
    from . import modalities

    if not modalities.for_psf(psf).psf_on_data_grid:
        return psf
    if len(voxel_size) != 3:
        raise EngineInputError(f"the data's voxel size must be (dz, dy, dx) in µm, got {tuple(voxel_size)}")
    if np.allclose(psf.voxel_size, voxel_size, rtol=1e-6):
        return psf
    from .psf.resample import resample_psf

    # The resampled PSF keeps its physical extent: a much finer data grid makes it huge. Refuse that up front.
    shape = np.asarray(psf.array.shape)
    new_shape = 2 * np.floor((shape // 2) * np.asarray(psf.voxel_size) / np.asarray(voxel_size) + 1e-9) + 1
    if float(np.prod(new_shape)) > MAX_RESAMPLED_PSF_VOXELS:
        raise EngineInputError(
            f"the PSF ({tuple(psf.voxel_size)} µm voxels) resampled to the data's {tuple(voxel_size)} µm would have "
            f"{tuple(int(n) for n in new_shape)} voxels: check the voxel sizes or give a PSF at the data's sampling"
        )
    return resample_psf(psf, tuple(float(v) for v in voxel_size))  # type: ignore[arg-type]


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
    and the result is ``(C, Z, Y, X)``. A widefield PSF at another sampling
    than ``voxel_size`` is resampled to it (:func:`psf_on_data_grid`). ``params`` are the engine's ``Params``
    fields (e.g. ``iterations=30`` for ``rl``). ``progress(fraction, message)``
    is called as the engine runs. The input array is never modified.
    """
    engine = engines.get(engine_name)
    if engine.kind == "train":
        raise EngineInputError(
            f"{engine_name!r} is a trainer, not a reconstruction engine: train with `lfrecon train {engine.trains}` "
            f"(or jobs.run_job), then reconstruct with {engine.trains!r} and its weights"
        )
    if data is None:
        raise EngineInputError("no data: pass the measurement as a numpy-like array")
    array = np.asarray(data)
    if channel_axis is not None:
        return _per_channel(engine_name, array, psf, channel_axis, voxel_size, camera, device, progress, params)
    psf_obj = psf_on_data_grid(as_psf(psf, _voxel(voxel_size)), _voxel(voxel_size))
    settings = make_params(engine.Params, params)
    inputs = engine.inputs_type(data=array, psf=psf_obj, voxel_size=_voxel(voxel_size))

    def on_update(update: Update) -> None:
        if progress is not None and update.kind == "progress":
            progress(update.fraction, update.message)

    try:
        return run_job(engine, inputs, settings, device=select_device(device), camera=camera, on_update=on_update)
    except MissingVoxelSize as exc:
        raise MissingVoxelSize(exc.reason, "pass voxel_size=(dz, dy, dx)") from None


def _voxel(voxel_size: Any) -> tuple[float, float, float] | None:
    if voxel_size is None:
        return None
    try:
        values = tuple(float(v) for v in voxel_size)
    except (TypeError, ValueError):
        raise EngineInputError(f"voxel_size must be three numbers (dz, dy, dx) in µm, got {voxel_size!r}") from None
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise EngineInputError(
            f"voxel_size must be three positive finite numbers (dz, dy, dx) in µm, got {voxel_size!r}"
        )
    return values  # type: ignore[return-value]


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
