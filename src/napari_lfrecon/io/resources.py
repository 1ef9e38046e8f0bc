"""Where the files shipped with the package live (samples, PSFs, small trained weights)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample_dir() -> Path:
    """The folder holding the shipped sample files and weights."""
    return Path(str(resources.files("napari_lfrecon") / "sample_data"))


def shipped_file(name: str) -> Path:
    """The path of shipped file ``name`` (it may not exist: callers say what to do instead)."""
    return sample_dir() / name
