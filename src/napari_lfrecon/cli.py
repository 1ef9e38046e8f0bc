"""The headless ``lfrecon`` command. Imports no Qt and no napari (a test checks ``sys.modules``)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import engines
from .batch.guard import BatchInterrupted
from .engines.base import EngineInputError, make_params, param_specs
from .jobs.protocol import MissingVoxelSize


class ProgressBar:
    """A one-line text progress bar on stderr (redrawn in place on a terminal, throttled otherwise)."""

    def __init__(self, stream=sys.stderr, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self._last = -1.0
        self._last_time = 0.0
        self._tty = hasattr(stream, "isatty") and stream.isatty()

    #: Seconds after which a log (not a terminal) gets a line even without 10 % more progress (huge runs).
    LOG_EVERY_S = 2.0

    def __call__(self, fraction: float, message: str) -> None:
        """Draw ``fraction`` (0–1) with ``message``."""
        now = time.monotonic()
        if (
            not self._tty
            and 0.0 < fraction < 1.0  # the stages before any progress (planning, …) are always shown
            and fraction - self._last < 0.1
            and now - self._last_time < self.LOG_EVERY_S
        ):
            return
        self._last = fraction
        self._last_time = now
        filled = int(round(self.width * min(max(fraction, 0.0), 1.0)))
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%} {message}"
        end = "\r" if self._tty and fraction < 1.0 else "\n"
        self.stream.write(line.ljust(79) + end if self._tty else line + "\n")
        self.stream.flush()


def _add_engine_flags(parser: argparse.ArgumentParser, engine_name: str) -> list[str]:
    """Add one flag per field of the engine's Params; return the field names."""
    engine = engines.get(engine_name)
    group = parser.add_argument_group(f"{engine_name} parameters")
    names = []
    for spec in param_specs(engine.Params):
        flag = "--" + spec["name"].replace("_", "-")
        names.append(spec["name"])
        if spec["type"] is bool:
            group.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=spec["default"],
                help=spec["help"].replace("%", "%%"),
            )
        else:
            group.add_argument(
                flag,
                type=spec["type"],
                default=spec["default"],
                choices=spec["choices"],
                help=spec["help"].replace("%", "%%"),
            )
    return names


def _voxel(values: Sequence[float] | None) -> tuple[float, float, float] | None:
    if values is None:
        return None
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise EngineInputError(f"--voxel-size takes three positive finite numbers DZ DY DX (µm), got {list(values)}")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def _read_image(path: Path, *, lazy: bool = False):
    """A TIFF or zarr input (``lazy``: pixels memory-mapped or read on demand)."""
    from .io.tiff import read_tiff

    suffix = "".join(path.suffixes).lower()
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if suffix.endswith((".tif", ".tiff")):
        return read_tiff(path, lazy=lazy)
    if suffix.endswith(".zarr") or path.is_dir():
        from .io.zarr_io import read_zarr

        return read_zarr(path)
    raise EngineInputError(f"cannot read {path}: expected a .tif/.tiff file or a .zarr store")


def _write_volume(path: Path, volume) -> Path:
    suffix = "".join(path.suffixes).lower()
    if suffix.endswith(".zarr"):
        from .io.zarr_io import write_ome_zarr

        return write_ome_zarr(path, volume.data, volume.voxel_size, metadata=volume.metadata)
    from .io.tiff import write_tiff

    return write_tiff(path, volume.data, voxel_size=volume.voxel_size, metadata=volume.metadata)


#: Flags that send ``reconstruct`` through the chunked batch runner even for a TIFF output.
BATCH_FLAGS = ("max_memory", "tile", "overlap", "blend", "workers", "scheduler")


def _load_psf(args: argparse.Namespace, voxel_size: tuple[float, ...] | None):
    """The PSF named by ``--psf`` (a PSF file, or a TIFF stack read at the data's voxel size)."""
    from .api import as_psf

    if args.psf is None:
        return None
    psf_path = Path(args.psf)
    if psf_path.suffix.lower() not in (".tif", ".tiff"):
        return as_psf(psf_path, voxel_size)  # type: ignore[arg-type]
    psf_image = _read_image(psf_path)
    psf_voxel = _voxel(args.psf_voxel_size) or voxel_size
    if psf_voxel is None:
        raise EngineInputError(
            "a TIFF PSF is read at the data's voxel size, which is unknown: pass --voxel-size or --psf-voxel-size"
        )
    return as_psf(np.asarray(psf_image.data, dtype=np.float32), psf_voxel)  # type: ignore[arg-type]


def _data_voxel(args: argparse.Namespace, image: Any) -> tuple[float, float, float] | None:
    """The input's ``(dz, dy, dx)``: ``--voxel-size``, else the file's (a raw frame's 2-D pixel size is none)."""
    given = _voxel(args.voxel_size)
    if given is not None:
        return given
    stated = tuple(float(v) for v in image.voxel_size) if image.voxel_size else None
    return stated if stated is not None and len(stated) == 3 else None  # type: ignore[return-value]


def _psf_for_input(args: argparse.Namespace, voxel_size: tuple[float, ...] | None):
    """The ``--psf`` at the input's sampling: the one path for TIFF and OME-Zarr outputs alike.

    A widefield PSF lives on the data grid: it is resampled to the input's
    voxel size (:func:`napari_lfrecon.api.psf_on_data_grid`), and an input that
    states none is refused rather than silently read at the PSF's sampling.
    """
    from . import modalities
    from .api import psf_on_data_grid

    psf = _load_psf(args, voxel_size)
    if psf is not None and modalities.for_psf(psf).psf_on_data_grid and (voxel_size is None or len(voxel_size) != 3):
        raise EngineInputError(
            f"the input {args.input} states no (dz, dy, dx) voxel size: pass --voxel-size DZ DY DX (µm)"
        )
    return psf_on_data_grid(psf, voxel_size)


def _camera(args: argparse.Namespace):
    """A :class:`Camera` from the camera flags, or ``None`` when they are all at their defaults."""
    from .camera import Camera

    if not (args.camera_offset or args.camera_gain != 1.0 or args.read_noise or args.dark or args.flat):
        return None
    dark = np.asarray(_read_image(Path(args.dark)).data) if args.dark else None
    flat = np.asarray(_read_image(Path(args.flat)).data) if args.flat else None
    return Camera(args.camera_offset, args.camera_gain, args.read_noise, dark, flat)


def _int_list(text: str) -> list[int]:
    """``"256"`` or ``"16,256,256"`` → a list of ints (argparse type for ``--tile`` / ``--overlap``)."""
    try:
        values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, e.g. 256 or 16,256,256; got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return values


def _wants_batch(args: argparse.Namespace) -> bool:
    return "".join(Path(args.output).suffixes).lower().endswith(".zarr") or any(
        getattr(args, name, None) not in (None, False) for name in BATCH_FLAGS
    )


def cmd_reconstruct(args: argparse.Namespace, param_names: list[str]) -> int:
    """``lfrecon reconstruct``: one input file → one volume file (OME-Zarr outputs run chunk by chunk)."""
    from .api import reconstruct
    from .batch.guard import check_in_memory_run
    from .io.outputs import check_output_file

    engine = engines.get(args.engine)
    if engine.kind != "reconstruct":
        hint = f"train with `lfrecon train {engine.trains}`" if engine.kind == "train" else "use `lfrecon calibrate`"
        raise EngineInputError(f"{args.engine!r} is a {engine.kind} engine, not a reconstruction engine: {hint}")
    check_output_file(args.output, inputs=[args.input], overwrite=args.overwrite)
    if _wants_batch(args):
        return cmd_reconstruct_batch(args, param_names)
    image = _read_image(Path(args.input), lazy=True)
    voxel_size = _data_voxel(args, image)
    psf = _psf_for_input(args, voxel_size)
    camera = _camera(args)
    params = {name: getattr(args, name) for name in param_names}
    # A TIFF output holds the whole result in memory: refuse what cannot fit before reading a pixel.
    check_in_memory_run(
        engine,
        image.data,
        psf,
        voxel_size,
        make_params(engine.Params, params),
        hint="write an OME-Zarr output (OUT.zarr, with --max-memory) to run it chunk by chunk",
    )
    started = time.perf_counter()
    volume = reconstruct(
        args.engine,
        np.asarray(image.data),
        psf,
        voxel_size=voxel_size,
        camera=camera,
        device=args.device,
        progress=ProgressBar(),
        **params,
    )
    volume.metadata["input"] = str(args.input)
    out = _write_volume(Path(args.output), volume)
    summary = {
        "output": str(out),
        "shape": list(volume.data.shape),
        "voxel_size_um": list(volume.voxel_size),
        "seconds": round(time.perf_counter() - started, 2),
    }
    print(json.dumps(summary) if args.json else f"wrote {out} {volume.data.shape} voxel {volume.voxel_size} µm")
    return 0


def cmd_reconstruct_batch(args: argparse.Namespace, param_names: list[str]) -> int:
    """``lfrecon reconstruct … OUT.zarr``: chunked, resumable, optionally distributed (``napari_lfrecon.batch``)."""
    from .batch import open_source, parse_size, run_batch

    output = Path(args.output)
    if not "".join(output.suffixes).lower().endswith(".zarr"):
        raise EngineInputError(f"chunked runs write OME-Zarr: the output must end in .zarr, got {output}")
    if args.workers is not None and args.workers < 1:
        raise EngineInputError(f"--workers must be ≥ 1, got {args.workers}")
    source, header = open_source(args.input)
    voxel_size = _data_voxel(args, header)
    psf = _psf_for_input(args, voxel_size)
    params = {name: getattr(args, name) for name in param_names}
    summary = run_batch(
        source,
        output,
        psf,
        engine=args.engine,
        params=params,
        voxel_size=voxel_size,
        camera=_camera(args),
        device=args.device,
        max_memory=parse_size(args.max_memory) if args.max_memory else None,
        tile=args.tile,
        overlap=args.overlap,
        blend=args.blend or 0,
        workers=args.workers,
        scheduler=args.scheduler,
        overwrite=args.overwrite,
        progress=ProgressBar(),
        metadata={"input_path": str(args.input)},
    )
    if args.json:
        print(json.dumps(summary.as_dict()))
    else:
        print(
            f"wrote {summary.output} {summary.shape} ({summary.axes}) voxel {summary.voxel_size_um} µm: "
            f"{summary.chunks_computed} chunks computed, {summary.chunks_skipped} already done"
        )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``lfrecon demo``: reconstruct the shipped LFM sample with RL and write a TIFF."""
    from .api import reconstruct
    from .io.outputs import check_output_folder
    from .io.tiff import write_tiff
    from .samples import load_sample

    check_output_folder(args.out)
    sample = load_sample("lfm")
    print(f"sample 'lfm': {sample['description']}")
    volume = reconstruct(
        "rl", sample["data"], sample["psf"], iterations=args.iterations, device=args.device, progress=ProgressBar()
    )
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = write_tiff(out_dir / "lfm_rl.tif", volume.data, voxel_size=volume.voxel_size, metadata=volume.metadata)
    message = f"wrote {out}: volume {volume.data.shape} (Z, Y, X), voxel {volume.voxel_size} µm"
    if "ground_truth" in sample:
        from .metrics.basic import psnr

        truth = sample["ground_truth"]
        scale = float(np.sum(truth * volume.data) / max(np.sum(volume.data**2), 1e-12))
        message += f"; PSNR vs ground truth {psnr(volume.data * scale, truth, data_range=float(truth.max())):.2f} dB"
    print(message)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    """``lfrecon sample NAME OUT``: write a sample's measurement (TIFF), PSF file and ground truth."""
    from .io.tiff import write_tiff
    from .psf.model import PSF_FILE_SUFFIX
    from .samples import load_sample

    sample = load_sample(args.name)
    out = Path(args.output)
    if out.suffix.lower() not in (".tif", ".tiff"):
        out = out.with_suffix(".tif")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = [write_tiff(out, sample["data"], voxel_size=sample["data_scale"], metadata={"sample": args.name})]
    if sample["psf"] is not None:  # the anisotropic sample has none (niiv learns from the stack itself)
        written.append(sample["psf"].save(out.with_name(out.stem + PSF_FILE_SUFFIX)))
    if "ground_truth" in sample:
        written.append(
            write_tiff(
                out.with_name(out.stem + "_ground_truth.tif"), sample["ground_truth"], voxel_size=sample["voxel_size"]
            )
        )
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_psf(args: argparse.Namespace) -> int:
    """``lfrecon psf MODALITY OUT``: compute a PSF from optics and save it."""
    from .psf.model import PSF_FILE_SUFFIX

    z_planes = np.arange(args.depths) * args.dz - (args.depths // 2) * args.dz
    if args.modality == "widefield":
        from .psf.widefield import widefield_psf

        zernike = np.asarray(args.zernike or [], dtype=np.float64)
        psf = widefield_psf(
            (args.depths, args.size, args.size),
            (args.dz, args.pixel, args.pixel),
            na=args.na,
            wavelength_um=args.wavelength,
            immersion_index=args.index,
            zernike_waves=zernike if zernike.size else None,
        )
    elif args.modality == "lfm":
        from .psf.lfm import LFMOptics, lfm_psf

        optics = LFMOptics(
            magnification=args.magnification,
            na=args.na,
            immersion_index=args.index,
            wavelength_um=args.wavelength,
            lenslet_pitch_um=args.lenslet_pitch,
            lenslet_focal_um=args.lenslet_focal,
            camera_pixel_um=args.camera_pixel,
            pixels_per_lenslet=args.pixels_per_lenslet,
            supersample=args.supersample,
        )
        psf = lfm_psf(optics, z_planes, progress=lambda f: ProgressBar()(f, "LFM PSF"))
    else:
        from .psf.xlfm import XLFMOptics, xlfm_psf

        psf = xlfm_psf(XLFMOptics(na=args.na, immersion_index=args.index, wavelength_um=args.wavelength), z_planes)
    out = Path(args.output)
    if not out.name.endswith(PSF_FILE_SUFFIX):
        out = out.with_name(out.name.removesuffix(out.suffix) + PSF_FILE_SUFFIX)
    psf.save(out)
    print(f"wrote {out}: {psf.describe()}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """``lfrecon train ENGINE``: see :mod:`.cli_train` (one sub-command per registered trainer)."""
    from .cli_train import cmd_train as run_train

    return run_train(args, ProgressBar(sys.stderr))


def build_parser(engine_name: str | None = None) -> tuple[argparse.ArgumentParser, list[str]]:
    """The argument parser; with ``engine_name``, ``reconstruct`` also gets that engine's parameter flags."""
    parser = argparse.ArgumentParser(prog="lfrecon", description="Physics-informed volume reconstruction (headless).")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps or auto (default: auto)")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="reconstruct the shipped LFM sample with RL and write a TIFF")
    demo.add_argument("--out", default="lfrecon-demo", help="output folder (default: ./lfrecon-demo)")
    demo.add_argument("--iterations", type=int, default=30)

    rec = sub.add_parser("reconstruct", help="reconstruct one input file into a volume (TIFF or OME-Zarr)")
    rec.add_argument("--engine", default="rl", help=f"one of: {', '.join(engines.available())}")
    rec.add_argument("--psf", help="PSF file (.psf.safetensors) or a TIFF stack (widefield PSF)")
    rec.add_argument("--psf-voxel-size", nargs=3, type=float, metavar=("DZ", "DY", "DX"))
    rec.add_argument("--voxel-size", nargs=3, type=float, metavar=("DZ", "DY", "DX"), help="µm; overrides the input's")
    rec.add_argument("--camera-offset", type=float, default=0.0, help="camera offset in ADU")
    rec.add_argument("--camera-gain", type=float, default=1.0, help="electrons per ADU")
    rec.add_argument("--read-noise", type=float, default=0.0, help="read noise in electrons RMS")
    rec.add_argument("--dark", help="dark frame (TIFF)")
    rec.add_argument("--flat", help="flat / radiometry frame (TIFF)")
    rec.add_argument("--json", action="store_true", help="print a JSON summary")
    scale = rec.add_argument_group("chunked runs (OME-Zarr output; any of these flags selects them)")
    scale.add_argument("--max-memory", metavar="SIZE", help="data working set per worker, e.g. 512MiB (default 1GiB)")
    scale.add_argument(
        "--tile", type=_int_list, metavar="N[,N[,N]]", help="core tile (voxels): Y=X, Y,X or Z,Y,X; frames per chunk"
    )
    scale.add_argument(
        "--overlap", type=_int_list, metavar="N[,N[,N]]", help="voxels added per side: one or Z,Y,X (default: PSF size)"
    )
    scale.add_argument("--blend", type=int, default=None, metavar="N", help="blending ramp width in voxels (default 0)")
    scale.add_argument("--workers", type=int, metavar="N", help="start a local dask cluster of N single-thread workers")
    scale.add_argument("--scheduler", metavar="ADDRESS", help="use an existing dask scheduler, e.g. tcp://host:8786")
    scale.add_argument("--overwrite", action="store_true", help="replace an existing output from a different run")
    rec.add_argument("input")
    rec.add_argument("output")
    names: list[str] = []
    if engine_name is not None:
        names = _add_engine_flags(rec, engine_name)

    psf = sub.add_parser("psf", help="compute a PSF from optics and save it")
    psf.add_argument("modality", choices=("widefield", "lfm", "xlfm"))
    psf.add_argument("output")
    psf.add_argument("--na", type=float, default=0.8)
    psf.add_argument("--wavelength", type=float, default=0.52, help="µm")
    psf.add_argument("--index", type=float, default=1.33, help="immersion index")
    psf.add_argument("--magnification", type=float, default=20.0)
    psf.add_argument("--depths", type=int, default=33)
    psf.add_argument("--dz", type=float, default=0.5, help="µm")
    psf.add_argument("--size", type=int, default=64, help="widefield lateral size (pixels)")
    psf.add_argument("--pixel", type=float, default=0.1, help="widefield lateral pixel (µm)")
    psf.add_argument("--zernike", type=float, nargs="*", help="widefield Zernike coefficients, ANSI order, waves")
    psf.add_argument("--lenslet-pitch", type=float, default=100.0, help="µm")
    psf.add_argument("--lenslet-focal", type=float, default=2000.0, help="µm")
    psf.add_argument("--camera-pixel", type=float, default=6.5, help="µm")
    psf.add_argument("--pixels-per-lenslet", type=int, default=15)
    psf.add_argument("--supersample", type=int, default=1)

    from .cli_train import add_train_parser

    add_train_parser(sub)

    from .cli_calibrate import add_calibrate_parser

    add_calibrate_parser(sub, engine_flags=_add_engine_flags)

    sample = sub.add_parser("sample", help="write a shipped sample (measurement, PSF, ground truth)")
    sample.add_argument("name")
    sample.add_argument("output")

    bench = sub.add_parser("bench", help="run LFRecon-Bench: every registered engine and the baselines, one table")
    bench.add_argument("--quick", action="store_true", help="tiny version (CI): a few seconds per modality")
    bench.add_argument("--out", default=None, help="output folder (default: benchmarks/results)")
    bench.add_argument("--tasks", nargs="*", help="only these tasks (widefield lfm xlfm anisotropic diffraction)")
    bench.add_argument(
        "--save-data", action="store_true", help="also write the data sets (npz + PSF + manifest) and trained weights"
    )
    return parser, names


def cmd_bench(args: argparse.Namespace) -> int:
    """``lfrecon bench``: build the seeded benchmark, run every engine and baseline, write table and plots."""
    from .bench import DEFAULT_OUT, FULL, QUICK, run_benchmark

    result = run_benchmark(
        QUICK if args.quick else FULL,
        Path(args.out) if args.out else DEFAULT_OUT,
        tasks=args.tasks,
        device=args.device,
        save_data=args.save_data,
    )
    print(Path(result["paths"]["markdown"]).read_text())
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``lfrecon calibrate bead|lightfield|xlfm``: see :mod:`.cli_calibrate` (which never imports this module)."""
    from .cli_calibrate import cmd_calibrate as run_calibrate

    return run_calibrate(args, progress=ProgressBar())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lfrecon``; returns the exit code (0 ok, 2 bad input, 1 unexpected failure)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    engine_name = None
    if argv[:1] == ["reconstruct"] or "reconstruct" in argv:
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--engine", default="rl")
        known, _ = pre.parse_known_args(argv)
        engine_name = known.engine
    try:
        parser, names = build_parser(engine_name)
    except KeyError as exc:
        print(f"lfrecon: error: {exc.args[0]}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _show_warning  # type: ignore[assignment]
        try:
            if args.command == "reconstruct":
                return cmd_reconstruct(args, names)
            return {
                "demo": cmd_demo,
                "train": cmd_train,
                "sample": cmd_sample,
                "psf": cmd_psf,
                "bench": cmd_bench,
                "calibrate": cmd_calibrate,
            }[args.command](args)
        except MissingVoxelSize as exc:
            print(f"lfrecon: error: {exc.reason}: pass --voxel-size DZ DY DX", file=sys.stderr)
            return 2
        except (EngineInputError, ValueError, FileNotFoundError, KeyError, RuntimeError, OSError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            print(f"lfrecon: error: {message}", file=sys.stderr)
            return 2
        except BatchInterrupted as exc:  # a chunked run stopped by Ctrl-C: how many chunks it kept
            print(f"lfrecon: {exc}", file=sys.stderr)
            return 130
        except KeyboardInterrupt:
            where = Path(getattr(args, "output", "") or "")
            kept = (
                "; chunks already written are kept: run the same command to resume"
                if "".join(where.suffixes).lower().endswith(".zarr")
                else "; nothing was written"
            )
            print(f"lfrecon: interrupted{kept}", file=sys.stderr)
            return 130


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    print(f"lfrecon: warning: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
