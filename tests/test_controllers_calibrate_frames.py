"""Light-field calibration frames without Qt: their object-space placement and the default input roles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_lfrecon.controllers import calibrate as control
from napari_lfrecon.psf.calibrate_lightfield import LightFieldCalibration, rectify

#: 9.2 px lenslets of 100 µm behind a 20× objective: 5 µm lenslets in object space, 9 px tiles.
OPTICS = {"lenslet_pitch_um": 100.0, "magnification": 20.0, "camera_pixel_um": 100.0 / 9.2}


def grid(pitch=9.2, rotation_deg=0.0, centre=(40.3, 47.6), shape=(83, 97)) -> LightFieldCalibration:
    theta = math.radians(rotation_deg)
    a_row = pitch * np.array([math.cos(theta), -math.sin(theta)])
    a_col = pitch * np.array([math.sin(theta), math.cos(theta)])
    return LightFieldCalibration(np.stack([a_row, a_col]), centre, shape)


def world(placement, points_px):
    return np.asarray(placement["translate"]) + np.asarray(placement["scale"]) * np.asarray(points_px)


def test_raw_frames_land_under_the_rectified_tiles():
    """Every rectified tile centre (world µm) sits on a lenslet centre of the raw frame placed in µm."""
    calibration = grid()
    placement = control.raw_frame_placement(calibration, OPTICS)
    pixel = control.rectified_pixel_um(calibration, OPTICS)
    assert pixel == pytest.approx(100 / 20 / 9)
    # object µm per camera pixel: the lenslet pitch in object space over the measured pitch,
    # the same as the camera pixel over the magnification when the nominal pitch agrees
    assert placement["scale"] == pytest.approx((5.0 / 9.2, 5.0 / 9.2))
    assert placement["scale"][0] == pytest.approx(OPTICS["camera_pixel_um"] / OPTICS["magnification"])
    assert placement["units"] == ("µm", "µm") and placement["axis_labels"] == ("y", "x")
    rectified = rectify(np.zeros(calibration.frame_shape), calibration)
    nnum = calibration.pixels_per_lenslet()
    tiles = np.stack(np.meshgrid(*[np.arange(nnum // 2, n, nnum) for n in rectified.shape], indexing="ij"), -1).reshape(
        -1, 2
    )
    lenslets = world(placement, calibration.lenslet_centres())
    distance = np.linalg.norm(tiles[:, None] * pixel - lenslets[None], axis=-1).min(axis=1)
    assert distance.max() < 1e-3  # µm; a lenslet is 5 µm


def test_a_rotated_grid_matches_in_the_middle_and_drifts_by_the_rotation_only():
    calibration = grid(rotation_deg=0.6)
    placement = control.raw_frame_placement(calibration, OPTICS)
    pixel = control.rectified_pixel_um(calibration, OPTICS)
    rectified_shape = rectify(np.zeros(calibration.frame_shape), calibration).shape
    nnum = calibration.pixels_per_lenslet()
    tiles = pixel * np.stack(
        np.meshgrid(*[np.arange(nnum // 2, n, nnum) for n in rectified_shape], indexing="ij"), -1
    ).reshape(-1, 2)
    lenslets = world(placement, calibration.lenslet_centres())
    distance = np.linalg.norm(tiles[:, None] - lenslets[None], axis=-1).min(axis=1)
    from_middle = np.linalg.norm(tiles - (np.asarray(rectified_shape) - 1) / 2 * pixel, axis=1)
    # scale and translate cannot rotate: the mismatch grows as distance × rotation from the middle, no more
    assert np.all(distance <= 1e-3 + 1.05 * from_middle * math.radians(0.6))
    assert distance.max() > 1e-2  # (the rotation is really there)
    assert placement["scale"] == pytest.approx((5.0 / 9.2, 5.0 / 9.2), rel=1e-4)


def test_no_placement_without_the_lenslet_pitch_and_magnification():
    calibration = grid()
    assert control.raw_frame_placement(calibration, {"lenslet_pitch_um": 100.0}) is None
    assert control.rectified_pixel_um(calibration, {"magnification": 20.0}) is None
    assert (
        control.rectify_lightfield(
            np.ones(calibration.frame_shape), calibration, {}, supersample=1, z_range=(0, 0), z_step=1
        )["axes"]
        == {}
    )


def layers(*names, ndim=2, **metadata):
    return [(name, metadata.get(name, {}), ndim) for name in names]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (("GUV raw", "GUV white", "GUV dark"), ("GUV raw", "GUV white", "GUV dark")),
        (("GUV white", "GUV dark", "GUV raw"), ("GUV raw", "GUV white", "GUV dark")),
        (
            ("DarkFrame_GUVExperim1", "Radiometry_GUVExperim1", "Lightfield_GUVExperim1"),
            ("Lightfield_GUVExperim1", "Radiometry_GUVExperim1", "DarkFrame_GUVExperim1"),
        ),
        (("Image", "white"), ("Image", "white", None)),
        (("Image",), ("Image", None, None)),  # one frame: never the radiometry too
        (("dark", "Image"), ("Image", None, "dark")),
        (("dark",), (None, None, "dark")),  # a dark frame is no light field by default
    ],
)
def test_roles_come_from_the_names(names, expected):
    roles = control.guess_lightfield_roles(layers(*names))
    assert (roles["lightfield"], roles["radiometry"], roles["dark"]) == expected


def test_roles_from_metadata_skip_derived_layers_and_keep_choices():
    found = [
        ("frame A", {}, 2),
        ("frame B", {"kind": "radiometry"}, 2),
        ("frame A rectified", {"lightfield_calibration": {}}, 2),
        ("stack", {}, 3),
    ]
    assert control.guess_lightfield_roles(found) == {"lightfield": "frame A", "radiometry": "frame B", "dark": None}
    # the user put "frame B" in the light-field role: nothing else takes it
    roles = control.guess_lightfield_roles(found, {"lightfield": "frame B"})
    assert roles == {"lightfield": "frame B", "radiometry": None, "dark": None}


def test_light_field_roles_remember_choices_until_their_layer_is_gone():
    roles = control.LightFieldRoles()
    found = layers("GUV raw", "GUV white", "GUV dark")
    with roles.guessing():
        roles.choose("radiometry", "GUV raw")  # the widget's own selection is no choice
    assert roles.chosen == {}
    assert roles.defaults(found, {}) == {"lightfield": "GUV raw", "radiometry": "GUV white", "dark": "GUV dark"}
    roles.choose("dark", None)  # the user chose no dark frame
    current = {"lightfield": "GUV raw", "radiometry": "GUV white", "dark": None}
    assert roles.defaults(found, current) == {"lightfield": "GUV raw", "radiometry": "GUV white"}
    roles.choose("radiometry", "GUV dark")
    defaults = roles.defaults(found, {**current, "radiometry": "GUV dark"})
    assert defaults == {"lightfield": "GUV raw"}
    # the chosen layer was removed (the picker fell back to another): the role is guessed again
    assert roles.defaults(layers("GUV raw", "GUV white"), {**current, "radiometry": "GUV raw"})["radiometry"] == (
        "GUV white"
    )
