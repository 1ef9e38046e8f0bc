"""Bead calibration (position + flux + background + Zernike fit) and measured-PSF import."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_lfrecon.psf.calibrate_bead import BeadModel, calibrate_bead, calibrate_bead_stream, find_bead
from napari_lfrecon.psf.measured import measured_psf
from napari_lfrecon.psf.widefield import widefield_psf, widefield_psf_torch

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
VOXEL = (0.3, 0.13, 0.13)
NA, WL, N = 0.85, 0.52, 1.0
SHAPE = (16, 32, 32)
FITTED = (3, *range(5, 15))


def _bead_model(truth: np.ndarray, shift_vox: tuple[float, float, float], shape=SHAPE) -> BeadModel:
    model = BeadModel(shape, VOXEL, NA, WL, N, FITTED)
    with torch.no_grad():
        model.coefficients.copy_(torch.as_tensor(truth[list(FITTED)]))
        model.shift_vox.copy_(torch.as_tensor(shift_vox))
    return model


def test_model_at_zero_shift_is_the_widefield_psf():
    coefficients = np.zeros(15)
    coefficients[[3, 7, 12]] = [0.05, -0.04, 0.06]
    model = _bead_model(coefficients, (0.0, 0.0, 0.0))
    with torch.no_grad():
        h = model.psf()
    reference = widefield_psf_torch(
        SHAPE, VOXEL, NA, WL, N, coefficients, pupil_samples=model.pupil_samples, dtype=torch.float64
    )
    assert float((h / h.sum() - reference).abs().max()) < 1e-6 * float(reference.max())
    # One in-focus plane of an unclipped PSF carries unit energy (Parseval normalisation).
    assert float(h[SHAPE[0] // 2].sum()) == pytest.approx(1.0, abs=0.03)


def test_integer_shift_moves_the_psf_by_that_many_voxels():
    zero = np.zeros(15)
    with torch.no_grad():
        centred = _bead_model(zero, (0.0, 0.0, 0.0)).psf().numpy()
        moved = _bead_model(zero, (1.0, 2.0, -3.0)).psf().numpy()
    expected = np.roll(centred, (1, 2, -3), axis=(0, 1, 2))
    interior = (slice(2, -2), slice(4, -4), slice(4, -4))
    assert np.abs(moved[interior] - expected[interior]).max() < 1e-3 * centred.max()


def _synthetic_bead(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    with torch.no_grad():
        clean = (3000.0 * _bead_model(truth, (0.3, -0.4, 0.2)).psf() + 50.0).numpy()
    return np.random.default_rng(seed).poisson(clean).astype(np.float32)


def test_known_aberrations_are_recovered_from_a_noisy_bead():
    truth = np.zeros(15)
    truth[[3, 5, 6, 7, 8, 11, 12]] = [0.06, -0.04, 0.03, 0.05, -0.03, 0.02, 0.06]
    stack = _synthetic_bead(truth)
    assert 150 < stack.max() < 1000  # a realistic, photon-limited bead (peak of a few hundred photons)
    calibration = calibrate_bead(stack, VOXEL, NA, WL, N, modes=FITTED, iterations=8, half_xy=12)
    error = calibration.fit.zernike[list(FITTED)] - truth[list(FITTED)]
    assert np.sqrt(np.mean(error**2)) < 0.05
    assert np.abs(error).max() < 0.02
    assert calibration.chi2_fit < 0.9 * calibration.chi2_unaberrated
    assert calibration.chi2_fit == pytest.approx(1.0, abs=0.1)  # Poisson data, right model
    # Position (crop centre + sub-voxel shift; z trades a little with spherical) and background are found too.
    assert np.allclose(calibration.fit.centre_index, (8.3, 15.6, 16.2), atol=(0.25, 0.1, 0.1))
    assert calibration.fit.background == pytest.approx(50.0, rel=0.05)
    assert calibration.psf.array.shape == tuple(s | 1 for s in calibration.fit.crop.shape)
    assert "chi2_fit" in calibration.summary()


def test_stream_yields_losses_previews_and_a_result():
    stack = _synthetic_bead(np.zeros(15), seed=1)
    updates = list(calibrate_bead_stream(stack, VOXEL, NA, WL, N, modes=(12,), iterations=5))
    kinds = {u.kind for u in updates}
    assert {"progress", "metric", "preview", "result"} <= kinds
    assert updates[-1].kind == "result"
    losses = [u.data[1] for u in updates if u.kind == "metric" and u.data[0] == "loss"]
    assert losses[-1] <= losses[0]
    fractions = [u.fraction for u in updates]
    assert fractions == sorted(fractions)


def test_no_bead_several_beads_and_border_beads_are_refused():
    rng = np.random.default_rng(2)
    noise = rng.poisson(100.0, size=(9, 40, 40)).astype(np.float32)
    with pytest.raises(ValueError, match="no bead"):
        find_bead(noise)
    spot = widefield_psf((9, 40, 40), VOXEL, NA, WL, N).array * 2e5
    two = noise + spot + np.roll(spot, (0, 12, -10), axis=(0, 1, 2))
    with pytest.raises(ValueError, match="2 beads"):
        find_bead(two)
    edge = noise.copy()
    edge[:, :21, :] += spot[:, 19:, :]  # the bead's centre 1 px from the top edge
    with pytest.raises(ValueError, match="border"):
        find_bead(edge)
    one = find_bead(noise + spot)
    assert one.index_zyx == (4, 20, 20)


def test_measured_psf_is_centred_normalised_and_resampled():
    truth = widefield_psf((15, 33, 33), VOXEL, NA, WL, N).array
    # A bead displaced by a sub-voxel amount on a background, inside a larger stack.
    stack = np.full((21, 48, 48), 80.0)
    stack[2:17, 6:39, 9:42] += 5e5 * _shift(truth, (0.0, 0.4, -0.3))
    psf = measured_psf(stack, VOXEL, shape=(11, 25, 25))
    assert psf.array.shape == (11, 25, 25)
    assert psf.array.sum() == pytest.approx(1.0, rel=1e-5)
    centroid = _core_centroid(psf.array)
    assert np.allclose(centroid, (5, 12, 12), atol=0.05)
    reference = truth[2:13, 4:29, 4:29] / truth[2:13, 4:29, 4:29].sum()
    assert np.abs(psf.array - reference).max() < 0.03 * reference.max()
    coarse = measured_psf(stack, VOXEL, shape=(11, 25, 25), target_voxel_size=(0.6, 0.26, 0.26))
    assert coarse.voxel_size == (0.6, 0.26, 0.26)
    assert coarse.array.shape == (5, 13, 13)
    assert np.unravel_index(np.argmax(coarse.array), coarse.array.shape) == (2, 6, 6)


def _shift(array: np.ndarray, shift) -> np.ndarray:
    from scipy import ndimage

    return np.clip(ndimage.shift(array, shift, order=3, mode="constant"), 0, None)


def _core_centroid(array: np.ndarray) -> np.ndarray:
    weights = np.where(array > 0.5 * array.max(), array - 0.5 * array.max(), 0.0)
    return np.indices(array.shape).reshape(3, -1) @ weights.ravel() / weights.sum()


@pytest.mark.skipif(not (REAL / "bead_lattice_lightsheet_xy101nm_z100nm.tif").is_file(), reason="real data absent")
def test_lattice_light_sheet_bead_imports_as_a_measured_psf():
    import tifffile

    stack = tifffile.imread(REAL / "bead_lattice_lightsheet_xy101nm_z100nm.tif")
    psf = measured_psf(stack, (0.1, 0.101, 0.101), shape=(41, 41, 41), target_voxel_size=(0.2, 0.101, 0.101))
    assert psf.array.shape == (21, 41, 41)
    assert psf.array.sum() == pytest.approx(1.0, rel=1e-5)
    peak = np.unravel_index(np.argmax(psf.array), psf.array.shape)
    assert all(abs(p - s // 2) <= 1 for p, s in zip(peak, psf.array.shape, strict=True))
    # The background was removed: the corners are close to 0 relative to the peak.
    assert psf.array[0, :4, :4].mean() < 0.02 * psf.array.max()


@pytest.mark.skipif(not (REAL / "bead_widefield_na0.85_wl520_xy130nm_z300nm.tif").is_file(), reason="real data absent")
def test_real_widefield_bead_fits_better_with_aberrations():
    import tifffile

    stack = tifffile.imread(REAL / "bead_widefield_na0.85_wl520_xy130nm_z300nm.tif")
    calibration = calibrate_bead(stack, VOXEL, NA, WL, N, iterations=8, half_xy=20)
    assert calibration.chi2_fit < 0.9 * calibration.chi2_unaberrated


def test_bead_fit_engine_streams_metrics_and_returns_the_fitted_psf():
    from napari_lfrecon.engines import (
        bead_fit,  # noqa: F401  (registers "bead-fit")
        get,
        make_params,
    )
    from napari_lfrecon.jobs import CalibrateInputs, EngineInputError, run_job

    engine = get("bead-fit")
    stack = _synthetic_bead(np.zeros(15), seed=3)
    params = make_params(engine.Params, {"iterations": 2, "max_mode": 5})
    optics = {"na": NA, "wavelength_um": WL, "immersion_index": N}
    updates = []
    inputs = CalibrateInputs(data=stack, voxel_size=VOXEL, optics=optics)
    calibration = run_job(engine, inputs, params, device=torch.device("cpu"), on_update=updates.append)
    assert calibration.volume().data.ndim == 3 and calibration.volume().voxel_size == VOXEL
    names = {u.data[0] for u in updates if u.kind == "metric"}
    assert {"chi2_fit", "chi2_unaberrated", "zernike_3", "zernike_5"} <= names
    with pytest.raises(EngineInputError, match="optics"):
        run_job(engine, CalibrateInputs(data=stack, voxel_size=VOXEL), params, device=torch.device("cpu"))
