"""The ``lightfield-calibrate`` engine: the lenslet grid of a light-field microscope, streamed like any engine.

``CalibrateInputs.data`` is the raw light-field frame ``(Y, X)`` the grid is
for; ``frames["radiometry"]`` is the radiometry (white) frame the grid is
measured on (required, same size) and ``frames["dark"]`` the dark frame
(optional). ``optics`` holds the nominal optics by the CLI's names
(``lenslet_pitch_um``, ``camera_pixel_um``, ``relay_magnification``, …); with
the lenslet pitch and the camera pixel, the nominal pitch on the sensor is
compared with the measured one: more than :data:`PITCH_CONTRADICTION` apart is
an error (wrong optics), less is only noted in the calibration's ``notes``.

The result is the :class:`~napari_lfrecon.psf.calibrate_lightfield.LightFieldCalibration`
(a grid, not a volume: it has no ``volume()``); rectification, the views and
the implied LFM PSF are made from it by the caller (see
:mod:`napari_lfrecon.io.calibration_files`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..psf.calibrate_lightfield import calibrate_lightfield_stream, nominal_pitch_px
from . import register
from .base import CalibrateInputs, CalibrationEngine, EngineInputError, StopFlag, Update, never, param

#: Relative pitch disagreement above which the optics are taken to contradict the measurement (an error).
PITCH_CONTRADICTION = 0.10


@dataclass
class LightFieldCalibrateParams:
    """Lenslet-grid detection settings (GUI form and CLI flags)."""

    min_period: float = field(default=4.0, metadata=param("smallest lenslet pitch searched (px)", min=2.0, max=512.0))
    max_period: float = field(default=64.0, metadata=param("largest lenslet pitch searched (px)", min=4.0, max=1024.0))
    blocks: int = field(default=4, metadata=param("blocks per side in the lattice phase fit", min=2, max=32))


def check_pitch(measured_pitch_px: float, optics: dict[str, Any]) -> float | None:
    """The nominal pitch (px) the optics imply, or ``None`` without them.

    Raises :class:`EngineInputError` when it contradicts ``measured_pitch_px`` by
    more than :data:`PITCH_CONTRADICTION`; smaller disagreements are only noted.
    """
    pitch, pixel = optics.get("lenslet_pitch_um"), optics.get("camera_pixel_um")
    if not pitch or not pixel:
        return None
    relay = float(optics.get("relay_magnification") or 1.0)
    nominal = nominal_pitch_px(pitch, pixel, relay)
    if abs(measured_pitch_px / nominal - 1) > PITCH_CONTRADICTION:
        raise EngineInputError(
            f"the optics contradict the measured lenslet grid: measured pitch {measured_pitch_px:.3f} px, "
            f"expected {nominal:.3f} px from lenslet pitch {pitch:g} µm / ({pixel:g} µm camera pixel ÷ relay "
            f"{relay:g}); check the lenslet pitch, camera pixel and relay magnification"
        )
    return nominal


@register
class LightFieldCalibrate(CalibrationEngine):
    """Measure the lenslet grid (pitch, rotation, offset) from a radiometry frame."""

    name = "lightfield-calibrate"
    title = "Light-field lenslet grid"
    modalities = ("lfm",)
    Params = LightFieldCalibrateParams

    def run(
        self,
        inputs: CalibrateInputs,
        params: LightFieldCalibrateParams,
        *,
        device: torch.device,
        should_stop: StopFlag = never,
    ) -> Iterator[Update]:
        """Stream the lattice fit; the result is the :class:`LightFieldCalibration`."""
        radiometry = inputs.frames["radiometry"]
        dark = inputs.frames.get("dark")
        settings = {"min_period": params.min_period, "max_period": params.max_period, "blocks": params.blocks}
        calibration = None
        for update in calibrate_lightfield_stream(radiometry, dark, should_stop=should_stop, **settings):
            if update.kind == "result":
                calibration = update.data
                break
            yield Update("progress", 0.5 * update.fraction, update.message)
            if should_stop():
                return
        if calibration is None:
            return
        nominal = check_pitch(calibration.pitch_px, inputs.optics)
        if nominal is not None:
            # measured again with the nominal pitch so that its note (if any) is the library's standard one
            for update in calibrate_lightfield_stream(
                radiometry, dark, nominal_pitch_px=nominal, should_stop=should_stop, **settings
            ):
                if update.kind == "result":
                    calibration = update.data
                    break
                yield Update("progress", 0.5 + 0.5 * update.fraction, f"{update.message} (with the nominal pitch)")
                if should_stop():
                    return
            else:
                return
        yield Update("progress", 1.0, "lenslet grid measured")
        confidence = f", lattice contrast {calibration.contrast:.0f}×" if calibration.contrast is not None else ""
        yield Update("result", 1.0, f"lenslet pitch {calibration.pitch_px:.4f} px{confidence}", calibration)

    def check(self, inputs: CalibrateInputs) -> None:  # type: ignore[override]
        """A 2-D light field and a radiometry frame (and dark frame, if given) of the same size."""
        raw = np.asarray(inputs.data)
        if raw.ndim != 2:
            raise EngineInputError(f"the light field has shape {raw.shape}; expected one raw frame (Y, X)")
        radiometry = inputs.frames.get("radiometry")
        if radiometry is None:
            raise EngineInputError(
                "the lenslet grid is measured on a radiometry (white) frame: give frames['radiometry']"
            )
        for what, frame in (("radiometry", radiometry), ("dark", inputs.frames.get("dark"))):
            if frame is not None and np.shape(frame) != raw.shape:
                raise EngineInputError(
                    f"the {what} frame is {np.shape(frame)} but the light field is {raw.shape}; expected the same size"
                )
