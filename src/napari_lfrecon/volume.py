"""The result type every engine returns through the scripting API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Volume:
    """A reconstructed volume.

    ``data`` is a float32 array in ``Z, Y, X`` order (``C, Z, Y, X`` when the
    input had a channel axis, with ``metadata["channel_axis"] == 0``);
    ``voxel_size`` is ``(dz, dy, dx)`` in micrometres; ``metadata`` holds the
    engine name, its parameters and timing.
    """

    data: np.ndarray
    voxel_size: tuple[float, float, float]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.float32)
        self.voxel_size = tuple(float(v) for v in self.voxel_size)  # type: ignore[assignment]
        if len(self.voxel_size) != 3:
            raise ValueError(f"voxel_size must be (dz, dy, dx), got {self.voxel_size!r}")
