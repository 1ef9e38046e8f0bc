"""Progress is repainted at most every ``PROGRESS_DISPLAY_S``, but the newest update is always shown in the end."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from qtpy.QtWidgets import QLabel, QWidget  # noqa: E402

from napari_lfrecon.gui.kit import PROGRESS_DISPLAY_S, PROGRESS_STEPS, ProgressDisplay  # noqa: E402
from napari_lfrecon.gui.panels import ProgressBar  # noqa: E402


def make_display(qtbot, active: list[bool]) -> ProgressDisplay:
    parent = QWidget()
    qtbot.addWidget(parent)
    bar, label = ProgressBar(parent), QLabel("ready", parent)
    bar.setRange(0, PROGRESS_STEPS)
    display = ProgressDisplay(bar, label, lambda: active[0])
    display.parent = parent  # the widgets live as long as the test's display
    return display


def test_updates_sooner_than_the_interval_collapse_to_the_newest(qtbot):
    display = make_display(qtbot, [True])
    display.show(0.1, "iteration 1/10")
    display.show(0.2, "iteration 2/10")
    display.show(0.3, "iteration 3/10")
    assert display.label.text() == "iteration 1/10"  # the others wait for the interval's end
    assert display.bar.value() == round(0.1 * PROGRESS_STEPS)
    qtbot.waitUntil(lambda: display.label.text() == "iteration 3/10", timeout=int(4000 * PROGRESS_DISPLAY_S) + 500)
    assert display.bar.value() == round(0.3 * PROGRESS_STEPS)


def test_the_final_update_is_shown_at_once(qtbot):
    display = make_display(qtbot, [True])
    display.show(0.5, "half way")
    display.show(1.0, "iteration 10/10")
    assert display.label.text() == "iteration 10/10"
    assert display.bar.value() == PROGRESS_STEPS
    qtbot.wait(int(2000 * PROGRESS_DISPLAY_S))
    assert display.label.text() == "iteration 10/10"  # nothing kept overwrites it later


def test_a_kept_update_is_dropped_once_the_run_is_over(qtbot):
    active = [True]
    display = make_display(qtbot, active)
    display.show(0.1, "iteration 1/10")
    display.show(0.2, "iteration 2/10")
    active[0] = False
    display.label.setText("cancelled: stopped")  # the owner's final status
    qtbot.wait(int(2000 * PROGRESS_DISPLAY_S))
    assert display.label.text() == "cancelled: stopped"
