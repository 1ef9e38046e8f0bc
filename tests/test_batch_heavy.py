"""Heavy batch tests (marked slow): a 2-worker LocalCluster, SIGKILL + resume, peak memory vs --max-memory.

Each starts subprocesses or a cluster; together they take about a minute on 2 cores.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

from napari_lfrecon.batch import array_source, finished_chunks, run_batch
from napari_lfrecon.io.tiff import write_tiff
from napari_lfrecon.io.zarr_io import read_zarr
from napari_lfrecon.psf import PSF

pytestmark = pytest.mark.slow
VOXEL = (0.5, 0.2, 0.2)


def gaussian_psf(shape=(5, 7, 7)):
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    return PSF(np.exp(-sum(g**2 for g in grids) / 3.0).astype(np.float32), "widefield", VOXEL)


def series(frames=4, shape=(6, 32, 32), seed=0):
    return np.random.default_rng(seed).poisson(30, (frames, *shape)).astype(np.float32)


def test_local_cluster_two_workers_one_torch_thread_each(tmp_path):
    import psutil

    data = series()
    psf = gaussian_psf()
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    local = run_batch(array_source(data, "TZYX"), tmp_path / "local.zarr", psf, params={"iterations": 5})
    summary = run_batch(array_source(data, "TZYX"), tmp_path / "dist.zarr", psf, params={"iterations": 5}, workers=2)
    assert summary.workers == 2 and summary.scheduler == "local-cluster" and summary.chunks_computed == 4
    np.testing.assert_allclose(
        np.asarray(read_zarr(tmp_path / "dist.zarr").data),
        np.asarray(read_zarr(local.output).data),
        rtol=1e-5,
        atol=1e-6 * float(np.asarray(read_zarr(local.output).data).max()),
    )
    markers = [json.loads(p.read_text()) for p in (tmp_path / "dist.zarr" / ".lfrecon_done").glob("c*.json")]
    assert len(markers) == 4
    assert {m["torch_threads"] for m in markers} == {1}
    assert os.getpid() not in {m["pid"] for m in markers}  # computed in the worker processes

    # The cluster (scheduler thread, nanny and worker processes) is closed when the run returns.
    # (multiprocessing's resource tracker is shared by the whole test session and stays.)
    def leftovers():
        return [
            p
            for p in psutil.Process().children(recursive=True)
            if p.pid not in before and "resource_tracker" not in " ".join(p.cmdline())
        ]

    deadline = time.time() + 10
    while leftovers() and time.time() < deadline:
        time.sleep(0.2)
    assert not leftovers()


def test_learned_engine_without_psf_runs_on_a_local_cluster(tmp_path):
    import torch

    from napari_lfrecon.api import reconstruct
    from napari_lfrecon.engines.niiv import save_model
    from napari_lfrecon.engines.niiv_model import NiivConfig, NiivNet

    torch.manual_seed(0)
    model = NiivNet(NiivConfig(features=8, blocks=1, attn_dim=4, mlp_width=16, mlp_depth=2, anisotropy=4))
    weights = str(save_model(tmp_path / "n.safetensors", model, {}))
    stacks = np.random.default_rng(3).random((3, 4, 20, 24)).astype(np.float32) + 0.1
    voxel = (0.8, 0.2, 0.2)
    summary = run_batch(
        array_source(stacks, "TZYX"),
        tmp_path / "n.zarr",
        None,
        engine="niiv",
        params={"weights": weights},
        voxel_size=voxel,
        workers=2,
    )
    assert summary.workers == 2 and summary.chunks_computed == 3 and summary.shape == (3, 16, 20, 24)
    direct = np.stack([reconstruct("niiv", s, voxel_size=voxel, weights=weights).data for s in stacks])
    np.testing.assert_allclose(np.asarray(read_zarr(tmp_path / "n.zarr").data), direct, rtol=1e-5, atol=1e-6)


def _cli(*args):
    return [sys.executable, "-m", "napari_lfrecon.cli", "reconstruct", *map(str, args)]


def test_sigkill_half_way_then_resume_is_identical_and_recomputes_nothing_finished(tmp_path):
    data = series(frames=8, shape=(8, 48, 48), seed=1)
    inp = write_tiff(tmp_path / "in.tif", data, voxel_size=VOXEL, axes="TZYX")
    psf_file = gaussian_psf().save(tmp_path / "p.psf.safetensors")
    common = ["--psf", psf_file, "--iterations", "25", "--json", inp]

    # One torch thread in every run: multi-threaded reductions on a loaded machine are not bit-reproducible.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "ref.zarr"
    subprocess.run(_cli(*common, reference), check=True, capture_output=True, env=env)

    out = tmp_path / "out.zarr"
    process = subprocess.Popen(_cli(*common, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    while len(finished_chunks(out)) < 3 and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = finished_chunks(out)
    assert 3 <= len(done) < 8
    stamps = {
        name: (
            (out / ".lfrecon_done" / f"{name}.json").stat().st_mtime_ns,
            (out / "0" / name[1:] / "0" / "0" / "0").stat().st_mtime_ns,
        )
        for name in done
    }

    result = subprocess.run(_cli(*common, out), check=True, capture_output=True, text=True, env=env)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["chunks_total"] == 8
    assert summary["chunks_skipped"] == len(done) and summary["chunks_computed"] == 8 - len(done)
    for name, stamp in stamps.items():  # finished chunks were neither recomputed nor rewritten
        marker = (out / ".lfrecon_done" / f"{name}.json").stat().st_mtime_ns
        chunk = (out / "0" / name[1:] / "0" / "0" / "0").stat().st_mtime_ns
        assert (marker, chunk) == stamp
    np.testing.assert_array_equal(np.asarray(read_zarr(out).data), np.asarray(read_zarr(reference).data))


_MEASURE = """
import json, resource, subprocess, sys
baseline_cmd, job = json.loads(sys.argv[1])
subprocess.run(baseline_cmd, check=True)
baseline = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
result = subprocess.run(job, capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"baseline": baseline, "peak": peak, "returncode": result.returncode,
                  "stdout": result.stdout, "stderr": result.stderr[-2000:]}))
"""


def test_peak_memory_stays_under_the_cap_for_an_input_eight_times_larger(tmp_path):
    cap_mib = 16
    shape = (8, 2048, 2048)  # 128 MiB of float32: 8 × the cap, written as a contiguous (memory-mappable) TIFF
    big = tmp_path / "big.tif"
    mapped = tifffile.memmap(big, shape=shape, dtype=np.float32)
    rng = np.random.default_rng(0)
    for z in range(shape[0]):
        mapped[z] = rng.random(shape[1:], dtype=np.float32) + 1
    mapped.flush()
    del mapped
    assert big.stat().st_size >= 8 * cap_mib * 2**20
    psf_file = gaussian_psf().save(tmp_path / "p.psf.safetensors")

    out = tmp_path / "big.zarr"
    flags = ("--psf", psf_file, "--voxel-size", *VOXEL, "--iterations", "1", "--max-memory", f"{cap_mib}MiB", "--json")
    job = _cli(*flags, big, out)
    # The baseline ("interpreter excluded"): the same command on a tiny input, so the interpreter, torch,
    # zarr, dask and this package's code path are loaded and initialised; the growth above it is the data.
    tiny = write_tiff(tmp_path / "tiny.tif", np.ones((8, 32, 32), np.float32), voxel_size=VOXEL)
    baseline_cmd = _cli(*flags, tiny, tmp_path / "tiny.zarr")
    # A fresh parent for the two measured children: RUSAGE_CHILDREN is the maximum over every child a
    # process ever waited for, so this test process (which ran other subprocesses) cannot be used.
    measured = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps([baseline_cmd, job])], capture_output=True, text=True, check=True
    )
    report = json.loads(measured.stdout.strip().splitlines()[-1])
    assert report["returncode"] == 0, report["stderr"]
    summary = json.loads(report["stdout"].strip().splitlines()[-1])
    assert summary["chunks_computed"] == summary["chunks_total"] > 8
    growth = report["peak"] - report["baseline"]
    print(f"baseline {report['baseline'] / 2**20:.1f} MiB, peak {report['peak'] / 2**20:.1f} MiB, cap {cap_mib} MiB")
    assert growth <= cap_mib * 2**20
    written = read_zarr(out)
    assert written.data.shape == shape and np.allclose(written.voxel_size, VOXEL)
    assert float(written.data[3, 1000:1010, 1000:1010].mean().compute()) > 0


def test_local_workers_die_with_a_killed_parent(tmp_path):
    """SIGKILL the process running a 2-worker local cluster: no worker process may outlive it."""
    import psutil

    data = series(frames=1, shape=(6, 64, 64))[0]
    inp = write_tiff(tmp_path / "in.tif", data, voxel_size=VOXEL)
    psf_file = gaussian_psf().save(tmp_path / "p.psf.safetensors")
    argv = ["reconstruct", "--psf", str(psf_file), "--iterations", "3000", "--tile", "16", "--workers", "2"]
    parent = subprocess.Popen(
        [sys.executable, "-m", "napari_lfrecon.cli", *argv, str(inp), str(tmp_path / "o.zarr")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        workers: list = []
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.5)
            workers = [p for p in psutil.Process(parent.pid).children() if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2, "the local cluster did not start"
        time.sleep(2)  # the workers are running their preload (the parent-death guard)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        gone, alive = psutil.wait_procs(workers, timeout=5)
        assert not alive, f"workers outlived their killed parent: {[p.pid for p in alive]}"
    finally:
        if parent.poll() is None:
            parent.kill()
