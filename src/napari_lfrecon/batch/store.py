"""The OME-Zarr output of a batch run and its record of finished chunks (resume).

The output is a normal OME-Zarr image (``napari_lfrecon.io.zarr_io``) whose
zarr chunks are exactly the plan's chunks, so every task writes whole zarr
chunks and no two tasks touch the same file. The run's *signature* (engine,
parameters, input identity, PSF, plan) is stored with the image's metadata
when the store is created; a re-run resumes only when it matches.

A chunk is recorded as finished by a small marker file in ``<store>/.lfrecon_done/``
written *after* its data, through a temporary file and an atomic rename: a run
killed at any moment leaves either no marker (the chunk is recomputed) or a
marker for data that is fully written.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io.image import METADATA_KEY

#: Folder (inside the store) holding one marker per finished chunk.
DONE_DIR = ".lfrecon_done"
#: Key of the run signature inside the image metadata.
SIGNATURE_KEY = "batch_signature"


class ChunkWriteError(RuntimeError):
    """Writing a chunk failed (e.g. the disk is full); chunks finished before it stay valid."""


def signature_digest(signature: Mapping[str, Any]) -> str:
    """A short stable hash of a signature (for messages)."""
    return hashlib.sha1(json.dumps(signature, sort_keys=True).encode()).hexdigest()[:12]


def array_digest(array: np.ndarray) -> str:
    """SHA-1 of an array's bytes, shape and dtype (identifies a PSF in the signature)."""
    h = hashlib.sha1()
    a = np.ascontiguousarray(array)
    h.update(str((a.shape, a.dtype.str)).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def read_signature(path: Path) -> dict[str, Any] | None:
    """The signature stored in an existing output store, or ``None`` when it is not one of ours."""
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception:  # not a zarr group at all
        return None
    document = dict(group.attrs).get(METADATA_KEY)
    if not isinstance(document, dict):
        return None
    signature = (document.get("metadata") or {}).get(SIGNATURE_KEY)
    return signature if isinstance(signature, dict) else None


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if json.dumps(old.get(k), sort_keys=True) != json.dumps(new.get(k), sort_keys=True)]


def prepare_output(
    path: str | Path,
    *,
    shape: Sequence[int],
    chunks: Sequence[int],
    axes: str,
    voxel_size: Sequence[float],
    metadata: Mapping[str, Any],
    signature: Mapping[str, Any],
    overwrite: bool = False,
) -> bool:
    """Create the output store, or check an existing one matches ``signature``; return True when resuming.

    An existing path that is not an output of the same run is refused with a
    ``ValueError`` naming what differs, unless ``overwrite`` (then it is removed).
    """
    path = Path(path)
    signature = json.loads(json.dumps(signature))  # the JSON form is what gets stored and compared
    if path.exists():
        old = read_signature(path)
        if old == signature:
            (path / DONE_DIR).mkdir(exist_ok=True)
            return True
        if not overwrite:
            if old is None:
                raise ValueError(f"{path} exists and is not the output of a batch run: pass --overwrite to replace it")
            what = ", ".join(_differences(old, signature))
            raise ValueError(
                f"{path} holds a different run (differs in: {what}); pass --overwrite to replace it, "
                "or the same settings to resume it"
            )
        forget_open_arrays()
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    _create_empty_image(path, shape, chunks, axes, voxel_size, {**metadata, SIGNATURE_KEY: signature})
    (path / DONE_DIR).mkdir(exist_ok=True)
    return False


def _create_empty_image(
    path: Path,
    shape: Sequence[int],
    chunks: Sequence[int],
    axes: str,
    voxel_size: Sequence[float],
    metadata: Mapping[str, Any],
) -> None:
    """An OME-Zarr image of ``shape`` with no chunk written: metadata only, however large the image.

    The OME-Zarr metadata comes from the one writer
    (:func:`napari_lfrecon.io.zarr_io.write_ome_zarr`, given one zero chunk);
    the image array is then re-declared at its full shape. Writing an all-zero
    image of the full shape instead computes every chunk (a minute for 256 GiB).
    """
    import zarr

    from ..io.zarr_io import write_ome_zarr

    chunks = tuple(min(int(c), max(int(n), 1)) for c, n in zip(chunks, shape, strict=True))
    write_ome_zarr(path, np.zeros((1,) * len(shape), np.float32), tuple(voxel_size), metadata, axes=axes)
    group = zarr.open_group(str(path), mode="r+")
    if _zarr_major() >= 3:
        group.create_array(
            "0",
            shape=tuple(shape),
            chunks=chunks,
            dtype=np.float32,
            chunk_key_encoding={"name": "v2", "separator": "/"},
            overwrite=True,
        )
    else:  # pragma: no cover - zarr 2
        group.create_dataset(
            "0", shape=tuple(shape), chunks=chunks, dtype=np.float32, dimension_separator="/", overwrite=True
        )


def _zarr_major() -> int:
    import zarr

    return int(zarr.__version__.split(".")[0])


def finished_chunks(path: str | Path) -> set[str]:
    """Names of the chunks recorded as finished in the output store."""
    folder = Path(path) / DONE_DIR
    if not folder.is_dir():
        return set()
    return {p.name.removesuffix(".json") for p in folder.glob("c*.json")}


#: Open output arrays of this process, by path: opening a zarr array costs more than writing a small chunk.
_OPEN_ARRAYS: dict[tuple[str, int], Any] = {}


def write_region(path: str | Path, region: tuple[slice, ...], data: np.ndarray) -> None:
    """Write ``data`` into the image array of the store at ``region`` (whole zarr chunks)."""
    import zarr

    location = Path(path) / "0"
    # The metadata file's stamp tells a store re-created under the same path (--overwrite) from the cached one.
    meta = location / ".zarray"
    key = (str(location), meta.stat().st_mtime_ns if meta.exists() else 0)
    array = _OPEN_ARRAYS.get(key)
    if array is None:
        # Every finished chunk is stored, zeros too: a chunk file missing from a store then means lost data.
        if _zarr_major() >= 3:
            array = zarr.open_array(str(location), mode="r+").with_config({"write_empty_chunks": True})
        else:  # pragma: no cover - zarr 2
            array = zarr.open_array(str(location), mode="r+", write_empty_chunks=True)
        _OPEN_ARRAYS[key] = array
    array[region] = data


def forget_open_arrays() -> None:
    """Drop cached array handles (an output store was replaced)."""
    _OPEN_ARRAYS.clear()


def mark_finished(path: str | Path, name: str, info: Mapping[str, Any]) -> None:
    """Record chunk ``name`` as finished: a marker written to a temporary file, then renamed atomically."""
    folder = Path(path) / DONE_DIR
    final = folder / f"{name}.json"
    temporary = folder / f".{name}.{os.getpid()}.tmp"
    # No fsync: the guarantee is against the process dying (kill, crash, out of memory), where the
    # page cache keeps both the chunk and the marker; it is not a power-loss guarantee.
    with open(temporary, "w") as handle:
        json.dump(dict(info), handle)
    os.replace(temporary, final)


def store_chunk(
    path: str | Path, name: str, region: tuple[slice, ...], data: np.ndarray, info: Mapping[str, Any]
) -> None:
    """Write a chunk then its marker; an ``OSError`` (disk full, …) becomes a :class:`ChunkWriteError`."""
    try:
        write_region(path, region, data)
        mark_finished(path, name, info)
    except OSError as exc:
        reason = "the disk is full" if exc.errno == errno.ENOSPC else str(exc)
        raise ChunkWriteError(f"writing chunk {name} to {path} failed: {reason} ({exc.strerror or exc})") from exc
