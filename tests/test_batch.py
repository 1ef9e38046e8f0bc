"""Chunked batch runs: sizes, planning, blending, tiled vs untiled RL, resume, refusals, CLI route."""

import errno
import json
import time

import numpy as np
import pytest
import tifffile

from napari_lfrecon.api import reconstruct
from napari_lfrecon.batch import (
    ChunkWriteError,
    array_source,
    finished_chunks,
    open_source,
    parse_size,
    plan_run,
    run_batch,
    tile_weights,
)
from napari_lfrecon.batch import store as batch_store
from napari_lfrecon.cli import main
from napari_lfrecon.io.tiff import write_tiff
from napari_lfrecon.io.zarr_io import read_zarr, write_ome_zarr
from napari_lfrecon.psf import PSF

VOXEL = (0.4, 0.2, 0.2)


def gaussian_psf(shape=(7, 11, 11), widths=(2.0, 1.5, 1.5)):
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    return PSF(
        np.exp(-sum(g**2 / (2 * w**2) for g, w in zip(grids, widths, strict=True))).astype(np.float32),
        "widefield",
        VOXEL,
    )


def beads(shape=(12, 96, 96), n=40, seed=0):
    from scipy.ndimage import convolve

    rng = np.random.default_rng(seed)
    vol = np.zeros(shape, np.float32)
    vol[tuple(rng.integers(0, s, n) for s in shape)] = 100
    psf = gaussian_psf().array
    return rng.poisson(convolve(vol, psf / psf.sum(), mode="constant") + 1).astype(np.float32)


def test_parse_size():
    assert parse_size("512MiB") == 512 * 2**20
    assert parse_size("2GB") == 2 * 10**9 and parse_size("1.5 KiB") == 1536 and parse_size(100) == 100
    for bad in ("lots", "5 parsecs", "0MiB", "-3MB"):
        with pytest.raises(ValueError):
            parse_size(bad)


@pytest.mark.parametrize("blend", [0, 6])
def test_chunks_partition_the_output_and_weights_sum_to_one(blend):
    shape = (10, 70, 53)
    plan = plan_run(shape, "ZYX", gaussian_psf(), tile=(20,), overlap=(3, 5, 5), blend=blend)
    cover = np.zeros(shape, int)
    weight = np.zeros(shape)
    for chunk in plan.chunks:
        cover[chunk.region] += 1
    for tile in plan.tiles:
        w = tile_weights(tile, tile.region)
        weight[tile.region] += 1.0 if w is None else w
        # No weight outside the tile's own input region: the tile is never asked for what it did not see.
        if w is not None:
            assert w.shape == tuple(s.stop - s.start for s in tile.region)
    assert np.all(cover == 1)
    assert np.allclose(weight, 1.0) if blend else np.all(weight >= 1)
    assert plan.chunk_shape == (10, 20, 20) and len(plan.chunks) == 4 * 3  # a given tile is used as given


def test_memory_budget_drives_the_tile_size_and_refusals():
    psf = gaussian_psf()
    small = plan_run((16, 512, 512), "ZYX", psf, max_memory=parse_size("40MiB"))
    large = plan_run((16, 512, 512), "ZYX", psf, max_memory=parse_size("400MiB"))
    assert small.chunk_shape[1] < large.chunk_shape[1] and len(small.chunks) > len(large.chunks)
    assert small.task_bytes <= 40 * 2**20
    with pytest.raises(ValueError, match="smaller than the PSF support"):
        plan_run((16, 128, 128), "ZYX", psf, tile=(8,))
    with pytest.raises(ValueError, match="max-memory"):
        plan_run((16, 128, 128), "ZYX", psf, max_memory=parse_size("9MiB"))
    with pytest.raises(ValueError, match="one channel"):
        plan_run((2, 16, 64, 64), "CZYX", psf)


def test_frames_layout_from_the_psf():
    from napari_lfrecon.samples import load_sample

    lfm = load_sample("lfm")["psf"]
    n_views = lfm.array.shape[0]
    series = plan_run((5, 288, 288), "ZYX", lfm)  # a plain stack of raw frames: not the view count
    assert series.mode == "frames" and series.output_shape[0] == 5 and len(series.chunks) == 5
    views = plan_run((n_views, 32, 32), "ZYX", lfm)  # one frame's views
    assert views.mode == "frames" and len(views.chunks) == 1 and views.output_axes == "ZYX"
    assert plan_run((3, 6, 40, 40), "TZYX", gaussian_psf()).mode == "frames"


def test_tiled_rl_matches_untiled_on_interiors_within_stated_tolerance(tmp_path):
    # RL is not local (every iteration spreads information by the PSF's reach), so tiles differ
    # from the whole-volume run. With an overlap of the full PSF size the largest difference measured
    # after 15 iterations is 9.8e-4 of the maximum (6.8e-4 with a 6-voxel blend; 1.6e-4 on a 96² field
    # after 20 iterations); we hold it to 2e-3. Without overlap the tile edges are off by 25 %: the
    # overlap is what buys the tolerance.
    data = beads((10, 64, 64), n=25)
    psf = gaussian_psf()
    whole = reconstruct("rl", data, psf, iterations=15).data
    errors = {}
    for overlap, blend in (((7, 11, 11), 0), ((7, 11, 11), 6), ((0, 0, 0), 0)):
        out = tmp_path / f"o{overlap[0]}_{blend}.zarr"
        run_batch(
            array_source(data, "ZYX"), out, psf, params={"iterations": 15}, tile=(32,), overlap=overlap, blend=blend
        )
        result = np.asarray(read_zarr(out).data)
        errors[(overlap[0], blend)] = float(np.abs(result - whole).max() / whole.max())
    print("tiled vs untiled, max |Δ| / max:", errors)
    assert errors[(7, 0)] < 2e-3 and errors[(7, 6)] < 2e-3, errors
    assert errors[(0, 0)] > 10 * errors[(7, 0)], errors


def test_frames_are_the_engine_run_frame_by_frame(tmp_path):
    rng = np.random.default_rng(1)
    series = rng.poisson(20, (3, 6, 24, 24)).astype(np.float32)
    psf = gaussian_psf((5, 7, 7))
    summary = run_batch(array_source(series, "TZYX"), tmp_path / "t.zarr", psf, params={"iterations": 4})
    assert summary.axes == "TZYX" and summary.chunks_total == 3
    image = read_zarr(tmp_path / "t.zarr")
    assert np.allclose(image.voxel_size, VOXEL) and image.axes == "TZYX"
    assert image.metadata["engine"] == "rl" and image.metadata["params"]["iterations"] == 4
    for t in range(3):
        expected = reconstruct("rl", series[t], psf, iterations=4).data
        np.testing.assert_array_equal(np.asarray(image.data[t]), expected)


def test_disk_full_stops_with_message_and_resume_matches_uninterrupted(tmp_path, monkeypatch):
    data = beads((8, 64, 64), n=20)
    psf = gaussian_psf((5, 7, 7))
    kwargs = dict(params={"iterations": 3}, tile=(16,), overlap=(5, 7, 7))
    reference = tmp_path / "ref.zarr"
    run_batch(array_source(data, "ZYX"), reference, psf, **kwargs)

    real_write = batch_store.write_region
    calls = {"n": 0}

    def failing_write(path, region, block):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, region, block)

    out = tmp_path / "out.zarr"
    monkeypatch.setattr(batch_store, "write_region", failing_write)
    with pytest.raises(ChunkWriteError, match="disk is full.*5 of 16 chunks are finished"):
        run_batch(array_source(data, "ZYX"), out, psf, **kwargs)
    monkeypatch.setattr(batch_store, "write_region", real_write)
    assert len(finished_chunks(out)) == 5
    again = run_batch(array_source(data, "ZYX"), out, psf, **kwargs)
    assert (again.chunks_skipped, again.chunks_computed, again.chunks_total) == (5, 11, 16)
    np.testing.assert_array_equal(np.asarray(read_zarr(out).data), np.asarray(read_zarr(reference).data))


def test_mismatched_output_is_refused_unless_overwrite(tmp_path):
    data = beads((8, 40, 40), n=10)
    psf = gaussian_psf((5, 7, 7))
    out = tmp_path / "o.zarr"
    run_batch(array_source(data, "ZYX"), out, psf, params={"iterations": 2})
    with pytest.raises(ValueError, match="differs in: .*params"):
        run_batch(array_source(data, "ZYX"), out, psf, params={"iterations": 3})
    summary = run_batch(array_source(data, "ZYX"), out, psf, params={"iterations": 3}, overwrite=True)
    assert summary.chunks_computed == summary.chunks_total
    foreign = write_ome_zarr(tmp_path / "foreign.zarr", data, VOXEL)
    with pytest.raises(ValueError, match="not the output of a batch run"):
        run_batch(array_source(data, "ZYX"), foreign, psf)


def test_sources_read_regions_of_tiff_and_zarr(tmp_path):
    data = np.random.default_rng(2).random((4, 5, 30, 40)).astype(">f4")
    region = (slice(1, 3), slice(0, 5), slice(3, 29), slice(7, 40))
    contiguous = tmp_path / "c.tif"
    tifffile.imwrite(contiguous, data)
    compressed = tmp_path / "z.tif"
    tifffile.imwrite(compressed, data, compression="zlib", tile=(16, 16))
    for path, kind in ((contiguous, "memmap"), (compressed, "tiff")):
        source, _ = open_source(path)
        assert source.kind == kind
        np.testing.assert_array_equal(source.read(region), data[region].astype(np.float32))
    source, header = open_source(write_ome_zarr(tmp_path / "a.zarr", data[0], VOXEL))
    assert header.voxel_size == VOXEL
    np.testing.assert_array_equal(source.read(region[1:]), data[0][region[1:]].astype(np.float32))


def test_cli_zarr_route_json_summary_resume_and_refusals(tmp_path, capsys):
    data = beads((8, 48, 48), n=10)
    psf = gaussian_psf((5, 7, 7))
    inp = write_tiff(tmp_path / "in.tif", data, voxel_size=VOXEL)
    psf_file = psf.save(tmp_path / "p.psf.safetensors")
    out = tmp_path / "out.zarr"
    args = ["reconstruct", "--psf", str(psf_file), "--iterations", "2", "--tile", "24", "--json", str(inp), str(out)]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["output"] == str(out) and first["chunks_total"] == 4
    assert (first["chunks_computed"], first["chunks_skipped"]) == (4, 0)
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (second["chunks_computed"], second["chunks_skipped"]) == (0, 4)

    bare = write_tiff(tmp_path / "bare.tif", data)
    assert main(["reconstruct", "--psf", str(psf_file), str(bare), str(tmp_path / "b.zarr")]) == 2
    assert "voxel size" in capsys.readouterr().err
    assert main(["reconstruct", "--psf", str(psf_file), "--tile", "3", str(inp), str(tmp_path / "c.zarr")]) == 2
    assert "smaller than the PSF support" in capsys.readouterr().err


def test_unreachable_scheduler_fails_fast_with_a_clear_message(tmp_path, capsys):
    data = beads((8, 32, 32), n=5)
    inp = write_tiff(tmp_path / "in.tif", data, voxel_size=VOXEL)
    psf_file = gaussian_psf((5, 7, 7)).save(tmp_path / "p.psf.safetensors")
    started = time.perf_counter()
    code = main(
        ["reconstruct", "--psf", str(psf_file), "--scheduler", "tcp://127.0.0.1:9", str(inp), str(tmp_path / "o.zarr")]
    )
    assert code == 2 and time.perf_counter() - started < 20
    assert "could not reach the dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err


# ----------------------------------------------------------------------------- learned engines, no RL names


@pytest.fixture(scope="module")
def tiny_serenet(tmp_path_factory):
    """A tiny LFM PSF (5×5 views, 3 depths) and untrained SeReNet weights for it (the test needs a fixed map)."""
    import torch

    from napari_lfrecon.engines.serenet_model import SeReNetConfig, SeReNetNet
    from napari_lfrecon.engines.serenet_weights import save_model
    from napari_lfrecon.psf.lfm import LFMOptics, lfm_psf

    psf = lfm_psf(LFMOptics(20.0, 0.5, 1.33, 0.52, 32.5, 650.0, 6.5, 5, supersample=3), [-4.0, 0.0, 4.0], device="cpu")
    config = SeReNetConfig(
        view_indices=list(range(psf.array.shape[0])),
        depths=psf.array.shape[1],
        supersample=3,
        trunk=[6, 4],
        stages=[[4]],
        flux_factor=0.5,
    )
    torch.manual_seed(0)
    weights = save_model(tmp_path_factory.mktemp("serenet") / "w.safetensors", SeReNetNet(config), psf, {})
    return psf, str(weights)


def lfm_series(psf, frames=2, lenslets=12, seed=4):
    nnum = int(psf.optics["pixels_per_lenslet"])
    return np.random.default_rng(seed).poisson(20, (frames, lenslets * nnum, lenslets * nnum)).astype(np.float32)


def test_serenet_series_through_batch_equals_the_direct_call(tmp_path, tiny_serenet):
    psf, weights = tiny_serenet
    series = lfm_series(psf)
    params = {"weights": weights, "tile_lenslets": 9, "overlap_lenslets": 4}
    summary = run_batch(array_source(series, "TYX"), tmp_path / "s.zarr", psf, engine="serenet", params=params)
    image = read_zarr(tmp_path / "s.zarr")
    assert summary.axes == "TZYX" and summary.chunks_total == 2 and summary.plan["mode"] == "frames"
    assert image.metadata["engine"] == "serenet" and "boundary" not in image.metadata["params"]
    for t in range(2):
        expected = reconstruct("serenet", series[t], psf, **params).data
        np.testing.assert_allclose(np.asarray(image.data[t]), expected, rtol=1e-5, atol=1e-6 * expected.max())


def test_serenet_reports_and_cancels_per_tile(tiny_serenet):
    import torch

    from napari_lfrecon.engines import get
    from napari_lfrecon.engines.base import Inputs, make_params
    from napari_lfrecon.engines.serenet_model import SeReNetNet

    psf, weights = tiny_serenet
    frame = lfm_series(psf, frames=1)[0]
    engine = get("serenet")
    radius = SeReNetNet(_config_of(weights)).receptive_radius_lenslets()
    nnum = int(psf.optics["pixels_per_lenslet"])
    declared = make_params(engine.Params, {"weights": weights})
    assert engine.halo(Inputs(frame, psf), declared) == (radius * nnum, radius * nnum)  # raw pixels
    assert engine.halo(Inputs(np.zeros((25, 12, 12), np.float32), psf), declared) == (0, radius, radius)  # lenslets
    values = {"weights": weights, "tile_lenslets": 2 * radius + 3, "overlap_lenslets": 2 * radius + 1}
    params = make_params(engine.Params, values)
    updates = list(engine.run(Inputs(frame, psf), params, device=torch.device("cpu")))
    tiles = [u for u in updates if u.kind == "progress" and u.message.startswith("tile ")]
    assert len(tiles) == 16 and tiles[-1].message == "tile 16/16"  # 12 lenslets in cores of 3: 4 × 4 tiles
    assert [u.fraction for u in tiles] == sorted(u.fraction for u in tiles)
    whole = reconstruct("serenet", frame, psf, weights=weights).data
    np.testing.assert_allclose(updates[-1].data, whole, rtol=1e-5, atol=1e-5 * whole.max())  # enough overlap: exact
    assert updates[-1].data.shape == engine.output_shape(Inputs(frame, psf), params)

    seen = []

    def stop() -> bool:
        return len(seen) >= 2

    cancelled = []
    for update in engine.run(Inputs(frame, psf), params, device=torch.device("cpu"), should_stop=stop):
        cancelled.append(update)
        if update.message.startswith("tile "):
            seen.append(update)
    assert all(u.kind != "result" for u in cancelled) and cancelled[-1].message == "cancelled after tile 2"


def _config_of(weights):
    from napari_lfrecon.engines.serenet_model import SeReNetConfig
    from napari_lfrecon.io.weights import read_header

    return SeReNetConfig.from_dict(read_header(weights)["config"])


@pytest.fixture(scope="module")
def tiny_niiv(tmp_path_factory):
    """Untrained tiny niiv weights for anisotropy 4."""
    import torch

    from napari_lfrecon.engines.niiv import save_model
    from napari_lfrecon.engines.niiv_model import NiivConfig, NiivNet

    torch.manual_seed(0)
    model = NiivNet(NiivConfig(features=8, blocks=1, attn_dim=4, mlp_width=16, mlp_depth=2, anisotropy=4))
    return str(save_model(tmp_path_factory.mktemp("niiv") / "n.safetensors", model, {}))


def anisotropic_stacks(frames=2, shape=(4, 20, 24), seed=5):
    rng = np.random.default_rng(seed)
    return (rng.random((frames, *shape)) + 0.1).astype(np.float32)


def test_niiv_needs_no_psf_in_batch_and_matches_the_direct_call_with_resume(tmp_path, monkeypatch, tiny_niiv):
    stacks = anisotropic_stacks()
    voxel = (0.8, 0.2, 0.2)
    params = {"weights": tiny_niiv, "batch_points": 512}
    one = run_batch(
        array_source(stacks[0], "ZYX"), tmp_path / "one.zarr", None, engine="niiv", params=params, voxel_size=voxel
    )
    assert one.shape == (16, 20, 24) and one.plan["mode"] == "frames" and one.voxel_size_um == pytest.approx((0.2,) * 3)
    direct = [reconstruct("niiv", s, voxel_size=voxel, **params).data for s in stacks]
    np.testing.assert_allclose(np.asarray(read_zarr(tmp_path / "one.zarr").data), direct[0], rtol=1e-6, atol=1e-6)

    real_write = batch_store.write_region
    calls = {"n": 0}

    def failing_write(path, region, block):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, region, block)

    out = tmp_path / "series.zarr"
    monkeypatch.setattr(batch_store, "write_region", failing_write)
    with pytest.raises(ChunkWriteError, match="1 of 2 chunks are finished"):
        run_batch(array_source(stacks, "TZYX"), out, None, engine="niiv", params=params, voxel_size=voxel)
    monkeypatch.setattr(batch_store, "write_region", real_write)
    again = run_batch(array_source(stacks, "TZYX"), out, None, engine="niiv", params=params, voxel_size=voxel)
    assert (again.chunks_skipped, again.chunks_computed, again.axes) == (1, 1, "TZYX")
    np.testing.assert_allclose(np.asarray(read_zarr(out).data), np.stack(direct), rtol=1e-6, atol=1e-6)


def test_a_result_that_does_not_fit_the_planned_output_is_refused(tmp_path, tiny_niiv):
    # niiv's output_voxel_size cannot see z_scale (Engine.output_voxel_size takes no params): the store would be
    # labelled dz/af while the volume has dz/(2·af). The run stops instead of writing mislabelled chunks.
    stack = anisotropic_stacks(frames=1)[0]
    with pytest.raises(ValueError, match="Engine.output_voxel_size"):
        run_batch(
            array_source(stack, "ZYX"),
            tmp_path / "z2.zarr",
            None,
            engine="niiv",
            params={"weights": tiny_niiv, "z_scale": 2.0},
            voxel_size=(0.8, 0.2, 0.2),
        )
    assert not finished_chunks(tmp_path / "z2.zarr")


def test_engines_declare_halo_output_and_memory_for_planning(tiny_niiv):
    from napari_lfrecon.batch.plan import engine_view

    psf = gaussian_psf((5, 7, 7))
    rl = engine_view("rl", {}, psf)
    assert rl.halo((8, 40, 40)) == (5, 7, 7) and rl.output_shape((8, 40, 40)) == (8, 40, 40)
    assert rl.memory_bytes((8, 40, 40)) > 4 * 8 * 40 * 40
    niiv = engine_view("niiv", {"weights": tiny_niiv}, None, (0.8, 0.2, 0.2))
    assert niiv.output_shape((4, 20, 24)) == (16, 20, 24) and niiv.halo((4, 20, 24)) == (4, 5, 5)
    with pytest.raises(ValueError, match="needs a PSF"):
        engine_view("rl", {}, None)
    # niiv's output is not on its input's grid: a single stack is one frame, never cut into tiles.
    assert (
        plan_run(
            (4, 20, 24), "ZYX", None, engine="niiv", params={"weights": tiny_niiv}, voxel_size=(0.8, 0.2, 0.2)
        ).mode
        == "frames"
    )


def test_cli_chunked_niiv_run_needs_no_psf(tmp_path, capsys, tiny_niiv):
    stack = anisotropic_stacks(frames=1)[0]
    inp = write_tiff(tmp_path / "in.tif", stack, voxel_size=(0.8, 0.2, 0.2))
    args = ["reconstruct", "--engine", "niiv", "--weights", tiny_niiv, "--json", str(inp), str(tmp_path / "o.zarr")]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["shape"] == [16, 20, 24] and summary["voxel_size_um"] == pytest.approx([0.2, 0.2, 0.2])
    direct = reconstruct("niiv", stack, voxel_size=(0.8, 0.2, 0.2), weights=tiny_niiv).data
    np.testing.assert_allclose(np.asarray(read_zarr(tmp_path / "o.zarr").data), direct, rtol=1e-6, atol=1e-6)


def test_planning_follows_what_any_engine_declares():
    from dataclasses import dataclass

    from napari_lfrecon.engines.base import Engine

    @dataclass
    class NoParams:
        pass

    class WholeFrames(Engine):  # declares only its output: the base's safe defaults do the rest
        name = "whole-frames"
        modalities = ("widefield",)
        needs_psf = False
        Params = NoParams

        def output_shape(self, inputs, params):
            return tuple(np.shape(inputs.data))

    class Local(WholeFrames):  # a local operator: 2 voxels of context laterally, none axially
        name = "local"

        def halo(self, inputs, params):
            return (0, 2, 2)

    whole = plan_run((6, 64, 64), "ZYX", None, engine=WholeFrames(), max_memory=parse_size("64MiB"))
    assert whole.mode == "frames" and len(whole.tiles) == 1
    assert whole.task_bytes == 8 * 4 * 2 * 6 * 64 * 64 + 2 * 4 * 2 * 6 * 64 * 64  # default model + held copies
    local = plan_run((6, 64, 64), "ZYX", None, engine=Local(), tile=(16,), blend=2)
    assert local.mode == "tiles" and local.overlap == (0, 2, 2) and len(local.chunks) == 16
    assert max(len(c.tiles) for c in local.chunks) == 9  # interior cores are reached by their 8 neighbours' ramps
    with pytest.raises(ValueError, match="does not tell the shape"):
        plan_run((6, 64, 64), "ZYX", None, engine=type("Mute", (Local,), {"output_shape": Engine.output_shape})())


# ----------------------------------------------------------------------------- failures leave nothing behind
def test_a_run_failing_before_its_first_chunk_removes_only_the_store_it_created(tmp_path, monkeypatch):
    from napari_lfrecon.batch import run as batch_run
    from napari_lfrecon.jobs import EngineInputError

    data = beads((8, 48, 48), n=10)
    psf = gaussian_psf((5, 7, 7))
    kwargs = dict(params={"iterations": 2}, tile=(24,))
    real = batch_run.reconstruct_tile
    calls = {"n": 0, "fail_after": 0}

    def failing(job, psf_obj, tile):
        calls["n"] += 1
        if calls["n"] > calls["fail_after"]:
            raise EngineInputError("tile failed")
        return real(job, psf_obj, tile)

    monkeypatch.setattr(batch_run, "reconstruct_tile", failing)
    out = tmp_path / "new.zarr"
    with pytest.raises(EngineInputError, match="tile failed"):
        run_batch(array_source(data, "ZYX"), out, psf, **kwargs)
    assert not out.exists()  # created by the failed run, nothing finished: removed

    calls.update(n=0, fail_after=1)  # one chunk finishes, then a failure: the store is kept for resuming
    with pytest.raises(EngineInputError, match="tile failed"):
        run_batch(array_source(data, "ZYX"), out, psf, **kwargs)
    assert len(finished_chunks(out)) == 1

    calls.update(n=0, fail_after=0)  # a store that existed before the run is never removed
    with pytest.raises(EngineInputError, match="tile failed"):
        run_batch(array_source(data, "ZYX"), out, psf, **kwargs)
    assert len(finished_chunks(out)) == 1


def test_ctrl_c_raises_batch_interrupted_with_the_counts(tmp_path, monkeypatch):
    from napari_lfrecon.batch import BatchInterrupted
    from napari_lfrecon.batch import run as batch_run

    data = beads((8, 48, 48), n=10)
    psf = gaussian_psf((5, 7, 7))
    real = batch_run.reconstruct_tile
    calls = {"n": 0}

    def interrupted(job, psf_obj, tile):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(job, psf_obj, tile)

    monkeypatch.setattr(batch_run, "reconstruct_tile", interrupted)
    with pytest.raises(BatchInterrupted) as caught:
        run_batch(array_source(data, "ZYX"), tmp_path / "o.zarr", psf, params={"iterations": 2}, tile=(24,))
    assert (caught.value.kept, caught.value.total) == (3, 4)
    assert str(caught.value) == "interrupted; 3 of 4 chunks kept, run the same command to resume"


def test_the_output_store_is_created_without_computing_its_chunks(tmp_path):
    started = time.perf_counter()
    batch_store.prepare_output(
        tmp_path / "huge.zarr",
        shape=(64, 32768, 32768),
        chunks=(64, 512, 512),
        axes="ZYX",
        voxel_size=VOXEL,
        metadata={},
        signature={"run": 1},
    )
    assert time.perf_counter() - started < 5
    image = read_zarr(tmp_path / "huge.zarr")
    assert image.data.shape == (64, 32768, 32768) and image.voxel_size == VOXEL
    assert batch_store.read_signature(tmp_path / "huge.zarr") == {"run": 1}


def test_the_finiteness_check_reads_blocks_covering_the_region_once():
    from napari_lfrecon.batch.guard import _blocks

    counts = np.zeros((5, 7, 9), int)
    region = (slice(1, 5), slice(2, 7), slice(0, 9))
    for block in _blocks(region, 4, 40):
        assert 4 * np.prod([s.stop - s.start for s in block]) <= 40
        counts[block] += 1
    assert counts[region].min() == counts[region].max() == 1 and counts.sum() == 4 * 5 * 9
