"""Simulated acquisitions: any physics operator, a photon budget, background and camera noise.

The measurement model (per pixel, in photo-electrons) is

    clean = scale · A(volume) + background_e
    noisy = Poisson(clean) + Normal(0, read_noise_e²)

and a camera reports ``ADU = noisy_e / gain + offset`` — the inverse of
:meth:`napari_lfrecon.camera.Camera.to_electrons` (``electrons = gain · (ADU − offset)``).

``scale`` is chosen so that the clean signal ``scale · A(volume)`` meets the
photon budget, so a reconstruction ``x̂`` made from ``noisy − background_e``
with the same operator estimates ``scale · volume``: compare ``x̂ / scale`` with
the ground-truth volume.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..device import select_device
from ..physics.base import Operator

#: Read noise of a typical scientific CMOS camera (electrons RMS), the default of the simulators.
DEFAULT_READ_NOISE_E = 1.5
_UINT16_MAX = np.iinfo(np.uint16).max


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (int, np.integer)):
        return np.random.default_rng(seed)
    raise ValueError(f"seed must be an int, a numpy Generator or None, got {type(seed).__name__}")


def add_camera_noise(
    clean_electrons: np.ndarray,
    *,
    read_noise_e: float = DEFAULT_READ_NOISE_E,
    offset_adu: float = 0.0,
    gain_e_per_adu: float = 1.0,
    seed: int | np.random.Generator | None = 0,
    dtype: Literal["float32", "uint16"] = "float32",
) -> np.ndarray:
    """Turn expected photo-electron counts into a noisy raw camera frame in ADU.

    Shot noise is Poisson on ``clean_electrons`` (the per-pixel mean, ≥ 0), read
    noise is Gaussian with standard deviation ``read_noise_e`` electrons, and
    the result is converted as ``ADU = electrons / gain_e_per_adu + offset_adu``.
    With ``dtype="float32"`` the ADU values are returned unrounded (an ideal
    analogue read-out: the mean and variance are exactly the model's); with
    ``"uint16"`` they are rounded and clipped to ``[0, 65535]`` like a real
    16-bit camera (choose an offset large enough that the clipping at 0 does
    not bias dark pixels). Deterministic for a given integer ``seed``.
    """
    clean = np.asarray(clean_electrons, dtype=np.float64)
    if clean.size and (not np.all(np.isfinite(clean)) or clean.min() < 0):
        raise ValueError("clean_electrons must be finite and ≥ 0 (expected photo-electrons per pixel)")
    if not np.isfinite(read_noise_e) or read_noise_e < 0:
        raise ValueError(f"read_noise_e must be ≥ 0 electrons RMS, got {read_noise_e!r}")
    if not np.isfinite(gain_e_per_adu) or gain_e_per_adu <= 0:
        raise ValueError(f"gain_e_per_adu must be > 0 electrons per ADU, got {gain_e_per_adu!r}")
    if not np.isfinite(offset_adu):
        raise ValueError(f"offset_adu must be a finite number of ADU, got {offset_adu!r}")
    if dtype not in ("float32", "uint16"):
        raise ValueError(f"dtype must be 'float32' or 'uint16', got {dtype!r}")
    rng = _rng(seed)
    electrons = rng.poisson(clean).astype(np.float64)
    if read_noise_e > 0:
        electrons += rng.normal(0.0, read_noise_e, size=clean.shape)
    adu = electrons / gain_e_per_adu + offset_adu
    if dtype == "uint16":
        return np.clip(np.rint(adu), 0, _UINT16_MAX).astype(np.uint16)
    return adu.astype(np.float32)


def _operator_device_dtype(operator: nn.Module) -> tuple[torch.device | None, torch.dtype]:
    """Device and floating dtype of the operator's first floating parameter or buffer (None, float32 if none)."""
    for tensor in list(operator.parameters()) + list(operator.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return None, torch.float32


def simulate_acquisition(
    volume: np.ndarray,
    operator: Operator | nn.Module,
    *,
    photons: float,
    photons_at: Literal["peak", "mean"] = "peak",
    background_e: float = 0.0,
    read_noise_e: float = DEFAULT_READ_NOISE_E,
    seed: int | np.random.Generator | None = 0,
    device: str | torch.device | None = None,
    clip_negative: bool = False,
) -> dict[str, Any]:
    """Simulate a noisy measurement of ``volume`` through any physics ``operator``.

    ``volume`` is a non-negative ``(Z, Y, X)`` array; ``operator`` is a physics
    :class:`~napari_lfrecon.physics.base.Operator` (e.g. ``modalities.forward_model(psf,
    shape).operator``) or any ``nn.Module`` whose ``forward`` maps a batched ``(1, Z, Y, X)`` tensor to a
    batched measurement of any shape ``(1, ...)`` (widefield stack, LF views,
    XLFM frame, ...). ``A(volume)`` is scaled so that its maximum
    (``photons_at="peak"``, the default) or its mean over all pixels
    (``"mean"``) equals ``photons`` expected signal electrons, a uniform
    ``background_e`` is added, then Poisson shot noise and Gaussian read noise
    (``read_noise_e``, electrons RMS) as in :func:`add_camera_noise` with unit
    gain and no offset.

    Returns a dict of float32 arrays without the batch axis, all in electrons:
    ``clean`` (the expected measurement, ``scale · A(volume) + background_e``),
    ``noisy`` (one noisy realisation; it can dip below 0 from read noise unless
    ``clip_negative``), plus the float ``scale``, ``background_e`` and
    ``read_noise_e``. A reconstruction of ``noisy − background_e`` through the
    same operator estimates ``scale · volume``.

    The operator runs on ``device`` (moved there if given), else on the device
    its parameters/buffers live on, else on the automatically selected device;
    in the dtype of its floating buffers (float32 if it has none), without
    gradients.
    """
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise ValueError(f"volume must be a (Z, Y, X) array, got shape {vol.shape}")
    if not np.all(np.isfinite(vol)) or (vol.size and vol.min() < 0):
        raise ValueError("volume must be finite and ≥ 0 (a fluorophore density)")
    if not isinstance(operator, nn.Module):
        raise ValueError(f"operator must be a torch nn.Module, got {type(operator).__name__}")
    if not np.isfinite(photons) or photons <= 0:
        raise ValueError(f"photons must be > 0 expected electrons, got {photons!r}")
    if photons_at not in ("peak", "mean"):
        raise ValueError(f"photons_at must be 'peak' or 'mean', got {photons_at!r}")
    if not np.isfinite(background_e) or background_e < 0:
        raise ValueError(f"background_e must be ≥ 0 electrons per pixel, got {background_e!r}")

    op_device, dtype = _operator_device_dtype(operator)
    if device is not None:
        target = select_device(device)
        operator.to(target)
    else:
        target = op_device if op_device is not None else select_device(None)
    x = torch.as_tensor(vol, dtype=dtype, device=target)[None]
    with torch.no_grad():
        y = operator(x)
    if not isinstance(y, torch.Tensor) or y.ndim < 1 or y.shape[0] != 1:
        raise ValueError("the operator must return a batched tensor (1, ...) for a (1, Z, Y, X) input")
    signal = y[0].detach().to("cpu", torch.float64).numpy()
    if not np.all(np.isfinite(signal)):
        raise ValueError("the operator returned non-finite values")
    reference = float(signal.max()) if photons_at == "peak" else float(signal.mean())
    if reference <= 0:
        raise ValueError(f"the operator's output has no positive {photons_at}; cannot scale it to {photons} photons")
    scale = float(photons) / reference
    # A linear operator of a non-negative volume is non-negative up to FFT round-off; clamp that round-off
    # so the Poisson mean is valid.
    clean = np.clip(scale * signal, 0.0, None) + float(background_e)
    noisy = add_camera_noise(clean, read_noise_e=read_noise_e, seed=seed)
    if clip_negative:
        np.clip(noisy, 0.0, None, out=noisy)
    return {
        "clean": clean.astype(np.float32),
        "noisy": noisy,
        "scale": scale,
        "background_e": float(background_e),
        "read_noise_e": float(read_noise_e),
    }
