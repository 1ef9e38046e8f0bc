"""Chunked, resumable, optionally distributed reconstruction of inputs larger than memory (no Qt).

``plan_run`` cuts a run into tiles/frames from a memory budget, ``run_batch``
executes it as a dask graph (locally or on dask.distributed) and writes an
OME-Zarr chunk by chunk, skipping chunks an interrupted earlier run finished.
"""

from .plan import DEFAULT_MAX_MEMORY, Chunk, Plan, Tile, plan_run, tile_weights
from .run import BatchSummary, run_batch
from .sizes import format_size, parse_size
from .source import InputSource, array_source, open_source
from .store import ChunkWriteError, finished_chunks

__all__ = [
    "DEFAULT_MAX_MEMORY",
    "BatchSummary",
    "Chunk",
    "ChunkWriteError",
    "InputSource",
    "Plan",
    "Tile",
    "array_source",
    "finished_chunks",
    "format_size",
    "open_source",
    "parse_size",
    "plan_run",
    "run_batch",
    "tile_weights",
]
