"""The RL engine and the scripting API: no drift, streaming, cancel, bad input."""

import warnings

import numpy as np
import pytest
import torch

import napari_lfrecon as nl
from napari_lfrecon import engines
from napari_lfrecon.engines.base import EngineInputError, Inputs, make_params
from napari_lfrecon.physics import Convolve3D
from napari_lfrecon.psf import PSF

VOXEL = (0.3, 0.1, 0.1)


def gaussian_psf(shape, sigma=(1.5, 1.2, 1.2)):
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    psf = np.exp(-sum(g**2 / (2 * s**2) for g, s in zip(grids, sigma, strict=True)))
    return (psf / psf.sum()).astype(np.float32)


def blurred_points(psf, shape=(16, 24, 24), points=((8, 12, 12), (6, 8, 15))):
    vol = np.zeros(shape)
    for i, p in enumerate(points):
        vol[p] = 1000.0 * (i + 1)
    blurred = Convolve3D(psf, shape, "circular")(torch.as_tensor(vol)[None])[0].numpy()
    return np.clip(blurred, 0, None).astype(np.float32), vol


@pytest.mark.parametrize("psf_shape", [(7, 9, 9), (6, 8, 8), (5, 10, 7)])
@pytest.mark.parametrize("boundary", ["circular", "padded"])
def test_point_source_stays_on_its_voxel_after_100_iterations(psf_shape, boundary):
    psf = gaussian_psf(psf_shape)
    data, truth = blurred_points(psf)
    volume = nl.reconstruct("rl", data, psf, voxel_size=VOXEL, iterations=100, boundary=boundary, preview_every=0)
    for point in [(8, 12, 12), (6, 8, 15)]:
        window = tuple(slice(c - 2, c + 3) for c in point)
        local = volume.data[window]
        assert np.unravel_index(local.argmax(), local.shape) == (2, 2, 2)
        grids = np.meshgrid(*[np.arange(5) - 2] * 3, indexing="ij")
        centroid = [float((g * local).sum() / local.sum()) for g in grids]
        assert np.allclose(centroid, 0, atol=0.02), centroid
    # RL conserves flux and sharpens: most of each point's light returns to its voxel.
    assert volume.data[8, 12, 12] > 0.5 * truth[8, 12, 12]


def test_result_carries_voxel_size_and_params():
    psf = gaussian_psf((5, 7, 7))
    data, _ = blurred_points(psf)
    volume = nl.reconstruct("rl", data, psf, voxel_size=VOXEL, iterations=3)
    assert volume.data.dtype == np.float32 and volume.data.shape == data.shape
    assert volume.voxel_size == VOXEL
    assert volume.metadata["engine"] == "rl" and volume.metadata["params"]["iterations"] == 3


def test_engine_streams_previews_and_cancels_within_one_iteration():
    psf = gaussian_psf((5, 7, 7))
    data, _ = blurred_points(psf)
    engine = engines.get("rl")
    inputs = Inputs(data, PSF(psf, "widefield", VOXEL))
    params = make_params(engine.Params, {"iterations": 50})
    stop_after = 4
    done = {"n": 0}
    kinds = []
    for update in engine.run(inputs, params, device=torch.device("cpu"), should_stop=lambda: done["n"] >= stop_after):
        kinds.append(update.kind)
        if update.kind == "progress" and update.message.startswith("iteration"):
            done["n"] += 1
    iterations_seen = sum(1 for k in kinds if k == "progress") - 2  # start message and cancel message
    assert iterations_seen == stop_after
    assert "result" not in kinds
    # Full run: a preview each iteration but the last, then exactly one result, last.
    kinds = [
        u.kind for u in engine.run(inputs, make_params(engine.Params, {"iterations": 5}), device=torch.device("cpu"))
    ]
    assert kinds.count("preview") == 4 and kinds[-1] == "result" and kinds.count("result") == 1


def test_previews_are_made_only_when_asked_and_show_that_step(monkeypatch):
    from napari_lfrecon.engines import rl
    from napari_lfrecon.jobs.protocol import LazyPreview, preview_volume

    psf = gaussian_psf((5, 7, 7))
    data, _ = blurred_points(psf)
    engine = engines.get("rl")
    inputs = Inputs(data, PSF(psf, "widefield", VOXEL))
    made = []
    real = rl._cropped_numpy
    monkeypatch.setattr(rl, "_cropped_numpy", lambda *a: made.append(1) or real(*a))
    # nobody looks at the previews: no preview copy is made (the result's own copy does not go through it)
    updates = list(engine.run(inputs, make_params(engine.Params, {"iterations": 4}), device=torch.device("cpu")))
    assert [u.kind for u in updates].count("preview") == 3 and not made
    # materialised at once, each preview is that iteration's estimate: the last one differs from the result
    previews = []
    for update in engine.run(inputs, make_params(engine.Params, {"iterations": 4}), device=torch.device("cpu")):
        if update.kind == "preview":
            assert isinstance(update.data, LazyPreview)
            previews.append(preview_volume(update.data))
            assert preview_volume(update.data) is previews[-1]  # made once
        elif update.kind == "result":
            result = update.data.data
    assert len(made) == 3 and all(p.shape == result.shape and p.dtype == np.float32 for p in previews)
    assert not np.allclose(previews[0], previews[-1]) and not np.allclose(previews[-1], result)
    np.testing.assert_array_equal(np.asarray(updates[-1].data.data), result)


def test_placeholder_preview_shape_only_for_engines_that_preview_a_known_volume():
    from napari_lfrecon.controllers.previews import placeholder_shape

    psf = gaussian_psf((5, 7, 7))
    data, _ = blurred_points(psf)
    engine = engines.get("rl")
    inputs = Inputs(data, PSF(psf, "widefield", VOXEL))
    params = make_params(engine.Params, {"iterations": 4})
    assert placeholder_shape(engine, inputs, params, 3) == data.shape
    assert placeholder_shape(engine, inputs, make_params(engine.Params, {"preview_every": 0}), 3) is None
    assert placeholder_shape(engine, inputs, params, 4) is None  # not the volume the layer will show
    assert placeholder_shape(engine, Inputs(data), params, 3) is None  # no PSF: shape unknown


def test_tv_and_background_options_run_and_differ():
    psf = gaussian_psf((5, 7, 7))
    data, _ = blurred_points(psf)
    rng = np.random.default_rng(0)
    noisy = rng.poisson(data + 5).astype(np.float32)
    plain = nl.reconstruct("rl", noisy, psf, voxel_size=VOXEL, iterations=20).data
    tv = nl.reconstruct("rl", noisy, psf, voxel_size=VOXEL, iterations=20, tv_weight=0.01).data
    bg = nl.reconstruct("rl", noisy, psf, voxel_size=VOXEL, iterations=20, background=5.0).data

    # TV smooths: smaller total variation than plain RL; the background term removes the flat offset.
    def total_variation(v):
        return sum(np.abs(np.diff(v, axis=a)).sum() for a in range(3))

    assert total_variation(tv) < total_variation(plain)
    assert np.median(bg) < np.median(plain)


def test_bad_input_messages_and_input_untouched():
    psf = gaussian_psf((5, 7, 7))
    data, _ = blurred_points(psf)
    with pytest.raises(KeyError, match="unknown engine 'nope'.*rl"):
        nl.reconstruct("nope", data, psf, voxel_size=VOXEL)
    with pytest.raises(ValueError, match=r"widefield PSF needs a 3D \(Z, Y, X\) stack"):
        nl.reconstruct("rl", data[0], psf, voxel_size=VOXEL)
    bad = data.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(EngineInputError, match="NaN or Inf"):
        nl.reconstruct("rl", bad, psf, voxel_size=VOXEL)
    with pytest.raises(EngineInputError, match="all zeros"):
        nl.reconstruct("rl", np.zeros_like(data), psf, voxel_size=VOXEL)
    with pytest.raises(EngineInputError, match="voxel size"):
        nl.reconstruct("rl", data, psf)
    with pytest.raises(ValueError, match="iterations.*≥ 1"):
        nl.reconstruct("rl", data, psf, voxel_size=VOXEL, iterations=0)
    with pytest.raises(ValueError, match="unknown parameter"):
        nl.reconstruct("rl", data, psf, voxel_size=VOXEL, iteration=3)
    negative = data - 2.0
    before = negative.copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nl.reconstruct("rl", negative, psf, voxel_size=VOXEL, iterations=2)
    assert any("negative" in str(w.message) for w in caught)
    np.testing.assert_array_equal(negative, before)


def test_registry_lists_rl():
    assert "rl" in engines.available()


def test_padded_rl_stays_finite_and_non_negative_for_many_iterations():
    # Regression: in padded mode the far corners of the volume see almost none of the PSF; dividing
    # FFT round-off by that tiny sensitivity drove them negative, then to ±Inf and NaN (which then
    # spread everywhere) after a few dozen iterations.
    from napari_lfrecon.engines.rl import richardson_lucy

    psf = gaussian_psf((16, 32, 32), sigma=(1.5, 1.5, 1.5))
    rng = np.random.default_rng(4)
    truth = np.zeros((16, 40, 40))
    truth[4:12, 10:30, 10:30] = rng.random((8, 20, 20)) ** 4
    data = Convolve3D(psf, truth.shape, "circular")(torch.as_tensor(truth)[None])[0].numpy()
    data = rng.poisson(np.clip(data, 0, None) * 300).astype(np.float32)
    op = Convolve3D(psf, data.shape, "padded")
    x = None
    with torch.no_grad():
        for _, x in richardson_lucy(op.forward, op.adjoint, torch.from_numpy(data)[None], op.volume_shape, 60):  # noqa: B007  (the last iterate is checked)
            pass
    assert x is not None
    assert torch.isfinite(x).all() and float(x.min()) >= 0


def test_rl_started_from_an_earlier_estimate_continues_it():
    # RL from `initial` = the 10-iteration estimate, 10 more iterations ≈ 20 iterations from the flat start
    # (up to the small floor added under `initial`); zeros in `initial` can still grow.
    from napari_lfrecon.engines.rl import richardson_lucy

    psf = gaussian_psf((8, 16, 16), sigma=(1.2, 1.5, 1.5))
    rng = np.random.default_rng(7)
    truth = np.zeros((8, 24, 24))
    truth[2:6, 6:18, 6:18] = rng.random((4, 12, 12)) ** 4
    op = Convolve3D(psf, truth.shape, "circular")
    y = torch.as_tensor(rng.poisson(op(torch.as_tensor(truth)[None])[0].numpy().clip(0) * 200), dtype=torch.float64)[
        None
    ]

    def run(iterations, initial=None):
        with torch.no_grad():
            for _, x in richardson_lucy(op.forward, op.adjoint, y, op.volume_shape, iterations, initial=initial):  # noqa: B007
                pass
        return x.clone()

    ten, twenty = run(10), run(20)
    continued = run(10, initial=ten)
    assert float((continued - twenty).abs().max()) < 1e-2 * float(twenty.max())
    assert float((ten - twenty).abs().max()) > 5e-2 * float(twenty.max())  # the 10 extra iterations do matter
    zeroed = ten.clone()
    zeroed[0, 4] = 0
    assert float(run(5, initial=zeroed)[0, 4].max()) > 0


@pytest.mark.parametrize("factor", [1e-6, 1e-40, 1e6])
def test_rl_result_scales_with_the_data(factor):
    """RL is scale-equivariant: data × f gives the result × f (its floors must not depend on the data's units)."""
    psf = gaussian_psf((5, 7, 7))
    data, _ = blurred_points(psf)
    data = data + 2.0  # an offset: the background term is scaled too
    reference = nl.reconstruct("rl", data, psf, voxel_size=VOXEL, iterations=15, background=1.0).data
    scaled = nl.reconstruct(
        "rl", data.astype(np.float64) * factor, psf, voxel_size=VOXEL, iterations=15, background=1.0 * factor
    ).data
    assert np.all(np.isfinite(scaled))
    # 1e-40 is below float32's normal range (denormals keep ~2 digits there): a looser bound, but never zeros
    tolerance = 1e-4 if factor >= 1e-30 else 5e-2
    peak = float(reference.max())
    assert np.max(np.abs(scaled / factor - reference)) <= tolerance * peak
