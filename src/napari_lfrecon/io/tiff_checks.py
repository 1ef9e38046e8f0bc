"""Checks that refuse a damaged TIFF before tifffile reads its pixels (see :mod:`.damage`).

tifffile tolerates much damage by logging and carrying on: it follows a
looping chain of page directories forever, reads fewer pages of a truncated
ImageJ stack, pads short strips, and allocates whatever tile shape a header
declares. These checks run first and raise
:class:`~napari_lfrecon.jobs.DamagedFile` saying what is wrong.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..jobs.protocol import DamagedFile
from . import damage
from .damage import check_declared_size, declared_bytes

#: Most pages (image file directories) a TIFF may have before it is refused unread.
MAX_PAGES = 1_000_000
#: Byte order marks, and for each TIFF version: (offset format, tag-count format, bytes per tag entry).
_BYTE_ORDERS = {b"II": "<", b"MM": ">"}
_TIFF_VERSIONS = {42: ("I", "H", 12), 43: ("Q", "Q", 20)}


def scan_ifd_chain(path: str | Path, max_pages: int = MAX_PAGES) -> int:
    """Walk the chain of image file directories (one per page) and return how many there are.

    Raises :class:`DamagedFile` when the chain loops (a damaged next-IFD
    offset pointing back: tifffile would read the same page forever) or is
    longer than ``max_pages``, and when a page directory lies past the end of
    the file (truncated: tifffile would quietly read fewer pages). Reads a few
    bytes per page; runs before tifffile sees the file. Files that are not TIFF are left to tifffile
    to refuse.
    """
    path = Path(path)
    file_bytes = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(16)
        order = _BYTE_ORDERS.get(head[:2])
        if order is None or len(head) < 8:
            return 0
        version = struct.unpack(order + "H", head[2:4])[0]
        if version not in _TIFF_VERSIONS:
            return 0
        offset_format, count_format, entry_bytes = _TIFF_VERSIONS[version]
        offset_bytes = struct.calcsize(offset_format)
        count_bytes = struct.calcsize(count_format)
        first_at = 4 if version == 42 else 8
        if len(head) < first_at + offset_bytes:
            return 0
        offset = struct.unpack(order + offset_format, head[first_at : first_at + offset_bytes])[0]
        seen: dict[int, int] = {}
        while offset:
            if offset + count_bytes > file_bytes:
                raise DamagedFile(
                    path, f"truncated: page {len(seen)} starts at byte {offset} but the file ends at {file_bytes}"
                )
            if offset in seen:
                raise DamagedFile(
                    path, f"its page directories loop: page {len(seen)} points back to page {seen[offset]}"
                )
            if len(seen) >= max_pages:
                raise DamagedFile(path, f"has more than {max_pages} pages; a file this package reads has fewer")
            seen[offset] = len(seen)
            handle.seek(offset)
            count = struct.unpack(order + count_format, handle.read(count_bytes))[0]
            next_at = offset + count_bytes + count * entry_bytes
            if next_at + offset_bytes > file_bytes:
                raise DamagedFile(path, f"truncated: the directory of page {len(seen) - 1} is cut off")
            handle.seek(next_at)
            offset = struct.unpack(order + offset_format, handle.read(offset_bytes))[0]
    return len(seen)


def check_tiff_series(path: str | Path, series: Any) -> None:
    """Refuse a series whose pixels the file cannot hold: truncated pages, missing pages, absurd declared sizes.

    Runs before any pixel is read. Contiguous uncompressed data must end
    within the file; otherwise every page's strips or tiles must lie within
    the file and hold (uncompressed) or be able to expand to (compressed) the
    declared pixels. At most :data:`MAX_PAGES` pages are visited.
    """
    path = Path(path)
    file_bytes = path.stat().st_size
    if series.dtype is None:
        raise DamagedFile(path, "its first series has no pixel type")
    shape = tuple(int(n) for n in series.shape)
    declared = declared_bytes(shape, series.dtype)
    offset = series.dataoffset
    if offset is not None:
        if offset + declared > file_bytes:
            raise DamagedFile(
                path,
                f"truncated: its pixels (shape {shape}, {series.dtype}) need bytes {offset}–{offset + declared} "
                f"but the file ends at {file_bytes}",
            )
        return
    pages = series.pages
    if len(pages) > MAX_PAGES:
        raise DamagedFile(path, f"its first series has {len(pages)} pages; more than {MAX_PAGES} are not read")
    stored = 0
    compressed = False
    keyframes_checked: set[int] = set()
    for index, page in enumerate(pages):
        if page is None:
            raise DamagedFile(path, f"page {index} of its first series is missing")
        keyframe = getattr(page, "keyframe", page)
        if id(keyframe) not in keyframes_checked:
            _check_segment_size(path, keyframe)
            keyframes_checked.add(id(keyframe))
        # bit-packed samples (1-bit masks, 12-bit) take fewer bytes than their dtype, like compressed ones
        packed = int(keyframe.bitspersample) != np.dtype(series.dtype).itemsize * 8
        compressed = compressed or packed or int(keyframe.compression) != 1
        for start, count in zip(page.dataoffsets, page.databytecounts, strict=False):
            if start + count > file_bytes:
                needed = f"bytes {start}–{start + count}"
                raise DamagedFile(path, f"truncated: page {index} needs {needed} but the file ends at {file_bytes}")
            stored += count
    check_declared_size(path, shape, series.dtype, stored_bytes=stored, compressed=compressed)


def check_imagej_count(path: Path, ij: Any, shape: tuple[int, ...], axes: str) -> None:
    """Refuse an ImageJ file whose series holds fewer planes than its metadata's ``images`` (a truncated file).

    tifffile falls back to the pages it finds when an ImageJ stack is cut
    short, which would silently read a smaller image.
    """
    if not isinstance(ij, dict):
        return
    images = ij.get("images")
    if not isinstance(images, int) or images <= 1:
        return
    planes = math.prod(n for n, a in zip(shape, axes, strict=False) if a not in "YXS")
    if planes < images:
        raise DamagedFile(path, f"truncated: its ImageJ metadata declares {images} images but the file holds {planes}")


def _check_segment_size(path: Path, keyframe: Any) -> None:
    """Refuse strips or tiles that are not all listed, or whose shape no file of this size holds.

    A damaged TileLength can declare tiles of billions of pixels for a tiny
    image (tifffile decodes each segment into one buffer, padded to the tile
    shape); a damaged depth or sample count can declare tens of thousands of
    segments of which the file lists four.
    """
    declared = math.prod(int(n) for n in keyframe.chunked)
    listed = len(keyframe.dataoffsets)
    if listed < declared:
        raise DamagedFile(path, f"its pages declare {declared} strips or tiles but list {listed}")
    segment = tuple(int(n) for n in keyframe.chunks)
    largest = max((int(n) for n in keyframe.databytecounts), default=0)
    try:
        check_declared_size(
            path, segment, keyframe.dtype, stored_bytes=largest, compressed=True, small_bytes=damage.SMALL_SEGMENT_BYTES
        )
    except DamagedFile as exc:
        raise DamagedFile(path, f"its strips or tiles: {exc.what}") from None
