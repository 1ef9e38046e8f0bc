"""The ``xlfm-calibrate`` engine: the view centres of an XLFM frame, streamed like any engine.

``CalibrateInputs.data`` is a white (uniform) or bead XLFM frame ``(Y, X)``;
``frames["dark"]`` the dark frame (optional). ``optics`` is empty (no nominal
optics), ``{"xlfm": XLFMOptics}``, or the fields of an XLFM PSF's optics (with
``centres``), as :func:`~napari_lfrecon.psf.calibrate_xlfm.xlfm_optics_from_dict`
reads them; nominal optics order the centres like their lenslets and report
mismatches. The result is the :class:`~napari_lfrecon.psf.calibrate_xlfm.XLFMCalibration`
(centres and a view size, not a volume: it has no ``volume()``; its ``crop``
gives the views).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..psf.calibrate_xlfm import SMOOTH_SIGMA_PX, calibrate_xlfm_stream, xlfm_optics_from_dict
from ..psf.xlfm import XLFMOptics
from . import register
from .base import CalibrateInputs, CalibrationEngine, EngineInputError, StopFlag, Update, never, param

#: Key of ``CalibrateInputs.optics`` holding an :class:`XLFMOptics` object (instead of its fields).
OPTICS_OBJECT_KEY = "xlfm"


@dataclass
class XLFMCalibrateParams:
    """View-finding settings (GUI form and CLI flags)."""

    view_height: int = field(default=0, metadata=param("view height in px (0: the optics' or the largest)", min=0))
    view_width: int = field(default=0, metadata=param("view width in px (0: the optics' or the largest)", min=0))
    smooth_sigma: float = field(
        default=SMOOTH_SIGMA_PX, metadata=param("Gaussian smoothing before thresholding (px)", min=0.0, max=10.0)
    )


def nominal_optics(optics: dict[str, Any]) -> XLFMOptics | None:
    """The nominal :class:`XLFMOptics` described by ``CalibrateInputs.optics`` (``None`` when empty)."""
    if not optics:
        return None
    given = optics.get(OPTICS_OBJECT_KEY)
    if isinstance(given, XLFMOptics):
        return given
    try:
        return xlfm_optics_from_dict(optics)
    except (TypeError, ValueError) as exc:
        raise EngineInputError(str(exc)) from exc


@register
class XLFMCalibrate(CalibrationEngine):
    """Find the XLFM view centres in a white or bead frame."""

    name = "xlfm-calibrate"
    title = "XLFM view centres"
    modalities = ("xlfm",)
    Params = XLFMCalibrateParams

    def run(
        self,
        inputs: CalibrateInputs,
        params: XLFMCalibrateParams,
        *,
        device: torch.device,
        should_stop: StopFlag = never,
    ) -> Iterator[Update]:
        """Stream detection, refinement and matching; the result is the :class:`XLFMCalibration`."""
        size = (params.view_height, params.view_width)
        for update in calibrate_xlfm_stream(
            inputs.data,
            dark=inputs.frames.get("dark"),
            optics=nominal_optics(inputs.optics),
            view_size=size if min(size) > 0 else None,
            smooth_sigma=params.smooth_sigma,
            should_stop=should_stop,
        ):
            yield update
            if update.kind == "result" or should_stop():
                return

    def check(self, inputs: CalibrateInputs) -> None:  # type: ignore[override]
        """One 2-D frame, a dark frame of the same size when given, and readable nominal optics."""
        image = np.asarray(inputs.data)
        if image.ndim != 2:
            raise EngineInputError(f"the XLFM frame has shape {image.shape}; expected one frame (Y, X)")
        dark = inputs.frames.get("dark")
        if dark is not None and np.shape(dark) != image.shape:
            raise EngineInputError(f"the dark frame is {np.shape(dark)} but the image is {image.shape}")
        nominal_optics(inputs.optics)
