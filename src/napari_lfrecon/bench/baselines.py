"""Interpolation baselines for the anisotropic task: nearest, linear and cubic upsampling along z. No Qt."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: Interpolation modes, as torch names them (2D modes whose second axis keeps its size: identity there).
INTERPOLATIONS: dict[str, str] = {"nearest": "nearest", "linear": "bilinear", "cubic": "bicubic"}


def upsample_z(volume: np.ndarray, factor: int, method: str) -> np.ndarray:
    """Upsample a ``(Z, Y, X)`` stack ``factor`` times along z with ``method`` (nearest / linear / cubic).

    Sample ``j`` of the input is the average of high-resolution planes
    ``j·f … j·f + f − 1`` (:class:`~napari_lfrecon.physics.axial.AxialDegradation`),
    i.e. it sits at plane ``j·f + (f − 1)/2``: torch's ``align_corners=False``
    grid puts it exactly there. Edges are clamped. "cubic" is Keys' cubic
    convolution (a = −0.75).
    """
    if method not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {method!r}; expected one of {', '.join(INTERPOLATIONS)}")
    if volume.ndim != 3 or int(factor) < 1:
        raise ValueError(f"need a (Z, Y, X) stack and a positive factor, got shape {volume.shape}, factor {factor}")
    z, y, x = volume.shape
    flat = torch.as_tensor(np.ascontiguousarray(volume, dtype=np.float32)).reshape(1, 1, z, y * x)
    mode = INTERPOLATIONS[method]
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    out = F.interpolate(flat, size=(z * int(factor), y * x), mode=mode, **kwargs)
    return out.reshape(z * int(factor), y, x).numpy()
