"""How well do SeReNet's volumes explain the measurement, next to RL's and the truth's?

Run from the repository root:

    python benchmarks/bench_serenet_fit.py --psf PSF --weights W [--lenslets 64] [--threads 2]

For held-out simulated frames (filaments and beads, seeds as in
``bench_serenet.py``, plus a bubtub frame — the training family — with a seed
not used in training) it reports, for the ground truth, RL-30 and SeReNet:

- the mixed Poisson–Gaussian NLL (nats per pixel) of each volume's
  re-projection through the same operator against the frame, on lenslets at
  least ``--rim`` from the edge (a volume that explains the data as well as the
  truth scores like the truth);
- PSNR against the phantom;
- RL started from SeReNet's volume (``richardson_lucy(initial=...)``) after
  1…30 iterations, next to RL from its flat start: what SeReNet is worth in RL
  iterations.

Results go to ``benchmarks/results/serenet_fit.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from bench_serenet import BACKGROUND_E, READ_NOISE_E, TEST_SEED  # same noise and seeds as the PSNR benchmark

from napari_lfrecon import reconstruct
from napari_lfrecon.engines.rl import richardson_lucy
from napari_lfrecon.engines.serenet_data import default_view_indices, simulate_training_frames
from napari_lfrecon.engines.serenet_loss import nll_mpg
from napari_lfrecon.metrics.basic import psnr
from napari_lfrecon.modalities import forward_model
from napari_lfrecon.physics.phase_space import PhaseSpaceLF
from napari_lfrecon.psf.model import PSF

#: bench_serenet.py's held-out frames (seed TEST_SEED + family index), plus one of the training family.
FRAMES = (("filaments", TEST_SEED), ("beads", TEST_SEED + 1), ("bubtub", TEST_SEED + 100))
CHECKPOINTS = (1, 2, 3, 5, 8, 10, 15, 20, 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--psf", required=True, help="LFM PSF file the weights were trained for")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--lenslets", type=int, default=64)
    parser.add_argument("--rim", type=int, default=6, help="lenslets left out at each edge of the NLL")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/serenet_fit.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    psf = PSF.load(args.psf)
    s, depth = int(psf.optics.get("supersample", 1)), int(psf.array.shape[1])
    used = default_view_indices(psf)
    volume_shape = (depth, s * args.lenslets, s * args.lenslets)
    projector = PhaseSpaceLF(psf.array[used], s, volume_shape)
    rim = args.rim
    rows = []
    for family, seed in FRAMES:
        views, volumes, scales = simulate_training_frames(
            psf,
            1,
            (args.lenslets, args.lenslets),
            family=family,
            photons=(500.0, 500.0),
            background_e=BACKGROUND_E,
            read_noise_e=READ_NOISE_E,
            seed=seed,
        )
        frame, truth, scale = views[0], volumes[0], scales[0]
        measured = torch.as_tensor(frame[used])[:, rim:-rim, rim:-rim]

        def nll(volume, measured=measured):
            with torch.no_grad():
                rate = projector(torch.as_tensor(volume, dtype=torch.float32)[None])[0] + BACKGROUND_E
            return float(nll_mpg(rate[:, rim:-rim, rim:-rim], measured, READ_NOISE_E))

        sn = reconstruct("serenet", frame, psf, weights=args.weights, background=BACKGROUND_E).data
        model = forward_model(psf, frame.shape)
        y = torch.as_tensor(model.prepare(frame))[None]
        curves: dict[str, dict[int, float]] = {}
        for start, initial in (("flat", None), ("serenet", torch.as_tensor(sn)[None])):
            curve = curves.setdefault(start, {})
            steps = richardson_lucy(
                model.operator.forward,
                model.operator.adjoint,
                y,
                model.volume_shape,
                max(CHECKPOINTS),
                background=BACKGROUND_E,
                initial=initial,
            )
            with torch.no_grad():
                for k, x in steps:
                    if k in CHECKPOINTS:
                        estimate = model.crop_output(x)[0].numpy()
                        curve[k] = round(psnr(estimate / scale, truth, data_range=1.0), 3)
                        if start == "flat" and k == max(CHECKPOINTS):
                            rl30 = estimate.copy()
        row = {
            "family": family,
            "seed": seed,
            "nll": {"truth": nll(truth * scale), "rl-30": nll(rl30), "serenet": nll(sn)},
            "psnr_db": {
                "rl-30": round(psnr(rl30 / scale, truth, data_range=1.0), 3),
                "serenet": round(psnr(sn / scale, truth, data_range=1.0), 3),
            },
            "rl_psnr_by_iteration": curves,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"psf": psf.describe(), "weights": args.weights, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
