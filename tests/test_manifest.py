"""The npe2 manifest is valid, every command resolves, and the headless packages never import Qt."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

npe2 = pytest.importorskip("npe2")

MANIFEST = Path(__file__).resolve().parents[1] / "napari.yaml"
#: Modules that must stay free of Qt and napari (the CLI and everything under it).
HEADLESS_MODULES = [
    "napari_lfrecon",
    "napari_lfrecon.cli",
    "napari_lfrecon.api",
    "napari_lfrecon.engines",
    "napari_lfrecon.engines.rl",
    "napari_lfrecon.physics",
    "napari_lfrecon.psf",
    "napari_lfrecon.io",
    "napari_lfrecon.samples",
    "napari_lfrecon.gui",
    "napari_lfrecon.gui._reader",
    "napari_lfrecon.gui._writer",
    "napari_lfrecon.gui._sample_data",
]
GUI_MODULES = {"qtpy", "napari", "PyQt6", "PyQt5", "PySide2", "PySide6", "magicgui", "superqt", "vispy"}


def manifest() -> npe2.PluginManifest:
    return npe2.PluginManifest.from_file(MANIFEST)


def test_manifest_validates_and_names_the_distribution():
    pm = manifest()
    assert pm.name == "napari-lfrecon"
    contributions = pm.contributions
    assert [w.display_name for w in contributions.widgets] == [
        "Reconstruct",
        "Metrics",
        "PSF editor",
        "Calibrate",
        "Train",
        "niiv zoom",
    ]
    assert {s.key for s in contributions.sample_data} == {"widefield", "lfm", "xlfm", "anisotropic"}
    patterns = set(contributions.readers[0].filename_patterns)
    assert {"*.tif", "*.tiff", "*.zarr", "*.psf.safetensors"} <= patterns
    writer = contributions.writers[0]
    assert [str(t) for t in writer.layer_types] == ["image"]
    assert set(writer.filename_extensions) == {".tif", ".tiff", ".zarr"}
    # Every contribution points at a declared command.
    command_ids = {c.id for c in contributions.commands}
    used = (
        [w.command for w in contributions.widgets]
        + [s.command for s in contributions.sample_data]
        + [r.command for r in contributions.readers]
        + [w.command for w in contributions.writers]
    )
    assert set(used) <= command_ids


@pytest.mark.qt  # the widgets' modules import Qt
def test_every_python_name_resolves_to_a_callable():
    for command in manifest().contributions.commands:
        module_name, _, attribute = command.python_name.partition(":")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, attribute)), command.python_name


def test_installed_entry_point_finds_this_manifest():
    """What napari does at start-up: find the manifest through the distribution's entry point."""
    installed = npe2.PluginManifest.from_distribution("napari-lfrecon")
    assert installed.name == "napari-lfrecon"
    assert [c.python_name for c in installed.contributions.commands] == [
        c.python_name for c in manifest().contributions.commands
    ]


def test_headless_modules_import_no_qt_or_napari():
    """One fresh interpreter imports each module in turn and reports which one (if any) pulled in a GUI module."""
    code = (
        "import importlib, sys, json\n"
        f"gui = set({sorted(GUI_MODULES)!r})\n"
        "report = {}\n"
        f"for name in {HEADLESS_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "    report[name] = sorted(m for m in sys.modules if m.split('.')[0] in gui)\n"
        "print(json.dumps(report))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(report) == HEADLESS_MODULES
    offenders = {name: mods for name, mods in report.items() if mods}
    assert not offenders, f"GUI modules imported (first offender first): {offenders}"


def test_the_package_links_to_the_top_level_manifest_and_samples():
    """The repository keeps napari.yaml and sample_data/ at its top level; the package holds links to them."""
    import napari_lfrecon
    from napari_lfrecon.io.resources import sample_dir

    root = MANIFEST.parent
    package = Path(napari_lfrecon.__file__).resolve().parent
    if package.parent.parent != root:
        pytest.skip("napari_lfrecon is not imported from this checkout")
    git = shutil.which("git")
    listed = (
        subprocess.run(
            [git or "git", "ls-files", "-s", "src/napari_lfrecon/napari.yaml", "src/napari_lfrecon/sample_data"],
            cwd=root,
            capture_output=True,
            text=True,
        )
        if git
        else None
    )
    if listed is not None and listed.returncode == 0 and listed.stdout:
        assert {line.split()[0] for line in listed.stdout.splitlines()} == {"120000"}, listed.stdout  # symlinks
    assert (package / "napari.yaml").resolve() == MANIFEST.resolve()
    assert sample_dir().resolve() == (root / "sample_data").resolve()
    assert (sample_dir() / "lfm.tif").is_file()
