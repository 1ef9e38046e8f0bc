"""Camera model: raw ADU to photo-electrons, the unit every likelihood-based engine works in."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass
class Camera:
    """A scientific camera's response.

    ``electrons = gain * (raw - dark) / flat`` where ``dark`` is the dark frame
    when given (else the constant ``offset``) and ``flat`` is the radiometry
    (flat-field) frame normalised to mean 1 over its illuminated pixels.

    Attributes: ``offset`` (ADU), ``gain`` (electrons per ADU), ``read_noise``
    (electrons RMS), optional ``dark`` and ``flat`` frames (same shape as one
    raw frame).
    """

    offset: float = 0.0
    gain: float = 1.0
    read_noise: float = 0.0
    dark: np.ndarray | None = None
    flat: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.gain <= 0:
            raise ValueError(f"camera gain must be positive (electrons per ADU), got {self.gain}")
        if self.read_noise < 0:
            raise ValueError(f"camera read noise must be ≥ 0 electrons, got {self.read_noise}")

    def to_electrons(self, raw: np.ndarray, *, clip_negative: bool = True) -> np.ndarray:
        """Return ``raw`` (ADU, any shape whose trailing axes match the frames) in photo-electrons, float32.

        Negative values (normal after dark subtraction) are clipped to 0 with a
        warning when ``clip_negative`` is set. ``raw`` is never modified.
        """
        data = np.asarray(raw, dtype=np.float32)
        frame_shape = data.shape[-2:]
        if self.dark is not None:
            dark = np.asarray(self.dark, dtype=np.float32)
            if dark.shape != frame_shape:
                raise ValueError(f"dark frame shape {dark.shape} does not match the data's frames {frame_shape}")
            data = data - dark
        else:
            data = data - np.float32(self.offset)
        if self.flat is not None:
            data = data / self.normalised_flat(frame_shape)
        data = data * np.float32(self.gain)
        if clip_negative and np.any(data < 0):
            fraction = float(np.mean(data < 0))
            warnings.warn(
                f"{fraction:.1%} of the pixels are negative after offset/dark subtraction; clipped to 0",
                stacklevel=2,
            )
            data = np.clip(data, 0, None)
        return data.astype(np.float32, copy=False)

    def normalised_flat(self, frame_shape: tuple[int, ...]) -> np.ndarray:
        """The flat (radiometry) frame scaled to mean 1 over illuminated pixels; dark pixels become 1e-3 of it."""
        flat = np.asarray(self.flat, dtype=np.float32)
        if flat.shape != tuple(frame_shape):
            raise ValueError(f"flat frame shape {flat.shape} does not match the data's frames {tuple(frame_shape)}")
        if self.dark is not None:
            flat = flat - np.asarray(self.dark, dtype=np.float32)
        else:
            flat = flat - np.float32(self.offset)
        lit = flat > 0.05 * np.percentile(flat, 99)
        if not np.any(lit):
            raise ValueError("the flat (radiometry) frame has no illuminated pixels")
        flat = flat / flat[lit].mean()
        # Pixels the flat says are dark (between lenslets) must not blow up the data.
        return np.maximum(flat, 1e-3).astype(np.float32)
