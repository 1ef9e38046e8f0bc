"""On a machine where Qt cannot start, tests/conftest.py skips the GUI tests with the apt command; pure tests run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import conftest  # noqa: E402

GUI_AND_PURE_TESTS = """
def test_pure():
    assert 1 + 1 == 2


def test_gui(qtbot):
    from qtpy.QtWidgets import QLabel

    label = QLabel("x")
    qtbot.addWidget(label)
    assert label.text() == "x"
"""
GUI_MODULE_IMPORTING_QT = """
from qtpy.QtWidgets import QLabel


def test_label(qtbot):
    assert QLabel("y").text() == "y"
"""
#: A Qt whose libraries are missing, the way a fresh Debian without libegl1 shows it.
NO_QT_GUI = """
import sys


class _MissingLibraries:
    def find_spec(self, name, path=None, target=None):
        if name in ("PyQt6.QtGui", "PyQt6.QtWidgets"):
            raise ImportError("libEGL.so.1: cannot open shared object file: No such file or directory")
        return None


sys.meta_path.insert(0, _MissingLibraries())
"""


def test_conftest_names_the_packages_ci_installs():
    ci = (ROOT / ".ci" / "run").read_text()
    listed = re.search(r"for pkg in (.*?); do", ci, flags=re.S).group(1).replace("\\\n", " ").split()
    assert listed == list(conftest.QT_SYSTEM_PACKAGES)
    readme = (ROOT / "README.md").read_text()
    apt = re.search(r"```\nsudo apt-get install (.*?)\n```", readme, flags=re.S).group(1).replace("\\\n", " ")
    assert apt.split() == listed, "the README's apt command lists the packages .ci/run installs"


def _run_suite(tmp_path: Path, *, no_qt_libraries: bool, hide_display: bool) -> subprocess.CompletedProcess:
    """Pytest on a small GUI + pure suite with this repository's conftest, in a machine-like environment."""
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(ROOT / "tests" / "conftest.py", suite / "conftest.py")
    (suite / "test_mixed.py").write_text(GUI_AND_PURE_TESTS)
    (suite / "test_gui_module.py").write_text(GUI_MODULE_IMPORTING_QT)
    (suite / "pytest.ini").write_text("[pytest]\nqt_api = pyqt6\n")
    env = dict(os.environ, QT_API="pyqt6", PYTEST_QT_API="pyqt6", PYTHONDONTWRITEBYTECODE="1")
    if hide_display:
        # No display, no Xvfb on PATH (only a few tools), no platform plugins: Qt cannot start.
        env.pop("DISPLAY", None)
        tools = tmp_path / "bin"
        tools.mkdir()
        for tool in ("dpkg-query", "sh"):
            if (found := shutil.which(tool)) is not None:
                (tools / tool).symlink_to(found)
        env["PATH"] = str(tools)
        (tmp_path / "no_plugins").mkdir()
        env["QT_QPA_PLATFORM_PLUGIN_PATH"] = str(tmp_path / "no_plugins")
    if no_qt_libraries:
        site = tmp_path / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(NO_QT_GUI)
        env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(suite)],
        cwd=suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_without_a_display_gui_tests_skip_with_the_apt_command_and_pure_tests_pass(tmp_path):
    done = _run_suite(tmp_path, no_qt_libraries=False, hide_display=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed, 2 skipped" in done.stdout, done.stdout[-3000:]
    assert "GUI tests skipped (2 tests): Qt unavailable: a QApplication cannot start" in done.stdout
    assert "sudo apt-get install xvfb" in done.stdout


@pytest.mark.slow
def test_without_qt_libraries_gui_modules_skip_instead_of_failing_collection(tmp_path):
    done = _run_suite(tmp_path, no_qt_libraries=True, hide_display=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed, 2 skipped" in done.stdout, done.stdout[-3000:]
    assert "(1 tests, 1 test modules): Qt unavailable: PyQt6.QtWidgets cannot be imported" in done.stdout
    assert "libEGL.so.1" in done.stdout and "sudo apt-get install" in done.stdout


@pytest.mark.slow
@pytest.mark.skipif(conftest.qt_skip_reason() is not None, reason="Qt cannot start on this machine")
def test_where_qt_starts_the_gui_tests_run(tmp_path):
    done = _run_suite(tmp_path, no_qt_libraries=False, hide_display=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-3000:]
