"""niiv: decoding speed of the shipped vs the published network size, quality vs cubic interpolation, consistency.

Run from the repository root:

    python benchmarks/bench_niiv.py            # full run (the numbers in BENCHMARKS.md)
    python benchmarks/bench_niiv.py --quick    # smoke run, about a minute

(a) Speed: a 16×128×128 stack (z first, anisotropy 8) decoded to the
    128×128×128 isotropic volume (cell-centred: 16·8 planes), the xz pass and
    the yz pass timed separately (fresh field each time, so encoding is
    included), for the shipped configuration (``NiivConfig.small()``, the
    shipped weights when present) and the published one
    (``NiivConfig.reference()``, random initialisation: the speed does not
    depend on the weights), in the same process, repeats interleaved, torch
    threads = ``--threads`` (2).
(b) Quality: held-out synthetic volumes (phantom families and seeds the shipped
    weights never saw: they were trained on the anisotropic sample, a "bubtub"
    phantom) degraded like the sample (Gaussian axial blur with FWHM = af
    voxels, average-pooling by af, Gaussian noise σ = 0.01) at af 8 and 4.
    For each volume niiv is trained self-supervised on that degraded stack's
    own lateral slices (``niiv-train``: the same blur and pooling, the noise
    of the degraded inputs matched to the stack's estimated noise, a fixed step
    budget) and compared with cubic interpolation along z (cell-centred, same
    grid) and, on the first volume of each af, with the published
    configuration trained with the same step budget; at af 8 the shipped
    weights are also applied as they are (no training on the test volume).
    Scores follow LFRecon-Bench (:func:`napari_lfrecon.metrics.report.compare`:
    least-squares intensity fit, data range 1): PSNR, SSIM, Fourier-PSNR on the
    xz and yz planes at radius 25 and the sweep over radii.
(c) Consistency: decoding at 2× the z sampling and averaging plane pairs vs
    decoding at 1× (relative RMS difference and PSNR between the two).

Results go to ``benchmarks/results/niiv.json`` (``niiv-quick.json`` with
``--quick``) and are printed as markdown tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_lfrecon.bench.baselines import upsample_z
from napari_lfrecon.bench.tasks import make_phantom
from napari_lfrecon.engines import get
from napari_lfrecon.engines.base import Inputs, make_params
from napari_lfrecon.engines.niiv import gaussian_kernel, load_model, shipped_weights_path
from napari_lfrecon.engines.niiv_field import NiivField
from napari_lfrecon.engines.niiv_model import NiivConfig, NiivNet
from napari_lfrecon.metrics.report import compare
from napari_lfrecon.physics.axial import AxialDegradation

#: Held-out phantoms: families and seeds disjoint from the shipped weights' training stack (bubtub, seed 20261121).
FAMILIES = ("zebrafish_like", "filaments")
TEST_SEED = 7001
VOXEL_UM = 0.2
NOISE = 0.01
#: Fourier-PSNR radius of the table (frequency-index units, as in the niiv paper's r = 25).
RADIUS = 25.0

FULL = {"speed_stack": (16, 128, 128), "volume": (128, 128, 128), "steps": 600, "repeats": 3, "volumes": 2}
QUICK = {"speed_stack": (8, 64, 64), "volume": (64, 64, 64), "steps": 10, "repeats": 1, "volumes": 1}


def degrade(truth: np.ndarray, factor: int, seed: int) -> np.ndarray:
    """The sample's acquisition model: Gaussian axial blur (FWHM = factor voxels), pooling, noise."""
    operator = AxialDegradation(factor, axis=-3, kernel=gaussian_kernel(float(factor)))
    with torch.no_grad():
        low = operator(torch.as_tensor(truth, dtype=torch.float64)[None])[0].numpy()
    return (low + np.random.default_rng(seed).normal(0.0, NOISE, low.shape)).astype(np.float32)


def time_passes(model: NiivNet, stack: np.ndarray, factor: int) -> dict[str, float]:
    """Seconds of the xz pass and the yz pass of a full decode (fresh field: encoding included)."""
    out = {}
    for passes in ("xz", "yz"):
        field = NiivField(model, stack, factor, passes=passes)
        started = time.perf_counter()
        field.decode_volume()
        out[passes] = time.perf_counter() - started
    out["total"] = out["xz"] + out["yz"]
    return out


def speed(setup: dict[str, Any]) -> dict[str, Any]:
    """(a): shipped vs reference configuration, interleaved repeats, median seconds."""
    shape = setup["speed_stack"]
    factor = 8
    truth = make_phantom("zebrafish_like", (shape[0] * factor, shape[1], shape[2]), (VOXEL_UM,) * 3, TEST_SEED)
    stack = degrade(truth, factor, TEST_SEED)
    models = {}
    if shipped_weights_path().is_file():
        models["shipped"], _ = load_model(shipped_weights_path(), factor)
    else:
        torch.manual_seed(0)
        models["shipped"] = NiivNet(NiivConfig.small(factor)).eval()
    torch.manual_seed(0)
    models["reference"] = NiivNet(NiivConfig.reference(factor)).eval()
    times: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    time_passes(models["shipped"], stack[:, :32, :32], factor)  # warm-up
    for _ in range(setup["repeats"]):
        for name, model in models.items():
            times[name].append(time_passes(model, stack, factor))
            print(f"  speed {name}: {times[name][-1]}", flush=True)
    result = {}
    for name, runs in times.items():
        result[name] = {key: float(np.median([r[key] for r in runs])) for key in ("xz", "yz", "total")} | {
            "config": models[name].config.to_dict(),
            "parameters": models[name].n_parameters(),
            "runs": runs,
        }
    result["speedup"] = result["reference"]["total"] / result["shipped"]["total"]
    result["input"], result["output"] = list(stack.shape), [shape[0] * factor, shape[1], shape[2]]
    return result


def train(stack: np.ndarray, factor: int, model: str, steps: int, out: Path) -> tuple[NiivNet, float]:
    """Self-supervised training on ``stack``'s own lateral slices; returns the network and the seconds taken."""
    engine = get("niiv-train")
    params = make_params(
        engine.Params,
        {
            "output": str(out),
            "anisotropy": factor,
            "steps": steps,
            "model": model,
            "blur_fwhm": float(factor),
            "preview_every": 0,
            "patience": 0,
            "seed": 0,
        },
    )
    started = time.perf_counter()
    for update in engine.run(Inputs(stack), params, device=torch.device("cpu")):
        if update.kind == "metric" and update.data[0] == "loss" and update.fraction >= 0.999:
            print(f"    final loss {update.data[1]:.4f}", flush=True)
    seconds = time.perf_counter() - started
    network, _ = load_model(out, factor)
    return network, seconds


def scores(prediction: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """LFRecon-Bench scores of one prediction (fitted intensity scale, data range 1)."""
    result = compare(prediction, truth, (VOXEL_UM,) * 3, radius=RADIUS, data_range=1.0)
    return {
        "psnr": result["psnr"],
        "ssim": result["ssim"],
        "fourier_psnr_r25": result["fourier_psnr"],
        "sweep_radius": result["sweep"]["radius"].tolist(),
        "sweep_fourier_psnr": result["sweep"]["fourier_psnr"].tolist(),
    }


def quality(setup: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    """(b) and (c): every held-out volume at af 8 and 4."""
    rows = []
    shipped = load_model(shipped_weights_path(), 8)[0] if shipped_weights_path().is_file() else None
    for factor in (8, 4):
        for k in range(setup["volumes"]):
            family = FAMILIES[k % len(FAMILIES)]
            seed = TEST_SEED + 10 * factor + k
            truth = make_phantom(family, setup["volume"], (VOXEL_UM,) * 3, seed)
            stack = degrade(truth, factor, seed)
            name = f"{family} seed {seed}, af {factor}, stack {list(stack.shape)}"
            print(f"  {name}", flush=True)
            row: dict[str, Any] = {"volume": name, "family": family, "seed": seed, "anisotropy": factor}
            row["cubic"] = scores(upsample_z(stack, factor, "cubic"), truth)
            configs = ["small"] + (["reference"] if k == 0 else [])
            for config in configs:
                model, seconds = train(
                    stack, factor, config, setup["steps"], work / f"{config}-{factor}-{k}.safetensors"
                )
                field = NiivField(model, stack, factor)
                started = time.perf_counter()
                volume = field.decode_volume()
                decode_s = time.perf_counter() - started
                row[f"niiv-{config}"] = scores(volume, truth) | {
                    "train_steps": setup["steps"],
                    "train_seconds": seconds,
                    "decode_seconds": decode_s,
                }
                if config == "small":
                    twice = field.decode_volume(2.0)
                    averaged = 0.5 * (twice[0::2] + twice[1::2])
                    diff = averaged - volume
                    peak = float(np.max(np.abs(volume)))
                    row["consistency"] = {
                        "relative_rms": float(np.sqrt(np.mean(diff**2)) / np.sqrt(np.mean(volume**2))),
                        "psnr_db": float(10 * np.log10(peak**2 / np.mean(diff**2))),
                    }
            if shipped is not None and factor == shipped.config.anisotropy:
                row["niiv-shipped-weights"] = scores(NiivField(shipped, stack, factor).decode_volume(), truth)
            rows.append(row)
            print(
                "    "
                + ", ".join(
                    f"{m}: {row[m]['psnr']:.2f} dB" for m in row if isinstance(row[m], dict) and "psnr" in row[m]
                ),
                flush=True,
            )
    return rows


def markdown(result: dict[str, Any]) -> str:
    """The tables printed at the end (and pasted into BENCHMARKS.md)."""
    s = result["speed"]
    lines = [
        f"### niiv decoding speed: {s['input']} → {s['output']}, {result['threads']} threads, "
        f"median of {result['setup']['repeats']}",
        "",
        "| configuration | parameters | xz pass (s) | yz pass (s) | both passes (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("shipped", "reference"):
        c = s[name]["config"]
        label = f"{name} ({c['features']} feat × {c['blocks']} blocks, MLP {c['mlp_depth']}×{c['mlp_width']})"
        t = s[name]
        lines.append(f"| {label} | {t['parameters']} | {t['xz']:.2f} | {t['yz']:.2f} | {t['total']:.2f} |")
    lines += [f"\nspeed-up of the shipped configuration: {s['speedup']:.1f}×", ""]
    if "quality" not in result:
        return "\n".join(lines)
    lines += [
        f"### niiv quality on held-out volumes ({result['setup']['steps']} training steps per volume)",
        "",
        "| volume | method | PSNR (dB) | SSIM | Fourier-PSNR r=25 (dB) | train (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in result["quality"]:
        for method in ("cubic", "niiv-small", "niiv-reference", "niiv-shipped-weights"):
            if method in row:
                r = row[method]
                train_s = f"{r['train_seconds']:.0f}" if "train_seconds" in r else "–"
                lines.append(
                    f"| {row['volume']} | {method} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                    f"{r['fourier_psnr_r25']:.2f} | {train_s} |"
                )
    lines += ["", "| volume | 2×-then-average vs 1×: relative RMS | PSNR (dB) |", "|---|---:|---:|"]
    for row in result["quality"]:
        c = row["consistency"]
        lines.append(f"| {row['volume']} | {c['relative_rms']:.2e} | {c['psnr_db']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small volumes, a few training steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="training steps per volume (default 600; quick 10)")
    parser.add_argument("--skip-quality", action="store_true", help="only the speed comparison")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setup = dict(QUICK if args.quick else FULL)
    if args.steps:
        setup["steps"] = args.steps
    out = Path(args.out or f"benchmarks/results/niiv{'-quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print("(a) speed", flush=True)
    result: dict[str, Any] = {
        "setup": setup,
        "threads": args.threads,
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        "speed": speed(setup),
    }
    if not args.skip_quality:
        print("(b, c) quality and consistency", flush=True)
        with tempfile.TemporaryDirectory(prefix="niiv-bench-") as work:  # weights trained per test volume
            result["quality"] = quality(setup, Path(work))
    result["seconds"] = time.perf_counter() - started
    out.write_text(json.dumps(result, indent=1))
    print(markdown(result))
    print(f"wrote {out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
