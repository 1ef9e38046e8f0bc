"""niiv zoom controller without Qt: request generations, stale results dropped, the decode generator.

The pattern is ndv's: every request for a tile carries a generation number; a
newer request supersedes the older ones (their stop flag is set, so a
cooperative decoder stops at its next check), and a result whose generation is
no longer the current one is dropped on arrival, whatever thread made it.

* :class:`ZoomRequests` keeps that bookkeeping (current generation, the sample
  positions already shown or in flight, the clamp state, counters) and turns a
  view into a :class:`DecodeRequest` or a reason to show nothing.
* :func:`decode_tiles` is the worker side: a plain generator, run by
  ``gui.worker.start_job`` off the main thread, that decodes a request's passes
  (coarse then full) and yields a :class:`TileResult` per pass, or one
  :class:`DecodeFailed`; it checks the request's stop flag before each pass and
  hands it to the decoder as ``should_stop``.
* :func:`zoom_source` / :func:`build_field`: how to build a field for a layer
  (a niiv result, or an anisotropic stack carrying niiv weights).

The Qt side (``gui.niiv_zoom``) owns the timers, napari's events and the tile
layer, and calls into this module.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .niiv_zoom_geometry import FieldDecoder, OutputGrid, TilePlan, ViewState, clamp_message, plan_passes

_LOG = logging.getLogger(__name__)

#: Latent-table cache of a field built for zooming. Every view decodes from the slices it crosses, and
#: switching xy ↔ xz touches all of them: with the engine's default (256 MiB) the shipped sample's 256
#: slice tables (1.3 MB each) do not all fit and a return to a view re-encodes (seconds on a CPU).
ZOOM_CACHE_BYTES = 1024 * 2**20
#: Torch threads the decode uses: one, so that rendering keeps a core on a small machine.
DECODE_TORCH_THREADS = 1

__all__ = [
    "DECODE_TORCH_THREADS",
    "ZOOM_CACHE_BYTES",
    "DecodeCounter",
    "DecodeFailed",
    "DecodeRequest",
    "Planned",
    "TileResult",
    "ZoomRequests",
    "build_field",
    "decode_tiles",
    "limit_torch_threads",
    "restore_torch_threads",
    "tile_status",
    "zoom_source",
]


# ====================================================================== messages
@dataclass
class DecodeRequest:
    """One request: decode ``plans`` in order for generation ``gen``.

    ``stop`` is set when the request is superseded (the decoder sees it as
    ``should_stop``); :func:`decode_tiles` sets ``started`` when it begins on
    the worker's thread and ``done`` when it has returned (a detach waits for
    ``done`` only once ``started``: a job still queued behind other work ends
    at once when it starts, seeing ``stop``).
    """

    gen: int
    plans: list[TilePlan]
    requested_at: float
    stop: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class TileResult:
    """A decoded tile on its way to the main thread."""

    gen: int
    plan: TilePlan
    data: np.ndarray
    decode_seconds: float
    requested_at: float


@dataclass
class DecodeFailed:
    """Decoding raised; ``message`` is the reason shown to the user."""

    gen: int
    message: str


# ====================================================================== worker side
class DecodeCounter:
    """Counts ``decode_grid`` calls started (tests and the benchmark read it); thread-safe enough under the GIL."""

    def __init__(self) -> None:
        self.count = 0


def limit_torch_threads(threads: int = DECODE_TORCH_THREADS) -> int | None:
    """Limit torch's intra-op threads on the calling thread (per thread under OpenMP); the previous count.

    ``None`` (nothing changed) when torch is not loaded: a field that uses torch
    has imported it already, and importing it here only for this call would
    delay the first tile by seconds.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        previous = int(torch.get_num_threads())
        torch.set_num_threads(threads)
    except Exception:  # a torch stub or a runtime that refuses: decode with what is there
        return None
    return previous


def restore_torch_threads(previous: int | None) -> None:
    """Undo :func:`limit_torch_threads` (the worker layer's pool thread may run an engine next)."""
    torch = sys.modules.get("torch")
    if torch is not None and previous is not None:
        with contextlib.suppress(Exception):
            torch.set_num_threads(previous)


def decode_tiles(
    decoder: FieldDecoder, request: DecodeRequest, counter: DecodeCounter | None = None
) -> Iterator[TileResult | DecodeFailed]:
    """Decode ``request``'s passes in order; yield a :class:`TileResult` per pass, or one :class:`DecodeFailed`.

    Stops (yields nothing more) when ``request.stop`` is set before a pass or
    the decoder returns ``None`` (it saw ``should_stop``). A result finished
    after its request was superseded is still yielded: the main thread drops it
    as stale (and counts it). Never raises: a decoder exception or a tile of the
    wrong shape becomes :class:`DecodeFailed`. Sets ``request.done`` when it
    returns. Torch runs on :data:`DECODE_TORCH_THREADS` threads meanwhile (so
    rendering keeps a core), restored afterwards.
    """
    request.started.set()
    previous_threads = limit_torch_threads()
    try:
        should_stop = request.stop.is_set
        for plan in request.plans:
            if should_stop():
                return
            started = time.perf_counter()
            if counter is not None:
                counter.count += 1
            try:
                data = decoder.decode_grid(*plan.positions, should_stop=should_stop)
                if data is None:
                    return
                data = np.asarray(data, dtype=np.float32)
                if data.shape != plan.shape:
                    raise ValueError(f"the decoder returned shape {data.shape}, expected {plan.shape}")
            except Exception as exc:  # the viewer must survive any decoder failure
                _LOG.debug("niiv zoom decode failed", exc_info=True)
                message = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
                yield DecodeFailed(request.gen, message)
                return
            yield TileResult(request.gen, plan, data, time.perf_counter() - started, request.requested_at)
    finally:
        restore_torch_threads(previous_threads)
        request.done.set()


# ====================================================================== main-thread bookkeeping
@dataclass
class Planned:
    """What :meth:`ZoomRequests.plan` decided: a new ``request``, nothing new (``request`` None), or ``hidden``."""

    request: DecodeRequest | None = None
    #: Non-empty when nothing can be shown: the status line's reason (the tile is hidden).
    hidden: str = ""
    #: The clamp message when the zoom just crossed the limit (say it once), else "".
    clamp_crossed: str = ""
    #: The clamp message while beyond the limit (the status line keeps it), else "".
    clamp_status: str = ""


class ZoomRequests:
    """Generations of zoom requests: a newer one supersedes the older, whose results are then stale.

    Lives on the main thread. :meth:`plan` turns the current view into a new
    :class:`DecodeRequest` (or nothing, when the same samples are already shown
    or in flight); :meth:`supersede` makes everything in flight stale;
    :meth:`accept` says whether a result arriving now is current (and counts
    the dropped ones in :attr:`stale_dropped`).
    """

    def __init__(self) -> None:
        self.gen = 0
        self.requests = 0
        self.stale_dropped = 0
        self.clamped = False
        self._last_key: tuple | None = None

    def reset(self) -> None:
        """Forget everything (a new attach)."""
        self.gen = self.requests = self.stale_dropped = 0
        self.clamped = False
        self._last_key = None

    def supersede(self) -> int:
        """Make every request so far stale (a detach, or a view with nothing to decode); the new generation."""
        self.gen += 1
        return self.gen

    def forget_shown(self) -> None:
        """Let the next :meth:`plan` decode even the same samples again (the tile was reset or failed)."""
        self._last_key = None

    def plan(self, grid: OutputGrid, view: ViewState | None, requested_at: float) -> Planned:
        """Decide what the view ``view`` (``None``: 3-D display) needs; may raise from the planning maths."""
        plans = plan_passes(grid, view) if view is not None else []
        if not plans:
            self.supersede()
            self._last_key = None
            reason = "3-D display: zoom tile hidden" if view is None else "nothing of the volume is visible"
            return Planned(hidden=reason)
        full = plans[-1]
        planned = Planned()
        if full.clamped:
            planned.clamp_status = clamp_message(full)
            if not self.clamped:
                planned.clamp_crossed = planned.clamp_status
        self.clamped = full.clamped
        if full.key == self._last_key:
            return planned  # same samples as the tile shown or in flight
        self._last_key = full.key
        self.requests += 1
        planned.request = DecodeRequest(self.supersede(), plans, requested_at)
        return planned

    def accept(self, result: object, attached: bool = True) -> bool:
        """True when ``result`` belongs to the current generation (and the zoom is attached); else count it stale."""
        if attached and getattr(result, "gen", None) == self.gen:
            return True
        self.stale_dropped += 1
        return False


def tile_status(plan: TilePlan, last_seconds: dict[str, float]) -> str:
    """The status line after a tile is shown: level, size, density, latest latencies, the clamp when clamped."""
    density = min(plan.samples_per_voxel)
    times = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in sorted(last_seconds.items()))
    size = "×".join(str(n) for n in plan.shape)
    status = f"{plan.level} tile {size} at {density:.2g} samples/voxel ({times})"
    if plan.clamped:
        status += f"; {clamp_message(plan)}"
    return status


# ====================================================================== building a field for a layer
def zoom_source(viewer: Any, layer: Any) -> dict[str, Any] | None:
    """How to build a field for ``layer``: ``{"stack", "weights", "anisotropy"}``, or ``None`` if it has no niiv model.

    A niiv result (``metadata["engine"] == "niiv"``) names its input layer and
    its params (``weights``: "" = the shipped file; ``anisotropy``: 0 = from the
    shapes); an anisotropic stack opened with niiv weights carries
    ``metadata["niiv_weights"]`` and ``metadata["anisotropy"]``. ``viewer`` is
    anything with a ``layers`` mapping by name (a napari viewer).
    """
    meta = getattr(layer, "metadata", None) or {}
    if getattr(layer, "ndim", 0) != 3:
        return None
    if meta.get("engine") == "niiv" and not meta.get("preview"):
        source_name = meta.get("input_layer")
        if source_name not in viewer.layers:
            return None
        source = viewer.layers[source_name]
        params = meta.get("params") or {}
        anisotropy = int(float(params.get("anisotropy", 0) or 0))
        if anisotropy <= 0:
            z_scale = float(params.get("z_scale", 1.0) or 1.0)
            anisotropy = round(layer.data.shape[0] / (source.data.shape[0] * z_scale))
        return {"stack": source.data, "weights": str(params.get("weights", "") or ""), "anisotropy": anisotropy}
    if meta.get("niiv_weights"):
        return {"stack": layer.data, "weights": str(meta["niiv_weights"]), "anisotropy": int(meta.get("anisotropy", 0))}
    return None


def build_field(stack: Any, weights: str, anisotropy: int) -> FieldDecoder:
    """A :class:`~napari_lfrecon.engines.niiv_field.NiivField` for ``stack`` from ``weights``.

    ``weights`` "" means the shipped file; a bare file name that does not exist
    as given is looked up among the shipped sample files. Weights for another
    anisotropy factor, a missing file or a stack whose z is not the coarse axis
    raise ``ValueError`` with the niiv engine's message.
    """
    from ..engines.niiv import load_model, shipped_weights_path
    from ..engines.niiv_field import NiivField
    from ..io.resources import sample_dir

    path = Path(weights) if weights else shipped_weights_path()
    if not path.is_file() and not path.is_absolute() and (sample_dir() / path).is_file():
        path = sample_dir() / path
    if not path.is_file():
        raise ValueError(f"niiv weights file not found: {path}")
    model, _header = load_model(path, int(anisotropy) if anisotropy else None)
    factor = int(anisotropy) if anisotropy else model.config.anisotropy
    return NiivField(model, np.asarray(stack, dtype=np.float32), factor, cache_bytes=ZOOM_CACHE_BYTES)
