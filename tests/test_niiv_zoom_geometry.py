"""niiv zoom geometry and controller without Qt: planning, generations, stale results, the decode generator.

Nothing here needs a display, Qt or napari: ``napari_lfrecon.controllers`` is
imported in a fresh interpreter and checked to pull in none of them.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from fake_field import FakeField
from napari_lfrecon.controllers.niiv_zoom import (
    DecodeCounter,
    DecodeFailed,
    DecodeRequest,
    TileResult,
    ZoomRequests,
    decode_tiles,
    tile_status,
)
from napari_lfrecon.controllers.niiv_zoom_geometry import (
    MAX_SAMPLES_PER_VOXEL,
    MAX_TILE_SIDE,
    OutputGrid,
    ViewState,
    clamp_message,
    plan_passes,
    plan_tile,
)

GRID = OutputGrid(shape=(16, 100, 120), scale=(0.5, 0.2, 0.25), translate=(1.0, 2.0, 3.0))


def AnalyticField(**options):  # noqa: N802 - reads like the class it builds
    """The shared fake field on a smaller grid."""
    return FakeField(**{"shape": (16, 100, 120), **options})


# ============================================================ geometry
def test_visible_region_and_density_follow_the_camera():
    # 10 screen px per µm on a 200 × 300 px canvas: 20 µm × 30 µm around the centre.
    view = ViewState(displayed=(1, 2), slice_world=3.0, center=(12.0, 18.0), zoom=10.0, canvas=(200, 300))
    plan = plan_tile(GRID, view)
    zs, ys, xs = plan.positions
    # rows (y): world [2, 22] → index [0, 100] → clipped to the volume's last cell edge 99.5
    # cols (x): world [3, 33] → index [0, 120] → clipped to 119.5
    assert zs.tolist() == [pytest.approx((3.0 - 1.0) / 0.5)]
    # full: zoom × scale screen px per voxel = 2 samples per voxel along y, 2.5 along x
    assert np.allclose(np.diff(ys), 1 / 2.0) and np.allclose(np.diff(xs), 1 / 2.5)
    # The lattice -0.5 + (k + 0.5) * step: the first cell is the one holding index 0 (centre 0.25 resp. 0.1),
    # the last one ends at the volume's edge.
    assert ys[0] == pytest.approx(0.25) and ys[-1] == pytest.approx(99.25)
    assert xs[0] == pytest.approx(0.1) and xs[-1] == pytest.approx(119.3)
    assert plan.samples_per_voxel == (pytest.approx(2.0), pytest.approx(2.5))
    assert not plan.clamped
    # Now centred on the volume's start: only its first quarter-ish is visible.
    view = ViewState(displayed=(1, 2), slice_world=3.0, center=(2.0, 3.0), zoom=10.0, canvas=(200, 300))
    _, ys, xs = plan_tile(GRID, view).positions
    assert ys[0] == pytest.approx(-0.25) and ys[-1] == pytest.approx(49.75)  # y index < (2 + 10 - 2) / 0.2 = 50
    assert xs[0] == pytest.approx(-0.3) and xs[-1] == pytest.approx(60.1)  # the cell [59.9, 60.3] holds x = 60
    # At most one sample per screen pixel (+1 for the lattice's partial edge cells).
    view = ViewState(displayed=(1, 2), slice_world=3.0, center=(12.0, 18.0), zoom=100.0, canvas=(200, 300))
    plan = plan_tile(GRID, view)
    assert plan.shape[1] <= 201 and plan.shape[2] <= 301
    assert plan.shape[1] >= 199 and plan.shape[2] >= 299


def test_coarse_is_a_quarter_of_full_per_axis():
    view = ViewState(displayed=(1, 2), slice_world=3.0, center=(12.0, 18.0), zoom=40.0, canvas=(400, 400))
    full, coarse = plan_tile(GRID, view), plan_tile(GRID, view, level="coarse")
    assert coarse.samples_per_voxel[0] == pytest.approx(full.samples_per_voxel[0] / 4)
    assert coarse.shape[1] == pytest.approx(full.shape[1] / 4, abs=1)
    assert coarse.shape[2] == pytest.approx(full.shape[2] / 4, abs=1)
    passes = plan_passes(GRID, view)
    assert [p.level for p in passes] == ["coarse", "full"]
    # A tiny view is decoded directly at full density.
    small = ViewState(displayed=(1, 2), slice_world=3.0, center=(12.0, 18.0), zoom=40.0, canvas=(50, 50))
    assert [p.level for p in plan_passes(GRID, small)] == ["full"]


def test_pan_keeps_the_sample_lattice():
    a = plan_tile(GRID, ViewState((1, 2), 3.0, (12.0, 18.0), 37.0, (300, 300)))
    b = plan_tile(GRID, ViewState((1, 2), 3.0, (12.37, 18.11), 37.0, (300, 300)))
    common = np.intersect1d(np.round(a.positions[1], 9), np.round(b.positions[1], 9))
    assert len(common) > 0.8 * len(a.positions[1])  # shared samples sit at identical positions


def test_zoom_beyond_the_limit_clamps_and_degenerate_views_give_nothing():
    view = ViewState((1, 2), 3.0, (12.0, 18.0), 5000.0, (400, 400))  # 1000 px per y voxel
    plan = plan_tile(GRID, view)
    assert plan.clamped and plan.samples_per_voxel == (MAX_SAMPLES_PER_VOXEL, MAX_SAMPLES_PER_VOXEL)
    assert plan.shape[1] < 400  # fewer samples than pixels: napari magnifies the 32× decode
    assert "32" in clamp_message(plan) and "limit" in clamp_message(plan)
    for bad in (0.0, -1.0, math.nan, math.inf):
        assert plan_tile(GRID, ViewState((1, 2), 3.0, (12.0, 18.0), bad, (400, 400))) is None
    assert plan_tile(GRID, ViewState((1, 2), 3.0, (12.0, 18.0), 10.0, (0, 400))) is None
    assert plan_tile(GRID, ViewState((1, 2), 100.0, (12.0, 18.0), 10.0, (400, 400))) is None  # slice outside
    assert plan_tile(GRID, ViewState((1, 2), 3.0, (500.0, 18.0), 10.0, (400, 400))) is None  # looking elsewhere
    huge = plan_tile(GRID, ViewState((1, 2), 3.0, (12.0, 18.0), 1e4, (100_000, 100_000)))
    assert max(huge.shape) <= MAX_TILE_SIDE


# ============================================================ controller: generations and stale results
VIEW = ViewState(displayed=(1, 2), slice_world=3.0, center=(12.0, 18.0), zoom=40.0, canvas=(400, 400))


def test_a_newer_request_supersedes_the_older_and_its_results_are_stale():
    requests = ZoomRequests()
    first = requests.plan(GRID, VIEW, requested_at=1.0).request
    assert first is not None and first.gen == requests.gen == 1 and requests.requests == 1
    assert [p.level for p in first.plans] == ["coarse", "full"]
    # The same view again: the same samples are shown or in flight, nothing new is requested.
    assert requests.plan(GRID, VIEW, requested_at=2.0).request is None and requests.gen == 1
    result = TileResult(first.gen, first.plans[0], np.zeros(first.plans[0].shape, np.float32), 0.1, 1.0)
    assert requests.accept(result) and requests.stale_dropped == 0
    # A zoom: a new generation; the first request's late results are dropped and counted.
    zoomed = ViewState(VIEW.displayed, VIEW.slice_world, VIEW.center, VIEW.zoom * 1.5, VIEW.canvas)
    second = requests.plan(GRID, zoomed, requested_at=3.0).request
    assert second is not None and second.gen == 2 == requests.gen
    assert not requests.accept(result) and requests.stale_dropped == 1
    assert not requests.accept(DecodeFailed(first.gen, "late failure")) and requests.stale_dropped == 2
    assert requests.accept(DecodeFailed(second.gen, "current failure"))
    assert not requests.accept(DecodeFailed(second.gen, "detached"), attached=False)
    # After a reset of the shown tile the same view is decoded again.
    requests.forget_shown()
    third = requests.plan(GRID, zoomed, requested_at=4.0).request
    assert third is not None and third.gen == 3
    # A view with nothing to decode supersedes everything in flight and says why.
    planned = requests.plan(GRID, None, requested_at=5.0)
    assert planned.request is None and "3-D" in planned.hidden and requests.gen == 4
    away = ViewState(VIEW.displayed, VIEW.slice_world, (500.0, 18.0), VIEW.zoom, VIEW.canvas)
    assert "nothing" in requests.plan(GRID, away, requested_at=6.0).hidden
    assert not requests.accept(TileResult(third.gen, third.plans[0], np.zeros(1), 0.0, 0.0))
    requests.reset()
    assert (requests.gen, requests.requests, requests.stale_dropped) == (0, 0, 0)


def test_the_clamp_is_announced_once_per_crossing():
    requests = ZoomRequests()
    far = ViewState(VIEW.displayed, VIEW.slice_world, VIEW.center, 5000.0, VIEW.canvas)
    farther = ViewState(VIEW.displayed, VIEW.slice_world, VIEW.center, 15000.0, VIEW.canvas)
    first = requests.plan(GRID, far, 0.0)
    assert "limit" in first.clamp_crossed and first.clamp_status == first.clamp_crossed
    second = requests.plan(GRID, farther, 0.0)
    assert second.clamp_crossed == "" and "limit" in second.clamp_status  # kept in the status, not said again
    back = requests.plan(GRID, VIEW, 0.0)
    assert back.clamp_crossed == back.clamp_status == ""
    assert "limit" in requests.plan(GRID, far, 0.0).clamp_crossed  # a new crossing is said again
    plan = plan_tile(GRID, far)
    status = tile_status(plan, {"full": 0.25, "coarse": 0.05})
    assert status.startswith("full tile 1×") and "coarse 50 ms, full 250 ms" in status and "limit" in status


# ============================================================ controller: the decode generator
def test_decode_tiles_yields_coarse_then_full_and_marks_itself_done():
    field = AnalyticField()
    request = DecodeRequest(7, plan_passes(GRID, VIEW), requested_at=time.perf_counter())
    counter = DecodeCounter()
    results = list(decode_tiles(field, request, counter))
    assert [type(r) for r in results] == [TileResult, TileResult]
    assert [r.plan.level for r in results] == ["coarse", "full"] and {r.gen for r in results} == {7}
    full = results[-1]
    grid = np.meshgrid(*full.plan.positions, indexing="ij")
    np.testing.assert_allclose(full.data, FakeField.value(*grid), atol=1e-5)
    assert full.data.dtype == np.float32 and full.decode_seconds >= 0
    assert counter.count == 2 and request.done.is_set()


def test_decode_tiles_stops_when_superseded():
    # Superseded before it starts: nothing is decoded.
    field = AnalyticField()
    request = DecodeRequest(1, plan_passes(GRID, VIEW), 0.0)
    request.stop.set()
    assert list(decode_tiles(field, request)) == [] and len(field.calls) == 0 and request.done.is_set()
    # Superseded while decoding: a cooperative decoder sees should_stop and returns None; nothing more is decoded.
    field = AnalyticField(delay=5.0)
    request = DecodeRequest(2, plan_passes(GRID, VIEW), 0.0)
    threading.Timer(0.05, request.stop.set).start()
    started = time.perf_counter()
    assert list(decode_tiles(field, request)) == []
    assert time.perf_counter() - started < 4.0 and field.stopped == 1 and len(field.calls) == 1
    # A decoder that ignores the flag still finishes its pass (the main thread drops it as stale), then stops.
    field = AnalyticField(delay=0.1, stubborn=True)
    request = DecodeRequest(3, plan_passes(GRID, VIEW), 0.0)
    threading.Timer(0.02, request.stop.set).start()
    results = list(decode_tiles(field, request))
    assert len(results) == 1 and results[0].plan.level == "coarse" and len(field.calls) == 1


def test_decode_tiles_turns_failures_into_messages():
    request = DecodeRequest(4, plan_passes(GRID, VIEW), 0.0)
    (failed,) = list(decode_tiles(AnalyticField(fail="out of memory in the decoder"), request))
    assert isinstance(failed, DecodeFailed) and failed.gen == 4
    assert failed.message == "RuntimeError: out of memory in the decoder" and request.done.is_set()
    wrong = AnalyticField()
    wrong.decode_grid = lambda zs, ys, xs, should_stop=None: np.zeros((1, 2, 3), np.float32)
    (failed,) = list(decode_tiles(wrong, DecodeRequest(5, plan_passes(GRID, VIEW), 0.0)))
    assert isinstance(failed, DecodeFailed) and "shape" in failed.message


def test_decode_tiles_limits_torch_threads_while_decoding_and_restores_them():
    torch = pytest.importorskip("torch")
    seen: list[int] = []

    class Recording(FakeField):
        def decode_grid(self, zs, ys, xs, *, should_stop=None):
            seen.append(torch.get_num_threads())
            return super().decode_grid(zs, ys, xs, should_stop=should_stop)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        request = DecodeRequest(6, plan_passes(GRID, VIEW), 0.0)
        assert len(list(decode_tiles(Recording(shape=(16, 100, 120)), request))) == 2
        assert seen == [1, 1] and torch.get_num_threads() == 2 and request.started.is_set()
    finally:
        torch.set_num_threads(before)


def test_controllers_import_no_qt_or_napari():
    code = (
        "import sys, pkgutil, importlib, napari_lfrecon.controllers as c\n"
        "for m in pkgutil.iter_modules(c.__path__):\n"
        "    importlib.import_module(f'napari_lfrecon.controllers.{m.name}')\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
        "('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'magicgui', 'superqt', 'vispy'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == ""
