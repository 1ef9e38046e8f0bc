"""Synthetic phantoms and simulated acquisitions (sample data, tests, benchmarks). No Qt, no napari."""

from __future__ import annotations

from .phantoms import beads, bubtub, filaments, zebrafish_like
from .simulate import DEFAULT_READ_NOISE_E, add_camera_noise, simulate_acquisition

__all__ = [
    "DEFAULT_READ_NOISE_E",
    "add_camera_noise",
    "beads",
    "bubtub",
    "filaments",
    "simulate_acquisition",
    "zebrafish_like",
]
