"""A wheel built from this repository carries the top-level napari.yaml and sample_data/ and works on its own.

The wheel is built from a copy of the source tree (so no stale ``build/`` folder leaks into it), installed
offline into a fresh virtual environment that borrows this environment's dependencies through a ``.pth``
file (torch and napari are not downloaded again) but not its editable install, and there: npe2 finds and
validates the manifest through the distribution's entry point and imports every command, every sample opens,
and the shipped weights files are present.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What the wheel is built from: the build configuration, the package and the top-level files it ships.
SOURCE_ITEMS = ("pyproject.toml", "README.md", "src", "napari.yaml", "sample_data")

CHECK_INSTALLED = r"""
import json, sys
from pathlib import Path

import npe2
import napari_lfrecon
from napari_lfrecon.engines import niiv, serenet_weights
from napari_lfrecon.io.resources import sample_dir
from napari_lfrecon.samples import SAMPLE_NAMES

manifest = npe2.PluginManifest.from_distribution("napari-lfrecon")
try:  # the widgets' modules import Qt: where Qt's libraries are missing only the manifest itself is validated
    from qtpy import QtWidgets  # noqa: F401
    qt_importable = True
except Exception:
    qt_importable = False
if qt_importable:
    manifest.validate_imports()  # every command's python_name imports and resolves
samples = {}
for name in SAMPLE_NAMES:
    sample = napari_lfrecon.load_sample(name)
    samples[name] = list(sample["data"].shape)
print(json.dumps({
    "package": str(Path(napari_lfrecon.__file__).resolve().parent),
    "sample_dir": str(sample_dir()),
    "manifest_name": manifest.name,
    "imports_validated": qt_importable,
    "sample_keys": sorted(s.key for s in manifest.contributions.sample_data),
    "samples": samples,
    "weights": {
        "niiv": niiv.shipped_weights_path().is_file(),
        "serenet": serenet_weights.shipped_weights_path().is_file(),
    },
}))
"""


def _qt_importable() -> bool:
    try:
        importlib.import_module("qtpy.QtWidgets")
    except Exception:  # a machine without Qt's system libraries (tests/conftest.py skips the GUI tests there)
        return False
    return True


def _copy_source(destination: Path) -> Path:
    """The files a build reads, with the package's links to the top-level files kept as links."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    destination.mkdir(parents=True)
    for item in SOURCE_ITEMS:
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, destination / item, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(source, destination / item)
    return destination


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_with_manifest_samples_and_weights(tmp_path):
    source = _copy_source(tmp_path / "source")
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index"]
        + ["-q", "-w", str(wheels)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("napari_lfrecon-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    shipped = {f"napari_lfrecon/sample_data/{p.name}" for p in (ROOT / "sample_data").iterdir() if p.is_file()}
    assert "napari_lfrecon/napari.yaml" in names
    assert shipped <= names, sorted(shipped - names)

    # A fresh environment that sees this one's dependencies but not its editable napari_lfrecon.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    fresh_python = env_dir / "bin" / "python"
    fresh_site = Path(
        subprocess.run(
            [str(fresh_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (fresh_site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    installed = subprocess.run(
        [str(fresh_python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    checked = subprocess.run(
        [str(fresh_python), "-c", CHECK_INSTALLED], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert checked.returncode == 0, checked.stderr[-3000:]
    report = json.loads(checked.stdout.strip().splitlines()[-1])
    assert Path(report["package"]).is_relative_to(fresh_site), report["package"]  # the wheel, not the checkout
    assert Path(report["sample_dir"]) == Path(report["package"]) / "sample_data"
    assert report["manifest_name"] == "napari-lfrecon"
    assert report["imports_validated"] == _qt_importable()
    assert report["sample_keys"] == sorted(report["samples"]) == ["anisotropic", "lfm", "widefield", "xlfm"]
    assert all(len(shape) >= 2 for shape in report["samples"].values()), report["samples"]
    assert report["weights"] == {"niiv": True, "serenet": True}
