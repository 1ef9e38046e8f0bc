"""Camera conversion to photo-electrons and per-channel reconstruction."""

import warnings

import numpy as np
import pytest

import napari_lfrecon as nl
from napari_lfrecon.camera import Camera
from napari_lfrecon.psf import PSF


def test_offset_gain_conversion():
    raw = np.array([[100.0, 110.0], [120.0, 300.0]], np.float32)
    electrons = Camera(offset=100.0, gain=0.5).to_electrons(raw)
    np.testing.assert_allclose(electrons, [[0, 5], [10, 100]])
    assert raw[0, 0] == 100.0  # input untouched


def test_dark_and_flat_frames():
    dark = np.full((4, 4), 90.0, np.float32)
    flat = np.full((4, 4), 1090.0, np.float32)
    flat[:, :2] = 590.0  # left half gets half the light
    raw = np.full((2, 4, 4), 190.0, np.float32)
    raw[:, :, :2] = 140.0  # same object, seen through the dimmer half
    electrons = Camera(gain=2.0, dark=dark, flat=flat).to_electrons(raw)
    # After flat correction both halves show the same object brightness.
    np.testing.assert_allclose(electrons[..., :2], electrons[..., 2:], rtol=1e-6)
    with pytest.raises(ValueError, match="dark frame shape"):
        Camera(dark=np.zeros((3, 3))).to_electrons(raw)


def test_negative_after_offset_warns_and_clips():
    raw = np.array([[95.0, 120.0]], np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        electrons = Camera(offset=100.0).to_electrons(raw)
    assert electrons.min() == 0 and any("negative" in str(w.message) for w in caught)


def test_bad_camera_parameters():
    with pytest.raises(ValueError, match="gain"):
        Camera(gain=0)
    with pytest.raises(ValueError, match="read noise"):
        Camera(read_noise=-1)


def _gaussian(shape, sigma):
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    psf = np.exp(-sum(g**2 / (2 * s**2) for g, s in zip(grids, sigma, strict=True)))
    return (psf / psf.sum()).astype(np.float32)


def test_each_channel_runs_with_its_own_psf():
    voxel = (0.3, 0.1, 0.1)
    narrow = PSF(_gaussian((5, 7, 7), (1.0, 0.8, 0.8)), "widefield", voxel, {"wavelength_um": 0.5})
    wide = PSF(_gaussian((5, 7, 7), (1.5, 1.6, 1.6)), "widefield", voxel, {"wavelength_um": 0.65})
    data = np.zeros((8, 16, 16, 2), np.float32) + 1.0
    data[4, 8, 8, :] = 100.0
    camera = Camera(offset=0.0, gain=1.0)
    volume = nl.reconstruct(
        "rl", data, [narrow, wide], channel_axis=-1, camera=camera, iterations=5, boundary="circular"
    )
    assert volume.data.shape == (2, 8, 16, 16) and volume.metadata["channel_axis"] == 0
    separate = [
        nl.reconstruct("rl", data[..., c], p, iterations=5, boundary="circular").data
        for c, p in enumerate([narrow, wide])
    ]
    np.testing.assert_allclose(volume.data[0], separate[0], rtol=1e-5)
    np.testing.assert_allclose(volume.data[1], separate[1], rtol=1e-5)
    assert not np.allclose(separate[0], separate[1])
    with pytest.raises(ValueError, match="2 channels need 2 PSFs"):
        nl.reconstruct("rl", data, [narrow], channel_axis=-1, iterations=1)
