"""A Qt form generated from an engine's ``Params`` dataclass (the same spec drives the CLI flags)."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from ..engines.base import param_specs

#: Spin-box bounds used when a parameter declares no range (Qt needs finite ones).
_INT_LIMIT = 2**31 - 1
_FLOAT_LIMIT = 1e12
#: Decimals shown by float spin boxes: small weights such as TV λ = 0.002 must be typeable.
_FLOAT_DECIMALS = 6


def label_for(name: str) -> str:
    """A human label for a field name: ``tv_weight`` → ``tv weight``."""
    return name.replace("_", " ")


class ParamsForm(QWidget):
    """One editor per ``Params`` field: spin boxes with the field's range, combos for choices, checkboxes for bools.

    Each editor's tooltip is the field's one-line help. :meth:`values` returns a
    plain dict suitable for :func:`napari_lfrecon.engines.make_params`.
    """

    def __init__(self, params_cls: type | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QFormLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._editors: dict[str, tuple[dict[str, Any], QWidget]] = {}
        self.params_cls: type | None = None
        if params_cls is not None:
            self.set_params_class(params_cls)

    # ----------------------------------------------------------------- build
    def set_params_class(self, params_cls: type) -> None:
        """Rebuild the form for ``params_cls`` (an engine's ``Params`` dataclass), showing its defaults."""
        while self._layout.rowCount():
            self._layout.removeRow(0)
        self._editors.clear()
        self.params_cls = params_cls
        for spec in param_specs(params_cls):
            editor = _make_editor(spec)
            editor.setObjectName(f"param_{spec['name']}")
            editor.setToolTip(spec["help"])
            label = QLabel(label_for(spec["name"]))
            label.setToolTip(spec["help"])
            self._layout.addRow(label, editor)
            self._editors[spec["name"]] = (spec, editor)

    # ---------------------------------------------------------------- values
    def editor(self, name: str) -> QWidget:
        """The editor widget of field ``name`` (``KeyError`` for unknown names)."""
        return self._editors[name][1]

    def values(self) -> dict[str, Any]:
        """The current value of every field, typed like the field's default."""
        return {name: _read(spec, editor) for name, (spec, editor) in self._editors.items()}

    def set_values(self, values: dict[str, Any]) -> None:
        """Set some fields; unknown names raise ``ValueError`` naming the known ones."""
        unknown = sorted(set(values) - set(self._editors))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; the form has {sorted(self._editors)}")
        for name, value in values.items():
            spec, editor = self._editors[name]
            _write(spec, editor, value)


def _make_editor(spec: dict[str, Any]) -> QWidget:
    kind, default = spec["type"], spec["default"]
    if spec["choices"] is not None:
        combo = QComboBox()
        for choice in spec["choices"]:
            combo.addItem(str(choice), choice)
        combo.setCurrentIndex(list(spec["choices"]).index(default))
        return combo
    if kind is bool:
        box = QCheckBox()
        box.setChecked(bool(default))
        return box
    if kind is int:
        spin = QSpinBox()
        spin.setRange(_bound(spec["min"], -_INT_LIMIT), _bound(spec["max"], _INT_LIMIT))
        spin.setValue(int(default))
        return spin
    if kind is float:
        dspin = QDoubleSpinBox()
        dspin.setDecimals(_FLOAT_DECIMALS)
        dspin.setRange(_bound(spec["min"], -_FLOAT_LIMIT), _bound(spec["max"], _FLOAT_LIMIT))
        # Adaptive steps: arrow keys move 0.001 → 0.002 for small weights and 10 → 11 for large ones.
        dspin.setStepType(QAbstractSpinBox.StepType.AdaptiveDecimalStepType)
        dspin.setValue(float(default))
        return dspin
    line = QLineEdit(str(default))
    return line


def _bound(value: float | None, fallback: float) -> Any:
    if value is None:
        return type(fallback)(fallback)
    return type(fallback)(value)


def _read(spec: dict[str, Any], editor: QWidget) -> Any:
    if isinstance(editor, QComboBox):
        return editor.currentData()
    if isinstance(editor, QCheckBox):
        return editor.isChecked()
    if isinstance(editor, (QSpinBox, QDoubleSpinBox)):
        return spec["type"](editor.value())
    return editor.text()  # type: ignore[attr-defined]


def _write(spec: dict[str, Any], editor: QWidget, value: Any) -> None:
    if isinstance(editor, QComboBox):
        index = editor.findData(value)
        if index < 0:
            raise ValueError(f"parameter {spec['name']!r} must be one of {spec['choices']}, got {value!r}")
        editor.setCurrentIndex(index)
    elif isinstance(editor, QCheckBox):
        editor.setChecked(bool(value))
    elif isinstance(editor, (QSpinBox, QDoubleSpinBox)):
        if (spec["min"] is not None and value < spec["min"]) or (spec["max"] is not None and value > spec["max"]):
            raise ValueError(f"parameter {spec['name']!r} must be in [{spec['min']}, {spec['max']}], got {value}")
        editor.setValue(value)
    else:
        editor.setText(str(value))  # type: ignore[attr-defined]
