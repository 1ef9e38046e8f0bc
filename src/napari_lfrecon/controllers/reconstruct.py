"""The Reconstruct widget's decisions without Qt: defaults, time series, names, the camera, the batch run.

The widget (:mod:`napari_lfrecon.gui.reconstruct_widget`) reads its fields,
asks these functions what to do, and shows the answer. Everything here takes
plain values (names, shapes, numbers, PSF objects) and is tested without a display.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

from .. import engines
from ..camera import Camera
from .streams import stream_callbacks

#: The engine selected when the widget opens: Richardson–Lucy needs no weights and works for every modality.
DEFAULT_ENGINE = "rl"
#: Item data of the two entries of the frames combo.
FRAMES_CURRENT = "current"
FRAMES_ALL = "all"


class BatchCancelled(Exception):
    """Raised from the batch progress callback to stop a run between chunks (finished chunks stay valid)."""


def engine_choices() -> list[tuple[str, str]]:
    """``(name, label)`` of every reconstruction engine, in registry order."""
    choices = []
    for name in engines.available(kind="reconstruct"):
        title = engines.get(name).title
        choices.append((name, f"{name} — {title}" if title else name))
    return choices


def default_input(images: Sequence[str], current: str | None, measurements: Sequence[str]) -> str | None:
    """The input to select after the layer list changed.

    The current one while it exists; else the newest ``measurement`` (a layer
    carrying its PSF: a newly opened sample, not a result or a ground truth);
    else the newest image.
    """
    if current in images:
        return current
    if measurements:
        return measurements[-1]
    return images[-1] if images else None


def hinted_params(hint: Any) -> tuple[str, dict[str, Any]] | None:
    """``(engine, params)`` from a layer's ``metadata["engine_hint"]`` (samples, Train runs), if it names one."""
    if not isinstance(hint, dict) or hint.get("engine") not in engines.available(kind="reconstruct"):
        return None
    return str(hint["engine"]), dict(hint.get("params", {}))


def series_layout(shape: Sequence[int], psf: Any, engine_name: str) -> tuple[bool, int]:
    """``(has_time_axis, frame_ndim)`` of an input of ``shape`` for ``psf`` (or, without one, the engine).

    A time axis is one leading axis more than the modality needs (widefield
    frames are 3D, light-field and XLFM frames 2D; LFM views ``(A, Y, X)`` are
    told from a series by the PSF's view count). Without a PSF the engine's
    modalities decide.
    """
    from ..batch.plan import frame_layout

    shape = tuple(int(n) for n in shape)
    if psf is not None:
        try:
            # Axes without "T": the shape (and the LFM view count) decide, as for a file.
            return frame_layout(psf, shape, "TZYX"[-len(shape) :] if len(shape) == 4 else "ZYX"[-len(shape) :])
        except ValueError:
            return False, len(shape)  # not a valid input at all: the run reports why
    modalities = engines.get(engine_name).modalities
    frame_ndim = 2 if modalities and set(modalities) <= {"xlfm"} else 3
    return len(shape) == frame_ndim + 1, frame_ndim


def frame_index(world: float, translate: float, scale: float, n_frames: int) -> int:
    """The frame under the time slider at ``world`` for a time axis with this ``translate`` and ``scale``."""
    index = round((world - translate) / scale)
    return int(min(max(index, 0), n_frames - 1))


def frame_name(layer_name: str, t: int) -> str:
    """The name one frame of a series runs under (its result is ``"<that> [<engine>]"``)."""
    return f"{layer_name} t={t}"


def camera_from(offset: float, gain: float, read_noise: float) -> Camera | None:
    """The camera model from the camera fields, or ``None`` when the data is already in electrons."""
    if offset == 0 and gain == 1 and read_noise == 0:
        return None
    return Camera(offset=offset, gain=gain, read_noise=read_noise)


def batch_output(text: str) -> str:
    """The ``.zarr`` store all frames go to; ``ValueError`` when the field is empty or names something else."""
    text = text.strip()
    if not text:
        raise ValueError("all frames: choose an output .zarr path")
    if not text.rstrip("/").endswith(".zarr"):
        raise ValueError(f"all frames: the output must be a .zarr store, got {text!r}")
    return text


def zarr_path(path: str) -> str:
    """``path`` with ``.zarr`` appended when a save dialog left it out."""
    return path if path.endswith(".zarr") else f"{path}.zarr"


def batch_axes(modality: str, frame_ndim: int) -> str:
    """The axes of a time series of frames of this modality (``T`` first)."""
    return "T" + {3: "AYX" if modality == "lfm" else "ZYX", 2: "YX"}[frame_ndim]


def batch_updates(
    data: Any,
    axes: str,
    output: str | Path,
    psf: Any,
    stop: threading.Event,
    **options: Any,
) -> Generator[tuple[float, str], None, tuple[Any, BaseException | None]]:
    """Run :func:`napari_lfrecon.batch.run_batch` over a series, yielding ``(fraction, message)`` per chunk.

    Returns ``(summary, None)``, or ``(None, exception)``: errors are returned,
    never raised in the worker thread (napari would raise them again in the
    event loop). When ``stop`` is set the run stops after the chunk in flight
    (every written chunk stays valid) with a :class:`BatchCancelled` holding the last progress message.
    """
    from ..batch import array_source, run_batch

    last = [""]

    def compute(report: Callable[..., None]) -> Any:
        def progress(fraction: float, message: str) -> None:
            # Called between chunks: raising here stops the run with every written chunk valid.
            if stop.is_set():
                raise BatchCancelled(last[0])
            last[0] = message
            report(float(fraction), str(message))

        return run_batch(array_source(data, axes), output, psf, progress=progress, **options)

    try:
        summary = yield from stream_callbacks(compute)
    except Exception as exc:  # every failure becomes a message, never a traceback in the UI
        return None, exc
    return summary, None


def cancelled_message(exc: BatchCancelled) -> str:
    """What a cancelled batch run says: where it stopped and how to resume."""
    done = f"after {exc.args[0]}" if exc.args and exc.args[0] else "before the first chunk"
    return f"cancelled {done}; run again with the same output to resume"


def batch_metadata(
    engine: str,
    params: dict[str, Any],
    seconds: float,
    input_name: str,
    input_shape: Sequence[int],
    voxel: Sequence[float],
    output_shape: Sequence[int],
    summary: Any,
    psf: Any,
) -> dict[str, Any]:
    """The metadata of the lazily opened result of a batch run (as a single run's, plus the batch summary)."""
    return {
        "engine": engine,
        "params": {k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v) for k, v in params.items()},
        "seconds": round(seconds, 3),
        "input_layer": input_name,
        "input_shape": list(input_shape),
        "voxel_size": list(voxel),
        "output_shape": list(output_shape),
        "output": str(summary.output),
        "batch": summary.as_dict(),
        "psf": psf.describe(),
    }
