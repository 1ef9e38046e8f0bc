"""Fourier light-field microscopy (XLFM): one raw sensor frame ``(Y, X)`` holding every view."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..physics.xlfm import XLFMProjector, windows_overlap
from .base import ForwardModel, Modality


class FourierLightField(Modality):
    """XLFM through :class:`~napari_lfrecon.physics.xlfm.XLFMProjector` (the PSF's sensor = the frame)."""

    name = "xlfm"
    title = "Fourier light field (XLFM)"
    expected_data = "a 2D raw XLFM sensor frame (Y, X)"
    frame_ndim = (2,)
    sample_name = "xlfm"
    order = 2
    #: Measured ≈12 copies of the PSF array for RL on one frame.
    operator_psf_copies = 16

    def forward_model(self, psf: Any, data_shape: Sequence[int], *, boundary: str = "padded") -> ForwardModel:
        """The sensor frame of a ``(D, *view_size)`` volume (or the PSF's stored ``volume_shape``).

        Each lenslet's field stop is modelled (it lights only its own view window, so the
        volume's edge does not leak into neighbouring views) unless the windows overlap.
        """
        data_shape = tuple(int(n) for n in data_shape)
        if len(data_shape) != 2:
            raise ValueError(f"an XLFM PSF needs {self.expected_data}, got data of shape {data_shape}")
        depth, height, width = psf.array.shape
        if (height, width) != data_shape:
            raise ValueError(f"the XLFM frame is {data_shape} but the PSF's sensor is {(height, width)}")
        view_size = tuple(int(v) for v in psf.optics["view_size"])
        volume_shape = tuple(int(v) for v in psf.optics.get("volume_shape", (depth, *view_size)))
        centres = psf.arrays["centres"]
        field_stop = not windows_overlap(centres, view_size)  # type: ignore[arg-type]
        op = XLFMProjector(psf.array, centres, view_size, volume_shape, field_stop=field_stop)  # type: ignore[arg-type]
        slices = tuple(slice(0, n) for n in volume_shape)
        return ForwardModel(op, volume_shape, data_shape, slices, psf.voxel_size, "xlfm")

    def psf_scale(self, psf: Any) -> tuple[float, ...] | None:
        """``(dz, p, p)`` with ``p`` the camera pixel in object space (``None`` without pixel and magnification)."""
        pixel, magnification = psf.optics.get("camera_pixel_um"), psf.optics.get("magnification")
        if not pixel or not magnification:
            return None  # the kernels are sensor images: their sampling is the camera's
        lateral = float(pixel) / float(magnification)
        return (float(psf.voxel_size[0]), lateral, lateral)

    def projector(
        self,
        psf: Any,
        volume_yx: tuple[int, int] | None = None,
        *,
        depth_chunk: int | None = None,
        field_stop: bool | None = None,
    ) -> XLFMProjector:
        """The operator of an ``"xlfm"`` PSF object; the volume's lateral shape defaults to the view size.

        ``field_stop=None`` models each lenslet's field stop whenever the view windows do not overlap.
        """
        if getattr(psf, "modality", None) != "xlfm" or "centres" not in getattr(psf, "arrays", {}):
            raise ValueError("an XLFM projector needs an 'xlfm' PSF with arrays['centres']")
        view = tuple(int(v) for v in psf.optics["view_size"])
        yx = tuple(volume_yx) if volume_yx is not None else view
        array = np.asarray(psf.array, dtype=np.float32)
        centres = psf.arrays["centres"]
        if field_stop is None:
            field_stop = not windows_overlap(centres, view)  # type: ignore[arg-type]
        shape = (array.shape[0], *yx)
        return XLFMProjector(array, centres, view, shape, depth_chunk=depth_chunk, field_stop=field_stop)  # type: ignore[arg-type]

    def frame_axes(self, frame_ndim: int) -> str:
        """``"YX"``: a sensor frame."""
        return "YX" if frame_ndim == 2 else "?" * frame_ndim


MODALITY = FourierLightField()
