"""LFRecon-Bench: the quick run end to end through the CLI, data-set construction, baselines, memory probe."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from napari_lfrecon import engines
from napari_lfrecon.bench import QUICK, build_task
from napari_lfrecon.bench.baselines import upsample_z
from napari_lfrecon.bench.config import SPLIT_FAMILIES
from napari_lfrecon.bench.memory import PeakMemory
from napari_lfrecon.bench.runner import methods_for
from napari_lfrecon.cli import main
from napari_lfrecon.engines.base import Engine, Update
from napari_lfrecon.physics.axial import AxialDegradation


def test_train_and_test_families_differ():
    assert not set(SPLIT_FAMILIES["train"]) & set(SPLIT_FAMILIES["test"])
    task = build_task("anisotropic", QUICK)
    assert {i.family for i in task.splits["test"]} <= set(SPLIT_FAMILIES["test"])
    assert {i.family for i in task.splits["train"]} <= set(SPLIT_FAMILIES["train"])


def test_tasks_are_seeded():
    a, b = build_task("widefield", QUICK), build_task("widefield", QUICK)
    for x, y in zip(a.splits["test"], b.splits["test"], strict=True):
        assert np.array_equal(x.measurement, y.measurement) and np.array_equal(x.ground_truth, y.ground_truth)
    seeds = [i.seed for items in a.splits.values() for i in items]
    assert len(set(seeds)) == len(seeds)


def test_anisotropic_input_is_the_axial_degradation_of_the_truth():
    task = build_task("anisotropic", QUICK)
    item = task.splits["test"][0]
    factor = task.extra["factor"]
    degrade = AxialDegradation(factor, axis=-3, kernel=task.extra["kernel"])
    expected = degrade(torch.as_tensor(item.ground_truth, dtype=torch.float64)[None])[0].numpy()
    assert item.measurement.shape == (item.ground_truth.shape[0] // factor, *item.ground_truth.shape[1:])
    # Only the seeded noise (σ from the config) separates them.
    assert np.std(item.measurement - expected) == pytest.approx(QUICK.aniso_noise, rel=0.1)


def test_upsample_z_places_samples_at_block_centres():
    """Linear interpolation of a z ramp pooled in blocks of 4 gives the ramp back (away from clamped edges)."""
    z = np.arange(16, dtype=np.float32)
    ramp = np.broadcast_to(z[:, None, None], (16, 2, 3)).copy()
    pooled = ramp.reshape(4, 4, 2, 3).mean(axis=1)
    up = upsample_z(pooled, 4, "linear")
    assert up.shape == ramp.shape
    assert np.allclose(up[2:-2], ramp[2:-2], atol=1e-5)
    # Keys' cubic convolution (a = −0.75) follows a ramp closely but not exactly (within 0.2 of a step).
    long_ramp = np.arange(32, dtype=np.float32)[:, None, None]
    cubic = upsample_z(long_ramp.reshape(8, 4, 1, 1).mean(axis=1), 4, "cubic")
    assert np.allclose(cubic[8:-8], long_ramp[8:-8], atol=0.2)
    nearest = upsample_z(pooled, 4, "nearest")
    assert np.array_equal(nearest, np.repeat(pooled, 4, axis=0))
    with pytest.raises(ValueError, match="interpolation"):
        upsample_z(pooled, 4, "sinc")


def test_peak_memory_sees_a_large_allocation():
    import mmap

    # fresh pages from the kernel: a numpy block could reuse heap pages an earlier test left resident
    # (glibc keeps freed memory when the mmap threshold is raised), which is correctly not growth
    with PeakMemory() as memory:
        block = mmap.mmap(-1, 40 * 2**20)
        np.frombuffer(block, dtype=np.uint8)[::4096] = 1  # touch every page
        block.close()
    assert memory.peak_mib >= 35


def test_new_engine_appears_by_registration(monkeypatch):
    @dataclass
    class EchoParams:
        pass

    class Echo(Engine):
        name = "echo-bench-test"
        modalities = ("anisotropic",)
        Params = EchoParams

        def run(self, inputs, params, *, device, should_stop=lambda: False):
            yield Update("result", 1.0, "done", upsample_z(inputs.data, inputs.description.anisotropy, "nearest"))

    monkeypatch.setitem(engines._REGISTRY, Echo.name, Echo)
    task = build_task("anisotropic", QUICK)
    names = [m.name for m in methods_for(task, QUICK, torch.device("cpu"))]
    assert "echo-bench-test" in names and "interp-cubic" in names
    method = next(m for m in methods_for(task, QUICK, torch.device("cpu")) if m.name == "echo-bench-test")
    out = method.run(task, task.splits["test"][0])
    assert out.shape == task.splits["test"][0].ground_truth.shape


def test_quick_bench_cli(tmp_path, capsys):
    """`lfrecon bench --quick` writes the table, JSON and plots; every modality is in the table."""
    assert main(["bench", "--quick", "--save-data", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "lfrecon-bench-quick.md").read_text()
    for task in ("widefield", "lfm", "xlfm", "anisotropic", "diffraction"):
        assert f"| {task} |" in table
    for method in ("| rl |", "interp-nearest", "interp-linear", "interp-cubic"):
        assert method in table
    payload = json.loads((tmp_path / "lfrecon-bench-quick.json").read_text())
    rl_rows = [r for r in payload["rows"] if r["method"] == "rl" and not r["note"]]
    assert {r["task"] for r in rl_rows} == {"widefield", "lfm", "xlfm"}
    assert all(r["psnr"] > 15 and 0 < r["ssim"] <= 1 and r["seconds"] > 0 for r in rl_rows)
    cubic = next(r for r in payload["rows"] if r["method"] == "interp-cubic")
    nearest = next(r for r in payload["rows"] if r["method"] == "interp-nearest")
    assert cubic["psnr"] > nearest["psnr"]  # smooth objects: cubic beats nearest
    manifest = json.loads((tmp_path / "lfrecon-bench-data" / "lfm" / "manifest.json").read_text())
    assert [e["family"] for e in manifest["splits"]["test"]] == ["bubtub", "zebrafish_like"]
    with np.load(tmp_path / "lfrecon-bench-data" / "lfm" / manifest["splits"]["test"][0]["file"]) as item:
        assert item["ground_truth"].ndim == 3 and item["measurement"].ndim == 2
    if "matplotlib" in sys.modules or _has_matplotlib():
        assert (tmp_path / "lfrecon-bench-quick-widefield.png").is_file()
    assert "LFRecon-Bench (quick)" in capsys.readouterr().out


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_bench_cli_imports_no_qt(tmp_path):
    code = (
        "import sys; from napari_lfrecon.cli import main; "
        f"main(['bench', '--quick', '--tasks', 'anisotropic', '--out', r'{tmp_path}']); "
        "bad = [m for m in ('qtpy', 'napari', 'PyQt5', 'PyQt6') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
