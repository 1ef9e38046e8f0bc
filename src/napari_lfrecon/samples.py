"""Shipped sample data (no Qt): simulated acquisitions with their PSFs and ground truths.

The files in ``sample_data/`` are made by ``scripts/make_sample_data.py``
(seeded; the command is in ``sample_data/README.md``). Each sample ``NAME`` is
``NAME.tif`` (the measurement in photo-electrons, with its sampling),
``NAME.psf.safetensors`` (the PSF object) and, for simulated samples,
``NAME_ground_truth.tif`` (on the grid of the volume RL returns for it).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .psf.model import PSF, PSF_FILE_SUFFIX

#: Names of the shipped samples, with one line saying what each is.
SAMPLES: dict[str, str] = {
    "widefield": "Widefield beads (simulated): sub-resolution beads through a 0.8 NA widefield PSF",
    "lfm": "Light field: bubtub (simulated): bubbles and tubes through a wave-optics LFM PSF",
    "xlfm": "XLFM: zebrafish-like (simulated): sparse neurons through a 27-lenslet Fourier light-field PSF",
}
SAMPLE_NAMES: tuple[str, ...] = tuple(SAMPLES)


def sample_dir() -> Path:
    """The folder holding the shipped sample files."""
    return Path(str(resources.files("napari_lfrecon") / "sample_data"))


def load_sample(name: str) -> dict[str, Any]:
    """Load sample ``name``: ``data``, ``psf``, ``voxel_size`` (of the reconstructed volume, µm),
    ``data_scale`` (the measurement's sampling, one number per axis), ``ground_truth`` (when
    simulated), ``name``, ``description`` and ``info`` (how it was made).
    """
    from .io.tiff import read_tiff

    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}; available samples: {', '.join(SAMPLE_NAMES)}")
    folder = sample_dir()
    data_path = folder / f"{name}.tif"
    if not data_path.is_file():
        raise FileNotFoundError(f"sample file {data_path} is missing; run scripts/make_sample_data.py")
    measurement = read_tiff(data_path)
    psf = PSF.load(folder / f"{name}{PSF_FILE_SUFFIX}")
    info_path = folder / f"{name}.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    sample: dict[str, Any] = {
        "name": name,
        "description": SAMPLES[name],
        "data": np.asarray(measurement.data, dtype=np.float32),
        "psf": psf,
        "voxel_size": tuple(psf.voxel_size),
        "data_scale": tuple(info.get("data_scale", measurement.voxel_size or ())),
        "info": info,
    }
    truth_path = folder / f"{name}_ground_truth.tif"
    if truth_path.is_file():
        sample["ground_truth"] = np.asarray(read_tiff(truth_path).data, dtype=np.float32)
    return sample
