"""Runs that never outlive their viewer or panel: a per-viewer registry of runs and close watchers.

* :func:`register_job` / :func:`running_job` — the runs of a viewer by key (one
  per panel kind), so a panel opened again finds the run still going and never starts a second one;
* closing the viewer (its main window's close event, or the application quitting)
  cancels and detaches its runs and waits up to :data:`CLOSE_WAIT_S` for their
  threads, so nothing runs behind a closed window and a script never aborts;
* :func:`on_widget_closed` — a panel closed (napari's close button removes it
  from its dock) or deleted calls back once;
* :func:`connect_alive` — a signal connection that drops itself once its widget's Qt object is gone.

A runner here is anything with ``running``, ``cancel()``, ``detach()`` and a
``job`` (or itself) with an ``exited`` :class:`threading.Event`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QCoreApplication, QEvent, QObject

#: How long closing a viewer waits for its cancelled runs' threads to end (an engine stops within one step).
CLOSE_WAIT_S = 10.0

__all__ = [
    "CLOSE_WAIT_S",
    "cancel_viewer_jobs",
    "connect_alive",
    "on_widget_closed",
    "qt_alive",
    "register_job",
    "running_job",
]


def qt_alive(obj: Any) -> bool:
    """False once ``obj``'s C++ Qt object has been deleted (its Python wrapper may outlive it)."""
    try:
        obj.objectName()
    except RuntimeError:
        return False
    return True


def connect_alive(signal: Any, owner: QObject, callback: Callable[..., Any]) -> None:
    """Connect ``callback`` to psygnal ``signal``; once ``owner`` (a widget) is deleted it disconnects itself.

    A run outlives the widget that started it; without this its signals would
    call into a deleted widget (``RuntimeError: wrapped C/C++ object … has been deleted``).
    """

    def guarded(*args: Any) -> None:
        if not qt_alive(owner):
            signal.disconnect(guarded)
            return
        callback(*args)

    signal.connect(guarded)


class _CloseWatcher(QObject):
    """Calls ``on_close`` once: when the watched widget closes or leaves its parent (a dock closed)."""

    def __init__(self, watched: QObject, on_close: Callable[[], None], *, parent_loss: bool) -> None:
        super().__init__(watched)
        self._on_close: Callable[[], None] | None = on_close
        self._parent_loss = parent_loss
        self._had_parent = watched.parent() is not None
        watched.installEventFilter(self)
        watched.destroyed.connect(lambda *_: self.fire())

    def fire(self) -> None:
        """Run the close callback (once)."""
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        """Fire on a close event, or when a docked widget loses its parent (napari's close button)."""
        kind = event.type()
        if kind == QEvent.Type.Close:
            self.fire()
        elif kind == QEvent.Type.ParentChange and self._parent_loss:
            if watched.parent() is None and self._had_parent:
                self.fire()
            self._had_parent = watched.parent() is not None
        return False


def on_widget_closed(widget: QObject, on_close: Callable[[], None]) -> None:
    """Call ``on_close`` once when ``widget`` is closed, removed from its dock or deleted."""
    _CloseWatcher(widget, on_close, parent_loss=True)


#: Running jobs per viewer: ``id(viewer) -> {key: runner}`` (runners have ``running``, ``cancel``, ``detach``).
_VIEWER_JOBS: dict[int, dict[str, Any]] = {}
_WATCHED_VIEWERS: set[int] = set()


def running_job(viewer: Any, key: str) -> Any | None:
    """The run registered under ``key`` for ``viewer`` while it is still running (else ``None``)."""
    runner = _VIEWER_JOBS.get(id(viewer), {}).get(key)
    return runner if runner is not None and runner.running else None


def register_job(viewer: Any, key: str, runner: Any) -> None:
    """Record ``runner`` as ``viewer``'s ``key`` run, so a reopened widget finds it and closing cancels it."""
    _VIEWER_JOBS.setdefault(id(viewer), {})[key] = runner
    _watch_viewer(viewer)


def cancel_viewer_jobs(viewer: Any, wait_s: float = CLOSE_WAIT_S) -> None:
    """Cancel and detach every run of ``viewer`` and wait up to ``wait_s`` for their threads to end."""
    _detach_and_wait(list(_VIEWER_JOBS.pop(id(viewer), {}).values()), wait_s)


def _detach_and_wait(runners: list[Any], wait_s: float) -> None:
    for runner in runners:
        runner.detach()
    deadline = time.perf_counter() + wait_s
    for runner in runners:
        exited = getattr(runner, "exited", None) or getattr(getattr(runner, "job", None), "exited", None)
        if exited is not None:
            exited.wait(max(0.0, deadline - time.perf_counter()))


def _cancel_all_jobs() -> None:
    runners = [runner for key in list(_VIEWER_JOBS) for runner in _VIEWER_JOBS.pop(key).values()]
    _detach_and_wait(runners, CLOSE_WAIT_S)


def _watch_viewer(viewer: Any) -> None:
    if id(viewer) in _WATCHED_VIEWERS:
        return
    window = getattr(getattr(viewer, "window", None), "_qt_window", None)
    if window is None:
        return
    _WATCHED_VIEWERS.add(id(viewer))
    key = id(viewer)

    def closing() -> None:
        _WATCHED_VIEWERS.discard(key)
        cancel_viewer_jobs(viewer)

    _CloseWatcher(window, closing, parent_loss=False)
    app = QCoreApplication.instance()
    if app is not None and not getattr(app, "_lfrecon_quit_hook", False):
        app.aboutToQuit.connect(_cancel_all_jobs)
        app._lfrecon_quit_hook = True  # type: ignore[attr-defined]
