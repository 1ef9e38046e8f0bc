"""SeReNet vs Richardson–Lucy (30 iterations) on held-out synthetic light fields: PSNR, SSIM, wall time.

Run from the repository root:

    python benchmarks/bench_serenet.py [--weights W [W ...]] [--psf PSF] [--lenslets 32]
                                       [--families filaments beads] [--n 2] [--threads 2]

Test frames are simulated through the PSF the weights were trained for (by
default the shipped LFM sample's PSF and weights), from phantom families NOT
used in training (the shipped weights saw only "bubtub"), with the sample's
noise model (Poisson, 1 e⁻ background, 1.5 e⁻ read noise), seeds disjoint from
training. Both methods get the same background; their volumes are divided by
the simulation's photon scale (no fitted gain) and compared with the phantom
(maximum 1) by PSNR and SSIM with data range 1. Times are wall-clock seconds of
``napari_lfrecon.reconstruct`` (one warm-up run first), median over frames;
SeReNet caches per PSF object what it derives from the PSF (the psfshift
displacements), RL recomputes its kernel spectra on every call, so SeReNet's
"first frame" time (a fresh PSF object, cache empty) is reported too.
Several weights files (same optics) are compared in one run.
Results go to ``benchmarks/results/serenet.json`` and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from napari_lfrecon import reconstruct
from napari_lfrecon.engines.serenet_data import simulate_training_frames
from napari_lfrecon.engines.serenet_weights import shipped_weights_path
from napari_lfrecon.metrics.basic import psnr, ssim
from napari_lfrecon.psf.model import PSF
from napari_lfrecon.samples import load_sample

#: Seeds of the test frames (training used seed 1 for its simulated frames).
TEST_SEED = 9001
BACKGROUND_E = 1.0
READ_NOISE_E = 1.5


def _timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", default=[str(shipped_weights_path())])
    parser.add_argument("--psf", default="", help="LFM PSF file of the weights (default: the LFM sample's)")
    parser.add_argument("--families", nargs="+", default=["filaments", "beads"])
    parser.add_argument("--n", type=int, default=2, help="test frames per family")
    parser.add_argument("--lenslets", type=int, default=32)
    parser.add_argument("--rl-iterations", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/serenet.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    psf = PSF.load(args.psf) if args.psf else load_sample("lfm")["psf"]
    rows = []
    for f_index, family in enumerate(args.families):
        views, volumes, scales = simulate_training_frames(
            psf,
            args.n,
            (args.lenslets, args.lenslets),
            family=family,
            photons=(500.0, 500.0),
            background_e=BACKGROUND_E,
            read_noise_e=READ_NOISE_E,
            seed=TEST_SEED + f_index,
        )
        for i in range(args.n):
            truth, scale = volumes[i], scales[i]
            if not rows:  # warm-up: first-call costs (thread pools, allocator) are not the method's
                for w in args.weights:
                    reconstruct("serenet", views[i], psf, weights=w, background=BACKGROUND_E)
                reconstruct("rl", views[i], psf, iterations=1, background=BACKGROUND_E)
            results = []
            for w in args.weights:
                fresh = PSF(psf.array, "lfm", psf.voxel_size, psf.optics, z_planes_um=psf.z_planes_um)
                _, t_cold = _timed(
                    lambda v=views[i], p=fresh, w=w: reconstruct("serenet", v, p, weights=w, background=BACKGROUND_E)
                )
                sn, t_sn = _timed(
                    lambda v=views[i], w=w: reconstruct("serenet", v, psf, weights=w, background=BACKGROUND_E)
                )
                results.append((f"serenet:{Path(w).stem}", sn.data, t_sn, t_cold))
            rl, t_rl = _timed(
                lambda v=views[i]: reconstruct("rl", v, psf, iterations=args.rl_iterations, background=BACKGROUND_E)
            )
            results.append((f"rl-{args.rl_iterations}", rl.data, t_rl, t_rl))
            for method, volume, seconds, first_seconds in results:
                estimate = volume / scale
                rows.append(
                    {
                        "family": family,
                        "frame": i,
                        "method": method,
                        "psnr_db": round(psnr(estimate, truth, data_range=1.0), 3),
                        "ssim": round(ssim(estimate, truth, data_range=1.0), 4),
                        "seconds": round(seconds, 3),
                        "first_frame_seconds": round(first_seconds, 3),
                    }
                )
                print(rows[-1], flush=True)
    summary = {}
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method]
        summary[method] = {
            "psnr_db_mean": round(float(np.mean([r["psnr_db"] for r in mine])), 2),
            "ssim_mean": round(float(np.mean([r["ssim"] for r in mine])), 4),
            "seconds_median": round(float(np.median([r["seconds"] for r in mine])), 3),
            "first_frame_seconds_median": round(float(np.median([r["first_frame_seconds"] for r in mine])), 3),
        }
    result = {
        "weights": args.weights,
        "psf": psf.describe(),
        "frames": f"{args.n} per family {args.families}, {args.lenslets}×{args.lenslets} lenslets, seed {TEST_SEED}+",
        "threads": args.threads,
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        "rows": rows,
        "summary": summary,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
