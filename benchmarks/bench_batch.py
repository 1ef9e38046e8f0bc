"""Scale-out benchmark: throughput of a batch run with 1 and 2 dask workers (one torch thread each).

A time series of LFM frames (the shipped sample, each frame with its own Poisson noise) is
reconstructed with RL through ``run_batch`` on a LocalCluster started and warmed up beforehand
(cluster start-up is reported separately, not timed with the run). Peak memory is each process's
VmHWM (scheduler/client process + every worker), summed, against ``--max-memory`` per worker.

    python benchmarks/bench_batch.py [--frames 16] [--iterations 20] [--max-memory 512MiB]
"""

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def vm_hwm() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def warm() -> int:
    import torch  # noqa: F401

    import napari_lfrecon.api  # noqa: F401
    import napari_lfrecon.batch.run  # noqa: F401

    return 0


def run(workers: int, source, psf, params, max_memory: int, out: Path) -> dict:
    from distributed import Client, LocalCluster

    from napari_lfrecon.batch import run_batch

    started = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit=0,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(warm)
        startup = time.perf_counter() - started
        t0 = time.perf_counter()
        summary = run_batch(
            source, out, psf, params=params, max_memory=max_memory, scheduler=cluster.scheduler_address, overwrite=True
        )
        seconds = time.perf_counter() - t0
        worker_peaks = list(client.run(vm_hwm).values())
    main_peak = vm_hwm()
    return {
        "workers": workers,
        "frames": summary.chunks_computed,
        "seconds": round(seconds, 2),
        "frames_per_s": round(summary.chunks_computed / seconds, 3),
        "cluster_start_s": round(startup, 2),
        "worker_peak_mib": [round(p / 2**20, 1) for p in worker_peaks],
        "main_peak_mib": round(main_peak / 2**20, 1),
        "sum_peak_mib": round((sum(worker_peaks) + main_peak) / 2**20, 1),
        "task_estimate_mib": round(summary.plan["task_bytes_estimate"] / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--max-memory", default="512MiB")
    args = parser.parse_args()

    from napari_lfrecon.batch import array_source, parse_size
    from napari_lfrecon.samples import load_sample

    sample = load_sample("lfm")
    rng = np.random.default_rng(0)
    clean = np.asarray(sample["data"], np.float32)
    frames = np.stack([rng.poisson(clean).astype(np.float32) for _ in range(args.frames)])
    source = array_source(frames, "TYX")
    cap = parse_size(args.max_memory)
    params = {"iterations": args.iterations}
    tmp = Path(tempfile.mkdtemp())
    try:
        results = [run(n, source, sample["psf"], params, cap, tmp / f"w{n}.zarr") for n in (1, 2)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results[1]["speedup"] = round(results[0]["seconds"] / results[1]["seconds"], 2)
    for r in results:
        print(json.dumps(r))
    out = Path(__file__).parent / "results" / "batch.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"frames_shape": list(frames.shape), "cap_mib": cap / 2**20, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
