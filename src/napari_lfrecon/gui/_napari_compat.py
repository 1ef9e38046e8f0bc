"""Every use of napari's private API in this plugin, one small named function each.

napari does not promise anything about names starting with ``_``; they move or
vanish between releases. Keeping each use here, behind a function with a
fallback for when the private name is missing, means a napari upgrade that
breaks one of them breaks ONE function, and ``tests/test_gui_napari_compat.py``
fails with that function's name (each function there is tested against the
installed napari, so a silent fallback cannot hide the change).

Versions: each function says which napari it was checked against. All were
checked against napari 0.9.2 (the version this project's environment pins);
older releases were not checked, and the fallbacks are what runs there.

Rules for callers: import these functions, never the private names; a ``None``
return (no private attribute) must be handled, not treated as an error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = [
    "augmented_world_extent",
    "canvas_native_widget",
    "dims_update_held",
    "find_docked_widgets",
    "has_refresh_blocking",
    "layer_refresh_blocked",
    "main_window",
]


def has_refresh_blocking(layer: Any) -> bool:
    """True when ``layer`` has napari's private ``Layer._block_refresh`` context (napari 0.9.2 has it)."""
    return callable(getattr(layer, "_block_refresh", None))


@contextlib.contextmanager
def layer_refresh_blocked(layer: Any) -> Iterator[bool]:
    """Hold ``layer``'s refresh (no re-slice, no redraw) inside the block; yields True when it is really held.

    Uses the private ``Layer._block_refresh()`` context manager (checked: napari
    0.9.2). Fallback when missing: nothing is held and the block yields False,
    so the caller knows every setter inside will re-slice on its own.
    """
    block = getattr(layer, "_block_refresh", None)
    if not callable(block):
        yield False
        return
    with block():
        yield True


def dims_update_held(viewer: Any, emitter: Any) -> contextlib.AbstractContextManager:
    """A context in which ``emitter`` does not call the viewer's dims update (``ViewerModel._on_layers_change``).

    napari connects its private ``ViewerModel._on_layers_change`` to every
    layer's ``translate``/``scale``/``data`` events to recompute the dims' range
    (checked: napari 0.9.2). Blocking that one callback lets a layer move
    without the dims (and every other layer) being re-sliced. ``emitter`` is a
    psygnal/napari event emitter (e.g. ``layer.events.translate``). Fallback
    when the viewer has no such method, or ``viewer`` is ``None``: a
    context that blocks nothing.
    """
    handler = getattr(viewer, "_on_layers_change", None) if viewer is not None else None
    if handler is None:
        return contextlib.nullcontext()
    return emitter.blocker(handler)


def main_window(viewer: Any) -> Any:
    """The viewer's Qt main window (a ``QMainWindow``), or ``None`` when it has none.

    Uses the private ``Window._qt_window`` (checked: napari 0.9.2; napari has no
    public accessor for the ``QMainWindow``). Fallback: the top-level window of
    any docked widget (``window.dock_widgets``, public since napari 0.5), else
    ``None`` (a viewer created with ``show=False`` but no docks, or headless).
    """
    window = getattr(viewer, "window", None)
    if window is None:
        return None
    qt_window = getattr(window, "_qt_window", None)
    if qt_window is not None:
        return qt_window
    docks = getattr(window, "dock_widgets", None) or {}
    for widget in docks.values():
        native = getattr(widget, "native", widget)
        with contextlib.suppress(Exception):
            return native.window()
    return None


def find_docked_widgets(viewer: Any, widget_type: type) -> list[Any]:
    """The widgets of type ``widget_type`` inside the viewer's window (docked or nested).

    Searches the Qt main window (:func:`main_window`, private ``_qt_window``).
    Fallback when it is unknown: the docked widgets of that type from the
    public ``window.dock_widgets`` mapping (napari 0.5+), else an empty list.
    """
    qt_window = main_window(viewer)
    if qt_window is not None and hasattr(qt_window, "findChildren"):
        return list(qt_window.findChildren(widget_type))
    docks = getattr(getattr(viewer, "window", None), "dock_widgets", None) or {}
    found = []
    for widget in docks.values():
        native = getattr(widget, "native", widget)
        if isinstance(native, widget_type):
            found.append(native)
    return found


def canvas_native_widget(viewer: Any) -> Any:
    """The Qt widget that draws the viewer's canvas (for grabbing just the canvas), or ``None``.

    Uses the private ``Window._qt_viewer.canvas.native`` (checked: napari
    0.9.2). Fallback: ``None``; callers then use ``viewer.screenshot()``,
    which is public.
    """
    qt_viewer = getattr(getattr(viewer, "window", None), "_qt_viewer", None)
    canvas = getattr(qt_viewer, "canvas", None)
    return getattr(canvas, "native", None)


def augmented_world_extent(layer: Any) -> np.ndarray:
    """The layer's world extent ``(2, ndim)`` including the size of its pixels (an image's cells, not centres).

    Uses the private ``Layer._extent_world_augmented`` (checked: napari 0.9.2).
    Fallback: the public ``layer.extent.world`` widened by half a world pixel
    (``layer.scale / 2``) on each side, which is what napari computes for an
    axis-aligned image.
    """
    private = getattr(layer, "_extent_world_augmented", None)
    if private is not None:
        return np.asarray(private, dtype=float)
    world = np.asarray(layer.extent.world, dtype=float)
    half = np.abs(np.asarray(layer.scale, dtype=float)) / 2
    return np.stack([world[0] - half, world[1] + half])
