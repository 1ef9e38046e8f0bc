"""``lfrecon train ENGINE``: one sub-command per registered training engine, generated from the registry.

Each training engine declares the engine it ``trains`` (the sub-command's
name), its ``data_kinds`` (:mod:`napari_lfrecon.training.data`: which files it
reads, whether it can simulate data) and its ``Params`` (one flag each). The
engine itself turns the files read here into its training data
(``training_data``) and, for the ``"simulated"`` kind, makes frames
(``simulate``, flags ``--simulate N`` and ``--simulate-<field>`` from its
``Simulation`` class), so nothing here knows a particular trainer. The
command line that reproduces the run is recorded in the weights header.
Imports no Qt.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import engines
from .jobs import TrainInputs, make_params, param_specs, run_job
from .jobs.protocol import EngineInputError
from .training.data import DataFile, TrainingData, describe_kinds, file_kinds

#: Fields of the training engine's Params that ``lfrecon train`` sets from its own arguments.
TRAIN_OWN_FLAGS = ("output",)
#: Prefix of the flags made from a trainer's ``Simulation`` fields.
SIMULATE_PREFIX = "simulate_"


def _add_spec_flags(group: Any, specs: Sequence[dict[str, Any]], prefix: str = "") -> None:
    """One flag per parameter spec (booleans get ``--x`` / ``--no-x``)."""
    for spec in specs:
        flag = "--" + (prefix + spec["name"]).replace("_", "-")
        help_text = spec["help"].replace("%", "%%")
        if spec["type"] is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=spec["default"], help=help_text)
        else:
            group.add_argument(
                flag, type=spec["type"], default=spec["default"], choices=spec["choices"], help=help_text
            )


def trainer_params(trainer: Any) -> list[str]:
    """Names of the trainer's Params fields that are command-line flags."""
    return [s["name"] for s in param_specs(trainer.Params) if s["name"] not in TRAIN_OWN_FLAGS]


def command_names() -> dict[str, str]:
    """Trainer name → its ``lfrecon train`` sub-command.

    The sub-command is the engine the trainer ``trains``, or the trainer's own
    name when several trainers train the same engine (e.g. a pretraining and
    a fine-tuning stage).
    """
    trainers = {name: engines.get(name).trains or name for name in engines.available(kind="train")}
    targets = list(trainers.values())
    return {name: target if targets.count(target) == 1 else name for name, target in trainers.items()}


def add_train_parser(sub: Any) -> None:
    """Add ``train`` with one sub-command per training engine (named after the engine it trains)."""
    train = sub.add_parser("train", help="train a network engine (every registered trainer)")
    which = train.add_subparsers(dest="engine", required=True, metavar="ENGINE")
    for trainer_name, target in command_names().items():
        trainer = engines.get(trainer_name)
        command = which.add_parser(target, help=trainer.title or trainer_name, description=trainer.__doc__)
        command.set_defaults(trainer=trainer_name)
        kinds = file_kinds(trainer.data_kinds)
        simulates = "simulated" in trainer.data_kinds
        if kinds:
            command.add_argument(
                "inputs",
                nargs="*" if simulates else "+",
                metavar=kinds[0].metavar,
                help=f"{describe_kinds([k.name for k in kinds])}: TIFF or zarr files",
            )
        if trainer.needs_psf:
            psf_kinds = "/".join(m.upper() for m in trainer.modalities)
            command.add_argument("--psf", required=True, help=f"the {psf_kinds} PSF file (.psf.safetensors)")
        command.add_argument("--out", required=True, help="weights file to write (.safetensors)")
        command.add_argument(
            "--voxel-size", nargs=3, type=float, metavar=("DZ", "DY", "DX"), help="µm; overrides the files'"
        )
        if simulates:
            command.add_argument("--simulate", type=int, default=0, metavar="N", help="train on N simulated frames")
            simulation = getattr(trainer, "Simulation", None)
            if simulation is not None:
                _add_spec_flags(command, param_specs(simulation), SIMULATE_PREFIX)
        _add_spec_flags(
            command.add_argument_group(f"{trainer_name} parameters"),
            [s for s in param_specs(trainer.Params) if s["name"] not in TRAIN_OWN_FLAGS],
        )


def training_command(head: Sequence[str], values: dict[str, Any]) -> str:
    """The ``lfrecon train …`` command line that reproduces this run (recorded in the weights header)."""
    command = list(head)
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            command.append(flag if value else "--no-" + flag[2:])
        elif value != "":
            command += [flag, str(value)]
    return " ".join(command)


def _read_files(paths: Sequence[str]) -> list[DataFile]:
    from .io import read_image

    files = []
    for text in paths:
        path = Path(text)
        if not path.exists():
            raise FileNotFoundError(f"input not found: {path}")
        try:
            image = read_image(path)
        except ValueError as exc:
            raise EngineInputError(f"cannot read {path}: {exc}") from exc
        voxel = tuple(float(v) for v in image.voxel_size) if image.voxel_size is not None else None
        files.append(DataFile(str(path), np.asarray(image.data, dtype=np.float32), voxel))
    return files


def _voxel_size(args: argparse.Namespace, files: Sequence[DataFile]) -> tuple[float, float, float] | None:
    """``--voxel-size``, else the first file's (dz, dy, dx) when it states one."""
    if args.voxel_size:
        if any(v <= 0 for v in args.voxel_size):
            raise EngineInputError(f"voxel sizes must be positive (µm), got {list(args.voxel_size)}")
        return tuple(float(v) for v in args.voxel_size)  # type: ignore[return-value]
    for item in files:
        if item.voxel_size is not None and len(item.voxel_size) == 3:
            return item.voxel_size  # type: ignore[return-value]
    return None


def build_inputs(args: argparse.Namespace) -> tuple[Any, TrainInputs, Any]:
    """``(trainer, inputs, params)`` from the parsed ``lfrecon train ENGINE …`` arguments."""
    trainer = engines.get(args.trainer)
    psf = None
    if getattr(args, "psf", None):
        from .psf.model import PSF

        psf = PSF.load(args.psf)
    paths = list(getattr(args, "inputs", []) or [])
    files = _read_files(paths)
    head = ["lfrecon", "train", args.engine, *paths]
    if psf is not None:
        head += ["--psf", str(args.psf)]
    head += ["--out", str(args.out)]
    if args.voxel_size:
        head += ["--voxel-size", *(str(v) for v in args.voxel_size)]
    simulated: TrainingData | None = None
    if getattr(args, "simulate", 0):
        simulation = getattr(trainer, "Simulation", None)
        names = [s["name"] for s in param_specs(simulation)] if simulation is not None else []
        options = {name: getattr(args, SIMULATE_PREFIX + name) for name in names}
        simulated = trainer.simulate(psf, args.simulate, make_params(simulation, options) if simulation else None)
        head += ["--simulate", str(args.simulate)]
        for name in names:
            head += ["--" + (SIMULATE_PREFIX + name).replace("_", "-"), str(options[name])]
    if not files and simulated is None:
        hint = " (--simulate N)" if "simulated" in trainer.data_kinds else ""
        raise EngineInputError(f"nothing to train on: give {describe_kinds(trainer.data_kinds)}{hint}")
    data = trainer.training_data(files, psf, simulated)
    values = {name: getattr(args, name) for name in trainer_params(trainer)}
    params = make_params(trainer.Params, dict(values, output=str(args.out)))
    inputs = TrainInputs(
        data=data.data,
        psf=psf,
        voxel_size=_voxel_size(args, files),
        command=training_command(head, values),
        data_description=data.description,
    )
    return trainer, inputs, params


def cmd_train(args: argparse.Namespace, progress: Callable[[float, str], None]) -> int:
    """``lfrecon train ENGINE …``: read the data, train, write the weights; ``progress`` draws the bar."""
    from .device import select_device

    trainer, inputs, params = build_inputs(args)

    def on_update(update: Any) -> None:
        if update.kind == "progress" or (update.kind == "metric" and update.data[0] == "loss"):
            progress(update.fraction, update.message)

    run_job(trainer, inputs, params, device=select_device(args.device), on_update=on_update)
    print(f"training finished; weights written to {params.output}")
    return 0


__all__ = ["add_train_parser", "build_inputs", "cmd_train", "command_names", "training_command"]
