"""Rearrange lenslet-aligned raw light-field frames into angular views and back.

A raw frame ``(…, Y, X)`` with ``Y = Ny·Nnum`` and ``X = Nx·Nnum`` holds pixel
``(u, v)`` of lenslet ``(j, l)`` at ``(j·Nnum + u, l·Nnum + v)``. View
``a = u·Nnum + v`` (raster order, ``u`` = row within the lenslet) is the
``(Ny, Nx)`` image of that pixel under every lenslet. Works on numpy arrays and
torch tensors alike; the two functions are exact inverses (pure permutations).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def _permute(x: ArrayT, order: tuple[int, ...]) -> ArrayT:
    if isinstance(x, torch.Tensor):
        return x.permute(order)
    return np.transpose(x, order)


def raw_to_views(raw: ArrayT, nnum: int) -> ArrayT:
    """``(…, Y, X)`` lenslet-aligned raw frame(s) to views ``(…, Nnum², Y/Nnum, X/Nnum)``."""
    nnum = int(nnum)
    if nnum < 1:
        raise ValueError(f"nnum (pixels per lenslet) must be a positive integer, got {nnum}")
    if raw.ndim < 2:
        raise ValueError(f"a raw light field must be at least 2D (…, Y, X), got shape {tuple(raw.shape)}")
    height, width = raw.shape[-2:]
    if height % nnum or width % nnum:
        raise ValueError(
            f"raw frame {height}×{width} is not a whole number of {nnum}×{nnum}-pixel lenslets "
            "(crop or rectify it to the lenslet grid first)"
        )
    lead = tuple(raw.shape[:-2])
    ny, nx = height // nnum, width // nnum
    k = len(lead)
    blocks = raw.reshape(*lead, ny, nnum, nx, nnum)  # (…, j, u, l, v)
    order = (*range(k), k + 1, k + 3, k, k + 2)  # (…, u, v, j, l)
    return _permute(blocks, order).reshape(*lead, nnum * nnum, ny, nx)


def views_to_raw(views: ArrayT, nnum: int) -> ArrayT:
    """Views ``(…, Nnum², Ny, Nx)`` to the lenslet-aligned raw frame(s) ``(…, Ny·Nnum, Nx·Nnum)``."""
    nnum = int(nnum)
    if nnum < 1:
        raise ValueError(f"nnum (pixels per lenslet) must be a positive integer, got {nnum}")
    if views.ndim < 3 or views.shape[-3] != nnum * nnum:
        raise ValueError(f"views must be (…, {nnum * nnum}, Ny, Nx) for Nnum = {nnum}, got shape {tuple(views.shape)}")
    lead = tuple(views.shape[:-3])
    ny, nx = views.shape[-2:]
    k = len(lead)
    blocks = views.reshape(*lead, nnum, nnum, ny, nx)  # (…, u, v, j, l)
    order = (*range(k), k + 2, k, k + 3, k + 1)  # (…, j, u, l, v)
    return _permute(blocks, order).reshape(*lead, ny * nnum, nx * nnum)
