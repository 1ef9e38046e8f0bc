"""Where the files shipped with the package live (samples, PSFs, small trained weights).

In the repository they sit at the top level, ``sample_data/`` beside ``napari.yaml``; the package
(``src/napari_lfrecon/``) holds relative symbolic links to both, so an editable install reads the top-level
files in place and a wheel build copies their contents into the package (``[tool.setuptools.package-data]``).
A checkout whose links were not made (git with ``core.symlinks=false``) still finds the samples: then the
top-level folder of the source tree is used.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The folder's name, inside the installed package and at the repository's top level.
SAMPLE_FOLDER = "sample_data"


def sample_dir() -> Path:
    """The folder holding the shipped sample files and weights."""
    packaged = Path(str(resources.files("napari_lfrecon") / SAMPLE_FOLDER))
    if packaged.is_dir():
        return packaged
    # A source checkout without the package's link: the repository's top level (src/napari_lfrecon/io → root).
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / SAMPLE_FOLDER).is_dir() and (checkout / "pyproject.toml").is_file():
        return checkout / SAMPLE_FOLDER
    return packaged


def shipped_file(name: str) -> Path:
    """The path of shipped file ``name`` (it may not exist: callers say what to do instead)."""
    return sample_dir() / name
