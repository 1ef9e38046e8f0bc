"""niiv interactive zoom in a real (Xvfb) napari viewer: tile placement, the Qt controller and the widget.

The pure geometry and the Qt-free controller are tested in ``test_niiv_zoom_geometry.py``.

The decoder here is a fake analytic field (a smooth function of continuous
output-voxel coordinates with sub-voxel detail, and an optional delay) so that
placement can be checked exactly and cancellation / stale dropping observed.
"""

from __future__ import annotations

import numpy as np
import pytest

from fake_field import FakeField

pytest.importorskip("pytestqt")

from napari.layers import Image  # noqa: E402

from napari_lfrecon.controllers import niiv_zoom as zoom_controller  # noqa: E402
from napari_lfrecon.controllers.niiv_zoom_geometry import (  # noqa: E402
    MAX_SAMPLES_PER_VOXEL,
    FieldDecoder,
    OutputGrid,
    ViewState,
    output_grid,
    plan_tile,
)
from napari_lfrecon.gui import _napari_compat as compat  # noqa: E402
from napari_lfrecon.gui import niiv_zoom as nz  # noqa: E402
from napari_lfrecon.gui import niiv_zoom_widget as nzw  # noqa: E402
from napari_lfrecon.gui.niiv_zoom import NiivZoom  # noqa: E402
from napari_lfrecon.gui.niiv_zoom_widget import NiivZoomWidget  # noqa: E402

TIMEOUT_MS = 10_000


# ============================================================ pure geometry (no viewer)
GRID = OutputGrid(shape=(16, 100, 120), scale=(0.5, 0.2, 0.25), translate=(1.0, 2.0, 3.0))


def test_tile_sits_where_napari_shows_the_field():
    """Tile sample j, placed with the plan's scale/translate, is shown by napari where the field has that value."""
    field = FakeField(shape=GRID.shape)
    base = Image(np.zeros(GRID.shape, np.float32), scale=GRID.scale, translate=GRID.translate)
    for displayed, sl in (((1, 2), 4.0), ((0, 2), 7.3), ((0, 1), 10.0)):
        view = ViewState(displayed=displayed, slice_world=sl, center=(5.0, 12.0), zoom=23.7, canvas=(120, 170))
        plan = plan_tile(GRID, view)
        tile = field.decode_grid(*plan.positions)
        layer = Image(tile, scale=plan.scale, translate=plan.translate)
        rng = np.random.default_rng(0)
        for _ in range(20):
            j = tuple(int(rng.integers(n)) for n in tile.shape)
            world = np.asarray(layer.data_to_world(j), dtype=float)
            # napari's pixel-centre convention: the world position of pixel j maps back to exactly j...
            np.testing.assert_allclose(layer.world_to_data(world), j, atol=1e-9)
            # ...and the base layer (the output grid) sees the same point at the field coordinate sampled.
            index = np.asarray(base.world_to_data(world), dtype=float)
            np.testing.assert_allclose(index, [plan.positions[a][j[a]] for a in range(3)], atol=1e-9)
            assert tile[j] == pytest.approx(field.value(*index), abs=1e-5)
        # The tile's cells tile the visible part of the volume: its augmented extent stays inside the base's.
        extent = compat.augmented_world_extent(layer)
        assert np.all(extent[0] >= compat.augmented_world_extent(base)[0] - 1e-9)
        assert np.all(extent[1] <= compat.augmented_world_extent(base)[1] + 1e-9)


def test_output_grid_of_an_anisotropic_stack_matches_the_niiv_convention():
    """Output plane k of a D-plane stack (anisotropy af) lies at input plane (k + 0.5) / af - 0.5."""
    af, stack_shape, scale, translate = 4, (6, 30, 40), (1.6, 0.4, 0.4), (10.0, -1.0, 2.0)
    grid = output_grid(stack_shape, scale, translate, (6 * af, 30, 40))
    assert grid.scale == pytest.approx((0.4, 0.4, 0.4))
    stack_layer = Image(np.zeros(stack_shape, np.float32), scale=scale, translate=translate)
    for k in (0, 3, 11, 23):
        world = (grid.to_world(0, k), grid.to_world(1, 5), grid.to_world(2, 7))
        z_in, y_in, x_in = stack_layer.world_to_data(world)
        assert z_in == pytest.approx((k + 0.5) / af - 0.5)
        assert (y_in, x_in) == (pytest.approx(5), pytest.approx(7))
    # A result at scale 1 is its own grid.
    same = output_grid((24, 30, 40), (0.4, 0.4, 0.4), (3.0, 2.0, 1.0), (24, 30, 40))
    assert same.scale == (0.4, 0.4, 0.4) and same.translate == (3.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="3-D"):
        output_grid((30, 40), (1, 1), (0, 0), (24, 30, 40))


# ============================================================ controller in a viewer
BASE_SCALE = (0.5, 0.2, 0.25)
BASE_TRANSLATE = (1.0, 2.0, 3.0)


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def errors(monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(nz, "show_error", seen.append)
    monkeypatch.setattr(nzw, "show_error", seen.append)
    return seen


@pytest.fixture
def infos(monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(nz, "show_info", seen.append)
    return seen


@pytest.fixture
def zoom():
    controller = NiivZoom(debounce_ms=30)
    yield controller
    controller.detach()


def add_base(viewer, field):
    return viewer.add_image(
        np.zeros(field.shape_out, np.float32),
        name="base",
        scale=BASE_SCALE,
        translate=BASE_TRANSLATE,
        contrast_limits=(-1.5, 1.5),
        colormap="magma",
    )


def shown_tiles(zoom, current: list | None = None):
    """``(level, gen)`` of every tile shown; ``current`` (if given) gets the controller's generation at that moment."""
    tiles: list[tuple[str, int]] = []

    def record(level, gen, *_):
        tiles.append((level, gen))
        if current is not None:
            current.append(zoom.gen)

    zoom.tile_shown.connect(record)
    return tiles


def wait_full(qtbot, zoom, tiles, gen=None):
    """Wait for a full tile of generation ``gen`` or later (any generation when ``None``)."""
    qtbot.waitUntil(
        lambda: any(level == "full" and (gen is None or g >= gen) for level, g in tiles), timeout=TIMEOUT_MS
    )


def wait_next_full(qtbot, zoom, tiles, before):
    """After a view change made at generation ``before``: wait for its request and that request's full tile."""
    qtbot.waitUntil(lambda: zoom.gen > before, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: zoom.last_plan is not None and ("full", zoom.gen) in tiles, timeout=TIMEOUT_MS)


def expected_visible(viewer, grid, axis_rows=1, axis_cols=2):
    """The visible index ranges computed here independently from napari's camera and canvas."""
    camera = viewer.scene.camera
    h, w = viewer.canvas.size
    out = []
    for axis, c, px in ((axis_rows, camera.center[-2], h), (axis_cols, camera.center[-1], w)):
        lo = (c - px / 2 / camera.zoom - grid.translate[axis]) / grid.scale[axis]
        hi = (c + px / 2 / camera.zoom - grid.translate[axis]) / grid.scale[axis]
        out.append((max(lo, -0.5), min(hi, grid.shape[axis] - 0.5)))
    return out


def test_zoom_decodes_only_the_visible_region_at_finer_sampling(viewer, zoom, qtbot, errors):
    field = FakeField()
    base = add_base(viewer, field)
    tiles = shown_tiles(zoom)
    viewer.scene.camera.zoom = 2 / BASE_SCALE[1]  # 2 screen px per output voxel along y
    zoom.attach(viewer, base, field)
    wait_full(qtbot, zoom, tiles)
    tile = viewer.layers["base [niiv zoom]"]
    assert list(viewer.layers).index(tile) == list(viewer.layers).index(base) + 1
    assert tile.colormap.name == "magma" and tuple(tile.contrast_limits) == (-1.5, 1.5)
    assert viewer.layers.selection.active is base  # the tile never steals the selection
    density_before = zoom.last_plan.samples_per_voxel[0]
    np.testing.assert_allclose(
        tile.data, FakeField.value(*np.meshgrid(*zoom.last_plan.positions, indexing="ij")), atol=1e-5
    )

    camera = viewer.scene.camera
    before, n_before = zoom.gen, len(field.calls)
    camera.zoom = camera.zoom * 4
    camera.center = (0.0, 2.0 + 20 * 0.2, 3.0 + 25 * 0.25)  # world position of output voxel (y 20, x 25)
    wait_next_full(qtbot, zoom, tiles, before)
    _, ys, xs = field.calls[-1]
    (ylo, yhi), (xlo, xhi) = expected_visible(viewer, zoom.grid)
    step_y, step_x = np.diff(ys[:2])[0], np.diff(xs[:2])[0]
    assert ys[0] >= ylo - step_y and ys[-1] <= yhi + step_y and ys[0] <= ylo + step_y and ys[-1] >= yhi - step_y
    assert xs[0] >= xlo - step_x and xs[-1] <= xhi + step_x
    assert yhi - ylo < 0.5 * field.shape_out[1]  # only part of the volume is visible, and only that is decoded
    assert density_before == pytest.approx(2.0)
    assert zoom.last_plan.samples_per_voxel[0] == pytest.approx(8.0)
    assert [c[1].size for c in field.calls[n_before:]][-1] == tile.data.shape[1]
    # The coarse pass came first for this request.
    levels = [level for level, g in tiles if g == zoom.gen]
    assert levels[0] == "coarse" and levels[-1] == "full"
    np.testing.assert_allclose(tile.scale[1:], np.array(BASE_SCALE[1:]) / zoom.last_plan.samples_per_voxel)
    assert errors == []


def test_a_burst_of_zooms_makes_few_decodes_and_stale_results_are_dropped(viewer, zoom, qtbot, errors):
    # Longer than a repaint of this shared machine: the burst's events all fall inside one debounce window.
    zoom._timer.setInterval(400)
    field = FakeField(delay=0.15)
    base = add_base(viewer, field)
    current: list[int] = []
    tiles = shown_tiles(zoom, current)
    zoom.attach(viewer, base, field)
    wait_full(qtbot, zoom, tiles)
    camera = viewer.scene.camera
    requests_before, calls_before, before = zoom.requests, len(field.calls), zoom.gen
    for _ in range(10):  # faster than the debounce: one request
        camera.zoom = camera.zoom * 1.1
        qtbot.wait(5)
    wait_next_full(qtbot, zoom, tiles, before)
    assert zoom.requests - requests_before == 1
    assert len(field.calls) - calls_before == 2  # coarse + full of the one request

    # A decoder that ignores should_stop delivers results of an old request late: they must be dropped.
    field.stubborn, field.delay = True, 0.4
    gen_before = zoom.gen
    camera.zoom = camera.zoom * 1.5
    qtbot.waitUntil(lambda: zoom.gen > gen_before and len(field.calls) > calls_before + 2, timeout=TIMEOUT_MS)
    camera.zoom = camera.zoom * 1.5  # a newer request while the old one is in flight
    final_gen = gen_before + 2
    qtbot.waitUntil(lambda: zoom.gen == final_gen, timeout=TIMEOUT_MS)
    wait_full(qtbot, zoom, tiles, gen=final_gen)
    assert zoom.stale_dropped >= 1
    # Nothing was shown once a newer request existed (a result is shown only while its generation is current).
    assert [g for _, g in tiles] == current
    assert tiles[-1] == ("full", final_gen)
    assert zoom.last_plan.key == plan_tile(zoom.grid, zoom.current_view()).key

    # A cooperative decoder stops as soon as a newer request exists.
    field.stubborn = False
    camera.zoom = camera.zoom / 1.3
    qtbot.waitUntil(lambda: len(field.calls) > 0 and zoom.gen == final_gen + 1, timeout=TIMEOUT_MS)
    qtbot.wait(60)
    camera.zoom = camera.zoom / 1.3
    wait_full(qtbot, zoom, tiles, gen=final_gen + 2)
    assert field.stopped >= 1
    assert errors == []


def test_slices_layout_and_3d(viewer, zoom, qtbot):
    field = FakeField()
    base = add_base(viewer, field)
    tiles = shown_tiles(zoom)
    zoom.attach(viewer, base, field)
    wait_full(qtbot, zoom, tiles)
    # A slice change decodes the new plane.
    before = zoom.gen
    viewer.dims.set_current_step(0, 9)
    wait_next_full(qtbot, zoom, tiles, before)
    tile = viewer.layers["base [niiv zoom]"]
    assert tile.translate[0] == pytest.approx(viewer.dims.point[0])
    assert zoom.last_plan.positions[0][0] == pytest.approx(9.0)
    # xz view: z on rows, the tile is one plane along y; y's slider keeps the base's step (not the tile's).
    assert zoom.last_plan.samples_per_voxel[0] > 1.5  # the tile is finer than the base along y
    before = zoom.gen
    viewer.dims.order = (1, 0, 2)
    wait_next_full(qtbot, zoom, tiles, before)
    tile = viewer.layers["base [niiv zoom]"]
    assert tile.data.shape[1] == 1 and tile.visible
    assert viewer.dims.range[1].step == pytest.approx(BASE_SCALE[1])
    assert viewer.dims.nsteps[1] == field.shape_out[1]
    # 3-D display: the tile is hidden, and shown again in 2-D.
    viewer.dims.ndisplay = 3
    qtbot.waitUntil(lambda: "3-D" in zoom.status, timeout=TIMEOUT_MS)
    assert not tile.visible and tile in viewer.layers
    before = zoom.gen
    viewer.dims.ndisplay = 2
    wait_next_full(qtbot, zoom, tiles, before)
    assert tile.visible and tile.data.shape[1] == 1


def test_detach_cleans_up(viewer, zoom, qtbot):
    field = FakeField()
    base = add_base(viewer, field)
    tiles = shown_tiles(zoom)
    zoom.attach(viewer, base, field)
    wait_full(qtbot, zoom, tiles)
    # Detach while a decode is in flight: it is stopped and nothing is left decoding (the worker layer's job ended).
    field.delay = 2.0
    before = zoom.gen
    viewer.scene.camera.zoom *= 1.7
    qtbot.waitUntil(lambda: zoom.gen > before and zoom.decoding, timeout=TIMEOUT_MS)
    qtbot.wait(20)
    zoom.detach()
    assert [layer.name for layer in viewer.layers] == ["base"]
    assert not zoom.decoding and field.stopped >= 1
    field.delay = 0.0
    calls = len(field.calls)
    viewer.scene.camera.zoom *= 2
    viewer.dims.set_current_step(0, 3)
    qtbot.wait(150)
    assert len(field.calls) == calls and "base [niiv zoom]" not in viewer.layers
    # Removing the base layer detaches by itself.
    zoom.attach(viewer, base, field)
    wait_full(qtbot, zoom, tiles, gen=1)
    viewer.layers.remove(base)
    assert not zoom.attached and len(viewer.layers) == 0


def test_a_failing_decoder_shows_an_error_and_the_viewer_survives(viewer, zoom, qtbot, errors):
    field = FakeField(fail="out of memory in the decoder")
    base = add_base(viewer, field)
    zoom.attach(viewer, base, field)
    qtbot.waitUntil(lambda: bool(errors), timeout=TIMEOUT_MS)
    assert "out of memory in the decoder" in errors[0] and "decoding failed" in zoom.status
    viewer.scene.camera.zoom *= 2
    qtbot.wait(200)
    assert len(errors) == 1  # the same failure is not repeated on every camera move
    # It recovers when the decoder does.
    field.fail = ""
    tiles = shown_tiles(zoom)
    viewer.scene.camera.zoom *= 1.5
    wait_full(qtbot, zoom, tiles)
    assert "base [niiv zoom]" in viewer.layers
    # A decoder returning the wrong shape is an error too, not a crash.
    field.decode_grid = lambda zs, ys, xs, should_stop=None: np.zeros((1, 2, 3), np.float32)
    errors.clear()
    viewer.scene.camera.zoom *= 1.5
    qtbot.waitUntil(lambda: bool(errors), timeout=TIMEOUT_MS)
    assert "shape" in errors[0]


def test_zoom_beyond_the_limit_clamps_with_a_message(viewer, zoom, qtbot, infos, errors):
    field = FakeField()
    base = add_base(viewer, field)
    tiles = shown_tiles(zoom)
    zoom.attach(viewer, base, field)
    wait_full(qtbot, zoom, tiles)
    before = zoom.gen
    viewer.scene.camera.zoom = 100 * MAX_SAMPLES_PER_VOXEL / BASE_SCALE[1]  # 100× beyond the limit
    wait_next_full(qtbot, zoom, tiles, before)
    assert zoom.last_plan.clamped
    assert zoom.last_plan.samples_per_voxel == (MAX_SAMPLES_PER_VOXEL, MAX_SAMPLES_PER_VOXEL)
    assert len(infos) == 1 and "limit" in infos[0] and "limit" in zoom.status
    before = zoom.gen
    viewer.scene.camera.zoom *= 3
    wait_next_full(qtbot, zoom, tiles, before)
    assert len(infos) == 1  # said once per crossing, kept in the status line
    assert errors == []
    with pytest.raises(ValueError, match="3-D"):
        zoom.attach(viewer, viewer.add_image(np.zeros((5, 5), np.float32)), field)
    with pytest.raises(ValueError, match="rotate"):
        zoom.attach(viewer, viewer.add_image(np.zeros(field.shape_out, np.float32), rotate=20), field)


# ============================================================ widget
def test_widget_attaches_to_a_layer_with_niiv_weights(viewer, qtbot, monkeypatch, errors):
    field = FakeField(shape=(24, 64, 80))
    built: list[tuple] = []

    def fake_build(stack, weights, anisotropy):
        built.append((stack.shape, weights, anisotropy))
        return field

    monkeypatch.setattr(nzw, "build_field", fake_build)
    widget = NiivZoomWidget(viewer)
    viewer.window.add_dock_widget(widget, name="niiv zoom")
    viewer.add_image(np.zeros((8, 8, 8), np.float32), name="plain")
    stack = viewer.add_image(
        np.zeros((6, 64, 80), np.float32),
        name="aniso",
        scale=(1.6, 0.4, 0.4),
        metadata={"niiv_weights": "w.safetensors", "anisotropy": 4},
    )
    assert [widget.layer_combo.itemText(i) for i in range(widget.layer_combo.count())] == ["aniso"]
    widget.live_check.setChecked(True)
    assert built == [((6, 64, 80), "w.safetensors", 4)]
    assert widget.zoom.attached and widget.zoom.base_layer is stack
    assert widget.zoom.grid.scale == pytest.approx((0.4, 0.4, 0.4))
    qtbot.waitUntil(lambda: "full tile" in widget.status_label.text(), timeout=TIMEOUT_MS)
    assert "samples/voxel" in widget.status_label.text() and "ms" in widget.status_label.text()
    widget.live_check.setChecked(False)
    assert not widget.zoom.attached and "aniso [niiv zoom]" not in viewer.layers
    # A niiv result names its input layer and params; a broken weights file is a message, not a traceback.
    viewer.add_image(
        np.zeros((24, 64, 80), np.float32),
        name="aniso [niiv]",
        scale=(0.4, 0.4, 0.4),
        metadata={"engine": "niiv", "input_layer": "aniso", "params": {"weights": "", "anisotropy": 0}},
    )
    assert widget.layer_combo.findText("aniso [niiv]") >= 0
    monkeypatch.setattr(nzw, "build_field", lambda *a: (_ for _ in ()).throw(ValueError("weights for af 8, not 4")))
    widget.layer_combo.setCurrentText("aniso [niiv]")
    widget.live_check.setChecked(True)
    assert not widget.live_check.isChecked() and "af 8" in widget.status_label.text()
    assert errors and "af 8" in errors[-1]
    assert zoom_controller.zoom_source(viewer, viewer.layers["aniso [niiv]"])["anisotropy"] == 4  # 24 planes from 6
    # Removing the followed layer switches live zoom off.
    monkeypatch.setattr(nzw, "build_field", fake_build)
    widget.layer_combo.setCurrentText("aniso")
    assert widget.start() and widget.live_check.isChecked()
    viewer.layers.remove(stack)
    assert not widget.live_check.isChecked() and not widget.zoom.attached
    assert "removed" in widget.status_label.text()
    assert "aniso [niiv zoom]" not in viewer.layers
    widget.close()


def test_build_field_from_the_shipped_weights():
    niiv = pytest.importorskip("napari_lfrecon.engines.niiv")
    if not niiv.shipped_weights_path().is_file():
        pytest.skip("no shipped niiv weights in this checkout")
    factor = int(niiv.load_model(niiv.shipped_weights_path())[0].config.anisotropy)
    stack = np.random.default_rng(0).random((6, 40, 48)).astype(np.float32)
    field = zoom_controller.build_field(stack, "", factor)
    assert isinstance(field, FieldDecoder) and field.shape_out == (6 * factor, 40, 48)
    with pytest.raises(ValueError, match="anisotropy"):
        zoom_controller.build_field(stack, "", factor + 1)
    with pytest.raises(ValueError, match="not found"):
        zoom_controller.build_field(stack, "/nonexistent/w.safetensors", factor)


# ============================================================ a real niiv field
def test_real_niiv_field_through_the_zoom(viewer, zoom, qtbot, errors):
    torch = pytest.importorskip("torch")
    niiv_field = pytest.importorskip("napari_lfrecon.engines.niiv_field")
    niiv_model = pytest.importorskip("napari_lfrecon.engines.niiv_model")
    torch.manual_seed(0)
    config = niiv_model.NiivConfig(features=8, blocks=1, attn_dim=4, mlp_width=16, mlp_depth=2, anisotropy=4)
    model = niiv_model.NiivNet(config)
    stack = np.random.default_rng(0).random((6, 24, 28)).astype(np.float32)
    field = niiv_field.NiivField(model, stack, 4)
    layer = viewer.add_image(stack, name="aniso", scale=(1.6, 0.4, 0.4))
    tiles = shown_tiles(zoom)
    zoom.attach(viewer, layer, field)
    wait_full(qtbot, zoom, tiles)
    plan = zoom.last_plan
    tile = viewer.layers["aniso [niiv zoom]"].data
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the zoom's worker; two OpenMP threads on a busy 2-core machine crawl
    try:
        direct = field.decode_grid(*plan.positions)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(tile, direct, rtol=1e-5, atol=1e-6)
    assert errors == []
