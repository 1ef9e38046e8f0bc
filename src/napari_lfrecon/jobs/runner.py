"""The one runner: every interface (API, GUI worker layer, batch, CLI, benchmark) runs engines through here.

:func:`prepare_inputs` converts camera ADU to photo-electrons (once, here and
nowhere else), hands the data over read-only and checks what every engine
needs before any work starts. :func:`drive` runs the engine and turns its
result into a :class:`~napari_lfrecon.jobs.protocol.Volume` (reconstruction
and training engines) or passes the calibration object through.
:func:`stream_job` wraps that for consumers that must never see an exception
(the GUI: warnings, failures and cancellation become events), and
:func:`run_job` runs to completion for scripts, raising the project's errors.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..camera import Camera
from .params import jsonable
from .protocol import EngineInputError, Inputs, JobCancelled, LfreconError, MissingVoxelSize, Update, Volume

_LOG = logging.getLogger(__name__)


# ------------------------------------------------------------------ events of the stream
@dataclass
class Warned:
    """A warning raised while the engine ran (e.g. negative values clipped)."""

    message: str


@dataclass
class Failed:
    """The run stopped with an error; ``message`` is the reason shown to the user."""

    message: str


@dataclass
class Cancelled:
    """The run stopped because the stop flag was set."""

    fraction: float
    message: str


Event = Update | Warned | Failed | Cancelled


def error_message(exc: BaseException) -> str:
    """The reason to show a user for ``exc``: its message for input errors, type and message otherwise."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, (ValueError, FileNotFoundError, LfreconError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------ before the run
def prepare_inputs(engine: Any, inputs: Inputs, camera: Camera | None = None) -> Inputs:
    """``inputs`` ready for ``engine``: data in photo-electrons, read-only, PSF modality checked.

    Raises :class:`EngineInputError` before any work when the PSF's modality
    is not one the engine handles, or when a reconstruction engine cannot tell
    its output voxel size. The caller's array is never modified.
    """
    data = np.asarray(inputs.data)
    changes: dict[str, Any] = {}
    if camera is not None:
        data = camera.to_electrons(data)
        changes["read_noise"] = camera.read_noise
    view = data.view()
    view.flags.writeable = False  # engines copy what they change
    changes["data"] = view
    prepared = dataclasses.replace(inputs, **changes)
    psf = prepared.psf
    if psf is not None and getattr(psf, "modality", None) not in engine.modalities:
        raise EngineInputError(
            f"engine {engine.name!r} handles {', '.join(engine.modalities)} data, not a {psf.modality} PSF"
        )
    if engine.kind == "reconstruct" and engine.output_voxel_size(prepared) is None:
        raise MissingVoxelSize(
            f"the data's voxel size is unknown and engine {engine.name!r} needs it", "give (dz, dy, dx) in µm"
        )
    engine.check(prepared)
    return prepared


def as_volume(engine: Any, inputs: Inputs, data: Any) -> Any:
    """A result as the engine's kind returns it: a :class:`Volume` unless it is a calibration object."""
    if isinstance(data, Volume) or engine.kind == "calibrate":
        return data
    voxel = engine.output_voxel_size(inputs)
    if voxel is None:
        raise EngineInputError(f"engine {engine.name!r} cannot tell its output voxel size: give (dz, dy, dx) in µm")
    return Volume(np.asarray(data, dtype=np.float32), voxel)


def job_metadata(engine: Any, params: Any, inputs: Inputs, seconds: float, device: Any) -> dict[str, Any]:
    """What every result records: engine, parameters, timing, device, input shape and PSF."""
    metadata: dict[str, Any] = {
        "engine": engine.name,
        "params": jsonable(vars(params)),
        "seconds": round(seconds, 3),
        "device": str(device),
        "input_shape": list(np.shape(inputs.data)),
    }
    if inputs.psf is not None and hasattr(inputs.psf, "describe"):
        metadata["psf"] = inputs.psf.describe()
    return metadata


# ------------------------------------------------------------------ running
def drive(
    engine: Any,
    inputs: Inputs,
    params: Any,
    *,
    device: Any,
    should_stop: Callable[[], bool],
) -> Iterator[Update]:
    """Run prepared ``inputs`` through ``engine``; the result update carries a :class:`Volume` (or calibration).

    Stops pulling updates as soon as ``should_stop()`` is true, so a run ends
    within one engine step even for an engine that forgets to check.
    Exceptions propagate.
    """
    started = time.perf_counter()
    updates = engine.run(inputs, params, device=device, should_stop=should_stop)
    try:
        for update in updates:
            if update.kind == "result":
                result = as_volume(engine, inputs, update.data)
                if isinstance(result, Volume):
                    result.metadata = {
                        **job_metadata(engine, params, inputs, time.perf_counter() - started, device),
                        **result.metadata,
                    }
                yield dataclasses.replace(update, data=result)
                return
            yield update
            if should_stop():
                return
    finally:
        updates.close()


def stream_job(
    engine: Any,
    inputs: Inputs,
    params: Any,
    *,
    device: Any,
    stop: threading.Event,
    camera: Camera | None = None,
) -> Iterator[Event]:
    """Run ``engine`` and yield its updates plus :class:`Warned`, :class:`Failed` and :class:`Cancelled`.

    Never raises: warnings become :class:`Warned` events and exceptions a
    final :class:`Failed`; a set ``stop`` ends the stream with
    :class:`Cancelled` after at most one more engine update.
    """
    fraction, last_progress = 0.0, ""
    with warnings.catch_warnings(record=True) as caught:
        # "always": a warning repeated in a second run must still reach the user.
        warnings.simplefilter("always")
        try:
            prepared = prepare_inputs(engine, inputs, camera)
            yield from _drain(caught)
            for update in drive(engine, prepared, params, device=device, should_stop=stop.is_set):
                yield from _drain(caught)
                if update.kind == "progress":
                    fraction, last_progress = update.fraction, update.message
                yield update
                if update.kind == "result":
                    return
            yield from _drain(caught)
            if stop.is_set():
                # Engines may say where they stopped themselves ("cancelled after iteration 4").
                if last_progress.startswith("cancelled"):
                    message = last_progress
                else:
                    message = f"cancelled after {last_progress}" if last_progress else "cancelled"
                yield Cancelled(fraction, f"{message} ({fraction:.1%} done)")
            else:
                yield Failed(f"engine {engine.name!r} finished without a result")
        except Exception as exc:  # every failure becomes a message, never a traceback in the UI
            _LOG.debug("engine %s failed", engine.name, exc_info=True)
            yield from _drain(caught)
            yield Failed(error_message(exc))


def _drain(caught: list[warnings.WarningMessage]) -> Iterator[Warned]:
    while caught:
        yield Warned(str(caught.pop(0).message))


def run_job(
    engine: Any,
    inputs: Inputs,
    params: Any,
    *,
    device: Any,
    should_stop: Callable[[], bool] | None = None,
    camera: Camera | None = None,
    on_update: Callable[[Update], None] | None = None,
) -> Any:
    """Run ``engine`` to completion and return its result (a :class:`Volume` or a calibration object).

    ``on_update`` sees every update before the result (progress bars, loss
    logs). Raises the engine's own errors, and :class:`JobCancelled` when
    ``should_stop`` ended the run first.
    """
    stop = should_stop or (lambda: False)
    prepared = prepare_inputs(engine, inputs, camera)
    for update in drive(engine, prepared, params, device=device, should_stop=stop):
        if update.kind == "result":
            return update.data
        if on_update is not None:
            on_update(update)
    if stop():
        raise JobCancelled(f"engine {engine.name!r} was cancelled before its result")
    raise LfreconError(f"engine {engine.name!r} finished without a result")
