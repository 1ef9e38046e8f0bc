"""Foundation benchmark: our Richardson–Lucy and LFM code side by side with the peers, in one run.

Widefield RL (20 iterations): ours (``Convolve3D`` circular and padded) vs
scikit-image and RedLionfish (CPU), plus the "zero drift" check on a
point-symmetric bead object. LFM: our ``lfm_psf`` + ``PhaseSpaceLF`` RL vs
pyolaf's operator computation and RL iteration on the same geometry.

Every measurement runs in its own subprocess (so ``ru_maxrss`` is that
method's own peak), methods are interleaved and repeated, and the median is
reported. Ours runs with the interpreter that runs this script; the peers run
with the peers' virtualenv (``benchmarks/.peers``, see ``benchmarks/README.md``).

    python benchmarks/bench_foundation.py            # full run, updates BENCHMARKS.md
    python benchmarks/bench_foundation.py --quick    # smoke test, seconds, no BENCHMARKS.md update
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DEFAULT_PEERS_PYTHON = HERE / ".peers" / "bin" / "python"
SECTION_TITLE = "Foundation: RL and LFM vs peers"

# ----------------------------------------------------------------------------- configuration

FULL = {
    "wf": {
        "data_shape": [64, 256, 256],
        "psf_shape": [32, 64, 64],
        "voxel_um": [0.3, 0.1, 0.1],
        "na": 1.0,
        "wavelength_um": 0.52,
        "immersion_index": 1.33,
        "iterations": 20,
    },
    "lfm": {
        "magnification": 20.0,
        "na": 0.5,
        "immersion_index": 1.33,
        "wavelength_um": 0.52,
        "camera_pixel_um": 6.5,
        "pixels_per_lenslet": 17,
        "supersample": 3,
        "lenslets": 19,
        "z_range_um": [-20.0, 20.0],
        "z_step_um": 4.0,
        "tube_lens_um": 165000.0,
        "ours_iterations": 10,
        "pyolaf_iterations": 3,
    },
    "repeats": 3,
}

QUICK = {
    "wf": {
        "data_shape": [16, 64, 64],
        "psf_shape": [8, 16, 16],
        "voxel_um": [0.3, 0.1, 0.1],
        "na": 1.0,
        "wavelength_um": 0.52,
        "immersion_index": 1.33,
        "iterations": 5,
    },
    "lfm": {
        "magnification": 20.0,
        "na": 0.5,
        "immersion_index": 1.33,
        "wavelength_um": 0.52,
        "camera_pixel_um": 6.5,
        "pixels_per_lenslet": 7,
        "supersample": 3,
        "lenslets": 7,
        "z_range_um": [-4.0, 4.0],
        "z_step_um": 4.0,
        "tube_lens_um": 165000.0,
        "ours_iterations": 2,
        "pyolaf_iterations": 1,
    },
    "repeats": 1,
}

WF_METHODS = ["wf-ours-circular", "wf-ours-padded", "wf-ours-circular-1t", "wf-skimage", "wf-redlionfish"]
LFM_METHODS = ["lfm-ours-psf", "lfm-ours-psf-osf1", "lfm-pyolaf-psf", "lfm-ours-rl", "lfm-ours-rl-1t", "lfm-pyolaf-rl"]
PEER_METHODS = {"wf-skimage", "wf-redlionfish", "lfm-pyolaf-psf", "lfm-pyolaf-rl"}


# ----------------------------------------------------------------------------- worker helpers


def _hwm_kib() -> int:
    """High-water mark of this process's resident memory so far (KiB), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _peak_mib() -> float:
    """This process's peak RSS (MiB).

    ``VmHWM`` rather than ``getrusage().ru_maxrss``: Linux carries ``ru_maxrss``
    over ``exec`` from the forked parent, so a child of a big orchestrator
    would report the parent's peak.
    """
    return max(_hwm_kib(), 0) / 1024.0


def _symmetric_window_centroid(volume: np.ndarray, centre: list[int]) -> list[float]:
    """Intensity centroid minus ``centre`` inside the largest window symmetric about ``centre``.

    A result that is point-symmetric about ``centre`` gives exactly 0: any
    non-zero value is a drift introduced by the method.
    """
    slices, coords = [], []
    for n, c in zip(volume.shape, centre, strict=True):
        half = min(c, n - 1 - c)
        slices.append(slice(c - half, c + half + 1))
        coords.append(np.arange(-half, half + 1, dtype=np.float64))
    window = np.clip(volume[tuple(slices)].astype(np.float64), 0, None)
    total = window.sum()
    shift = []
    for axis, offsets in enumerate(coords):
        other = tuple(a for a in range(3) if a != axis)
        shift.append(float((window.sum(axis=other) * offsets).sum() / total))
    return shift


def _lfm_optics(cfg: dict):
    from napari_lfrecon.psf.lfm import LFMOptics

    nnum = cfg["pixels_per_lenslet"]
    pitch = nnum * cfg["camera_pixel_um"]
    return LFMOptics(
        magnification=cfg["magnification"],
        na=cfg["na"],
        immersion_index=cfg["immersion_index"],
        wavelength_um=cfg["wavelength_um"],
        lenslet_pitch_um=pitch,
        lenslet_focal_um=_f_ml(cfg),
        camera_pixel_um=cfg["camera_pixel_um"],
        pixels_per_lenslet=nnum,
        supersample=cfg["supersample"],
    )


def _f_ml(cfg: dict) -> float:
    """Lenslet focal length matching the objective's image-side f-number (``f/p = M / (2 NA)``)."""
    pitch = cfg["pixels_per_lenslet"] * cfg["camera_pixel_um"]
    return pitch * cfg["magnification"] / (2 * cfg["na"])


def _z_planes(cfg: dict) -> np.ndarray:
    lo, hi = cfg["z_range_um"]
    return np.arange(lo, hi + cfg["z_step_um"] / 2, cfg["z_step_um"])


def _pyolaf_setup(cfg: dict, workdir: Path):
    """pyolaf's camera, geometry and resolution dicts for the same optics (simulation: no white image)."""
    import yaml
    from pyolaf.geometry import LFM_computeGeometryParameters, LFM_setCameraParams

    nnum = int(cfg["pixels_per_lenslet"])
    camera = {
        "gridType": "reg",
        "focus": "single",
        "plenoptic": 1,
        "uLensMask": 1,
        "M": float(cfg["magnification"]),
        "NA": float(cfg["na"]),
        "ftl": float(cfg["tube_lens_um"]),
        "lensPitch": nnum * float(cfg["camera_pixel_um"]),
        "pixelPitch": float(cfg["camera_pixel_um"]),
        "fm": _f_ml(cfg),
        "n": float(cfg["immersion_index"]),
        "WaveLength": float(cfg["wavelength_um"]),
        "tube2mla": 0,
        "mla2sensor": 0,
    }
    config_file = workdir / "pyolaf_config.yaml"
    config_file.write_text(yaml.safe_dump(camera))
    camera = LFM_setCameraParams(str(config_file), nnum)  # an int spacing: pyolaf indexes with it
    img_size = np.array([cfg["lenslets"] * nnum] * 2)
    step = float(cfg["z_step_um"])
    centres, resolution, _, _ = LFM_computeGeometryParameters(
        camera, np.zeros(0), list(cfg["z_range_um"]), step, int(cfg["supersample"]), False, img_size
    )
    return camera, resolution, centres, img_size


# ----------------------------------------------------------------------------- widefield workers


def _wf_worker(method: str, workdir: Path, cfg: dict, threads: int) -> dict:
    data = np.load(workdir / "wf_data.npy")
    psf = np.load(workdir / "wf_psf.npy")
    centre = json.loads((workdir / "wf_meta.json").read_text())["centre"]
    iterations = cfg["iterations"]
    result: dict = {"method": method}
    if method.startswith("wf-ours"):
        import torch

        from napari_lfrecon.engines.rl import richardson_lucy
        from napari_lfrecon.physics import Convolve3D

        used = 1 if method.endswith("-1t") else threads
        torch.set_num_threads(used)
        boundary = "padded" if "padded" in method else "circular"
        base = _hwm_kib()
        start = time.perf_counter()
        with torch.no_grad():
            op = Convolve3D(psf, data.shape, boundary=boundary)
            y = torch.from_numpy(data)[None]
            x = None
            for _, x in richardson_lucy(op.forward, op.adjoint, y, op.volume_shape, iterations):  # noqa: B007
                pass
            out = op.crop_to_data(x)[0].numpy()
        seconds = time.perf_counter() - start
        result.update(threads=used, boundary=boundary, engine="torch " + torch.__version__)
    elif method == "wf-skimage":
        import scipy.fft
        import skimage
        from skimage.restoration import richardson_lucy as sk_rl

        base = _hwm_kib()
        start = time.perf_counter()
        with scipy.fft.set_workers(threads):  # fftconvolve inside uses scipy.fft: give it the same threads
            out = sk_rl(data, psf, num_iter=iterations, clip=False)
        seconds = time.perf_counter() - start
        result.update(
            threads=threads, boundary="zero-padded linear ('same' crop)", engine="scikit-image " + skimage.__version__
        )
    elif method == "wf-redlionfish":
        import scipy.fft
        from RedLionfishDeconv import doRLDeconvolutionFromNpArrays

        base = _hwm_kib()
        start = time.perf_counter()
        with scipy.fft.set_workers(threads):
            out = doRLDeconvolutionFromNpArrays(data, psf, niter=iterations, method="cpu", resAsUint8=False)
        seconds = time.perf_counter() - start
        from importlib.metadata import version

        result.update(threads=threads, boundary="circular", engine="RedLionfish " + version("redlionfish"))
    else:
        raise ValueError(f"unknown widefield method {method!r}")
    if out is None:
        raise RuntimeError(f"{method} returned no result")
    out = np.asarray(out, dtype=np.float64)[tuple(slice(0, n) for n in data.shape)]
    result.update(
        seconds=seconds,
        per_iteration=seconds / iterations,
        peak_mib=_peak_mib(),
        peak_delta_mib=(_hwm_kib() - base) / 1024.0 if _hwm_kib() > base else 0.0,
        drift_voxels=_symmetric_window_centroid(out, centre),
        finite=bool(np.isfinite(out).all()),
    )
    return result


# ----------------------------------------------------------------------------- LFM workers


def _lfm_worker(method: str, workdir: Path, cfg: dict, threads: int) -> dict:
    result: dict = {"method": method}
    if method.startswith("lfm-ours"):
        import torch

        used = 1 if method.endswith("-1t") else threads
        torch.set_num_threads(used)
        result["threads"] = used
    if method in ("lfm-ours-psf", "lfm-ours-psf-osf1"):
        from napari_lfrecon.psf.lfm import lfm_psf

        optics = _lfm_optics(cfg)
        z = _z_planes(cfg)
        base = _hwm_kib()
        start = time.perf_counter()
        psf = lfm_psf(optics, z, device="cpu", oversampling=1 if method.endswith("osf1") else None)
        seconds = time.perf_counter() - start
        if method == "lfm-ours-psf" and not (workdir / "lfm_ours_psf.npy").exists():
            np.save(workdir / "lfm_ours_psf.npy", psf.array)
        result.update(
            seconds=seconds,
            kernel_shape=list(psf.array.shape),
            oversampling=int(psf.optics["oversampling"]),
            kernel_lenslets=int(psf.optics["kernel_lenslets"]),
        )
    elif method == "lfm-pyolaf-psf":
        import pickle

        from pyolaf.lf import LFM_computeLFMatrixOperators

        base = _hwm_kib()
        start = time.perf_counter()
        camera, resolution, centres, img_size = _pyolaf_setup(cfg, workdir)
        h, ht = LFM_computeLFMatrixOperators(camera, resolution, centres)
        seconds = time.perf_counter() - start
        if not (workdir / "lfm_pyolaf_ops.pkl").exists():
            with open(workdir / "lfm_pyolaf_ops.pkl", "wb") as f:  # our own scratch file, read back below
                pickle.dump((camera, resolution, centres, img_size, h, ht), f)
        result.update(threads=1, seconds=seconds, forward_pattern_shape=list(h[0, 0, 0].shape), patterns=list(h.shape))
    elif method.startswith("lfm-ours-rl"):
        import torch

        from napari_lfrecon.engines.rl import richardson_lucy
        from napari_lfrecon.physics.phase_space import PhaseSpaceLF

        kernel = np.load(workdir / "lfm_ours_psf.npy")
        views = torch.from_numpy(np.load(workdir / "lfm_views.npy"))[None]
        s, n = cfg["supersample"], cfg["lenslets"]
        volume_shape = (kernel.shape[1], n * s, n * s)
        iterations = cfg["ours_iterations"]
        base = _hwm_kib()
        with torch.no_grad():
            start = time.perf_counter()
            op = PhaseSpaceLF(kernel, s, volume_shape)
            steps = richardson_lucy(op.forward, op.adjoint, views, volume_shape, iterations)
            _, x = next(steps)  # setup (kernel spectra, sensitivity) + iteration 1
            first = time.perf_counter()
            for _, x in steps:  # noqa: B007
                pass
            end = time.perf_counter()
        result.update(
            setup_plus_first=first - start,
            per_iteration=(end - first) / max(iterations - 1, 1),
            seconds=end - start,
            volume_shape=list(volume_shape),
            finite=bool(torch.isfinite(x).all()),
        )
    elif method == "lfm-pyolaf-rl":
        import pickle

        from pyolaf.aliasing import LFM_computeDepthAdaptiveWidth, lanczosfft
        from pyolaf.project import LFM_backwardProject, LFM_forwardProject

        with open(workdir / "lfm_pyolaf_ops.pkl", "rb") as f:
            camera, resolution, centres, img_size, h, ht = pickle.load(f)
        raw = np.load(workdir / "lfm_raw.npy")
        s, n = cfg["supersample"], cfg["lenslets"]
        tex_size = np.array([n * s, n * s])  # same volume grid as ours (odd: s and n are odd)
        depth = len(resolution["depths"])
        crange = camera["range"]
        iterations = cfg["pyolaf_iterations"]
        base = _hwm_kib()
        start = time.perf_counter()
        ones = np.ones((tex_size[0], tex_size[1], depth), dtype="float32")
        ones_forward = LFM_forwardProject(h, ones, centres, resolution, img_size, crange, step=10)
        ones_back = LFM_backwardProject(ht, ones_forward, centres, resolution, tex_size, crange, step=10)
        recon = ones.copy()
        setup = time.perf_counter() - start
        times = []
        with np.errstate(divide="ignore", invalid="ignore"):
            for _ in range(iterations):
                t0 = time.perf_counter()
                guess = LFM_forwardProject(h, recon, centres, resolution, img_size, crange, step=10)
                error = raw / guess * ones_forward
                error[~np.isfinite(error)] = 0
                back = LFM_backwardProject(ht, error, centres, resolution, tex_size, crange, step=10)
                back = back / ones_back
                back[~np.isfinite(back)] = 0
                recon = recon * back
                recon[~np.isfinite(recon)] = 0
                times.append(time.perf_counter() - t0)
            # pyolaf's optional depth-adaptive anti-aliasing filter, timed apart (plain RL above).
            volume_size = np.append(tex_size, depth).astype("int32")
            t0 = time.perf_counter()
            kernel_fft = lanczosfft(volume_size, LFM_computeDepthAdaptiveWidth(camera, resolution), 4)
            for j in range(depth):
                recon[:, :, j] = np.abs(
                    np.fft.fftshift(np.fft.ifft2(kernel_fft[:, :, j] * np.fft.fft2(recon[:, :, j])))
                )
            filter_seconds = time.perf_counter() - t0
        result.update(
            threads=1,
            setup=setup,
            per_iteration=float(np.mean(times)),
            filter_seconds=filter_seconds,
            seconds=time.perf_counter() - start,
            finite=bool(np.isfinite(recon).all()),
        )
    else:
        raise ValueError(f"unknown LFM method {method!r}")
    result.update(peak_mib=_peak_mib(), peak_delta_mib=max(_hwm_kib() - base, 0) / 1024.0)
    return result


def worker_main(method: str, workdir: Path, spec: dict, threads: int) -> None:
    """Run one measurement and print ``RESULT <json>`` as the last stdout line."""
    if method.startswith("wf-"):
        result = _wf_worker(method, workdir, spec["wf"], threads)
    else:
        result = _lfm_worker(method, workdir, spec["lfm"], threads)
    result["python"] = sys.executable
    print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- inputs


def make_widefield_inputs(workdir: Path, cfg: dict) -> dict:
    """A point-symmetric bead object blurred (circularly) by a symmetrised widefield PSF; noise-free.

    The PSF is our scalar widefield model with its first row/plane on every
    axis zeroed, so the even-sized array is exactly symmetric about
    ``shape // 2``; the object is symmetric about ``centre``; so an operator
    without drift returns a result symmetric about ``centre``.
    """
    from napari_lfrecon.psf.widefield import widefield_psf

    psf = widefield_psf(
        cfg["psf_shape"], cfg["voxel_um"], cfg["na"], cfg["wavelength_um"], cfg["immersion_index"]
    ).array
    psf = psf.astype(np.float64)
    psf[0], psf[:, 0], psf[:, :, 0] = 0, 0, 0
    psf /= psf.sum()
    shape = tuple(cfg["data_shape"])
    centre = [n // 2 for n in shape]
    obj = np.zeros(shape)
    rng = np.random.default_rng(1)
    zz, yy, xx = np.meshgrid(*[np.arange(n) - c for n, c in zip(shape, centre, strict=True)], indexing="ij")
    obj += 2.0 * np.exp(-(zz**2 / (2 * (shape[0] / 8) ** 2) + (yy**2 + xx**2) / (2 * (shape[1] / 6) ** 2)))
    limits = np.array(shape) // 2 - np.array(cfg["psf_shape"]) // 4
    for _ in range(6):
        v = rng.integers(-limits, limits + 1)
        amp = rng.uniform(200, 1000)
        for sign in (1, -1):
            obj[tuple(np.array(centre) + sign * v)] += amp
    obj[tuple(centre)] += 500.0
    padded = np.zeros(shape)
    padded[tuple(slice(0, p) for p in psf.shape)] = psf
    padded = np.roll(padded, [-(p // 2) for p in psf.shape], axis=(0, 1, 2))
    data = np.fft.irfftn(np.fft.rfftn(obj) * np.fft.rfftn(padded), s=shape, axes=(0, 1, 2))
    data = np.clip(data, 0, None).astype(np.float32)
    np.save(workdir / "wf_data.npy", data)
    np.save(workdir / "wf_psf.npy", psf.astype(np.float32))
    meta = {"centre": centre, "psf_centre": [p // 2 for p in psf.shape]}
    (workdir / "wf_meta.json").write_text(json.dumps(meta))
    return meta


def make_lfm_inputs(workdir: Path, cfg: dict) -> None:
    """Views (ours) and the matching raw lenslet image (pyolaf) of a sparse random volume, via our operator."""
    import torch

    from napari_lfrecon.physics.phase_space import PhaseSpaceLF

    kernel = np.load(workdir / "lfm_ours_psf.npy")
    s, n, nnum = cfg["supersample"], cfg["lenslets"], cfg["pixels_per_lenslet"]
    rng = np.random.default_rng(2)
    vol = (rng.random((kernel.shape[1], n * s, n * s)) > 0.995).astype(np.float32) * 100 + 0.1
    with torch.no_grad():
        views = PhaseSpaceLF(kernel, s, vol.shape).forward(torch.from_numpy(vol)[None])[0].numpy()
    views = np.clip(views, 0, None).astype(np.float32)
    np.save(workdir / "lfm_views.npy", views)
    # view a = u·Nnum + v is pixel (u, v) under every lenslet: raw[j·Nnum + u, k·Nnum + v]
    raw = views.reshape(nnum, nnum, n, n).transpose(2, 0, 3, 1).reshape(n * nnum, n * nnum)
    np.save(workdir / "lfm_raw.npy", np.ascontiguousarray(raw))


# ----------------------------------------------------------------------------- orchestration


def run_worker(python: str, method: str, workdir: Path, spec_file: Path, threads: int, timeout: float) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    cmd = [python, str(Path(__file__).resolve()), "--worker", method, "--workdir", str(workdir)]
    cmd += ["--spec", str(spec_file), "--threads", str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        return {"method": method, "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
    return {"method": method, "error": f"exit {proc.returncode}: " + " | ".join(tail)}


def can_import(python: str, module: str) -> bool:
    code = f"import {module}"
    return subprocess.run([python, "-c", code], capture_output=True).returncode == 0


def machine_info() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    os_name = platform.platform()
    release = Path("/etc/os-release")
    if release.exists():
        m = re.search(r'^PRETTY_NAME="?([^"\n]+)', release.read_text(), re.M)
        if m:
            os_name = f"{m.group(1)} (kernel {platform.release()})"
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 2**20, 1),
        "os": os_name,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }


def peer_versions(python: str) -> dict:
    code = (
        "import json\nfrom importlib.metadata import version as v\nout={}\n"
        "for p in ('scikit-image','redlionfish','pyolaf','scipy','numpy','torch'):\n"
        "    try: out[p]=v(p)\n    except Exception as e: out[p]=None\n"
        "print(json.dumps(out))"
    )
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {}


def median_of(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if key in r and r[key] is not None and "error" not in r]
    return statistics.median(values) if values else None


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None or b == 0 else f"{a / b:.1f}×"


def summarise(results: dict, spec: dict, threads: int) -> tuple[str, dict]:
    """Markdown for BENCHMARKS.md and the headline ratios."""
    runs = results["runs"]
    by = {m: [r for r in runs if r.get("method") == m] for m in WF_METHODS + LFM_METHODS}
    med = {
        m: {k: median_of(v, k) for k in ("seconds", "per_iteration", "peak_mib", "peak_delta_mib")}
        for m, v in by.items()
    }
    lines, ratios = [], {}
    wf, lfm = spec["wf"], spec["lfm"]
    lines.append(
        f"Run `python benchmarks/bench_foundation.py` (see `benchmarks/README.md`); raw numbers in "
        f"`benchmarks/results/`. Median of {spec['repeats']} interleaved repeats, each method in its own "
        f"subprocess; {threads} threads for everyone unless noted. Peak memory = peak RSS of that "
        "subprocess (`VmHWM`: includes the interpreter and imports; Δ = growth during the measured call)."
    )
    if wf and any(by[m] for m in WF_METHODS):
        circ = med["wf-ours-circular"]["seconds"]
        lines += [
            "",
            f"### Widefield RL, {wf['iterations']} iterations, data {'×'.join(map(str, wf['data_shape']))}, "
            f"PSF {'×'.join(map(str, wf['psf_shape']))} (float32)",
            "",
            "| method | boundary | threads | time (s) | s / iteration | vs ours circular | peak MiB (Δ) "
            "| drift z, y, x (voxels) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in WF_METHODS:
            if not by[m]:
                continue
            first = next((r for r in by[m] if "error" not in r), None)
            if first is None:
                lines.append(f"| {m} | — | — | failed: {by[m][0]['error'][:120]} | | | | |")
                continue
            drift = ", ".join(f"{d:+.3f}" for d in first["drift_voxels"])
            lines.append(
                f"| {m} | {first['boundary']} | {first['threads']} | {_fmt(med[m]['seconds'])} | "
                f"{_fmt(med[m]['per_iteration'], 3)} | {_ratio(med[m]['seconds'], circ)} | "
                f"{_fmt(med[m]['peak_mib'], 0)} ({_fmt(med[m]['peak_delta_mib'], 0)}) | {drift} |"
            )
        ratios["wf_redlionfish_over_ours_circular"] = _safe_div(med["wf-redlionfish"]["seconds"], circ)
        ratios["wf_skimage_over_ours_circular"] = _safe_div(med["wf-skimage"]["seconds"], circ)
        ratios["wf_skimage_over_ours_padded"] = _safe_div(
            med["wf-skimage"]["seconds"], med["wf-ours-padded"]["seconds"]
        )
        ratios["wf_padded_cost_over_circular"] = _safe_div(med["wf-ours-padded"]["seconds"], circ)
        lines += [
            "",
            "- RedLionfish CPU / ours circular (same circular boundary): "
            f"**{_fmt(ratios['wf_redlionfish_over_ours_circular'])}×** "
            "(target ≥ 1.0×, stretch 1.4×).",
            f"- scikit-image / ours circular: {_fmt(ratios['wf_skimage_over_ours_circular'])}×; "
            "scikit-image / ours padded (both linear-convolution FFT sizes): "
            f"{_fmt(ratios['wf_skimage_over_ours_padded'])}×.",
            f"- Ours padded costs {_fmt(ratios['wf_padded_cost_over_circular'])}× ours circular.",
            "- Drift: centroid of the result minus the centre of a point-symmetric bead object, in a window "
            "symmetric about it (0 = no drift; target for ours: |drift| < 0.01 voxel on every axis).",
        ]
    if lfm and any(by[m] for m in LFM_METHODS):
        nnum, s = lfm["pixels_per_lenslet"], lfm["supersample"]
        z = _z_planes(lfm)
        lines += [
            "",
            f"### LFM: {lfm['magnification']:g}×/{lfm['na']} NA, n = {lfm['immersion_index']}, "
            f"λ = {lfm['wavelength_um']} µm, "
            f"lenslet pitch {nnum * lfm['camera_pixel_um']:g} µm, f_ml = {_f_ml(lfm):g} µm, camera pixel "
            f"{lfm['camera_pixel_um']} µm ({nnum}×{nnum} px per lenslet), "
            f"{lfm['lenslets']}×{lfm['lenslets']} lenslets, "
            f"{s} voxels per lenslet, {len(z)} depths {z[0]:g}…{z[-1]:g} µm",
            "",
            "| what | method | threads | time (s) | vs ours | peak MiB (Δ) | notes |",
            "|---|---|---|---|---|---|---|",
        ]
        psf_ours = med["lfm-ours-psf"]["seconds"]
        for m in ("lfm-ours-psf", "lfm-ours-psf-osf1", "lfm-pyolaf-psf"):
            lines.append(_lfm_row("PSF / operator", m, by[m], med[m]["seconds"], psf_ours, _lfm_note(m, by[m])))
        rl_ours = med["lfm-ours-rl"]["per_iteration"]
        for m in ("lfm-ours-rl", "lfm-ours-rl-1t", "lfm-pyolaf-rl"):
            lines.append(_lfm_row("RL per iteration", m, by[m], med[m]["per_iteration"], rl_ours, _lfm_note(m, by[m])))
        ratios["lfm_psf_pyolaf_over_ours"] = _safe_div(med["lfm-pyolaf-psf"]["seconds"], psf_ours)
        ratios["lfm_psf_pyolaf_over_ours_osf1"] = _safe_div(
            med["lfm-pyolaf-psf"]["seconds"], med["lfm-ours-psf-osf1"]["seconds"]
        )
        ratios["lfm_rl_pyolaf_over_ours"] = _safe_div(med["lfm-pyolaf-rl"]["per_iteration"], rl_ours)
        ratios["lfm_rl_pyolaf_over_ours_1t"] = _safe_div(
            med["lfm-pyolaf-rl"]["per_iteration"], med["lfm-ours-rl-1t"]["per_iteration"]
        )
        lines += [
            "",
            f"- LFM RL per iteration, pyolaf / ours: **{_fmt(ratios['lfm_rl_pyolaf_over_ours'], 1)}×** "
            f"({_fmt(ratios['lfm_rl_pyolaf_over_ours_1t'], 1)}× with ours on 1 thread like pyolaf's numpy) "
            "— target ≥ 20×.",
            f"- LFM PSF, pyolaf / ours: **{_fmt(ratios['lfm_psf_pyolaf_over_ours'], 1)}×** "
            f"({_fmt(ratios['lfm_psf_pyolaf_over_ours_osf1'], 1)}× with ours at pyolaf's sampling, "
            "1 field sample per pixel) — target ≥ 15×.",
        ]
    return "\n".join(lines) + "\n", ratios


def _safe_div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _lfm_row(what: str, method: str, runs: list[dict], value: float | None, ours: float | None, note: str) -> str:
    ok = [r for r in runs if "error" not in r]
    if not runs:
        return f"| {what} | {method} | — | not run | | | |"
    if not ok:
        return f"| {what} | {method} | — | failed | | | {runs[0]['error'][:160]} |"
    peak = median_of(ok, "peak_mib")
    delta = median_of(ok, "peak_delta_mib")
    return (
        f"| {what} | {method} | {ok[0].get('threads', '—')} | {_fmt(value, 3)} | {_ratio(value, ours)} | "
        f"{_fmt(peak, 0)} ({_fmt(delta, 0)}) | {note} |"
    )


def _lfm_note(method: str, runs: list[dict]) -> str:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return ""
    r = ok[0]
    if method.startswith("lfm-ours-psf"):
        shape = "×".join(map(str, r["kernel_shape"]))
        return f"kernel {shape}, {r['oversampling']} field samples/px, R = {r['kernel_lenslets']} lenslets"
    if method == "lfm-pyolaf-psf":
        shape = "×".join(map(str, r["forward_pattern_shape"]))
        return f"H patterns {r['patterns']}, each {shape} px, 1 sample/px, numpy/scipy"
    if method.startswith("lfm-ours-rl"):
        shape = "×".join(map(str, r["volume_shape"]))
        return f"setup + 1st iteration {median_of(ok, 'setup_plus_first'):.2f} s; volume {shape}"
    if method == "lfm-pyolaf-rl":
        return (
            f"plain RL (forward + backward projection); setup {median_of(ok, 'setup'):.1f} s; its optional "
            f"anti-aliasing filter adds {median_of(ok, 'filter_seconds'):.2f} s / iteration"
        )
    return ""


def replace_section(text: str, title: str, body: str) -> str:
    """Replace (or append) the ``## title`` section of a markdown document."""
    header = f"## {title}"
    block = f"{header}\n\n{body.rstrip()}\n"
    pattern = re.compile(rf"^{re.escape(header)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        return pattern.sub(lambda _: block + "\n", text).rstrip() + "\n"
    return text.rstrip() + ("\n\n" if text.strip() else "") + block


def write_benchmarks_md(machine: dict, peers: dict, body: str) -> Path:
    path = ROOT / "BENCHMARKS.md"
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmarks\n\nNumbers measured on the machine below; ratios matter more than absolute times.\n"
    )
    machine_body = "\n".join(
        [
            f"- CPU: {machine['cpu']}, {machine['cores']} cores",
            f"- RAM: {machine['ram_gib']} GiB",
            f"- OS: {machine['os']}",
            f"- Python {machine['python']}, torch {machine['torch']}, numpy {machine['numpy']}",
            "- Peers' venv: "
            + ", ".join(f"{k} {v}" for k, v in peers.items() if v)
            + (
                f"; missing: {', '.join(k for k, v in peers.items() if not v)}"
                if any(not v for v in peers.values())
                else ""
            ),
            f"- Date: {machine['date']}",
            "- The machine is shared and noisy: compare ratios from the same run, not absolute times across runs.",
        ]
    )
    text = replace_section(text, "Machine", machine_body)
    text = replace_section(text, SECTION_TITLE, body)
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke test in seconds")
    parser.add_argument(
        "--repeats", type=int, default=None, help="interleaved repeats per method (default 3; 1 with --quick)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for every method")
    parser.add_argument(
        "--peers-python", default=str(DEFAULT_PEERS_PYTHON), help="interpreter with the peers installed"
    )
    parser.add_argument("--only", choices=("wf", "lfm"), default=None, help="run one part only")
    parser.add_argument("--no-md", action="store_true", help="do not update BENCHMARKS.md (default with --quick)")
    parser.add_argument("--write-md", action="store_true", help="update BENCHMARKS.md even with --quick")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a single measurement is abandoned")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        worker_main(args.worker, Path(args.workdir), json.loads(Path(args.spec).read_text()), args.threads)
        return 0

    spec = json.loads(json.dumps(QUICK if args.quick else FULL))
    if args.repeats:
        spec["repeats"] = args.repeats
    if args.only == "wf":
        spec["lfm"] = None
    elif args.only == "lfm":
        spec["wf"] = None
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = RESULTS / f"work-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    spec_file = workdir / "spec.json"
    spec_file.write_text(json.dumps(spec))

    ours_py = sys.executable
    peers_py = args.peers_python if Path(args.peers_python).exists() else sys.executable
    missing = {
        m: mod
        for m, mod in (
            ("wf-skimage", "skimage"),
            ("wf-redlionfish", "RedLionfishDeconv"),
            ("lfm-pyolaf-psf", "pyolaf"),
            ("lfm-pyolaf-rl", "pyolaf"),
        )
        if not can_import(peers_py, mod)
    }

    def python_for(method: str) -> str:
        return peers_py if method in PEER_METHODS else ours_py

    runs: list[dict] = []

    def measure(method: str, rep: int) -> None:
        if method in missing:
            if rep == 0:
                runs.append({"method": method, "error": f"{missing[method]} is not importable with {peers_py}"})
            return
        t0 = time.perf_counter()
        result = run_worker(python_for(method), method, workdir, spec_file, args.threads, args.timeout)
        result["repeat"] = rep
        runs.append(result)
        shown = result.get("error") or f"{result.get('per_iteration', result.get('seconds')):.3f} s"
        print(
            f"  [{rep + 1}/{spec['repeats']}] {method:22s} {shown}  (wall {time.perf_counter() - t0:.0f} s)", flush=True
        )

    if spec["wf"]:
        print("widefield: preparing inputs", flush=True)
        make_widefield_inputs(workdir, spec["wf"])
        for rep in range(spec["repeats"]):
            for method in WF_METHODS:
                measure(method, rep)
    if spec["lfm"]:
        print("LFM: PSFs and operators (interleaved), then RL", flush=True)
        for rep in range(spec["repeats"]):
            for method in ("lfm-ours-psf", "lfm-ours-psf-osf1", "lfm-pyolaf-psf"):
                measure(method, rep)
        if (workdir / "lfm_ours_psf.npy").exists():
            make_lfm_inputs(workdir, spec["lfm"])
            for rep in range(spec["repeats"]):
                for method in ("lfm-ours-rl", "lfm-ours-rl-1t", "lfm-pyolaf-rl"):
                    if method == "lfm-pyolaf-rl" and not (workdir / "lfm_pyolaf_ops.pkl").exists():
                        if rep == 0:
                            runs.append({"method": method, "error": "pyolaf's operator computation failed"})
                        continue
                    measure(method, rep)

    machine = machine_info()
    peers = peer_versions(peers_py)
    results = {
        "machine": machine,
        "peers": peers,
        "spec": spec,
        "threads": args.threads,
        "quick": args.quick,
        "runs": runs,
    }
    body, ratios = summarise(results, spec, args.threads)
    results["ratios"] = ratios
    out = RESULTS / f"foundation-{'quick-' if args.quick else ''}{stamp}.json"
    out.write_text(json.dumps(results, indent=2))
    for scratch in workdir.iterdir():
        scratch.unlink()
    workdir.rmdir()
    print()
    print(body)
    print(f"raw results: {out.relative_to(ROOT)}")
    if (not args.quick or args.write_md) and not args.no_md:
        print(f"updated {write_benchmarks_md(machine, peers, body).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
