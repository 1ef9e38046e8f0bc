"""A form generated from an engine's ``Params`` dataclass through magicgui (the same spec drives the CLI flags).

Each dataclass field becomes one magicgui value widget
(:func:`magicgui.widgets.create_widget` from the field's type and default, with
the ``min``/``max``/``choices``/``help`` of :func:`napari_lfrecon.jobs.param_specs`):
a spin box for numbers, a combo box for choices, a checkbox for booleans, a
line edit for text. The rows sit in a ``QFormLayout`` (label, editor) so a
widget can hide a row (``layout().setRowVisible(form.editor(name), False)``).
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import create_widget
from magicgui.widgets.bases import ValueWidget
from qtpy.QtWidgets import QAbstractSpinBox, QDoubleSpinBox, QFormLayout, QLabel, QWidget

from ..jobs import param_specs

#: Spin-box bounds used when a parameter declares no range (Qt needs finite ones).
_INT_LIMIT = 2**31 - 1
_FLOAT_LIMIT = 1e12
#: Decimals shown by float spin boxes: small weights such as TV λ = 0.002 must be typeable.
_FLOAT_DECIMALS = 6


def label_for(name: str) -> str:
    """A human label for a field name: ``tv_weight`` → ``tv weight``."""
    return name.replace("_", " ")


def make_editor(spec: dict[str, Any]) -> ValueWidget:
    """The magicgui widget for one ``param_specs`` entry, showing the field's default."""
    kind, default = spec["type"], spec["default"]
    options: dict[str, Any] = {}
    if spec["choices"] is not None:
        options["choices"] = tuple(spec["choices"])
    elif kind is bool:
        options["text"] = ""  # the form's label names it
    elif kind is int:
        options.update(min=_bound(spec["min"], -_INT_LIMIT, int), max=_bound(spec["max"], _INT_LIMIT, int))
    elif kind is float:
        options.update(min=_bound(spec["min"], -_FLOAT_LIMIT, float), max=_bound(spec["max"], _FLOAT_LIMIT, float))
    annotation = kind if kind in (bool, int, float, str) else str
    options["tooltip"] = spec["help"]
    value = default if annotation is not str or spec["choices"] is not None else str(default)
    widget = create_widget(value=value, annotation=annotation, options=options)
    native = widget.native
    if isinstance(native, QDoubleSpinBox):
        native.setDecimals(_FLOAT_DECIMALS)
        # Adaptive steps: arrow keys move 0.001 → 0.002 for small weights and 10 → 11 for large ones.
        native.setStepType(QAbstractSpinBox.StepType.AdaptiveDecimalStepType)
        widget.value = value  # again, now that a small default survives the spin box's rounding
    return widget


def _bound(value: float | None, fallback: float, kind: type) -> Any:
    return kind(fallback if value is None else value)


class ParamsForm(QWidget):
    """One magicgui editor per ``Params`` field, each with the field's range, choices and one-line help.

    :meth:`values` returns a plain dict suitable for
    :func:`napari_lfrecon.jobs.make_params`; :meth:`editor` gives a field's Qt
    editor; :meth:`set_values` checks names, ranges and choices.
    """

    def __init__(self, params_cls: type | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QFormLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._editors: dict[str, tuple[dict[str, Any], ValueWidget]] = {}
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
            widget = make_editor(spec)
            widget.native.setObjectName(f"param_{spec['name']}")
            label = QLabel(label_for(spec["name"]))
            label.setToolTip(spec["help"])
            self._layout.addRow(label, widget.native)
            self._editors[spec["name"]] = (spec, widget)

    # ---------------------------------------------------------------- values
    def editor(self, name: str) -> QWidget:
        """The Qt editor of field ``name`` (``KeyError`` for unknown names)."""
        return self._editors[name][1].native

    def values(self) -> dict[str, Any]:
        """The current value of every field, typed like the field's default."""
        return {name: _typed(spec, widget.value) for name, (spec, widget) in self._editors.items()}

    def set_values(self, values: dict[str, Any]) -> None:
        """Set some fields; unknown names, out-of-range numbers and unknown choices raise ``ValueError``."""
        unknown = sorted(set(values) - set(self._editors))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; the form has {sorted(self._editors)}")
        for name, value in values.items():
            spec, widget = self._editors[name]
            if spec["choices"] is not None and value not in spec["choices"]:
                raise ValueError(f"parameter {name!r} must be one of {spec['choices']}, got {value!r}")
            low, high = spec["min"], spec["max"]
            if spec["type"] in (int, float) and (
                (low is not None and value < low) or (high is not None and value > high)
            ):
                raise ValueError(f"parameter {name!r} must be in [{low}, {high}], got {value}")
            widget.value = str(value) if spec["type"] is str and spec["choices"] is None else value


def _typed(spec: dict[str, Any], value: Any) -> Any:
    kind = spec["type"]
    if spec["choices"] is None and kind in (bool, int, float, str):
        return kind(value)
    return value
