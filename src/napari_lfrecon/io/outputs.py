"""Output paths checked before any work: never the input, never a half-written file, one-line reasons."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..jobs.protocol import EngineInputError

#: File kinds the writers produce, by suffix.
OUTPUT_SUFFIXES = (".tif", ".tiff", ".zarr")


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _writable_folder(folder: Path, what: str) -> None:
    if not folder.exists():
        raise EngineInputError(f"the {what} folder {folder} does not exist: create it first")
    if not folder.is_dir():
        raise EngineInputError(f"the {what} folder {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise EngineInputError(f"cannot write into {folder}: permission denied")


def check_output_file(path: str | Path, *, inputs: Sequence[str | Path] = (), overwrite: bool = False) -> Path:
    """``path`` as an output file (TIFF or OME-Zarr), or :class:`EngineInputError` saying why not.

    Refused: an unknown suffix (the writers make ``.tif``/``.tiff``/``.zarr``),
    the same file as an input, an existing folder where a TIFF should go, a
    missing or unwritable parent folder, and an existing TIFF without
    ``overwrite`` (an existing ``.zarr`` is left to the chunked runner, which
    resumes its own runs and refuses others without ``overwrite``).
    """
    out = Path(path)
    suffix = "".join(out.suffixes[-1:]).lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise EngineInputError(f"cannot write {out}: the output must end in .tif, .tiff or .zarr")
    for item in inputs:
        if _same(out, Path(item)) or out.resolve() == Path(item).resolve():
            raise EngineInputError(f"the output {out} is the input: choose another output path")
    if suffix != ".zarr":
        if out.is_dir():
            raise EngineInputError(f"the output {out} is an existing folder; give a file name ending in .tif")
        if out.exists() and not overwrite:
            raise EngineInputError(f"the output {out} exists: pass --overwrite to replace it")
    _writable_folder(out.parent if str(out.parent) else Path("."), "output")
    return out


def check_output_folder(path: str | Path) -> Path:
    """``path`` as an output folder (created when missing), or :class:`EngineInputError` saying why not."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise EngineInputError(f"the output folder {folder} is an existing file; give a folder")
    parent = folder
    while not parent.exists():
        parent = parent.parent
    _writable_folder(parent, "output")
    return folder
