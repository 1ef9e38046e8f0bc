"""Phantom generators and simulated acquisitions (``napari_lfrecon.data``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from napari_lfrecon.camera import Camera
from napari_lfrecon.data import (
    add_camera_noise,
    beads,
    bubtub,
    filaments,
    simulate_acquisition,
    zebrafish_like,
)
from napari_lfrecon.data.phantoms import _radial_coverage, _render_polyline

SHAPE = (8, 40, 48)
VOXEL = (1.0, 0.5, 0.5)

GENERATORS = {
    "beads": lambda seed: beads(SHAPE, VOXEL, 10, seed=seed),
    "bubtub": lambda seed: bubtub(SHAPE, VOXEL, 4, 4, seed=seed),
    "zebrafish_like": lambda seed: zebrafish_like(SHAPE, (2.0, 1.0, 1.0), 30, seed=seed),
    "filaments": lambda seed: filaments(SHAPE, VOXEL, 5, seed=seed),
}


# ----------------------------------------------------------------------------- phantoms: contract


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_shape_dtype_range(name):
    volume = GENERATORS[name](0)
    assert volume.shape == SHAPE
    assert volume.dtype == np.float32
    assert volume.min() >= 0.0
    assert volume.max() == pytest.approx(1.0)
    # Anti-aliased, not binary: there are values strictly between 0 and 1.
    assert np.any((volume > 0.01) & (volume < 0.99))


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_is_deterministic(name):
    make = GENERATORS[name]
    np.testing.assert_array_equal(make(3), make(3))
    assert not np.array_equal(make(3), make(4))
    # A Generator seeded the same way gives the same volume.
    np.testing.assert_array_equal(make(np.random.default_rng(7)), make(np.random.default_rng(7)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (8, 8), "voxel_size": VOXEL},
        {"shape": (0, 8, 8), "voxel_size": VOXEL},
        {"shape": (4, 8, 8), "voxel_size": (1.0, -0.5, 0.5)},
        {"shape": (4, 8, 8), "voxel_size": (1.0, 0.5)},
    ],
)
def test_bad_geometry_raises(kwargs):
    for make in (beads, bubtub, filaments, zebrafish_like):
        with pytest.raises(ValueError):
            make(**kwargs)


def test_bad_counts_and_ranges_raise():
    with pytest.raises(ValueError, match="n_beads"):
        beads(SHAPE, VOXEL, -1)
    with pytest.raises(ValueError, match="bubble_radius_um"):
        bubtub(SHAPE, VOXEL, bubble_radius_um=(3.0, 1.0))
    with pytest.raises(ValueError, match="seed"):
        filaments(SHAPE, VOXEL, seed="abc")
    with pytest.raises(ValueError, match="beads"):
        # 1000 beads 3 µm apart cannot fit in a 7 × 19.5 × 23.5 µm box.
        beads(SHAPE, VOXEL, 1000)


# ----------------------------------------------------------------------------- beads


def test_beads_count_and_positions_inside():
    shape, voxel, n = (16, 64, 64), (1.0, 0.25, 0.25), 25
    volume, positions, brightness = beads(shape, voxel, n, radius_um=0.1, seed=1, return_positions=True)
    assert positions.shape == (n, 3) and brightness.shape == (n,)
    extent = (np.array(shape) - 1) * np.array(voxel)
    margin = np.minimum(np.maximum(4 * 0.1, 2 * np.array(voxel)), extent / 4)
    assert np.all(positions >= margin - 1e-12) and np.all(positions <= extent - margin + 1e-12)
    assert np.all((brightness >= 0.5) & (brightness <= 1.0))
    # Every bead is one isolated local maximum, at the voxel that holds its centre.
    peaks = (volume == ndimage.maximum_filter(volume, size=3)) & (volume > 1e-3)
    assert int(peaks.sum()) == n
    found = {tuple(p) for p in np.argwhere(peaks)}
    assert found == {tuple(p) for p in np.rint(positions / np.array(voxel)).astype(int)}


def test_beads_mass_and_centroid_follow_brightness_and_position():
    # Beads a few voxels wide: the voxel-integrated Gaussian must keep each bead's
    # total brightness proportional to its drawn value and its centroid at its position.
    shape, voxel = (24, 48, 48), np.array([0.5, 0.5, 0.5])
    volume, positions, brightness = beads(
        shape, voxel, 4, radius_um=0.6, seed=2, min_separation_um=8.0, return_positions=True
    )
    idx = np.indices(shape).reshape(3, -1).T * voxel
    masses = []
    for p in positions:
        near = np.linalg.norm(idx - p, axis=1) < 3.5
        w = volume.reshape(-1)[near]
        masses.append(w.sum())
        np.testing.assert_allclose((idx[near] * w[:, None]).sum(0) / w.sum(), p, atol=0.01 * voxel.min())
    masses = np.array(masses)
    np.testing.assert_allclose(masses / masses.sum(), brightness / brightness.sum(), rtol=2e-3)


# ----------------------------------------------------------------------------- bubbles and tubes


def test_bubtub_bubbles_are_hollow():
    shape, voxel = (24, 48, 48), np.array([0.5, 0.5, 0.5])
    radius = 4.0
    volume, params = bubtub(
        shape,
        voxel,
        n_bubbles=1,
        n_tubes=0,
        seed=5,
        bubble_radius_um=radius,
        shell_thickness_um=0.6,
        return_params=True,
    )
    centre = params["bubble_centres_um"][0]
    centre_value = volume[tuple(np.rint(centre / voxel).astype(int))]
    # A point of the shell: from the centre, R along Y, towards whichever side stays in the volume.
    side = 1 if centre[1] + radius <= (shape[1] - 1) * voxel[1] else -1
    shell_point = centre + np.array([0.0, side * radius, 0.0])
    shell_value = volume[tuple(np.rint(shell_point / voxel).astype(int))]
    assert centre_value < 0.01
    assert shell_value > 0.5
    assert params["bubble_radii_um"][0] == radius


def test_bubtub_params_match_counts():
    _, params = bubtub(SHAPE, VOXEL, 3, 5, seed=0, return_params=True)
    assert params["bubble_centres_um"].shape == (3, 3)
    assert params["tube_control_points_um"].shape == (5, 4, 3)
    assert params["tube_radii_um"].shape == (5,)


# ----------------------------------------------------------------------------- anti-aliasing keeps physical sizes


@pytest.mark.parametrize("voxel", [(0.5, 0.25, 0.25), (0.3, 0.3, 0.3)])
@pytest.mark.parametrize(("radius", "half_thickness", "rtol"), [(4.0, 0.3, 0.01), (4.0, 0.05, 0.01), (0.0, 3.0, 0.01)])
def test_shell_and_ball_integrate_to_their_volume(voxel, radius, half_thickness, rtol):
    v = np.array(voxel)
    shape, centre = (50, 100, 100), np.array([7.1, 10.3, 9.87])
    box, cover = _radial_coverage(shape, v, centre, radius, half_thickness)
    if radius > 0:
        expected = 4 / 3 * np.pi * ((radius + half_thickness) ** 3 - (radius - half_thickness) ** 3)
    else:
        expected = 4 / 3 * np.pi * half_thickness**3
    assert cover.sum() * v.prod() == pytest.approx(expected, rel=rtol)
    assert cover.max() <= 1.0


def test_tube_integrates_to_a_capsule():
    v, shape, r = np.array([0.5, 0.25, 0.25]), (30, 90, 90), 1.0
    a, b = np.array([6.0, 5.0, 5.0]), np.array([6.3, 15.0, 18.0])
    out = np.zeros(shape, np.float32)
    _render_polyline(out, v, np.linspace(a, b, 40), r, 1.0)
    length = np.linalg.norm(b - a)
    capsule = np.pi * r**2 * length + 4 / 3 * np.pi * r**3
    assert out.sum() * v.prod() == pytest.approx(capsule, rel=0.01)


# ----------------------------------------------------------------------------- larva and filaments


def test_zebrafish_like_has_bright_neurons_on_weak_background():
    volume = zebrafish_like((16, 64, 96), (4.0, 2.0, 2.0), n_neurons=40, seed=0)
    body = volume[volume > 0]
    # Most of the body is dim autofluorescence; a small fraction (the somas) is bright.
    assert np.median(body) < 0.15
    assert 0 < np.mean(volume > 0.5) < 0.05


def test_filaments_are_thin_and_connected():
    volume = filaments((16, 64, 64), (0.5, 0.25, 0.25), n_filaments=3, seed=0)
    lit = volume > 0.05
    assert 0 < lit.mean() < 0.05
    labels, count = ndimage.label(lit, structure=np.ones((3, 3, 3)))
    # Three fibres (possibly crossing, possibly cut into a few pieces by the borders), not speckle.
    assert 1 <= count <= 6


# ----------------------------------------------------------------------------- camera noise


def test_camera_noise_statistics_and_round_trip():
    photons, read_noise, offset, gain = 50.0, 3.0, 100.0, 2.0
    clean = np.full((500, 500), photons)
    raw = add_camera_noise(clean, read_noise_e=read_noise, offset_adu=offset, gain_e_per_adu=gain, seed=0)
    assert raw.dtype == np.float32 and raw.shape == clean.shape
    electrons = Camera(offset=offset, gain=gain).to_electrons(raw)
    n = electrons.size
    variance = photons + read_noise**2
    # Mean within 5 standard errors; variance within 5 standard errors of a (near-Gaussian) sample variance.
    assert electrons.mean() == pytest.approx(photons, abs=5 * np.sqrt(variance / n))
    assert electrons.var() == pytest.approx(variance, rel=5 * np.sqrt(2 / n))


def test_camera_noise_without_read_noise_is_poisson():
    raw = add_camera_noise(np.full((300, 300), 4.0), read_noise_e=0.0, seed=1)
    assert np.all(raw == np.round(raw))  # whole electrons
    n = raw.size
    assert raw.mean() == pytest.approx(4.0, abs=5 * np.sqrt(4.0 / n))
    assert raw.var() == pytest.approx(4.0, rel=5 * np.sqrt(2 / n) + 0.01)


def test_camera_noise_uint16_rounds_and_clips():
    clean = np.full((300, 300), 100.0)
    raw = add_camera_noise(clean, read_noise_e=2.0, offset_adu=100.0, gain_e_per_adu=0.5, seed=2, dtype="uint16")
    assert raw.dtype == np.uint16
    electrons = Camera(offset=100.0, gain=0.5).to_electrons(raw)
    # Rounding to whole ADU adds gain² / 12 of variance and no bias.
    assert electrons.mean() == pytest.approx(100.0, abs=5 * np.sqrt(104.0 / electrons.size))
    assert electrons.var() == pytest.approx(104.0 + 0.25 / 12, rel=0.03)
    saturated = add_camera_noise(np.full((4, 4), 1e6), read_noise_e=0.0, seed=0, dtype="uint16")
    assert np.all(saturated == 65535)


def test_camera_noise_is_seeded_and_checks_input():
    clean = np.full((20, 20), 10.0)
    a = add_camera_noise(clean, read_noise_e=1.0, seed=3)
    np.testing.assert_array_equal(a, add_camera_noise(clean, read_noise_e=1.0, seed=3))
    assert not np.array_equal(a, add_camera_noise(clean, read_noise_e=1.0, seed=4))
    with pytest.raises(ValueError, match="clean_electrons"):
        add_camera_noise(-clean, read_noise_e=1.0)
    with pytest.raises(ValueError, match="gain"):
        add_camera_noise(clean, read_noise_e=1.0, gain_e_per_adu=0.0)
    with pytest.raises(ValueError, match="read_noise"):
        add_camera_noise(clean, read_noise_e=-1.0)


# ----------------------------------------------------------------------------- simulated acquisition


class Identity(nn.Module):
    """y = x, insisting on the batched (1, Z, Y, X) input the simulator promises."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[0] == 1
        return x.clone()


class SumOverZ(nn.Module):
    """A projection to (1, Y, X) with a float64 weight buffer: any output shape, the operator's dtype."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.register_buffer("weight", torch.tensor(weight, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.float64
        return self.weight * x.sum(dim=1)


def test_simulate_identity_scale_and_noise():
    volume = np.zeros((4, 100, 100), np.float32)
    volume[:, :, :50] = 0.5
    volume[:, :, 50:] = 1.0
    photons, background, read_noise = 200.0, 10.0, 2.0
    out = simulate_acquisition(
        volume, Identity(), photons=photons, background_e=background, read_noise_e=read_noise, seed=0, device="cpu"
    )
    assert out["scale"] == pytest.approx(photons / 1.0)
    assert out["clean"].dtype == np.float32 and out["noisy"].dtype == np.float32
    assert out["clean"].shape == volume.shape == out["noisy"].shape
    np.testing.assert_allclose(out["clean"], out["scale"] * volume + background, rtol=1e-6)
    # Residuals normalised by the Poisson + read noise standard deviation: mean 0, variance 1.
    z = (out["noisy"] - out["clean"]) / np.sqrt(out["clean"] + read_noise**2)
    n = z.size
    assert z.mean() == pytest.approx(0.0, abs=5 / np.sqrt(n))
    assert z.var() == pytest.approx(1.0, abs=5 * np.sqrt(2 / n))


def test_simulate_mean_budget_and_any_output_shape():
    volume = np.ones((5, 6, 7), np.float32)
    volume[2, 3, 4] = 3.0
    out = simulate_acquisition(
        volume, SumOverZ(0.5), photons=100.0, photons_at="mean", read_noise_e=0.0, seed=1, device="cpu"
    )
    signal = 0.5 * volume.astype(np.float64).sum(axis=0)
    assert out["clean"].shape == (6, 7)
    assert out["scale"] == pytest.approx(100.0 / signal.mean())
    assert out["clean"].mean() == pytest.approx(100.0, rel=1e-6)
    np.testing.assert_allclose(out["clean"], out["scale"] * signal, rtol=1e-6)


def test_simulate_is_seeded_and_checks_input():
    volume = beads((4, 16, 16), 0.5, 2, seed=0)
    a = simulate_acquisition(volume, Identity(), photons=50.0, seed=3, device="cpu")["noisy"]
    np.testing.assert_array_equal(
        a, simulate_acquisition(volume, Identity(), photons=50.0, seed=3, device="cpu")["noisy"]
    )
    assert not np.array_equal(a, simulate_acquisition(volume, Identity(), photons=50.0, seed=4, device="cpu")["noisy"])
    clipped = simulate_acquisition(volume, Identity(), photons=5.0, read_noise_e=3.0, clip_negative=True, device="cpu")
    assert clipped["noisy"].min() >= 0
    with pytest.raises(ValueError, match="volume"):
        simulate_acquisition(volume[0], Identity(), photons=10.0)
    with pytest.raises(ValueError, match="volume"):
        simulate_acquisition(-volume, Identity(), photons=10.0)
    with pytest.raises(ValueError, match="photons"):
        simulate_acquisition(volume, Identity(), photons=0.0)
    with pytest.raises(ValueError, match="nn.Module"):
        simulate_acquisition(volume, lambda x: x, photons=10.0)
    with pytest.raises(ValueError, match="positive"):
        simulate_acquisition(np.zeros_like(volume), Identity(), photons=10.0, device="cpu")
