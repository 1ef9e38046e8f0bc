"""Resample a widefield PSF to another voxel size, keeping its centre at ``shape // 2``."""

from __future__ import annotations

import numpy as np
import torch

from .model import PSF


def resample_psf(psf: PSF, voxel_size: tuple[float, float, float]) -> PSF:
    """A copy of a widefield ``psf`` sampled at ``voxel_size`` (µm), normalised to sum 1.

    Linear interpolation about the centre voxel, so the centre stays at
    ``shape // 2``; the physical extent is kept (the new shape is the old
    extent divided by the new voxel size, rounded to keep the centre parity).
    """
    if psf.modality != "widefield":
        raise ValueError(f"only widefield PSFs can be resampled this way, not {psf.modality}")
    old = np.asarray(psf.voxel_size, dtype=np.float64)
    new = np.asarray(voxel_size, dtype=np.float64)
    if np.any(new <= 0):
        raise ValueError(f"voxel size must be positive, got {tuple(new)}")
    array = torch.as_tensor(np.asarray(psf.array, dtype=np.float64))
    shape = np.asarray(array.shape)
    half_extent = (shape // 2) * old
    half = np.maximum(np.floor(half_extent / new + 1e-9).astype(int), 0)
    new_shape = 2 * half + 1
    coords = []
    for axis in range(3):
        # Positions of the new samples in old-index units, centred on the old centre index.
        positions = (np.arange(new_shape[axis]) - half[axis]) * new[axis] / old[axis] + shape[axis] // 2
        coords.append(torch.as_tensor(positions))
    grid = torch.stack(torch.meshgrid(*coords, indexing="ij"), dim=-1)
    # grid_sample wants (x, y, z) order in [-1, 1] with align_corners=True.
    norm = torch.stack([2 * grid[..., 2 - i] / max(shape[2 - i] - 1, 1) - 1 for i in range(3)], dim=-1)
    out = torch.nn.functional.grid_sample(
        array[None, None], norm[None], mode="bilinear", padding_mode="zeros", align_corners=True
    )[0, 0]
    out = torch.clamp(out, min=0)
    out = out / out.sum()
    return PSF(
        array=out.numpy().astype(np.float32),
        modality="widefield",
        voxel_size=tuple(float(v) for v in new),
        optics=dict(psf.optics),
        zernike=psf.zernike.copy(),
        z_planes_um=(np.arange(new_shape[0]) - half[0]) * new[0],
        arrays={k: v.copy() for k, v in psf.arrays.items()},
    )
