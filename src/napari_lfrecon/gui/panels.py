"""How every dock is laid out: a vertical scroll area with a fixed footer, quiet progress bars, themed plots.

* :func:`scrolled_layout` — the body scrolls (a dock's minimum height stays small
  enough for a 1366×768 screen), the footer (Run/Cancel, progress) stays in view;
* :class:`ProgressBar` — repainted with the next frame, never synchronously;
* :func:`theme_axes` — matplotlib axes in napari's theme colours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFrame, QHBoxLayout, QLineEdit, QProgressBar, QPushButton, QScrollArea, QVBoxLayout, QWidget

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = [
    "MAX_DOCK_MIN_HEIGHT",
    "ProgressBar",
    "VerticalScrollArea",
    "draw_loss_curve",
    "path_row",
    "plot_colors",
    "scrolled_layout",
    "theme_axes",
]


class ProgressBar(QProgressBar):
    """A progress bar whose moves are painted with the next frame, never synchronously.

    ``QProgressBar.setValue`` repaints at once; in a window holding napari's GL
    canvas that forces a composite of the whole window (tens of ms of main-thread time per step).
    """

    def setValue(self, value: int) -> None:  # noqa: N802 (Qt's name)
        """Set the value; the bar is redrawn with the next paint."""
        self.setUpdatesEnabled(False)
        try:
            super().setValue(value)
        finally:
            self.setUpdatesEnabled(True)  # schedules an (asynchronous) update


#: The tallest a dock's minimum size may be: it must fit a 1366×768 screen beside napari's own bars.
MAX_DOCK_MIN_HEIGHT = 700


class VerticalScrollArea(QScrollArea):
    """A scroll area that scrolls vertically only: as wide as its contents need, as short as a few rows.

    Its width hints are the contents' (plus the scroll bar), so the dock never
    clips the contents sideways; its minimum height is small, so the dock fits any screen.
    """

    #: The minimum height of the scrolled part: a few rows stay visible.
    MIN_HEIGHT = 120

    def _width(self, hint: Any) -> int:
        content = self.widget()
        inner = hint(content).width() if content is not None else 0
        return inner + self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()

    def minimumSizeHint(self) -> Any:  # noqa: N802 (Qt's name)
        """The contents' minimum width, a small height."""
        hint = super().minimumSizeHint()
        hint.setWidth(self._width(QWidget.minimumSizeHint))
        hint.setHeight(self.MIN_HEIGHT)
        return hint

    def sizeHint(self) -> Any:  # noqa: N802 (Qt's name)
        """The contents' preferred size (the dock shows all of it when there is room)."""
        hint = super().sizeHint()
        content = self.widget()
        if content is not None:
            hint.setWidth(self._width(QWidget.sizeHint))
            hint.setHeight(content.sizeHint().height() + 2 * self.frameWidth())
        return hint


def scrolled_layout(widget: QWidget) -> tuple[QVBoxLayout, QVBoxLayout]:
    """``(body, footer)`` layouts of ``widget``: the body scrolls, the footer (Run/Cancel, status) stays visible.

    A dock built this way has a small minimum height whatever its contents, so it
    fits a laptop screen; the footer is kept outside the scroll area so the
    buttons are never scrolled away.
    """
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    scroll = VerticalScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    content = QWidget()
    body = QVBoxLayout(content)
    scroll.setWidget(content)
    outer.addWidget(scroll, 1)
    footer = QVBoxLayout()
    footer.setContentsMargins(9, 0, 9, 9)
    outer.addLayout(footer)
    widget.scroll_area = scroll  # type: ignore[attr-defined]
    return body, footer


def plot_colors(viewer: napari.Viewer) -> tuple[str, str]:
    """``(background, text)`` colours of the viewer's napari theme (dark by default), for matplotlib plots."""
    from napari.utils.theme import get_theme

    try:
        theme = get_theme(str(getattr(viewer, "theme", "dark")))
    except (KeyError, ValueError):  # a theme name napari does not know: the dark default
        theme = get_theme("dark")
    return theme.background.as_hex(), theme.text.as_hex()


def theme_axes(viewer: napari.Viewer, figure: Any, axes: list[Any]) -> None:
    """Colour ``figure`` and its ``axes`` like napari's theme (call after drawing: ``ax.clear()`` resets them)."""
    background, text = plot_colors(viewer)
    figure.set_facecolor(background)
    for ax in axes:
        ax.set_facecolor(background)
        ax.tick_params(colors=text, which="both")
        for spine in ax.spines.values():
            spine.set_color(text)
        ax.title.set_color(text)
        ax.xaxis.label.set_color(text)
        ax.yaxis.label.set_color(text)
        legend = ax.get_legend()
        if legend is not None:
            legend.get_frame().set_facecolor(background)
            for label in legend.get_texts():
                label.set_color(text)


def path_row(field: QLineEdit, tip: str) -> tuple[QPushButton, QHBoxLayout]:
    """A "…" browse button next to ``field``: the button and the row holding both."""
    button = QPushButton("…")
    button.setFixedWidth(28)
    button.setToolTip(tip)
    row = QHBoxLayout()
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(field)
    row.addWidget(button)
    return button, row


def draw_loss_curve(ax: Any, losses: dict[str, tuple[list[int], list[float]]]) -> None:
    """Draw training ``losses`` (steps and values per metric name) on ``ax``, log-scaled when all positive."""
    ax.clear()
    positive = True
    for name, (steps, values) in losses.items():
        ax.plot(steps, values, marker="o", markersize=3, linewidth=1.2, label=name)
        positive = positive and min(values) > 0
    # A likelihood loss can go below zero; a log axis then cannot show it.
    ax.set_yscale("log" if losses and positive else "linear")
    ax.set(title="training loss", xlabel="step", ylabel="loss")
    ax.grid(True, which="both", alpha=0.3)
    if len(losses) > 1:
        ax.legend(fontsize=7)
