"""Shipped sample data (no Qt): simulated acquisitions with their PSFs and ground truths.

The files in ``sample_data/`` are made by ``scripts/make_sample_data.py``
(seeded; the command is in ``sample_data/README.md``). Each sample ``NAME`` is
``NAME.tif`` (the measurement in photo-electrons, with its sampling),
``NAME.psf.safetensors`` (the PSF object) and, for simulated samples,
``NAME_ground_truth.tif`` (on the grid of the volume RL returns for it).
The anisotropic sample has no PSF (niiv learns the axial degradation from the
stack itself): its ``psf`` is ``None``, its ``voxel_size`` that of the
isotropic ground truth, its ground truth is stored as uint16 codes times
``info["ground_truth_scale"]``, and ``info["niiv_weights"]`` names the shipped
niiv weights trained on it (``niiv_weights`` holds their full path).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .io.resources import sample_dir
from .jobs.protocol import UnknownName
from .psf.model import PSF, PSF_FILE_SUFFIX

#: Names of the shipped samples, with one line saying what each is.
SAMPLES: dict[str, str] = {
    "widefield": "Widefield beads (simulated): sub-resolution beads through a 0.8 NA widefield PSF",
    "lfm": "Light field: bubtub (simulated): bubbles and tubes through a wave-optics LFM PSF",
    "xlfm": "XLFM: zebrafish-like (simulated): sparse neurons through a 27-lenslet Fourier light-field PSF",
    "anisotropic": "Anisotropic stack (simulated): bubbles and tubes, z 8× coarser than x and y, with niiv weights",
}
SAMPLE_NAMES: tuple[str, ...] = tuple(SAMPLES)


def load_sample(name: str) -> dict[str, Any]:
    """Load sample ``name``: ``data``, ``psf``, ``voxel_size`` (of the reconstructed volume, µm),
    ``data_scale`` (the measurement's sampling, one number per axis), ``ground_truth`` (when
    simulated), ``name``, ``description`` and ``info`` (how it was made).
    """
    from .io.tiff import read_tiff

    if name not in SAMPLES:
        raise UnknownName(f"unknown sample {name!r}; available samples: {', '.join(SAMPLE_NAMES)}")
    folder = sample_dir()
    data_path = folder / f"{name}.tif"
    if not data_path.is_file():
        raise FileNotFoundError(f"sample file {data_path} is missing; run scripts/make_sample_data.py")
    measurement = read_tiff(data_path)
    psf_path = folder / f"{name}{PSF_FILE_SUFFIX}"
    psf = PSF.load(psf_path) if psf_path.is_file() else None
    info_path = folder / f"{name}.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    if psf is None and "voxel_size" not in info:
        raise FileNotFoundError(f"sample {name!r} has neither a PSF file ({psf_path}) nor a voxel size in {info_path}")
    sample: dict[str, Any] = {
        "name": name,
        "description": SAMPLES[name],
        "data": np.asarray(measurement.data, dtype=np.float32),
        "psf": psf,
        "voxel_size": tuple(psf.voxel_size) if psf is not None else tuple(float(v) for v in info["voxel_size"]),
        "data_scale": tuple(info.get("data_scale", measurement.voxel_size or ())),
        "info": info,
    }
    truth_path = folder / f"{name}_ground_truth.tif"
    if truth_path.is_file():
        truth = np.asarray(read_tiff(truth_path).data)
        scale = float(info.get("ground_truth_scale", 1.0)) if truth.dtype.kind in "ui" else 1.0
        sample["ground_truth"] = truth.astype(np.float32) * np.float32(scale)
    if "niiv_weights" in info:
        sample["niiv_weights"] = str(folder / info["niiv_weights"])
        sample["anisotropy"] = int(info["anisotropy"])
    return sample
