"""The ``bead-fit`` engine: bead-stack PSF calibration streamed like any other engine.

``CalibrateInputs.data`` is the bead stack ``(Z, Y, X)``, ``voxel_size`` its voxel
size (µm) and ``optics`` the nominal optics: ``na``, ``wavelength_um`` and
``immersion_index`` (required). The result is the :class:`BeadCalibration`
(its ``volume()`` is the fitted PSF at the stack's voxel size); the χ² of both
fits arrive as metrics and the coefficients as ``zernike_<j>`` metrics. See :mod:`napari_lfrecon.psf.calibrate_bead`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..psf.calibrate_bead import DEFAULT_MODES, calibrate_bead_stream
from . import register
from .base import CalibrateInputs, CalibrationEngine, EngineInputError, StopFlag, Update, never, param

#: The nominal optics a bead fit starts from (``CalibrateInputs.optics``).
OPTICS = ("na", "wavelength_um", "immersion_index")


@dataclass
class BeadFitParams:
    """Bead-fit settings (GUI form and CLI flags)."""

    iterations: int = field(default=40, metadata=param("L-BFGS outer steps per fit", min=1, max=500))
    max_mode: int = field(default=14, metadata=param("fit ANSI modes 3 and 5 .. max_mode", min=5, max=35))
    fit_na: bool = field(default=False, metadata=param("also fit the numerical aperture"))
    loss: str = field(default="poisson", metadata=param("data term", choices=("poisson", "least-squares")))


@register
class BeadFit(CalibrationEngine):
    """Fit position, flux, background and Zernike aberrations to a bead stack."""

    name = "bead-fit"
    title = "Bead calibration (Zernike fit)"
    modalities = ("widefield",)
    Params = BeadFitParams

    def run(
        self, inputs: CalibrateInputs, params: BeadFitParams, *, device: torch.device, should_stop: StopFlag = never
    ) -> Iterator[Update]:
        """Stream the unaberrated then the aberrated fit; the result is the :class:`BeadCalibration`."""
        modes = tuple(j for j in (3, *range(5, params.max_mode + 1)))
        for update in calibrate_bead_stream(
            np.asarray(inputs.data),
            inputs.voxel_size,
            float(inputs.optics["na"]),
            float(inputs.optics["wavelength_um"]),
            float(inputs.optics["immersion_index"]),
            modes=modes or DEFAULT_MODES,
            fit_na=params.fit_na,
            loss=params.loss,
            iterations=params.iterations,
            should_stop=should_stop,
        ):
            if update.kind != "result":
                yield update
                continue
            calibration = update.data
            for j in calibration.fit.modes:
                yield Update("metric", 1.0, f"zernike_{j}", (f"zernike_{j}", float(calibration.fit.zernike[j])))
            yield Update("result", 1.0, update.message, calibration)

    def check(self, inputs: CalibrateInputs) -> None:  # type: ignore[override]
        """The stack's voxel size and the nominal optics must be given."""
        if inputs.voxel_size is None:
            raise EngineInputError("the bead stack's voxel size (dz, dy, dx in µm) is needed")
        missing = [k for k in OPTICS if k not in getattr(inputs, "optics", {})]
        if missing:
            raise EngineInputError(f"bead-fit needs the nominal optics {list(OPTICS)}; missing {missing}")

    def output_voxel_size(self, inputs: CalibrateInputs) -> tuple[float, float, float] | None:  # type: ignore[override]
        """The fitted PSF is sampled like the bead stack."""
        return inputs.voxel_size
