"""SeReNet: NLL-MPG against its definition, psfshift geometry, network, tiling, training, weights, CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from napari_lfrecon import reconstruct
from napari_lfrecon.engines import get
from napari_lfrecon.engines.base import EngineInputError, Inputs, make_params
from napari_lfrecon.engines.serenet import network_input, predict_volume, psf_view_shifts
from napari_lfrecon.engines.serenet_data import estimate_view_shifts, registration_corrections
from napari_lfrecon.engines.serenet_loss import log_factorial_stirling, nll_mpg
from napari_lfrecon.engines.serenet_model import (
    Conv3x3x3,
    SeReNetConfig,
    SeReNetNet,
    ViewMix,
    psf_centres_of_mass,
    refocus,
    upsample_planes,
    view_shifts_lenslets,
)
from napari_lfrecon.engines.serenet_train import SeReNetTrainer
from napari_lfrecon.engines.serenet_weights import load_model, save_model
from napari_lfrecon.io.weights import load_weights, read_header, save_weights
from napari_lfrecon.physics.phase_space import PhaseSpaceLF
from napari_lfrecon.psf.lfm import LFMOptics, lfm_psf
from napari_lfrecon.psf.model import PSF

TINY = LFMOptics(20.0, 0.5, 1.33, 0.52, 32.5, 650.0, 6.5, 5, supersample=3)
TINY_DEPTHS = [-4.0, 0.0, 4.0]
LENSLETS = 12


@pytest.fixture(scope="module")
def tiny_psf() -> PSF:
    return lfm_psf(TINY, TINY_DEPTHS, device="cpu", oversampling=3)


@pytest.fixture(scope="module")
def tiny_frames(tiny_psf: PSF) -> np.ndarray:
    from napari_lfrecon.engines.serenet_data import simulate_training_frames

    views, _, _ = simulate_training_frames(tiny_psf, 3, (LENSLETS, LENSLETS), seed=3)
    return views


def _small_config(psf: PSF, **kw) -> SeReNetConfig:
    values = dict(view_indices=list(range(psf.array.shape[0])), depths=psf.array.shape[1], supersample=3)
    values.update(trunk=[6, 4], stages=[[4]], flux_factor=0.5)
    values.update(kw)
    return SeReNetConfig(**values)


# ----------------------------------------------------------------------------- the likelihood


def _direct_nll(lam: float, y: float, sigma: float) -> float:
    """−log Σ_k Poisson(k; λ) N(y; k, σ²), summed directly over every k that matters."""
    k = np.arange(0, int(max(lam, y, 0) + 20 * math.sqrt(lam + 1) + 20 * sigma + 20))
    # the terms' logarithms are exact; summing them in log space keeps far-apart (λ, y) pairs from underflowing
    return -float(logsumexp(stats.poisson.logpmf(k, lam) + stats.norm.logpdf(y, loc=k, scale=sigma)))


@pytest.mark.parametrize("sigma", [0.5, 1.5, 3.0])
def test_nll_mpg_matches_direct_sum(sigma: float) -> None:
    lams = [0.3, 2.0, 7.5, 40.0, 180.0]
    ys = [-1.7, 0.0, 2.6, 9.0, 37.2, 190.4]
    lam_t = torch.tensor([[lam] * len(ys) for lam in lams], dtype=torch.float64)
    y_t = torch.tensor([ys] * len(lams), dtype=torch.float64)
    got = nll_mpg(lam_t, y_t, sigma, reduction="none").numpy()
    want = np.array([[_direct_nll(lam, y, sigma) for y in ys] for lam in lams])
    # Stirling's series is exact to ~3e-4 in log k! at k = 1, better above
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-5)


def test_stirling_log_factorial() -> None:
    k = torch.arange(0, 60, dtype=torch.float64)
    want = torch.lgamma(k + 1)
    assert float((log_factorial_stirling(k) - want).abs().max()) < 1e-3
    assert float((log_factorial_stirling(k[5:]) - want[5:]).abs().max()) < 1e-8


def test_nll_mpg_tends_to_poisson_nll_plus_constant() -> None:
    """σ → 0: −log p = λ − y log λ + log y! + ½ log(2πσ²) for integer y (a λ-independent offset)."""
    sigma = 1e-3
    lam = torch.tensor([0.5, 3.0, 11.0, 60.0], dtype=torch.float64, requires_grad=True)
    for y_value in (0.0, 4.0, 25.0):
        y = torch.full_like(lam, y_value)
        got = nll_mpg(lam, y, sigma, reduction="none")
        poisson = lam - y * torch.log(lam) + torch.lgamma(y + 1)
        offset = (got - poisson).detach().numpy()
        np.testing.assert_allclose(offset, 0.5 * math.log(2 * math.pi * sigma**2), atol=1e-6)
        (grad,) = torch.autograd.grad(got.sum(), lam)
        np.testing.assert_allclose(grad.numpy(), (1 - y / lam).detach().numpy(), rtol=1e-6, atol=1e-9)


def test_nll_mpg_minimum_near_measurement() -> None:
    """For one pixel the likelihood in λ peaks near y (Poisson mean), not at 0 or far away."""
    lam = torch.linspace(1.0, 60.0, 600, dtype=torch.float64)
    nll = nll_mpg(lam, torch.full_like(lam, 20.0), 1.5, reduction="none")
    assert abs(float(lam[int(torch.argmin(nll))]) - 20.0) < 0.5


# ----------------------------------------------------------------------------- psfshift and network


def test_centre_of_mass_of_shifted_delta() -> None:
    kernel = np.zeros((2, 1, 9, 9), np.float32)
    kernel[0, 0, 4, 4] = 1.0  # centred
    kernel[1, 0, 6, 3] = 2.0  # +2 rows, −1 column
    com = psf_centres_of_mass(kernel)
    np.testing.assert_allclose(com[:, 0], [[0, 0], [2, -1]])


def test_refocus_aligns_views_of_a_point_at_its_depth(tiny_psf: PSF) -> None:
    s = 3
    depth = len(TINY_DEPTHS)
    op = PhaseSpaceLF(tiny_psf.array, s, (depth, s * LENSLETS, s * LENSLETS))
    lit = np.nonzero(tiny_psf.arrays["view_mask"])[0]
    shifts = torch.as_tensor(view_shifts_lenslets(tiny_psf.array, s))
    yy, xx = np.meshgrid(np.arange(LENSLETS), np.arange(LENSLETS), indexing="ij")

    def centroid(img: torch.Tensor) -> np.ndarray:
        w = img.numpy().astype(np.float64)
        return np.array([(w * yy).sum() / w.sum(), (w * xx).sum() / w.sum()])

    for d in (0, depth - 1):
        vol = torch.zeros((1, depth, s * LENSLETS, s * LENSLETS))
        # all s×s source positions under lenslet (6, 5): their images average to the kernels' centres of mass
        vol[0, d, s * 6 : s * 7, s * 5 : s * 6] = 1.0
        views = op(vol)
        stack = refocus(views, shifts)[0, :, d]  # (A, Ny, Nx) refocused at the point's depth
        raw = np.array([centroid(views[0, a]) for a in lit]) - [6, 5]
        refocused = np.array([centroid(stack[a]) for a in lit]) - [6, 5]
        # out of focus the views disagree by parallax (so this test can fail); refocused they agree
        assert np.abs(raw).max() > 0.1
        assert np.abs(refocused).max() < 0.4 * np.abs(raw).max(), refocused


def test_view_shifts_are_cached_per_psf_array(tiny_psf: PSF) -> None:
    optics, planes = dict(tiny_psf.optics), tiny_psf.z_planes_um
    psf = PSF(tiny_psf.array.copy(), "lfm", tiny_psf.voxel_size, optics, z_planes_um=planes)
    first = psf_view_shifts(psf)
    np.testing.assert_array_equal(first, view_shifts_lenslets(psf.array, 3))
    assert psf_view_shifts(psf) is first
    psf.array = np.roll(psf.array, 1, axis=-1)  # a new array: the cache must not answer for it
    moved = psf_view_shifts(psf)
    np.testing.assert_array_equal(moved, view_shifts_lenslets(psf.array, 3))
    assert np.abs(moved - first).max() > 0.1


def test_fast_conv_equals_conv3d() -> None:
    torch.manual_seed(0)
    fast = Conv3x3x3(3, 2)
    ref = torch.nn.Conv3d(3, 2, 3, padding=1)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(2, 3, 4, 7, 6, dtype=torch.float32)
    torch.testing.assert_close(fast(x), ref(x), atol=1e-5, rtol=1e-5)


def test_view_mix_equals_a_1x1x1_conv3d() -> None:
    torch.manual_seed(0)
    mix = ViewMix(5, 3)
    ref = torch.nn.Conv3d(5, 3, 1)
    ref.weight.data = mix.weight.data[:, :, None, None, None].clone()
    ref.bias.data = mix.bias.data.clone()
    x = torch.randn(2, 5, 3, 6, 7)
    torch.testing.assert_close(mix(x), ref(x), atol=1e-5, rtol=1e-5)


def test_plane_upsampling_equals_trilinear_with_depth_kept() -> None:
    x = torch.randn(2, 3, 4, 7, 6, dtype=torch.float64)
    for size in ((12, 10), (21, 18), (7, 6)):
        ref = torch.nn.functional.interpolate(x, size=(4, *size), mode="trilinear", align_corners=False)
        torch.testing.assert_close(upsample_planes(x, size), ref, atol=1e-12, rtol=1e-12)


def test_view_mix_config_builds_a_cheaper_first_layer_and_old_configs_still_load(tiny_psf: PSF) -> None:
    plain = _small_config(tiny_psf, trunk=[8, 4])
    mixed = _small_config(tiny_psf, trunk=[8, 4], view_mix=3)
    a, b = SeReNetNet(plain), SeReNetNet(mixed)
    n_views = plain.n_views
    # the published first layer has views·8·27 weights; mixing first: views·3 + 3·8·27
    first = sum(p.numel() for p in a.trunk[0].parameters())
    first_mixed = sum(p.numel() for p in b.trunk[0].parameters()) + sum(p.numel() for p in b.trunk[1].parameters())
    assert first == n_views * 8 * 27 + 8 and first_mixed == n_views * 3 + 3 + 3 * 8 * 27 + 8
    stack = torch.rand(1, n_views, 3, 10, 9)
    assert b(stack).shape == a(stack).shape == (1, 3, 30, 27)
    old = plain.to_dict()
    del old["view_mix"]  # weights written before view mixing existed
    assert SeReNetConfig.from_dict(old).view_mix == 0
    with pytest.raises(ValueError, match="view_mix"):
        _small_config(tiny_psf, view_mix=-1)


def test_network_shapes_follow_the_optics(tiny_psf: PSF) -> None:
    config = SeReNetConfig(view_indices=[0, 3, 7], depths=3, supersample=3, width=0.25)
    net = SeReNetNet(config)
    assert len(config.stages) == 2  # ceil(log2 3) upsampling stages
    out = net(torch.zeros(1, 3, 3, 10, 8))
    assert out.shape == (1, 3, 30, 24)
    with pytest.raises(ValueError, match="3 views"):
        net(torch.zeros(1, 4, 3, 10, 8))
    with pytest.raises(ValueError, match="depth"):
        SeReNetConfig(view_indices=[0], depths=0, supersample=3)


def test_tiled_inference_equals_untiled(tiny_psf: PSF) -> None:
    torch.manual_seed(1)
    net = SeReNetNet(_small_config(tiny_psf)).eval()
    radius = net.receptive_radius_lenslets()
    stack = torch.rand(1, tiny_psf.array.shape[0], 3, 26, 23)
    scale = torch.tensor([2.0])
    with torch.no_grad():
        whole = predict_volume(net, stack, scale)
        tiled = predict_volume(net, stack, scale, tile=2 * radius + 6, overlap=2 * radius + 1)
        rough = predict_volume(net, stack, scale, tile=2 * radius + 6, overlap=2)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)
    assert float((rough - whole).abs().max()) > 1e-4  # too little overlap shows: the comparison can fail


# ----------------------------------------------------------------------------- weights files


def test_weights_round_trip_and_optics_refusal(tiny_psf: PSF, tmp_path) -> None:
    torch.manual_seed(2)
    net = SeReNetNet(_small_config(tiny_psf))
    path = save_model(tmp_path / "w.safetensors", net, tiny_psf, {"command": "test"})
    model, header = load_model(path, tiny_psf)
    for key, value in net.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    assert header["engine"] == "serenet" and header["training"]["command"] == "test"
    assert header["optics"]["psf_shape"] == list(tiny_psf.array.shape)
    other = PSF(
        tiny_psf.array, "lfm", tiny_psf.voxel_size, dict(tiny_psf.optics, na=0.8), z_planes_um=tiny_psf.z_planes_um
    )
    with pytest.raises(EngineInputError, match=r"na: weights expect 0\.5, the PSF has 0\.8"):
        load_model(path, other)
    with pytest.raises(ValueError, match="engine 'serenet', not 'rl'"):
        load_weights(path, engine="rl")


def test_weights_file_needs_a_header(tmp_path) -> None:
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not napari-lfrecon weights"):
        read_header(tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="engine"):
        save_weights(tmp_path / "x.safetensors", {"a": torch.zeros(1)}, {"version": 1})


def test_default_weights_refuse_other_optics(tiny_psf: PSF, tiny_frames: np.ndarray) -> None:
    with pytest.raises(EngineInputError, match="shipped weights.*pixels_per_lenslet: weights expect 9"):
        reconstruct("serenet", tiny_frames[0], tiny_psf)


# ----------------------------------------------------------------------------- training


def _train_params(tmp_path, **kw):
    values = dict(
        output=str(tmp_path / "w.safetensors"),
        steps=4,
        width=0.25,
        crop_lenslets=0,
        views_per_step=5,
        preview_every=0,
        lr=3e-3,
        seed=5,
    )
    values.update(kw)
    return make_params(get("serenet-train").Params, values)


def test_loss_decreases_on_a_tiny_problem(tiny_psf: PSF, tiny_frames: np.ndarray, tmp_path) -> None:
    params = _train_params(tmp_path, steps=10, view_dropout=0.0, lr=5e-3)
    trainer = SeReNetTrainer(Inputs(tiny_frames, tiny_psf), params, torch.device("cpu"))
    losses = [trainer.train_step() for _ in range(params.steps)]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


def test_training_with_view_mixing_reduces_the_loss(tiny_psf: PSF, tiny_frames: np.ndarray, tmp_path) -> None:
    params = _train_params(tmp_path, steps=10, view_dropout=0.0, lr=5e-3, view_mix=4)
    trainer = SeReNetTrainer(Inputs(tiny_frames, tiny_psf), params, torch.device("cpu"))
    assert isinstance(trainer.model.trunk[0], ViewMix)
    losses = [trainer.train_step() for _ in range(params.steps)]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


def test_training_engine_streams_and_resumes_exactly(tiny_psf: PSF, tiny_frames: np.ndarray, tmp_path) -> None:
    engine = get("serenet-train")
    straight = _train_params(tmp_path, output=str(tmp_path / "a.safetensors"), crop_lenslets=10, preview_every=2)
    updates = list(engine.run(Inputs(tiny_frames, tiny_psf), straight, device=torch.device("cpu")))
    kinds = {u.kind for u in updates}
    assert {"progress", "preview", "metric", "result"} <= kinds and updates[-1].kind == "result"
    assert updates[-1].data.shape == (3, 3 * LENSLETS, 3 * LENSLETS)
    # half the steps, then the rest from the checkpoint: the same weights
    ckpt = str(tmp_path / "ckpt.safetensors")
    first = _train_params(tmp_path, output=str(tmp_path / "b.safetensors"), crop_lenslets=10, steps=2, checkpoint=ckpt)
    list(engine.run(Inputs(tiny_frames, tiny_psf), first, device=torch.device("cpu")))
    rest = _train_params(tmp_path, output=str(tmp_path / "b.safetensors"), crop_lenslets=10, checkpoint=ckpt)
    list(engine.run(Inputs(tiny_frames, tiny_psf), rest, device=torch.device("cpu")))
    a, _ = load_weights(tmp_path / "a.safetensors")
    b, header = load_weights(tmp_path / "b.safetensors")
    assert header["training"]["steps_done"] == 4
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


def test_crops_without_an_interior_are_refused(tiny_psf: PSF, tiny_frames: np.ndarray, tmp_path) -> None:
    # a crop no wider than twice the reach of outside light leaves no pixel to compare (the loss was NaN)
    margin = tiny_psf.array.shape[-1] // (2 * 3)
    params = _train_params(tmp_path, crop_lenslets=2 * margin + 1)
    with pytest.raises(EngineInputError, match="no interior"):
        SeReNetTrainer(Inputs(tiny_frames, tiny_psf), params, torch.device("cpu"))


def test_closing_the_training_generator_keeps_the_checkpoint(tiny_psf: PSF, tiny_frames: np.ndarray, tmp_path):
    # the GUI's worker layer closes the generator at Cancel: the state must reach the checkpoint anyway
    ckpt = tmp_path / "ckpt.safetensors"
    params = _train_params(tmp_path, steps=50, checkpoint=str(ckpt), checkpoint_every=1000)
    run = get("serenet-train").run(Inputs(tiny_frames, tiny_psf), params, device=torch.device("cpu"))
    for update in run:
        if update.message.startswith("step 3/"):
            break
    run.close()
    assert load_weights(ckpt, engine="serenet-train")[1]["step"] == 3


def test_cancel_stops_within_one_step(tiny_psf: PSF, tiny_frames: np.ndarray, tmp_path) -> None:
    engine = get("serenet-train")
    params = _train_params(tmp_path, steps=50)
    steps = [
        u
        for u in engine.run(Inputs(tiny_frames, tiny_psf), params, device=torch.device("cpu"), should_stop=lambda: True)
    ]
    assert all(u.kind != "result" for u in steps) and "cancelled at step 1" in steps[-1].message


def test_inference_with_view_subset_and_registration(tiny_psf: PSF, tiny_frames: np.ndarray, tmp_path) -> None:
    torch.manual_seed(3)
    net = SeReNetNet(_small_config(tiny_psf))
    with torch.no_grad():
        net.head.bias.fill_(0.5)  # an untrained net may clamp to all zeros; make the output depend on the input
    path = save_model(tmp_path / "w.safetensors", net, tiny_psf, {})
    views = tiny_frames[0]
    full = reconstruct("serenet", views, tiny_psf, weights=str(path))
    assert full.data.shape == (3, 3 * LENSLETS, 3 * LENSLETS) and full.voxel_size == tiny_psf.voxel_size
    subset = [i for i in range(25) if i % 3]
    part = reconstruct("serenet", views[subset], tiny_psf, weights=str(path), view_indices=",".join(map(str, subset)))
    assert part.data.shape == full.data.shape and np.all(np.isfinite(part.data))
    assert not np.allclose(part.data, full.data)
    registered = reconstruct("serenet", views, tiny_psf, weights=str(path), register_views=True)
    assert registered.data.shape == full.data.shape
    with pytest.raises(EngineInputError, match="angles but the PSF has 25"):
        reconstruct("serenet", views[:7], tiny_psf, weights=str(path))


def test_registration_recovers_a_displaced_view() -> None:
    rng = np.random.default_rng(0)
    base = np.zeros((32, 32))
    for _ in range(12):
        y, x = rng.integers(4, 28, 2)
        base[y - 1 : y + 2, x - 1 : x + 2] += rng.uniform(0.5, 1.0)
    # nine views with a parallax linear in the view coordinate, one of them also misregistered
    u = np.repeat(np.arange(3) - 1, 3)
    v = np.tile(np.arange(3) - 1, 3)
    views = np.stack([np.roll(base, (int(a), int(b)), axis=(0, 1)) for a, b in zip(u, v, strict=True)])
    views[7] = np.roll(views[7], (2, -1), axis=(0, 1))
    measured = estimate_view_shifts(views, reference=4)
    np.testing.assert_allclose(measured[0], [-1, -1], atol=0.05)
    residual, _ = registration_corrections(views, np.stack([u, v], 1).astype(float), reference=4)
    assert np.argmax(np.abs(residual).sum(1)) == 7
    np.testing.assert_allclose(residual[7], [2, -1], atol=0.5)


# ----------------------------------------------------------------------------- CLI and shipped weights


def test_cli_train_simulated(tiny_psf: PSF, tmp_path) -> None:
    from napari_lfrecon.cli import main

    psf_path = tiny_psf.save(tmp_path / "tiny.psf.safetensors")
    out = tmp_path / "cli.safetensors"
    argv = ["train", "serenet", "--psf", str(psf_path), "--out", str(out), "--simulate", "2"]
    argv += ["--simulate-lenslets", "10", "--steps", "2", "--width", "0.25", "--crop-lenslets", "0"]
    assert main(argv) == 0
    header = read_header(out)
    assert header["training"]["steps_done"] == 2
    assert header["training"]["command"].startswith("lfrecon train serenet --psf")
    assert "--simulate 2" in header["training"]["command"] and "--steps 2" in header["training"]["command"]
    assert main(["train", "serenet", "--psf", str(psf_path), "--out", str(out)]) == 2  # nothing to train on


def test_shipped_weights_beat_the_refocus_baseline_on_the_lfm_sample() -> None:
    from napari_lfrecon.engines.serenet_data import measurement_to_views
    from napari_lfrecon.engines.serenet_weights import shipped_weights_path
    from napari_lfrecon.metrics.basic import psnr
    from napari_lfrecon.samples import load_sample

    assert shipped_weights_path().is_file()
    sample = load_sample("lfm")
    psf, truth = sample["psf"], sample["ground_truth"]
    # default weights: the shipped ones; the sample's known camera background is removed
    volume = reconstruct("serenet", sample["data"], psf, background=sample["info"]["background_e"])
    assert volume.data.shape == truth.shape and volume.voxel_size == psf.voxel_size
    # baseline: the psfshift stack averaged over views (shift-and-sum refocus), upsampled to the volume grid
    _, header = load_weights(shipped_weights_path())
    used = header["config"]["view_indices"]
    views = torch.as_tensor(measurement_to_views(sample["data"], psf)[used])[None]
    shifts = torch.as_tensor(view_shifts_lenslets(psf.array[used], 3))
    stack = network_input(views, shifts, torch.ones(1))[0].mean(0)  # (D, Ny, Nx)
    baseline = torch.nn.functional.interpolate(stack[None, None], size=truth.shape, mode="trilinear")[0, 0].numpy()

    def fitted_psnr(estimate: np.ndarray) -> float:
        gain = float(np.sum(estimate * truth) / np.sum(estimate * estimate))
        return psnr(estimate * gain, truth, data_range=float(truth.max()))

    # the shipped weights are small and short-trained (400 steps): ~27.5 dB vs ~27.2 dB for the baseline
    assert fitted_psnr(volume.data) > fitted_psnr(baseline) + 0.15
