"""Light-field microscopy: a lenslet-aligned raw frame ``(Y, X)`` or its angular views ``(A, Y', X')``."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from ..physics.lightfield import raw_to_views
from .base import ForwardModel, Modality


class LightField(Modality):
    """LFM through the phase-space operator (:class:`~napari_lfrecon.physics.phase_space.PhaseSpaceLF`)."""

    name = "lfm"
    title = "Light field (LFM)"
    expected_data = "a 2D lenslet-aligned raw light field (Y, X) or its views (A, Y', X')"
    frame_ndim = (2, 3)
    sample_name = "lfm"
    order = 1
    #: Measured ≈62 copies of the PSF array for RL on one frame.
    operator_psf_copies = 64

    def forward_model(self, psf: Any, data_shape: Sequence[int], *, boundary: str = "padded") -> ForwardModel:
        """Views of a ``(D, Ny·s, Nx·s)`` volume; raw frames are rearranged into views by ``prepare``."""
        from ..physics.phase_space import PhaseSpaceLF

        data_shape = tuple(int(n) for n in data_shape)
        n_views, depth = psf.array.shape[:2]
        nnum = int(psf.optics.get("pixels_per_lenslet", 0))
        s = int(psf.optics.get("supersample", 1))
        to_data = None
        if len(data_shape) == 2:
            if nnum <= 0 or data_shape[0] % nnum or data_shape[1] % nnum:
                raise ValueError(
                    f"a raw light field must be a whole number of lenslets of {nnum}×{nnum} pixels; got {data_shape}"
                )
            layout = "lfm-raw"
            lenslets = (data_shape[0] // nnum, data_shape[1] // nnum)
            views_shape = (n_views, *lenslets)
            to_data = functools.partial(raw_to_views, nnum=nnum)
        elif len(data_shape) == 3:
            if data_shape[0] != n_views:
                raise ValueError(f"the light-field views have {data_shape[0]} angles but the PSF has {n_views}")
            layout = "lfm-views"
            lenslets = (data_shape[1], data_shape[2])
            views_shape = data_shape
        else:
            raise ValueError(f"an LFM PSF needs {self.expected_data}, got data of shape {data_shape}")
        volume_shape = (depth, lenslets[0] * s, lenslets[1] * s)
        op = PhaseSpaceLF(psf.array, s, volume_shape)
        slices = tuple(slice(0, n) for n in op.volume_shape)
        return ForwardModel(op, op.volume_shape, tuple(views_shape), slices, psf.voxel_size, layout, to_data)

    psf_axis_labels = ("view", "z", "y", "x")

    def psf_scale(self, psf: Any) -> tuple[float, ...] | None:
        """``(1, dz, dy, dx)``: ``(A, D, h, w)`` kernels live on the volume grid."""
        return (1.0, *(float(v) for v in psf.voxel_size))

    def frame_ndim_for(self, psf: Any, shape: Sequence[int], axes: str) -> int:
        """3 for views ``(A, Y, X)``, 2 for raw frames; a 3D input is views only when it has the PSF's angle count."""
        shape = tuple(shape)
        n_views = int(psf.array.shape[0])
        if len(shape) == 4:
            return 3
        if len(shape) == 3:
            # (A, Y, X) views of one frame, or (T, Y, X) raw frames: the axes or the view count decide.
            return 2 if (axes.startswith("T") or shape[0] != n_views) else 3
        return 2

    def frame_axes(self, frame_ndim: int) -> str:
        """``"AYX"`` for views, ``"YX"`` for raw frames."""
        return {3: "AYX", 2: "YX"}.get(frame_ndim, "?" * frame_ndim)


MODALITY = LightField()
