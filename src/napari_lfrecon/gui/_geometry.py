"""Where an output volume sits relative to its input (no Qt): shared by the worker and the sample data."""

from __future__ import annotations

import numpy as np


def output_translate(
    in_shape: tuple[int, ...],
    in_scale: tuple[float, ...],
    in_translate: tuple[float, ...],
    out_shape: tuple[int, ...],
    out_scale: tuple[float, ...],
    z_planes_um: np.ndarray | None = None,
) -> tuple[float, ...]:
    """The ``translate`` of an output volume so it sits on the input's field of view.

    The output's centre is put on the input's centre along every spatial axis
    the two share (trailing axes): for widefield, where the grids are equal,
    that is the input's own translate. For an output axis the input lacks (the
    depth of a volume reconstructed from a 2D frame), the PSF's ``z_planes_um``
    give the positions when they match the output, else the volume is centred
    on z = 0 (the focal plane).
    """
    ndim = len(out_shape)
    translate = [0.0] * ndim
    for k in range(1, ndim + 1):
        i_out = ndim - k
        i_in = len(in_shape) - k
        if i_in >= 0:
            in_centre = in_translate[i_in] + (in_shape[i_in] - 1) / 2 * in_scale[i_in]
            translate[i_out] = in_centre - (out_shape[i_out] - 1) / 2 * out_scale[i_out]
        elif i_out == 0 and z_planes_um is not None and len(z_planes_um) == out_shape[0]:
            translate[i_out] = float(z_planes_um[0])
        else:
            translate[i_out] = -(out_shape[i_out] - 1) / 2 * out_scale[i_out]
    return tuple(float(t) for t in translate)
