"""The one place that chooses the torch device every engine and operator runs on."""

from __future__ import annotations

import os

import torch

from .jobs.protocol import DeviceUnavailable

#: Environment variable that overrides automatic selection (e.g. ``cpu``, ``cuda:1``, ``mps``).
DEVICE_ENV = "LFRECON_DEVICE"


def select_device(preferred: str | torch.device | None = None) -> torch.device:
    """Return the device to compute on: CUDA, then MPS, then CPU.

    ``preferred`` (or the ``LFRECON_DEVICE`` environment variable) overrides the
    automatic choice; ``"auto"`` or ``None`` means automatic. A requested
    accelerator that is not available, or an unknown name, raises
    :class:`~napari_lfrecon.jobs.DeviceUnavailable` (a ``RuntimeError``) with the reason.
    """
    choice = preferred if preferred is not None else os.environ.get(DEVICE_ENV, "auto")
    if isinstance(choice, torch.device):
        return choice
    choice = str(choice).strip().lower()
    if choice in ("", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(choice)
    except (RuntimeError, ValueError):
        raise DeviceUnavailable(f"unknown device {choice!r}: expected cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"device {choice!r} requested but CUDA is not available here (use cpu or auto)")
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceUnavailable(f"device {choice!r} requested but MPS is not available here (use cpu or auto)")
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceUnavailable(f"device {choice!r} is not supported: expected cpu, cuda, cuda:N, mps or auto")
    return device


def describe_device(device: torch.device) -> str:
    """A short human-readable label for ``device`` (shown in the GUI and CLI)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"CUDA: {torch.cuda.get_device_name(index)}"
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"
