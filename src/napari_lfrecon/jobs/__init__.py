"""Jobs: the protocol every engine speaks and the one runner every interface uses (no Qt, numpy only)."""

from .params import jsonable, make_params, param, param_specs
from .protocol import (
    CalibrateInputs,
    DataDescription,
    DeviceUnavailable,
    EngineInputError,
    Inputs,
    JobCancelled,
    LfreconError,
    MissingVoxelSize,
    TrainInputs,
    UnknownName,
    Update,
    UpdateKind,
    Volume,
    result_of,
)
from .runner import Cancelled, Event, Failed, Warned, error_message, prepare_inputs, run_job, stream_job

__all__ = [
    "CalibrateInputs",
    "Cancelled",
    "DataDescription",
    "EngineInputError",
    "Event",
    "Failed",
    "DeviceUnavailable",
    "Inputs",
    "JobCancelled",
    "LfreconError",
    "MissingVoxelSize",
    "TrainInputs",
    "UnknownName",
    "Update",
    "UpdateKind",
    "Volume",
    "Warned",
    "error_message",
    "jsonable",
    "make_params",
    "param",
    "param_specs",
    "prepare_inputs",
    "result_of",
    "run_job",
    "stream_job",
]
