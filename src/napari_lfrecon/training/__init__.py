"""The shared training layer: one loop, checkpoints, weights headers and optics matching, data kinds.

Every network engine's trainer (niiv, SeReNet, and the ones to come) is a
:class:`~.loop.Trainer` subclass providing model, optimiser and one step; the
loop here seeds, checkpoints, resumes, stops and streams. This package
imports only ``jobs``, ``io``, torch and numpy (never ``engines``, ``gui`` or
the CLI).
"""

from .checkpoints import CheckpointState, load_checkpoint, save_checkpoint
from .data import DATA_KINDS, DataFile, DataKind, TrainingData, allowed_ndim, describe_kinds
from .loop import LoopSettings, Trainer
from .weights import OpticsMismatch, check_optics, optics_mismatches, optics_signature, read_weights, weights_header

__all__ = [
    "DATA_KINDS",
    "CheckpointState",
    "DataFile",
    "DataKind",
    "LoopSettings",
    "OpticsMismatch",
    "Trainer",
    "TrainingData",
    "allowed_ndim",
    "check_optics",
    "describe_kinds",
    "load_checkpoint",
    "optics_mismatches",
    "optics_signature",
    "read_weights",
    "save_checkpoint",
    "weights_header",
]
