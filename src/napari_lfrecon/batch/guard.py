"""Checks a chunked run makes before it creates anything, and the guard that ties local workers to their parent.

Everything here runs before the output store exists, so a refused run leaves
nothing behind: the scheduler address (syntax, then reachability, in
:func:`napari_lfrecon.batch.run.run_batch`), the number of local workers the
machine can hold, and the finiteness of the input where that is cheap to read.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

import numpy as np

from ..jobs.protocol import EngineInputError, LfreconError
from .plan import Plan
from .sizes import format_size
from .source import InputSource

#: Memory one local worker process takes before any task: Python, numpy, torch and dask.distributed.
WORKER_BASE_BYTES = 400 * 2**20
#: Local workers per CPU core beyond which more only add processes and memory (every worker is single-threaded).
WORKERS_PER_CORE = 2
#: Inputs up to this size are read whole for the finiteness check; larger ones are checked on the first tile.
FINITE_CHECK_BYTES = 256 * 2**20
#: Largest block the finiteness check reads at once (smaller under a small --max-memory).
FINITE_BLOCK_BYTES = 16 * 2**20
#: Seconds between a worker's checks that the process which started it is still alive.
PARENT_POLL_S = 0.5

_ADDRESS = re.compile(
    r"^(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>\d+))?$"
)
_SCHEMES = ("tcp", "tls", "ws", "wss", "inproc", "ucx")


class BatchInterrupted(LfreconError):
    """A chunked run stopped by Ctrl-C; the finished chunks are kept (the same command resumes)."""

    def __init__(self, kept: int, total: int, output: str) -> None:
        self.kept = kept
        self.total = total
        self.output = output
        super().__init__(f"interrupted; {kept} of {total} chunks kept, run the same command to resume")


def check_scheduler_address(address: str) -> str:
    """``address`` if it reads as a dask scheduler address (``tcp://host:port``, ``host:port``), else refuse."""
    text = str(address).strip()
    match = _ADDRESS.match(text)
    if not text or match is None or (match.group("scheme") and match.group("scheme") not in _SCHEMES):
        raise EngineInputError(
            f"--scheduler {address!r} is not a dask scheduler address: expected e.g. tcp://host:8786 or host:8786"
        )
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise EngineInputError(f"--scheduler {address!r}: the port must be 1–65535")
    return text


def available_memory() -> int:
    """Bytes of memory available to new processes now (psutil; ``/proc/meminfo`` as a fallback)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is installed with distributed
        try:
            with open("/proc/meminfo") as handle:
                for line in handle:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
    return 2**63


def check_workers(workers: int, task_bytes: int) -> None:
    """Refuse a local cluster the machine cannot hold, saying the estimate (processes, memory, cores)."""
    cores = os.cpu_count() or 1
    per_worker = WORKER_BASE_BYTES + int(task_bytes)
    needed = workers * per_worker
    available = available_memory()
    if needed > available:
        fits = max(1, available // per_worker)
        raise EngineInputError(
            f"--workers {workers} needs ≈{format_size(needed)} ({workers} × ({format_size(WORKER_BASE_BYTES)} per "
            f"process + {format_size(task_bytes)} per task)) but {format_size(available)} is available: "
            f"use --workers {min(fits, cores)} or less, or a smaller --max-memory"
        )
    if workers > WORKERS_PER_CORE * cores:
        raise EngineInputError(
            f"--workers {workers} is more than {WORKERS_PER_CORE} per CPU core ({cores} cores): every worker is "
            f"single-threaded, so more only add processes; use --workers {cores}"
        )


def check_finite(source: InputSource, plan: Plan) -> None:
    """Refuse NaN/Inf input before a new store is created, where that is cheap to see: the first tile.

    A run that meets NaN/Inf later fails on that chunk with the engine's own
    message and keeps the chunks already finished (resumable); one that fails
    before its first chunk removes the store it created. Reading the whole
    input here would read every frame twice. The input is read in blocks of at
    most 1/8 of the run's memory budget.
    """
    if not np.issubdtype(np.dtype(source.dtype), np.floating):
        return  # integer pixels are always finite
    region = plan.tiles[0].region
    where = (
        "the input"
        if source.nbytes <= FINITE_CHECK_BYTES and len(plan.tiles) == 1
        else (f"the input's first tile {tuple((s.start, s.stop) for s in region)}")
    )
    step = max(2**16, min(FINITE_BLOCK_BYTES, int(plan.max_memory or FINITE_BLOCK_BYTES) // 8))
    bad = 0
    for block in _blocks(region, np.dtype(source.dtype).itemsize, step):
        bad += int(np.count_nonzero(~np.isfinite(np.asarray(source.read(block)))))
    if bad:
        raise EngineInputError(f"{where} contains {bad} NaN or Inf value(s); remove or replace them first")


def _blocks(region: tuple[slice, ...], itemsize: int, limit: int):
    """Sub-regions of ``region`` of at most ``limit`` bytes (split along the leading axes first)."""
    sizes = [s.stop - s.start for s in region]
    for axis in range(len(region)):
        inner = itemsize * int(np.prod(sizes[axis + 1 :], dtype=np.int64))
        if inner <= limit or axis == len(region) - 1:  # one index of this axis fits: step along it
            step = max(1, limit // max(inner, 1))
            for start in range(region[axis].start, region[axis].stop, step):
                piece = slice(start, min(start + step, region[axis].stop))
                yield from _outer(region, axis, piece)
            return


def _outer(region: tuple[slice, ...], axis: int, piece: slice):
    """Every combination of single indices on the axes before ``axis``, with ``piece`` on ``axis``."""
    import itertools

    leading = [range(s.start, s.stop) for s in region[:axis]]
    for index in itertools.product(*leading):
        yield tuple(slice(i, i + 1) for i in index) + (piece,) + tuple(region[axis + 1 :])


def local_worker_pids(cluster: Any) -> list[int]:
    """Process ids of a LocalCluster's worker processes (started by this process)."""
    pids = []
    for nanny in getattr(cluster, "workers", {}).values():
        process = getattr(getattr(nanny, "process", None), "process", None)
        pid = getattr(process, "pid", None)
        if isinstance(pid, int):
            pids.append(pid)
    return pids


def _watch_parent(parent: int) -> None:
    import time

    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:
            os._exit(1)  # the process that started this worker is gone (killed): nobody will read our results


def dask_setup(worker: Any = None) -> None:
    """Worker preload hook: end this worker process when its parent dies, even by SIGKILL.

    Local workers are started by the ``lfrecon`` process (their nanny runs in
    it); a killed parent cannot stop them, so each watches its parent pid.
    On Linux the kernel's parent-death signal does the same at once.
    """
    parent = os.getppid()
    try:
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    except (OSError, AttributeError):
        pass  # not Linux/glibc: the polling thread below does it
    threading.Thread(target=_watch_parent, args=(parent,), name="lfrecon-parent-watch", daemon=True).start()


#: Copies of the output an in-memory run holds at its end (the engine's result and the writer's buffer).
OUTPUT_COPIES = 2


def in_memory_bytes(engine: Any, data: Any, psf: Any, voxel_size: Any, params: Any) -> int:
    """Estimated peak bytes of reconstructing ``data`` whole in memory (a TIFF output, the API).

    The input as float32, the engine's working set (``Engine.memory_bytes``)
    and the output held twice. ``data`` may be lazy: only its shape is used.
    """
    shape = tuple(int(n) for n in np.shape(data))
    inputs = engine.inputs_type(data=_ShapeOnly(shape), psf=psf, voxel_size=voxel_size)
    try:
        out_shape = engine.output_shape(inputs, params) or shape
        working = int(engine.memory_bytes(inputs, params))
    except Exception:  # noqa: BLE001 - an engine's estimate must not fail a run its own checks would accept
        out_shape, working = shape, 4 * 4 * int(np.prod(shape, dtype=np.float64))
    output = 4 * int(np.prod(out_shape, dtype=np.float64))
    return 4 * int(np.prod(shape, dtype=np.float64)) + working + OUTPUT_COPIES * output


class _ShapeOnly:
    """Stands for an array in size estimates: it has a shape and nothing to read."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.ndim = len(shape)

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise EngineInputError("internal: a size estimate tried to read the data")


def check_in_memory_run(engine: Any, data: Any, psf: Any, voxel_size: Any, params: Any, *, hint: str = "") -> None:
    """Refuse a whole-in-memory run the machine cannot hold, with the estimate (before any pixel is read)."""
    needed = in_memory_bytes(engine, data, psf, voxel_size, params)
    available = available_memory()
    if needed > available:
        raise EngineInputError(
            f"reconstructing the input {tuple(np.shape(data))} whole in memory needs ≈{format_size(needed)} "
            f"(input, {engine.name}'s working set and the output) but {format_size(available)} is available"
            + (f": {hint}" if hint else "")
        )
