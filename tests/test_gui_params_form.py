"""The parameter form is generated from an engine's ``Params`` spec: editors, ranges, help, values."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

pytest.importorskip("pytestqt")

from qtpy.QtWidgets import QAbstractSpinBox, QCheckBox, QComboBox, QDoubleSpinBox, QLabel, QLineEdit  # noqa: E402

from napari_lfrecon.engines import make_params, param  # noqa: E402
from napari_lfrecon.engines.rl import RLParams  # noqa: E402
from napari_lfrecon.gui.params_form import ParamsForm  # noqa: E402


@dataclass
class DemoParams:
    count: int = field(default=7, metadata=param("how many", min=2, max=50))
    weight: float = field(default=0.002, metadata=param("a small weight", min=0.0, max=0.1))
    flag: bool = field(default=True, metadata=param("a switch"))
    mode: str = field(default="b", metadata=param("a choice", choices=("a", "b", "c")))
    label: str = field(default="x", metadata=param("free text"))


def test_editors_follow_the_spec(qtbot):
    form = ParamsForm(DemoParams)
    qtbot.addWidget(form)
    count, weight = form.editor("count"), form.editor("weight")
    assert (
        isinstance(count, QAbstractSpinBox)
        and not isinstance(count, QDoubleSpinBox)
        and (count.minimum(), count.maximum(), count.value()) == (2, 50, 7)
    )
    assert isinstance(weight, QDoubleSpinBox) and weight.maximum() == pytest.approx(0.1)
    assert weight.value() == pytest.approx(0.002), "small defaults must survive the spin box's rounding"
    assert isinstance(form.editor("flag"), QCheckBox) and form.editor("flag").isChecked()
    mode = form.editor("mode")
    assert isinstance(mode, QComboBox) and [mode.itemText(i) for i in range(mode.count())] == ["a", "b", "c"]
    assert mode.currentText() == "b"
    assert isinstance(form.editor("label"), QLineEdit)
    assert count.toolTip() == "how many" and weight.toolTip() == "a small weight"
    labels = [w.text() for w in form.findChildren(QLabel)]
    assert labels == ["count", "weight", "flag", "mode", "label"]
    assert form.values() == {"count": 7, "weight": 0.002, "flag": True, "mode": "b", "label": "x"}


def test_values_are_typed_and_clamped_to_the_range(qtbot):
    form = ParamsForm(DemoParams)
    qtbot.addWidget(form)
    form.editor("count").setValue(500)  # above max: Qt clamps to 50
    form.editor("mode").setCurrentIndex(2)
    form.editor("flag").setChecked(False)
    values = form.values()
    assert values["count"] == 50 and type(values["count"]) is int
    assert values["mode"] == "c" and values["flag"] is False
    assert make_params(DemoParams, values) == DemoParams(count=50, weight=0.002, flag=False, mode="c")


def test_set_values_checks_names_and_ranges(qtbot):
    form = ParamsForm(RLParams)
    qtbot.addWidget(form)
    form.set_values({"iterations": 3, "boundary": "circular", "tv_weight": 0.01})
    assert form.values()["iterations"] == 3 and form.values()["boundary"] == "circular"
    with pytest.raises(ValueError, match="unknown parameter"):
        form.set_values({"iteration": 3})
    with pytest.raises(ValueError, match="must be in"):
        form.set_values({"iterations": 0})
    with pytest.raises(ValueError, match="one of"):
        form.set_values({"boundary": "reflect"})


def test_rebuilding_for_another_engine_replaces_every_row(qtbot):
    form = ParamsForm(RLParams)
    qtbot.addWidget(form)
    form.set_params_class(DemoParams)
    assert list(form.values()) == ["count", "weight", "flag", "mode", "label"]
    assert [w.text() for w in form.findChildren(QLabel) if w.parent() is form] == [
        "count",
        "weight",
        "flag",
        "mode",
        "label",
    ]
