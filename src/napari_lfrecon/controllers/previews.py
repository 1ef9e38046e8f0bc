"""Previews thinned on the worker thread, without Qt: the main thread gets few, ready-to-show ones.

:func:`throttled_previews` wraps a job's event stream (:func:`napari_lfrecon.jobs.stream_job`)
on the worker thread: at most one preview per interval (the newest held back
and sent before a ``Cancelled`` event), each as a :class:`PreviewFrame` with
its contrast limits, and the result as a :class:`ResultFrame` with its own, so
the main thread never scans a whole volume.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..jobs.protocol import Update, Volume, preview_volume
from ..jobs.runner import Cancelled

#: At most one preview per this many seconds reaches the main thread. Each one costs the main thread
#: 60–90 ms of napari/Qt work (new data, contrast, redraw; measured under Xvfb), CPU the engine then lacks
#: on a 2-core machine (at 4 per second, RL-30 on the LFM sample took 2.3 s from the widget, 1.5 s without previews).
PREVIEW_INTERVAL_S = 0.5

__all__ = [
    "PREVIEW_INTERVAL_S",
    "PreviewFrame",
    "ResultFrame",
    "placeholder_shape",
    "throttled_previews",
    "volume_contrast",
]


def volume_contrast(volume: np.ndarray) -> tuple[float, float]:
    """``(low, high)`` over the whole volume, ``high > low`` (napari's own reset looks at one slice only)."""
    low, high = float(np.min(volume)), float(np.max(volume))
    if not high > low:
        high = low + 1.0
    return low, high


@dataclass
class PreviewFrame:
    """A preview volume with its contrast limits, computed on the worker thread (never on the main one)."""

    volume: np.ndarray
    contrast: tuple[float, float]
    fraction: float = 0.0


def throttled_previews(events: Any, interval_s: float = PREVIEW_INTERVAL_S) -> Any:
    """``events`` with previews thinned to one per ``interval_s`` and turned into :class:`PreviewFrame` s.

    Runs on the worker thread. A preview that arrives too soon is held back (the
    newest wins); it is sent before a ``Cancelled`` event so the kept preview is
    the last estimate, and dropped before a result (which replaces it anyway).
    Only the previews sent are materialised (:class:`~napari_lfrecon.jobs.protocol.LazyPreview`):
    the engine's copies of the others are never made.
    """
    last_sent = -float("inf")
    held: Update | None = None
    for event in events:
        if isinstance(event, Update) and event.kind == "preview":
            now = time.perf_counter()
            if now - last_sent >= interval_s:
                # a LazyPreview is made here, before the engine's next step; one held back is never made
                volume = preview_volume(event.data)
                yield PreviewFrame(volume, volume_contrast(volume), event.fraction)
                last_sent, held = time.perf_counter(), None
            else:
                held = event
            continue
        if isinstance(event, Cancelled) and held is not None:
            volume = preview_volume(held.data)  # a LazyPreview made now shows the last estimate
            yield PreviewFrame(volume, volume_contrast(volume), held.fraction)
            held = None
        if isinstance(event, Update) and event.kind == "result" and isinstance(event.data, Volume):
            # napari would scan the whole result on the main thread for its contrast: do it here
            yield ResultFrame(event, volume_contrast(np.asarray(event.data.data)))
            continue
        yield event


@dataclass
class ResultFrame:
    """A ``result`` update with its volume's contrast limits, computed on the worker thread."""

    update: Update
    contrast: tuple[float, float]


def placeholder_shape(engine: Any, inputs: Any, params: Any, ndim: int) -> tuple[int, ...] | None:
    """The shape of an empty preview layer to add before ``engine`` starts, or ``None`` for none.

    napari's ``add_image`` is the costliest thing a run does on the main thread
    (0.1–0.3 s): added before the engine starts, the layer does not compete with
    it for the CPU, and the first preview only replaces the layer's data. Only
    for an engine that sends previews (``preview_every`` not 0) of a known
    ``ndim``-dimensional volume (:meth:`~napari_lfrecon.engines.base.Engine.output_shape`).
    """
    if getattr(engine, "kind", "") == "calibrate" or not getattr(params, "preview_every", 0):
        return None
    try:
        shape = engine.output_shape(inputs, params)
    except Exception:  # an estimate only: the run itself reports what is wrong with its inputs
        return None
    return tuple(int(n) for n in shape) if shape is not None and len(shape) == ndim else None
