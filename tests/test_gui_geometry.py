"""Output placement rule (no Qt): an output volume is centred on its input's field of view."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lfrecon.gui._geometry import output_translate


def test_same_grid_keeps_the_input_translate():
    t = output_translate((10, 20, 30), (0.4, 0.1, 0.1), (1.0, -2.0, 3.0), (10, 20, 30), (0.4, 0.1, 0.1))
    assert t == pytest.approx((1.0, -2.0, 3.0))


def test_centres_coincide_for_a_finer_output_grid():
    in_shape, in_scale, in_t = (30, 45), (1.5, 1.5), (10.0, 0.0)
    out_shape, out_scale = (5, 90, 135), (2.0, 0.5, 0.5)
    t = output_translate(in_shape, in_scale, in_t, out_shape, out_scale)
    for axis in (1, 2):
        out_centre = t[axis] + (out_shape[axis] - 1) / 2 * out_scale[axis]
        in_centre = in_t[axis - 1] + (in_shape[axis - 1] - 1) / 2 * in_scale[axis - 1]
        assert out_centre == pytest.approx(in_centre)
    # The depth the 2D input lacks is centred on the focal plane z = 0.
    assert t[0] + (out_shape[0] - 1) / 2 * out_scale[0] == pytest.approx(0.0)
    # The same physical extent: 30 px × 1.5 µm = 45 µm = 90 voxels × 0.5 µm, edges aligned too.
    assert t[1] - out_scale[1] / 2 == pytest.approx(in_t[0] - in_scale[0] / 2)


def test_depth_comes_from_the_psf_planes_when_they_match():
    z = np.array([-4.0, -2.0, 0.0, 2.0])
    t = output_translate((8, 8), (1.0, 1.0), (0.0, 0.0), (4, 8, 8), (2.0, 1.0, 1.0), z)
    assert t[0] == -4.0
    t_other = output_translate((8, 8), (1.0, 1.0), (0.0, 0.0), (3, 8, 8), (2.0, 1.0, 1.0), z)
    assert t_other[0] == pytest.approx(-2.0)  # planes do not match 3 slices: centred on 0
