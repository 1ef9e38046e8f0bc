"""Skip the tests that need Qt, with the apt command to fix it, when this machine cannot start Qt.

The README's test command must pass on a fresh machine: there PyQt6 may fail to import (no libGL/libEGL) or
import but abort in ``QApplication()`` (no Xvfb, no libxcb-* for the xcb platform plugin). Once per session a
subprocess tries to start a ``QApplication`` in the tests' own environment (after pytest-xvfb has started
Xvfb, when it is installed); if it cannot, every test that needs Qt is skipped with the reason, GUI test
modules that cannot even import Qt are reported as skipped instead of as collection errors, and one line at
the end of the run says so. Where Qt starts (CI, ``.ci/run``) nothing changes: the GUI tests run.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import shutil
import subprocess
import sys

import pytest

#: The Debian packages headless Qt needs; the same list as ``.ci/run`` (tests/test_fresh_machine.py checks it).
QT_SYSTEM_PACKAGES = (
    "xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-render-util0 "
    "libxcb-randr0 libxcb-shape0 libxcb-xfixes0 libxcb-xkb1 libxcb-cursor0 libxkbcommon-x11-0 "
    "libgl1 libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3"
).split()
#: Fixtures that create a QApplication (pytest-qt's and napari's).
QT_FIXTURES = frozenset(
    {"qtbot", "qapp", "qapp_args", "qtmodeltester", "make_napari_viewer", "make_napari_viewer_proxy"}
)
#: Top-level modules whose failed import at collection means "Qt is missing", not a bug in the test.
QT_MODULES = ("qtpy", "PyQt6", "PyQt5", "PySide6", "PySide2", "napari", "magicgui", "superqt", "vispy", "pytestqt")
#: Started in the tests' environment: exit code 0 and "qt-ok" only if a QApplication really starts.
PROBE = "import sys\nfrom qtpy.QtWidgets import QApplication\napp = QApplication(sys.argv[:1])\nprint('qt-ok')\n"
PROBE_TIMEOUT_S = 60

_qt_import_error: str | None = None
#: Node ids skipped because Qt cannot start: test items and whole test modules.
_skipped_for_qt: dict[str, list[str]] = {"tests": [], "test modules": []}


def _import_qt() -> str | None:
    """None when the Qt binding pytest-qt will use imports; else the one-line import error."""
    module = {"pyqt5": "PyQt5", "pyside6": "PySide6", "pyside2": "PySide2"}.get(
        os.environ.get("PYTEST_QT_API", os.environ.get("QT_API", "pyqt6")).lower(), "PyQt6"
    )
    try:
        importlib.import_module(f"{module}.QtWidgets")
    except Exception as error:  # ImportError, OSError from the loader: any of them means no Qt here
        return f"{module}.QtWidgets cannot be imported ({str(error).splitlines()[0] if str(error) else error!r})"
    return None


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Unplug pytest-qt before its configure hook imports a Qt that cannot load (it would abort the session)."""
    global _qt_import_error
    _qt_import_error = _import_qt()
    if _qt_import_error is not None:
        pluginmanager.set_blocked("pytest-qt")


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``qt`` marker for tests that need Qt without using a Qt fixture (e.g. they import widgets)."""
    config.addinivalue_line(
        "markers", "qt: the test needs Qt (imports it or starts a QApplication); skipped where Qt cannot start"
    )


def _missing_packages() -> list[str] | None:
    """The Qt system packages dpkg says are not installed (None where there is no dpkg)."""
    if shutil.which("dpkg-query") is None:
        return None
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *QT_SYSTEM_PACKAGES],
        capture_output=True,
        text=True,
        timeout=30,
    )
    installed = {line.split()[0] for line in done.stdout.splitlines() if line.endswith(" installed")}
    return [package for package in QT_SYSTEM_PACKAGES if package not in installed]


def _probe_failure() -> str | None:
    """None when a QApplication starts in a subprocess with this environment; else what went wrong, in one line."""
    if _qt_import_error is not None:
        return _qt_import_error
    try:
        done = subprocess.run(
            [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=os.environ
        )
    except subprocess.TimeoutExpired:
        return f"starting a QApplication did not finish in {PROBE_TIMEOUT_S} s"
    if done.returncode == 0 and "qt-ok" in done.stdout:
        return None
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    telling = [line for line in lines if "platform plugin" in line or "display" in line.lower()]
    detail = (telling or lines or [f"exit code {done.returncode}"])[0]
    return f"a QApplication cannot start ({detail})"


@functools.cache
def qt_skip_reason() -> str | None:
    """Why Qt tests cannot run on this machine (with the apt command that fixes it), or None when they can."""
    failure = _probe_failure()
    if failure is None:
        return None
    if shutil.which("Xvfb") is None and not os.environ.get("DISPLAY"):
        failure += "; no X display and no Xvfb on PATH"
    missing = _missing_packages()
    if missing:
        names = " ".join(missing)
        return f"{failure}; missing system packages: {names}; install: sudo apt-get install {names}"
    return f"{failure}; GUI tests need: sudo apt-get install {' '.join(QT_SYSTEM_PACKAGES)}"


def _needs_qt(item: pytest.Item) -> bool:
    return (
        bool(QT_FIXTURES.intersection(getattr(item, "fixturenames", ()))) or item.get_closest_marker("qt") is not None
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the Qt tests (probing Qt only when some are selected)."""
    qt_items = [item for item in items if _needs_qt(item)]
    if not qt_items or (reason := qt_skip_reason()) is None:
        return
    for item in qt_items:
        item.add_marker(pytest.mark.skip(reason=f"Qt unavailable: {reason}"))
        _skipped_for_qt["tests"].append(item.nodeid)


def _is_qt_import_failure(report: pytest.CollectReport) -> bool:
    """Whether a module failed to collect because a Qt/napari module (or a library under it) would not import."""
    text = str(report.longrepr)
    names = "|".join(QT_MODULES)
    return bool(re.search(rf"\b({names})\b", text)) and bool(
        re.search(r"ImportError|ModuleNotFoundError|OSError|cannot open shared object", text)
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """A GUI test module that cannot import Qt on a machine without Qt is skipped, not a collection error."""
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if not (report.failed and isinstance(collector, pytest.Module) and _is_qt_import_failure(report)):
        return
    reason = qt_skip_reason()
    if reason is None:  # Qt works: the import error is a real one
        return
    skipped = pytest.CollectReport(
        report.nodeid, "skipped", (str(collector.path), None, f"Skipped: Qt unavailable: {reason}"), []
    )
    _skipped_for_qt["test modules"].append(report.nodeid)
    outcome.force_result(skipped)


def pytest_terminal_summary(terminalreporter) -> None:
    """One line at the end: how many GUI tests were skipped and the command that makes them run."""
    counts = [f"{len(ids)} {kind}" for kind, ids in _skipped_for_qt.items() if ids]
    if counts:
        terminalreporter.write_line(
            f"GUI tests skipped ({', '.join(counts)}): Qt unavailable: {qt_skip_reason()}", yellow=True
        )
