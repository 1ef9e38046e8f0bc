"""Chunked, resumable, optionally distributed reconstruction of inputs larger than memory (no Qt).

``plan_run`` cuts a run of any reconstruction engine into tiles/frames from a
memory budget and what the engine declares (``Engine.halo``, ``output_shape``,
``memory_bytes``), ``run_batch`` executes it as a dask graph (locally or on
dask.distributed), each task through the one runner, and writes an OME-Zarr
chunk by chunk, skipping chunks an interrupted earlier run finished. Tiles and
blending are :mod:`napari_lfrecon.tiling`'s.
"""

from .guard import BatchInterrupted
from .plan import DEFAULT_MAX_MEMORY, Chunk, Plan, Tile, plan_run, tile_weights
from .run import BatchSummary, run_batch
from .sizes import format_size, parse_size
from .source import InputSource, array_source, open_source
from .store import ChunkWriteError, finished_chunks

__all__ = [
    "BatchInterrupted",
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
