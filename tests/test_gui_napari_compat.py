"""Each private-napari-API use in ``gui/_napari_compat.py`` against the installed napari, one test each.

A napari upgrade that renames or removes one of these private names fails the
test named after the function that uses it (the fallback keeps the plugin
working, but we want to know). The fallbacks are tested too, on objects
without the private attribute.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from napari.layers import Image  # noqa: E402
from qtpy.QtWidgets import QLabel, QMainWindow, QWidget  # noqa: E402

from napari_lfrecon.gui import _napari_compat as compat  # noqa: E402


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def test_layer_refresh_blocked_holds_the_refresh():
    layer = Image(np.zeros((3, 4, 5), np.float32))
    assert compat.has_refresh_blocking(layer), "napari's Layer._block_refresh is gone: see _napari_compat"
    refreshed: list[int] = []
    layer.events.set_data.connect(lambda event: refreshed.append(1))
    with compat.layer_refresh_blocked(layer) as held:
        assert held
        layer.refresh()
        assert refreshed == []  # blocked: no slice, no set_data
    layer.refresh()
    assert refreshed  # and released afterwards
    # Fallback: an object without the private context runs the block, unheld.
    with compat.layer_refresh_blocked(types.SimpleNamespace()) as held:
        assert held is False
    assert not compat.has_refresh_blocking(types.SimpleNamespace())


def test_dims_update_held_keeps_the_dims_still(viewer):
    assert callable(getattr(viewer, "_on_layers_change", None)), "ViewerModel._on_layers_change is gone"
    layer = viewer.add_image(np.zeros((4, 8, 8), np.float32), scale=(1.0, 1.0, 1.0))
    range_before = tuple(viewer.dims.range[1])
    # Normally a finer scale changes the dims' step; with the handler held it does not.
    with compat.dims_update_held(viewer, layer.events.scale):
        layer.scale = (1.0, 0.25, 0.25)
    assert tuple(viewer.dims.range[1]) == range_before
    layer.scale = (1.0, 0.5, 0.5)  # no longer held: the dims follow
    assert viewer.dims.range[1].step == pytest.approx(0.5)
    # Fallback: no viewer, or one without the handler: blocks nothing.
    with compat.dims_update_held(None, layer.events.scale):
        layer.scale = (1.0, 0.2, 0.2)
    with compat.dims_update_held(types.SimpleNamespace(), layer.events.scale):
        pass


def test_main_window_and_find_docked_widgets(viewer):
    window = compat.main_window(viewer)
    assert isinstance(window, QMainWindow), "Window._qt_window is gone: see _napari_compat.main_window"
    assert window is viewer.window._qt_window

    class Marker(QWidget):
        pass

    marker = Marker()
    viewer.window.add_dock_widget(marker, name="marker")
    assert compat.find_docked_widgets(viewer, Marker) == [marker]
    assert compat.find_docked_widgets(viewer, QLabel) is not None
    # Fallback: a window without _qt_window finds the docked widget through the public dock_widgets mapping.
    fake = types.SimpleNamespace(window=types.SimpleNamespace(dock_widgets={"marker": marker}))
    assert compat.find_docked_widgets(fake, Marker) == [marker]
    assert compat.main_window(fake) is marker.window()
    assert compat.main_window(types.SimpleNamespace()) is None
    assert compat.find_docked_widgets(types.SimpleNamespace(), Marker) == []


def test_canvas_native_widget(viewer):
    canvas = compat.canvas_native_widget(viewer)
    assert isinstance(canvas, QWidget), "Window._qt_viewer.canvas.native is gone: see _napari_compat"
    assert compat.canvas_native_widget(types.SimpleNamespace()) is None


def test_augmented_world_extent_matches_the_public_fallback():
    layer = Image(np.zeros((4, 5, 6), np.float32), scale=(2.0, 1.0, 0.5), translate=(1.0, 2.0, 3.0))
    assert hasattr(layer, "_extent_world_augmented"), "Layer._extent_world_augmented is gone"
    extent = compat.augmented_world_extent(layer)
    np.testing.assert_allclose(extent, [[0.0, 1.5, 2.75], [8.0, 6.5, 5.75]])
    # The fallback (public extent widened by half a pixel) agrees for an axis-aligned image.
    public = types.SimpleNamespace(extent=layer.extent, scale=layer.scale)
    np.testing.assert_allclose(compat.augmented_world_extent(public), extent)
