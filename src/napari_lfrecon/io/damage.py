"""Damaged input files become one clear error: the reader boundary of every file format we read.

A damaged, truncated or mutated file makes the file libraries fail in their own
ways (``struct.error``, ``zlib.error``, ``KeyError``, tifffile's "incompatible
keyframe", blosc's ``RuntimeError``, ...), log thousands of lines, or declare
sizes no file could hold. :func:`reading` wraps one read: it keeps tifffile's
logger quiet and turns those raw errors into
:class:`~napari_lfrecon.jobs.DamagedFile` ("damaged or unsupported file:
<path>: <what>"). :func:`check_declared_size` refuses, before any allocation,
pixels a file's size cannot justify.

What passes through unchanged: the project's own errors, a missing file or a
refused permission (``FileNotFoundError``, ``PermissionError``, ...), and
``MemoryError`` (the machine is short of memory, the file may be fine).
"""

from __future__ import annotations

import json
import logging
import math
import struct
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..jobs.protocol import DamagedFile, LfreconError

#: What the file libraries raise on damaged input (tifffile, zarr/numcodecs/blosc, safetensors, json, numpy).
#: ``ValueError`` covers ``tifffile.TiffFileError`` and ``json.JSONDecodeError``; ``RuntimeError`` covers
#: blosc and imagecodecs decoding errors; ``OSError`` a failed read inside a damaged file (seek past the end).
RAW_READ_ERRORS: tuple[type[BaseException], ...] = (
    ZeroDivisionError,
    AssertionError,
    SystemError,  # numcodecs on a mangled chunk: "Negative size passed to PyBytes_FromStringAndSize"
    IndexError,
    KeyError,
    TypeError,
    AttributeError,
    ValueError,
    OverflowError,
    RuntimeError,
    NotImplementedError,
    EOFError,
    OSError,
    struct.error,
    zlib.error,
    json.JSONDecodeError,
    UnicodeError,
    RecursionError,
)
#: Errors that say something about the path or the machine, not the file's content: never reworded.
_NOT_DAMAGE: tuple[type[BaseException], ...] = (
    LfreconError,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    MemoryError,
)
#: The most a lossless codec expands (deflate's limit is ~1032:1); more than this per stored byte is not data.
MAX_EXPANSION = 1032
#: Below this many bytes any declared size is accepted from a compressed file (small images compress well too).
SMALL_DECLARED_BYTES = 2**30
#: A strip, tile or chunk may decode to this many bytes whatever it stores (beyond it, at most MAX_EXPANSION
#: times its stored bytes): the libraries decode each into one buffer of the declared segment shape.
SMALL_SEGMENT_BYTES = 64 * 2**20
#: Longest raw error text kept in a message.
_MAX_DETAIL = 200

_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_level = logging.NOTSET


@contextmanager
def quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's logger inside the block (a damaged file can make it log megabytes a minute).

    Nested and concurrent blocks share one silence; the logger's level is restored when the last one ends.
    """
    global _quiet_depth, _saved_level
    logger = logging.getLogger("tifffile")
    with _quiet_lock:
        if _quiet_depth == 0:
            _saved_level = logger.level
            logger.setLevel(logging.CRITICAL + 1)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                logger.setLevel(_saved_level)


def describe(exc: BaseException) -> str:
    """A short ``Type: message`` for a raw library error."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(text) > _MAX_DETAIL:
        text = text[:_MAX_DETAIL] + "…"
    kind = type(exc).__name__
    if type(exc).__module__ not in ("builtins", "__main__"):
        kind = f"{type(exc).__module__.split('.')[0]}.{kind}"  # "zlib.error", not just "error"
    return f"{kind}: {text}" if text else kind


@contextmanager
def reading(path: str | Path) -> Iterator[None]:
    """Read ``path`` inside this block: raw library errors become :class:`DamagedFile`, tifffile stays quiet."""
    with quiet_tifffile():
        try:
            yield
        except _NOT_DAMAGE:
            raise
        except RAW_READ_ERRORS as exc:
            raise DamagedFile(path, describe(exc)) from exc


class GuardedArray:
    """A lazily read array (zarr, tifffile's zarr view) whose every read is a :func:`reading` of ``path``.

    Give it to ``dask.array.from_array``: a chunk that fails to decode when the
    dask graph runs raises :class:`DamagedFile` naming the file.
    """

    def __init__(self, array: Any, path: str | Path, check: Callable[[Any], None] | None = None) -> None:
        self.array = array
        self.path = str(path)
        #: Called with each read's key before the library decodes it (e.g. to refuse a chunk header
        #: that declares more bytes than a chunk holds, which the codec would allocate first).
        self.check = check
        self.shape = tuple(int(n) for n in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        with reading(self.path):
            if self.check is not None:
                self.check(key)
            return np.asarray(self.array[key])


def declared_bytes(shape: Sequence[int], dtype: Any) -> int:
    """Bytes of an array of ``shape`` and ``dtype``, in exact integers (no overflow on absurd shapes)."""
    return math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize


def check_declared_size(
    path: str | Path,
    shape: Sequence[int],
    dtype: Any,
    *,
    stored_bytes: int,
    compressed: bool,
    small_bytes: int | None = None,
) -> int:
    """Refuse pixels the file cannot hold; return the declared size in bytes.

    ``stored_bytes`` is what the file (or store) holds for the pixels. Uncompressed
    pixels cannot take more bytes than that (the file would be truncated);
    compressed ones cannot expand more than :data:`MAX_EXPANSION` times, except
    that anything up to ``small_bytes`` (default :data:`SMALL_DECLARED_BYTES`) is allowed.
    """
    if any(int(n) < 0 for n in shape):
        raise DamagedFile(path, f"declares a negative dimension in shape {tuple(shape)}")
    size = declared_bytes(shape, dtype)
    if compressed:
        small = SMALL_DECLARED_BYTES if small_bytes is None else small_bytes
        limit = max(int(stored_bytes) * MAX_EXPANSION, small)
        if size > limit:
            raise DamagedFile(
                path,
                f"declares {_gib(size)} of pixels (shape {tuple(int(n) for n in shape)}, {np.dtype(dtype)}) "
                f"from {int(stored_bytes)} stored bytes, more than any codec expands",
            )
    elif size > stored_bytes:
        raise DamagedFile(
            path,
            f"truncated: declares {size} bytes of pixels (shape {tuple(int(n) for n in shape)}, {np.dtype(dtype)}) "
            f"but holds {int(stored_bytes)}",
        )
    return size


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.3g} GiB" if nbytes >= 2**30 else f"{nbytes} bytes"


__all__ = [
    "MAX_EXPANSION",
    "GuardedArray",
    "RAW_READ_ERRORS",
    "check_declared_size",
    "declared_bytes",
    "describe",
    "quiet_tifffile",
    "reading",
]
