"""The job protocol every layer shares: updates, typed inputs, results and the project's error.

An engine (reconstruction, training, calibration or fitting) is driven by
:mod:`napari_lfrecon.jobs.runner` and streams :class:`Update`\\ s. This module
imports only numpy, so ``physics``, ``psf``, ``engines``, ``batch``, the CLI and
the GUI may all import it. A PSF object is carried as ``Any`` here (the PSF
type lives above, in ``psf``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

UpdateKind = Literal["progress", "preview", "metric", "result"]
#: ``should_stop()``: true once the user asked the job to stop (engines check it at every yield).
StopFlag = Callable[[], bool]


def never() -> bool:
    """The stop flag of a job nobody cancels."""
    return False


class LfreconError(Exception):
    """Base of the errors napari-lfrecon raises on purpose: the message says what was expected."""


class EngineInputError(LfreconError, ValueError):
    """Raised for input an engine cannot use; the message says what was expected."""


class UnknownName(EngineInputError, KeyError):
    """An unknown engine, sample, modality or data-kind name; the message lists the known ones.

    A ``KeyError`` too (lookups by name), shown without ``KeyError``'s quotes.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MissingVoxelSize(EngineInputError):
    """The data's voxel size is needed and unknown; each interface says how to give it.

    ``reason`` is the interface-neutral sentence; the message may add the
    interface's own words (``voxel_size=`` in Python, ``--voxel-size`` on the command line).
    """

    def __init__(self, reason: str, how: str = "") -> None:
        super().__init__(f"{reason}{': ' + how if how else ''}")
        self.reason = reason


class DeviceUnavailable(LfreconError, RuntimeError):
    """A requested compute device does not exist or is not available on this machine."""


class DamagedFile(EngineInputError):
    """An input file is damaged, truncated or not in a format we read; the message names the file and the damage.

    Readers raise it in place of the raw errors a damaged file provokes inside
    the file libraries (``struct.error``, ``zlib.error``, ``KeyError``, ...).
    """

    def __init__(self, path: Any, what: str) -> None:
        super().__init__(f"damaged or unsupported file: {path}: {what}")
        self.path = str(path)
        self.what = what

    def __reduce__(self) -> tuple[Any, ...]:
        # rebuilt from (path, what), not from the formatted message: it crosses process boundaries in dask
        return (type(self), (self.path, self.what))


class JobCancelled(LfreconError):
    """Raised by :func:`napari_lfrecon.jobs.run_job` when its stop flag ended the run before a result."""


@dataclass
class Update:
    """One step of a running engine.

    ``kind``: ``progress`` (``fraction`` and ``message`` only), ``preview`` (``data``
    is a full-size float32 volume, partial or improving), ``metric`` (``data`` is
    ``(name, value)``) or ``result`` (the last update; ``data`` is a
    :class:`Volume` for reconstruction and training engines, the calibration
    object for calibration engines).
    """

    kind: UpdateKind
    fraction: float = 0.0
    message: str = ""
    data: Any = None


class LazyPreview:
    """A preview volume made only when a consumer asks for it (most previews are never shown).

    ``make()`` builds the volume from the engine's current estimate, so call
    the preview (or :func:`preview_volume`) before pulling the engine's next
    update to get this step's volume; called later it gives a newer estimate.
    The volume is made once and cached. ``np.asarray(preview)`` works too.
    """

    def __init__(self, make: Callable[[], np.ndarray]) -> None:
        self._make: Callable[[], np.ndarray] | None = make
        self._volume: np.ndarray | None = None

    def __call__(self) -> np.ndarray:
        """The preview volume (made on the first call)."""
        if self._volume is None:
            assert self._make is not None
            self._volume, self._make = np.asarray(self._make()), None
        return self._volume

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        volume = self()
        return volume if dtype is None else volume.astype(dtype, copy=False)


def preview_volume(data: Any) -> np.ndarray:
    """The volume of a ``preview`` update's ``data``: an array as is, a :class:`LazyPreview` made now."""
    return data() if isinstance(data, LazyPreview) else np.asarray(data)


def result_of(updates: Iterable[Update]) -> Any:
    """Run a stream of updates to its end and return the data of its ``result`` update.

    Raises :class:`JobCancelled` when the stream ends without one (it was stopped).
    """
    result, finished = None, False
    for update in updates:
        if update.kind == "result":
            result, finished = update.data, True
    if not finished:
        raise JobCancelled("the run stopped before its result")
    return result


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


@dataclass(frozen=True)
class DataDescription:
    """What is known about how the data were made, beyond the voxel size (benchmarks and simulations state it).

    ``anisotropy``: the integer axial undersampling factor of an anisotropic
    stack; ``axial_kernel``: the 1D axial blur it was made with (taps along z
    on the fine grid).
    """

    anisotropy: int | None = None
    axial_kernel: np.ndarray | None = None


@dataclass
class Inputs:
    """What a reconstruction engine works from.

    ``data`` is the measurement in photo-electrons (already converted by
    :class:`napari_lfrecon.camera.Camera`), handed over read-only and never
    modified. ``psf`` is a :class:`napari_lfrecon.psf.PSF` or ``None``;
    ``voxel_size`` is the data's ``(dz, dy, dx)`` in µm when known;
    ``read_noise`` the camera's read noise in electrons RMS when known.
    """

    data: np.ndarray
    psf: Any = None
    voxel_size: tuple[float, float, float] | None = None
    read_noise: float | None = None
    description: DataDescription = field(default_factory=DataDescription)


@dataclass
class TrainInputs(Inputs):
    """What a trainer works from: the data (frames or stacks, batch axis first) plus provenance for the weights.

    ``command`` is the command line that reproduces the run and
    ``data_description`` a sentence about the data; both are written into the
    weights header.
    """

    command: str = ""
    data_description: str = ""


@dataclass
class CalibrateInputs(Inputs):
    """What a calibration engine works from: the calibration data plus the nominal optics.

    ``optics`` holds the nominal numbers the fit starts from (e.g. ``na``,
    ``wavelength_um``, ``immersion_index`` for a bead fit); ``frames`` holds
    named auxiliary frames (e.g. ``radiometry``, ``dark``).
    """

    optics: dict[str, Any] = field(default_factory=dict)
    frames: dict[str, np.ndarray] = field(default_factory=dict)
