"""Run a planned reconstruction as a dask graph, locally or on a dask.distributed cluster.

The graph has two kinds of task: *tile* tasks read one input region and run
the engine on it through the engine registry (:func:`napari_lfrecon.api.reconstruct`:
the same engines as everywhere else, not a second implementation), and
*chunk* tasks blend the tiles that reach one output chunk, write it to the
OME-Zarr store and record it as finished. Chunks already recorded are left
out of the graph, together with tiles no remaining chunk needs (resume).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..camera import Camera
from ..psf.model import PSF
from ..tiling import assemble
from . import store
from .guard import BatchInterrupted, check_finite, check_scheduler_address, check_workers, local_worker_pids
from .plan import Chunk, Plan, Tile, plan_run
from .sizes import format_size
from .source import InputSource

#: Seconds to wait for an existing scheduler before giving up with a message.
CONNECT_TIMEOUT_S = 5.0
#: Seconds to wait for the client and a local cluster to close (an interrupted run must exit quickly).
CLOSE_TIMEOUT_S = 2.0
_log = logging.getLogger(__name__)
#: glibc ``mallopt`` parameters (malloc.h) and the threshold we set: blocks ≥ 128 KiB get their own mapping.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MALLOC_THRESHOLD_BYTES = 128 * 1024
_MALLOC_FIXED = False


@dataclass
class BatchJob:
    """What every task needs besides its region: small and picklable (the PSF travels separately)."""

    source: InputSource
    output: str
    engine: str
    params: dict[str, Any]
    voxel_size: tuple[float, float, float] | None
    plan_mode: str
    frame_output_shape: tuple[int, ...]
    has_time: bool
    camera: Camera | None = None
    device: str | None = None
    torch_threads: int | None = None
    #: The voxel size written into the output before any tile ran; every result must agree with it.
    output_voxel_size: tuple[float, ...] | None = None


@dataclass
class BatchSummary:
    """What a batch run did (``--json`` prints it)."""

    output: str
    shape: tuple[int, ...]
    axes: str
    voxel_size_um: tuple[float, ...]
    chunks_total: int
    chunks_computed: int
    chunks_skipped: int
    seconds: float
    plan: dict[str, Any] = field(default_factory=dict)
    workers: int = 1
    scheduler: str = "local"
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "output": self.output,
            "shape": list(self.shape),
            "axes": self.axes,
            "voxel_size_um": list(self.voxel_size_um),
            "chunks_total": self.chunks_total,
            "chunks_computed": self.chunks_computed,
            "chunks_skipped": self.chunks_skipped,
            "seconds": round(self.seconds, 3),
            "workers": self.workers,
            "scheduler": self.scheduler,
            "plan": self.plan,
            "notes": self.notes,
        }


# --------------------------------------------------------------------------- tasks (run on workers)
def _fix_malloc_thresholds() -> None:
    """Make glibc return large freed blocks to the OS at once (once per process; no-op elsewhere).

    glibc raises its mmap threshold each time a large block is freed, after
    which tile-sized buffers come from the heap and fragment it: the resident
    size then creeps up tile after tile (measured: +110 MiB over 60 tiles of a
    60 MiB budget). A fixed threshold keeps every tile-sized buffer in its own
    mapping, released when freed, so the peak stays at one tile's working set.
    """
    global _MALLOC_FIXED
    if _MALLOC_FIXED:
        return
    _MALLOC_FIXED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc (macOS, Windows, musl): nothing to tune
    libc.mallopt(_M_MMAP_THRESHOLD, _MALLOC_THRESHOLD_BYTES)
    libc.mallopt(_M_TRIM_THRESHOLD, _MALLOC_THRESHOLD_BYTES)


def _set_torch_threads(threads: int | None) -> None:
    _fix_malloc_thresholds()
    if threads:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _electrons(data: np.ndarray, camera: Camera | None, region: tuple[slice, ...]) -> np.ndarray:
    """Camera ADU → photo-electrons for a region; dark/flat frames are cut to the region's last two axes."""
    if camera is None:
        return data
    frame = region[-2:]
    dark = None if camera.dark is None else np.asarray(camera.dark, np.float32)
    flat = None
    if camera.flat is not None:
        # Normalise the flat over the whole frame before cutting it, as an unbatched run would.
        flat = camera.normalised_flat(np.asarray(camera.flat).shape)[frame]
    offset = dark[frame] if dark is not None else np.float32(camera.offset)
    out = (data - offset) * np.float32(camera.gain)
    if flat is not None:
        out = out / flat
    return np.clip(out, 0, None).astype(np.float32, copy=False)


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def reconstruct_tile(job: BatchJob, psf: PSF | None, tile: Tile) -> np.ndarray:
    """Read ``tile.region`` and reconstruct it with the job's engine (frames one by one in frames mode)."""
    from ..api import reconstruct

    _set_torch_threads(job.torch_threads)
    data = _electrons(job.source.read(tile.region), job.camera, tile.region)

    expected = job.frame_output_shape if job.plan_mode == "frames" else tuple(s.stop - s.start for s in tile.region)

    def one(frame: np.ndarray) -> np.ndarray:
        volume = reconstruct(job.engine, frame, psf, voxel_size=job.voxel_size, device=job.device, **job.params)
        _check_result(job, volume.data.shape, volume.voxel_size, expected)
        return volume.data

    if job.plan_mode == "frames" and job.has_time:
        out = np.empty((data.shape[0], *job.frame_output_shape), np.float32)
        for i in range(data.shape[0]):
            out[i] = one(data[i])
        return out
    return one(data)


def _check_result(job: BatchJob, shape: tuple[int, ...], voxel_size: tuple[float, ...], expected: tuple[int, ...]):
    """Refuse a result that does not fit the output planned from the engine's declarations (no silent mislabels)."""
    from ..jobs import EngineInputError

    if tuple(shape) != tuple(expected):
        raise EngineInputError(
            f"engine {job.engine!r} returned a volume of shape {tuple(shape)}, but declared {tuple(expected)} "
            "(Engine.output_shape) when the run was planned"
        )
    if job.output_voxel_size is not None and not np.allclose(voxel_size, job.output_voxel_size, rtol=1e-6):
        raise EngineInputError(
            f"engine {job.engine!r} returned voxels of {tuple(voxel_size)} µm, but said "
            f"{tuple(job.output_voxel_size)} µm (Engine.output_voxel_size) when the output was created"
        )


def finish_chunk(job: BatchJob, chunk: Chunk, tiles: Sequence[Tile], *results: np.ndarray) -> str:
    """Blend the tiles reaching ``chunk``, write it and record it as finished; return its name."""
    started = time.perf_counter()
    block = assemble_chunk(chunk, tiles, results)
    info = {"index": list(chunk.index), "pid": os.getpid(), "torch_threads": _torch_threads()}
    store.store_chunk(job.output, chunk.name, chunk.region, block, info)
    _log.debug("chunk %s written in %.2f s", chunk.name, time.perf_counter() - started)
    return chunk.name


def assemble_chunk(chunk: Chunk, tiles: Sequence[Tile], results: Sequence[np.ndarray]) -> np.ndarray:
    """The chunk's values: the blended tile results over its region (:func:`napari_lfrecon.tiling.assemble`)."""
    if len(tiles) == 1 and not tiles[0].core:  # frames: the tile's result is the chunk
        return np.ascontiguousarray(results[0], dtype=np.float32)
    return assemble(chunk.region, tiles, results)


# --------------------------------------------------------------------------- graph
def build_graph(job: Any, psf: Any, plan: Plan, pending: Sequence[Chunk], token: str) -> list[Any]:
    """Delayed chunk tasks for ``pending`` chunks; tiles are shared between the chunks they reach.

    ``job`` and ``psf`` are the objects themselves (wrapped here as one graph
    node each) or distributed futures already scattered to the workers.
    """
    import dask

    if not _is_future(psf):
        psf = dask.delayed(psf, name=f"psf-{token}", traverse=False)
    if not _is_future(job):
        job = dask.delayed(job, name=f"job-{token}", traverse=False)
    tile_nodes: dict[int, Any] = {}
    finals = []
    for chunk in pending:
        deps = []
        for k in chunk.tiles:
            if k not in tile_nodes:
                tile_nodes[k] = dask.delayed(reconstruct_tile, pure=False)(
                    job, psf, plan.tiles[k], dask_key_name=f"tile-{token}-{k}"
                )
            deps.append(tile_nodes[k])
        tiles = [plan.tiles[k] for k in chunk.tiles]
        finals.append(
            dask.delayed(finish_chunk, pure=False)(
                job, chunk, tiles, *deps, dask_key_name=f"chunk-{token}-{chunk.name}"
            )
        )
    return finals


def _is_future(value: Any) -> bool:
    return type(value).__name__ == "Future" and hasattr(value, "key")


def waves(chunks: Sequence[Chunk], size: int) -> list[list[Chunk]]:
    """``chunks`` in consecutive groups of ``size``: the graph of one group at a time stays small.

    A graph for every chunk of a large run would itself take memory in
    proportion to the run (hundreds of MiB for 10⁵ chunks). With blending, a
    tile reaching chunks of two groups is computed once per group.
    """
    size = max(1, int(size))
    return [list(chunks[i : i + size]) for i in range(0, len(chunks), size)]


def _connect(scheduler: str | None, workers: int | None):
    """``(client, cluster)``: an existing scheduler, a new LocalCluster, or ``(None, None)`` to run locally."""
    if scheduler is None and not workers:
        return None, None
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise RuntimeError(
            "--workers and --scheduler need the 'distributed' package (pip install distributed)"
        ) from exc
    if scheduler is not None:
        try:
            return Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False), None
        except (OSError, TimeoutError) as exc:
            raise RuntimeError(
                f"could not reach the dask scheduler at {scheduler} within {CONNECT_TIMEOUT_S:g} s ({exc}); "
                "check the address and that the scheduler is running"
            ) from None
    import dask

    # Daemonic worker processes end with a parent that exits; the guard preload ends them when it is killed.
    with dask.config.set({"distributed.worker.daemon": True}):
        cluster = LocalCluster(
            n_workers=int(workers),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit=0,  # the planner keeps each task under --max-memory; no spilling of tiles to disk
            silence_logs=logging.ERROR,
            preload=["napari_lfrecon.batch.guard"],
        )
    return Client(cluster, set_as_default=False), cluster


def _close(client: Any, cluster: Any, *, force: bool = False) -> None:
    """Close the client and a local cluster; with ``force`` (Ctrl-C, failure) end its workers first.

    A busy worker ignores a polite close, and a cluster whose close timed out is closed again at exit
    (seconds more). The workers are this process's own children, so ending them is safe.
    """
    quiet = logging.getLogger("distributed")
    level = quiet.level
    if cluster is not None and force:
        # The scheduler logs every connection the ended workers drop (tracebacks): not news after Ctrl-C.
        quiet.setLevel(logging.CRITICAL)
        for pid in local_worker_pids(cluster):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass  # already gone
    try:
        _close_both(client, cluster)
    finally:
        quiet.setLevel(level)


def _close_both(client: Any, cluster: Any) -> None:
    if client is not None:
        try:
            client.close(timeout=CLOSE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - closing after a failure must not hide the failure
            _log.debug("closing the dask client: %s", exc)
    if cluster is not None:
        try:
            cluster.close(timeout=CLOSE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001
            _log.debug("closing the local cluster: %s", exc)


#: Inputs from this size on get "planning…" messages before the first chunk (planning them takes a while).
ANNOUNCE_BYTES = 64 * 2**20
#: Chunks per graph when running locally (bounds the graph's own memory).
LOCAL_WAVE = 32


def _execute_local(job: BatchJob, psf: PSF, plan: Plan, pending: Sequence[Chunk], token: str, on_chunk) -> None:
    import dask
    from dask.callbacks import Callback

    class _ChunkCounter(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):  # noqa: D401 - dask callback signature
            if isinstance(key, str) and key.startswith("chunk-"):
                on_chunk()

    # One task at a time, in this thread: the memory budget is per worker, and torch already uses every core.
    with _ChunkCounter():
        for number, group in enumerate(waves(pending, LOCAL_WAVE)):
            finals = build_graph(job, psf, plan, group, f"{token}w{number}")
            dask.compute(*finals, scheduler="sync")


def _execute_distributed(
    client: Any, job: BatchJob, psf: PSF, plan: Plan, pending: Sequence[Chunk], token: str, on_chunk
) -> None:
    """Keep a window of chunks in flight (a few per worker) and submit more as they finish."""
    from distributed import as_completed

    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    # Scattered once: the PSF can be megabytes and would otherwise travel inside every submitted graph.
    job_ref = client.scatter(job, broadcast=True, hash=False)
    psf_ref = client.scatter(psf, broadcast=True, hash=False)
    queue = list(pending)
    window = 3 * n_workers
    futures: list[Any] = []

    def submit(count: int) -> list[Any]:
        batch = [queue.pop(0) for _ in range(min(count, len(queue)))]
        return [
            client.compute(node)
            for node in build_graph(job_ref, psf_ref, plan, batch, f"{token}-{batch[0].name}" if batch else token)
        ]

    futures = submit(window)
    stream = as_completed(futures, loop=client.loop)
    try:
        for future in stream:
            future.result()  # re-raises a task's exception here
            on_chunk()
            for new in submit(1):
                stream.add(new)
                futures.append(new)
    except BaseException:
        try:
            client.cancel(futures, force=True)
        except Exception as exc:  # noqa: BLE001 - the original failure is what the user must see
            _log.debug("cancelling futures: %s", exc)
        raise


# --------------------------------------------------------------------------- entry point
def run_batch(
    source: InputSource,
    output: str | Path,
    psf: PSF | None,
    *,
    engine: str = "rl",
    params: Mapping[str, Any] | None = None,
    voxel_size: tuple[float, float, float] | None = None,
    camera: Camera | None = None,
    device: str | None = None,
    max_memory: int | None = None,
    tile: Sequence[int] | None = None,
    overlap: Sequence[int] | None = None,
    blend: int = 0,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    progress: Callable[[float, str], None] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> BatchSummary:
    """Reconstruct ``source`` chunk by chunk into the OME-Zarr store ``output``; resume a matching earlier run.

    ``engine``/``params`` name a registered engine of kind ``"reconstruct"``
    and its parameters; ``psf`` (``None`` for engines that need none) and
    ``voxel_size`` are as for :func:`napari_lfrecon.api.reconstruct`.
    ``max_memory`` (bytes per worker, interpreter excluded), ``tile``,
    ``overlap`` and ``blend`` shape the plan (:func:`plan_run`). ``workers``
    starts a local dask.distributed cluster of that many single-threaded
    processes; ``scheduler`` uses an existing one; neither runs on one local
    thread. ``progress(fraction, message)`` is called per finished chunk
    (and, for inputs of :data:`ANNOUNCE_BYTES` or more, at once while planning).

    Everything that can be checked is checked before the output store is
    created (engine and parameters, scheduler address and reachability, the
    workers the machine can hold, NaN/Inf input: :mod:`.guard`). A run that
    fails before its first chunk is finished removes the store it created
    (never one that existed before it). Ctrl-C ends local workers at once and
    raises :class:`~napari_lfrecon.batch.guard.BatchInterrupted` with the
    number of chunks kept; the same call resumes.
    """
    from .. import engines
    from ..api import psf_on_data_grid
    from ..engines.base import EngineInputError, make_params

    # Everything is checked before the output store is created: a refused run leaves nothing behind.
    # A large input's planning and checks take seconds: say so at once (small runs stay quiet until chunks finish).
    announce = progress if progress is not None and source.nbytes >= ANNOUNCE_BYTES else None
    if announce is not None:
        announce(0.0, f"planning chunks for an input of {source.shape} ({format_size(source.nbytes)})…")
    _fix_malloc_thresholds()
    psf = psf_on_data_grid(psf, voxel_size)  # as every other path does: the data's sampling is honoured
    engine_obj = engines.get(engine)
    if engine_obj.kind != "reconstruct":
        raise EngineInputError(f"batch runs reconstruct; engine {engine!r} is a {engine_obj.kind} engine")
    settings = make_params(engine_obj.Params, dict(params or {}))
    values = dict(vars(settings))
    if "preview_every" in values:
        values["preview_every"] = 0  # nobody sees previews in a batch run; they cost a copy per iteration
    if psf is not None and psf.modality not in engine_obj.modalities:
        raise EngineInputError(f"engine {engine!r} handles {', '.join(engine_obj.modalities)} data, not {psf.modality}")
    if psf is None and engine_obj.needs_psf:
        raise EngineInputError(f"engine {engine!r} needs a PSF (--psf)")
    if scheduler is not None:
        scheduler = check_scheduler_address(scheduler)
    if workers is not None and int(workers) < 1:
        raise EngineInputError(f"--workers must be ≥ 1, got {workers}")
    out_voxel = engine_obj.output_voxel_size(engine_obj.inputs_type(data=np.empty(0), psf=psf, voxel_size=voxel_size))
    if out_voxel is None:
        raise EngineInputError("the output voxel size is unknown: pass --voxel-size DZ DY DX (µm)")
    plan = plan_run(
        source.shape,
        source.axes,
        psf,
        engine=engine_obj,
        params=make_params(engine_obj.Params, values),
        voxel_size=voxel_size,
        max_memory=max_memory,
        tile=tile,
        overlap=overlap,
        blend=blend,
    )
    total = len(plan.chunks)
    if announce is not None:
        announce(0.0, f"planned {total} chunks of ≈{format_size(plan.task_bytes)} per task; checking the input…")
    if workers and scheduler is None:
        check_workers(int(workers), plan.task_bytes)
    output = Path(output)
    if not output.exists():  # a resumed run reads nothing it need not; a new one checks before creating
        check_finite(source, plan)
    signature = {
        "engine": engine,
        "params": {k: v for k, v in values.items() if k != "preview_every"},
        "input": source.identity(),
        "psf": store.array_digest(psf.array) if psf is not None else None,
        "voxel_size": list(voxel_size) if voxel_size is not None else None,
        "camera": _camera_identity(camera),
        "plan": {k: v for k, v in plan.describe().items() if k not in ("task_bytes_estimate", "max_memory")},
    }
    run_metadata = {
        "engine": engine,
        "params": _jsonable(values),
        "input": source.identity(),
        "psf": psf.describe() if psf is not None else None,
        "plan": plan.describe(),
        **dict(metadata or {}),
    }
    existed = output.exists() or output.is_symlink()
    client = cluster = None
    n_workers = 1
    started = time.perf_counter()
    try:
        if scheduler is not None:  # reachable before anything is created
            client, _ = _connect(scheduler, None)
        store.prepare_output(
            output,
            shape=plan.output_shape,
            chunks=plan.chunk_shape,
            axes=plan.output_axes,
            voxel_size=out_voxel,
            metadata=run_metadata,
            signature=signature,
            overwrite=overwrite,
        )
        done = store.finished_chunks(output)
        pending = [c for c in plan.chunks if c.name not in done]
        skipped = total - len(pending)
        counter = {"n": skipped}

        def on_chunk() -> None:
            counter["n"] += 1
            if progress is not None:
                progress(counter["n"] / total, f"chunk {counter['n']}/{total}")

        if progress is not None:
            progress(skipped / total, f"{skipped} of {total} chunks already done; task ≈{format_size(plan.task_bytes)}")
        if pending:
            if client is None and workers:
                client, cluster = _connect(None, workers)
            job = BatchJob(
                source=source,
                output=str(output),
                engine=engine,
                params=values,
                voxel_size=voxel_size,
                plan_mode=plan.mode,
                frame_output_shape=plan.frame_output_shape,
                has_time=plan.has_time,
                camera=camera,
                device=device,
                torch_threads=1 if client is not None else None,
                output_voxel_size=tuple(out_voxel),
            )
            token = store.signature_digest({"out": job.output, "t": time.time()})
            if client is None:
                _execute_local(job, psf, plan, pending, token, on_chunk)
            else:
                n_workers = len(client.scheduler_info().get("workers", {})) or 1
                _execute_distributed(client, job, psf, plan, pending, token, on_chunk)
    except store.ChunkWriteError as exc:
        finished = _keep_or_remove(output, existed)
        raise store.ChunkWriteError(
            f"{exc}. {finished} of {total} chunks are finished and kept in {output}; "
            "free some space and run the same command again to resume"
        ) from None
    except KeyboardInterrupt:
        _close(client, cluster, force=True)
        client = cluster = None
        raise BatchInterrupted(_keep_or_remove(output, existed), total, str(output)) from None
    except BaseException:
        _close(client, cluster, force=True)
        client = cluster = None
        _keep_or_remove(output, existed)
        raise
    finally:
        _close(client, cluster)
    return BatchSummary(
        output=str(output),
        shape=plan.output_shape,
        axes=plan.output_axes,
        voxel_size_um=tuple(out_voxel),
        chunks_total=total,
        chunks_computed=len(pending),
        chunks_skipped=skipped,
        seconds=time.perf_counter() - started,
        plan=plan.describe(),
        workers=n_workers,
        scheduler=scheduler or ("local-cluster" if workers else "local-threads"),
        notes=list(plan.notes),
    )


def _keep_or_remove(output: Path, existed: bool) -> int:
    """After a failed run: the number of finished chunks kept; a store this run created with none is removed."""
    finished = len(store.finished_chunks(output))
    if finished == 0 and not existed and output.is_dir():
        store.forget_open_arrays()
        shutil.rmtree(output, ignore_errors=True)
    return finished


def _camera_identity(camera: Camera | None) -> dict[str, Any] | None:
    if camera is None:
        return None
    return {
        "offset": camera.offset,
        "gain": camera.gain,
        "dark": store.array_digest(np.asarray(camera.dark)) if camera.dark is not None else None,
        "flat": store.array_digest(np.asarray(camera.flat)) if camera.flat is not None else None,
    }


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, (int, float, str, bool, type(None), list)) else str(v)) for k, v in values.items()}
