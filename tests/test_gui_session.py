"""A napari session that never crashes: closing mid-run, panels that fit a laptop, units, sensible defaults."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from napari_lfrecon import engines  # noqa: E402
from napari_lfrecon.engines.base import Engine, Update, param  # noqa: E402
from napari_lfrecon.gui import worker as worker_module  # noqa: E402
from napari_lfrecon.gui._sample_data import sample_layers  # noqa: E402
from napari_lfrecon.gui.panels import MAX_DOCK_MIN_HEIGHT  # noqa: E402
from napari_lfrecon.gui.reconstruct_widget import ReconstructWidget  # noqa: E402
from napari_lfrecon.psf.model import PSF  # noqa: E402

TIMEOUT_MS = 30_000
VOXEL = (0.4, 0.1, 0.1)


@dataclass
class SlowParams:
    steps: int = field(default=2000, metadata=param("number of steps", min=1))


class SlowEngine(Engine):
    """Slow steps, a preview each, so a test can act while the run is surely going."""

    name = "slow-session"
    title = "slow session test engine"
    modalities = ("widefield",)
    Params = SlowParams

    def run(self, inputs, params, *, device, should_stop=lambda: False):
        volume = np.zeros(inputs.data.shape, np.float32)
        for k in range(params.steps):
            time.sleep(0.02)
            volume += 1
            yield Update("progress", (k + 1) / params.steps, f"step {k + 1}")
            if should_stop():
                return
            yield Update("preview", (k + 1) / params.steps, "", volume.copy())
        yield Update("result", 1.0, "done", volume)


@pytest.fixture
def slow_engine(monkeypatch):
    monkeypatch.setitem(engines._REGISTRY, SlowEngine.name, SlowEngine)
    return SlowEngine.name


@pytest.fixture
def errors(monkeypatch):
    """Messages passed to ``show_error`` by the worker layer and the widget."""
    seen: list[str] = []
    monkeypatch.setattr(worker_module, "show_error", seen.append)
    monkeypatch.setattr("napari_lfrecon.gui.reconstruct_widget.show_error", seen.append)
    return seen


def gaussian_psf(shape=(5, 9, 9)) -> PSF:
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    array = np.exp(-sum(g**2 / 2.0 for g in grids)).astype(np.float32)
    return PSF(array / array.sum(), "widefield", VOXEL)


def add_stack(viewer, name="beads"):
    data = np.random.default_rng(0).poisson(5.0, (8, 16, 16)).astype(np.float32)
    return viewer.add_image(data, name=name, scale=VOXEL, metadata={"psf": gaussian_psf()})


def add_sample(viewer, name):
    for data, kwargs, _kind in sample_layers(name):
        viewer.add_image(data, **kwargs)


def start_slow_run(viewer, qtbot, slow_engine):
    widget = ReconstructWidget(viewer, sync=False)
    viewer.window.add_dock_widget(widget, name="Reconstruct")
    add_stack(viewer)
    widget.select_engine(slow_engine)
    runner = widget.run()
    assert runner is not None
    qtbot.waitUntil(lambda: runner.preview_layer is not None, timeout=TIMEOUT_MS)  # surely under way
    return widget, runner


# ----------------------------------------------------------------------------- item 6: closing mid-run
def test_closing_the_reconstruct_dock_mid_run_cancels_it(make_napari_viewer, qtbot, slow_engine, errors):
    viewer = make_napari_viewer()
    widget, runner = start_slow_run(viewer, qtbot, slow_engine)
    viewer.window.remove_dock_widget(widget)
    qtbot.waitUntil(lambda: runner.status == "cancelled", timeout=TIMEOUT_MS)
    qtbot.waitUntil(runner.job.exited.is_set, timeout=TIMEOUT_MS)
    qtbot.wait(100)  # any callback still queued runs now (and must not raise)
    assert errors == []
    assert "beads [slow-session cancelled]" in viewer.layers, "the last preview is kept, as for Cancel"
    assert worker_module.running_job(viewer, "reconstruct") is None


def test_closing_the_viewer_mid_run_cancels_and_waits_for_the_thread(make_napari_viewer, qtbot, slow_engine, errors):
    viewer = make_napari_viewer()
    widget, runner = start_slow_run(viewer, qtbot, slow_engine)
    finished = []
    runner.finished.connect(lambda status, message: finished.append(status))
    viewer.close()
    # closing waited for the engine's thread: nothing runs behind the closed window
    assert runner.job.exited.is_set()
    assert runner.detached and finished == ["cancelled"]
    qtbot.wait(200)  # queued yields and the worker's finished signal are handled (and ignored) without error
    assert errors == []
    assert finished == ["cancelled"], "the end is reported once"


def test_a_reopened_panel_follows_the_running_job_and_cancels_it(make_napari_viewer, qtbot, slow_engine, errors):
    viewer = make_napari_viewer()
    first, runner = start_slow_run(viewer, qtbot, slow_engine)
    again = ReconstructWidget(viewer, sync=False)
    assert again.runner is runner, "a panel opened again shows the run that is going"
    assert again.cancel_button.isEnabled() and not again.run_button.isEnabled()
    assert again.run() is runner, "no second run starts while one is going"
    again.cancel_button.click()
    qtbot.waitUntil(lambda: runner.status == "cancelled", timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: again.run_button.isEnabled(), timeout=TIMEOUT_MS)
    assert errors == []
    assert first.run_button.isEnabled() and not first.cancel_button.isEnabled()


SCRIPT = textwrap.dedent(
    """
    import numpy as np, napari
    from napari_lfrecon.gui.reconstruct_widget import ReconstructWidget
    from napari_lfrecon.psf.model import PSF
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=False)
    g = np.exp(-sum(x**2 / 2.0 for x in np.meshgrid(*[np.arange(n) - n // 2 for n in (5, 9, 9)], indexing="ij")))
    psf = PSF((g / g.sum()).astype(np.float32), "widefield", (0.4, 0.1, 0.1))
    data = np.random.default_rng(0).poisson(5.0, (16, 64, 64)).astype(np.float32)
    viewer.add_image(data, name="beads", scale=(0.4, 0.1, 0.1), metadata={"psf": psf})
    widget = ReconstructWidget(viewer, sync=False)
    viewer.window.add_dock_widget(widget)
    widget.params_form.set_values({"iterations": 5000})
    runner = widget.run()
    app = QApplication.instance()
    while runner.preview_layer is None:
        app.processEvents()
    viewer.close()
    for _ in range(20):
        app.processEvents()
    print("closed", runner.status, runner.job.exited.is_set())
    """
)


def test_a_script_that_closes_its_viewer_mid_run_exits_cleanly(tmp_path):
    script = tmp_path / "close_mid_run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "QT_API": os.environ.get("QT_API", "pyqt6")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "closed cancelled True" in done.stdout
    assert "Traceback" not in done.stderr and "has been deleted" not in done.stderr


# ----------------------------------------------------------------------------- item 7: panels fit 1366×768
def test_every_panel_fits_a_laptop_screen(make_napari_viewer):
    from napari_lfrecon.gui.calibrate_widget import CalibrateWidget
    from napari_lfrecon.gui.metrics_widget import MetricsWidget
    from napari_lfrecon.gui.niiv_zoom_widget import NiivZoomWidget
    from napari_lfrecon.gui.psf_widget import PSFEditorWidget
    from napari_lfrecon.gui.train_widget import TrainWidget

    viewer = make_napari_viewer()
    add_sample(viewer, "lfm")
    heights = {}
    for cls in (ReconstructWidget, TrainWidget, MetricsWidget, CalibrateWidget, PSFEditorWidget, NiivZoomWidget):
        widget = cls(viewer)
        viewer.window.add_dock_widget(widget, name=cls.__name__)
        heights[cls.__name__] = widget.minimumSizeHint().height()
    assert MAX_DOCK_MIN_HEIGHT <= 700
    too_tall = {name: h for name, h in heights.items() if h > MAX_DOCK_MIN_HEIGHT}
    assert not too_tall, f"panels taller than a 1366×768 screen allows: {too_tall} (all: {heights})"


# ----------------------------------------------------------------------------- item 8: units
def test_sample_and_rl_result_carry_micrometre_units_and_zyx_labels(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    add_sample(viewer, "lfm")
    lfm = viewer.layers["lfm"]
    assert [str(u) for u in lfm.units] == ["micrometer"] * 2 and tuple(lfm.axis_labels) == ("y", "x")
    truth = viewer.layers["lfm ground truth"]
    assert tuple(truth.axis_labels) == ("z", "y", "x")
    widget = ReconstructWidget(viewer, sync=True)
    assert widget.input_layer() is lfm
    widget.select_engine("rl")
    widget.params_form.set_values({"iterations": 2})
    runner = widget.run()
    assert runner is not None and runner.status == "done", runner.message if runner else None
    result = runner.result_layer
    assert [str(u) for u in result.units] == ["micrometer"] * 3
    assert tuple(result.axis_labels) == ("z", "y", "x")


# ----------------------------------------------------------------------------- item 10: defaults
def test_anisotropic_sample_selects_the_stack_and_niiv(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = ReconstructWidget(viewer, sync=True)
    add_sample(viewer, "anisotropic")
    assert viewer.layers[-1].metadata.get("ground_truth"), "the sample's hidden ground truth comes last"
    assert widget.input_layer() is viewer.layers["anisotropic"], "a ground truth is never the default input"
    assert widget.engine_name == "niiv"


def test_ground_truth_is_never_the_default_input_even_alone(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((4, 8, 8), np.float32), name="answer", metadata={"ground_truth": True})
    widget = ReconstructWidget(viewer, sync=True)
    assert widget.input_layer() is None


def test_train_opens_on_the_trainer_the_layers_suit(make_napari_viewer):
    from napari_lfrecon.gui.train_widget import TrainWidget

    viewer = make_napari_viewer()
    add_sample(viewer, "lfm")
    widget = TrainWidget(viewer, sync=True)
    assert widget.engine_name == "serenet-train", "only an LFM sample is loaded: SeReNet trains on it"
    assert widget.input_layer() is viewer.layers["lfm"]
    later = TrainWidget(make_napari_viewer(), sync=True)
    add_sample(later.viewer, "lfm")
    assert later.engine_name == "serenet-train", "a sample opened after the panel chooses the trainer too"


def _luminance(color) -> float:
    from matplotlib.colors import to_rgba

    r, g, b = to_rgba(color)[:3]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_plots_are_dark_like_napari(make_napari_viewer):
    from napari_lfrecon.gui.metrics_widget import MetricsWidget
    from napari_lfrecon.gui.train_widget import TrainWidget

    viewer = make_napari_viewer()
    train = TrainWidget(viewer, sync=True)
    metrics = MetricsWidget(viewer)
    for figure, axes in ((train.figure, [train.loss_ax]), (metrics.figure, [metrics.sweep_ax, metrics.fsc_ax])):
        assert _luminance(figure.get_facecolor()) < 0.3
        for ax in axes:
            assert _luminance(ax.get_facecolor()) < 0.3
            assert _luminance(ax.title.get_color()) > 0.5, "titles are light on the dark background"
            assert _luminance(ax.xaxis.label.get_color()) > 0.5


def test_metrics_never_predicts_from_a_ground_truth(make_napari_viewer):
    from napari_lfrecon.gui.metrics_widget import MetricsWidget

    viewer = make_napari_viewer()
    widget = MetricsWidget(viewer)
    viewer.add_image(np.ones((4, 8, 8), np.float32), name="recon", metadata={"engine": "rl"})
    viewer.add_image(np.ones((4, 8, 8), np.float32), name="truth", metadata={"engine": "sim", "ground_truth": True})
    assert widget.pred_combo.currentText() == "recon"


def test_repeated_runs_are_named_by_what_differs(make_napari_viewer):
    viewer = make_napari_viewer()
    add_stack(viewer)
    widget = ReconstructWidget(viewer, sync=True)
    widget.select_engine("rl")
    widget.params_form.set_values({"iterations": 2})
    widget.run()
    widget.params_form.set_values({"iterations": 2, "tv_weight": 0.01})
    widget.run()
    names = [layer.name for layer in viewer.layers]
    assert names == ["beads", "beads [rl]", "beads [rl 2 it, tv 0.01]"]


def test_a_read_stack_with_a_voxel_size_carries_micrometre_units(tmp_path):
    from napari_lfrecon.gui._reader import read_paths
    from napari_lfrecon.io.tiff import write_tiff

    path = tmp_path / "stack.tif"
    write_tiff(path, np.ones((4, 8, 8), np.float32), voxel_size=(0.5, 0.1, 0.1))
    (_data, kwargs, _kind), *_ = read_paths(str(path))
    assert kwargs["units"] == ("µm", "µm", "µm") and tuple(kwargs["axis_labels"]) == ("z", "y", "x")
    unknown = tmp_path / "bare.tif"
    write_tiff(unknown, np.ones((4, 8, 8), np.float32))
    (_data, kwargs, _kind), *_ = read_paths(str(unknown))
    assert "units" not in kwargs, "no µm claimed when the file states no voxel size"


def test_the_preview_layer_becomes_the_result_and_every_panel_sees_it(make_napari_viewer):
    from napari_lfrecon.gui.metrics_widget import MetricsWidget

    viewer = make_napari_viewer()
    add_stack(viewer)
    metrics = MetricsWidget(viewer)
    widget = ReconstructWidget(viewer, sync=True)
    widget.select_engine("rl")
    widget.params_form.set_values({"iterations": 3, "preview_every": 1})
    previews = []
    runner = widget._make_runner()  # started by hand to watch its previews from the first one
    runner.previewed.connect(previews.append)
    widget._follow(runner)
    runner.start()
    assert runner.status == "done" and previews, "a sync run shows its previews"
    assert runner.result_layer is previews[0], "no second layer is added for the result"
    assert [layer.name for layer in viewer.layers] == ["beads", "beads [rl]"]
    assert "preview" not in runner.result_layer.metadata and runner.result_layer.metadata["engine"] == "rl"
    inputs = [widget.input_combo.itemData(i) for i in range(widget.input_combo.count())]
    assert "beads [rl]" in inputs, "the renamed result is listed as a possible input"
    assert metrics.pred_combo.currentText() == "beads [rl]", "Metrics follows the result, not a stale preview name"
