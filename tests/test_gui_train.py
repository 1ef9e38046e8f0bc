"""The Train widget, driven through a real (Xvfb) napari viewer with tiny training runs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from napari_lfrecon import engines  # noqa: E402
from napari_lfrecon.engines.serenet_weights import load_model  # noqa: E402
from napari_lfrecon.gui import train_widget as train_module  # noqa: E402
from napari_lfrecon.gui import worker as worker_module  # noqa: E402
from napari_lfrecon.gui._sample_data import sample_layers  # noqa: E402
from napari_lfrecon.gui.reconstruct_widget import ReconstructWidget  # noqa: E402
from napari_lfrecon.gui.train_widget import (  # noqa: E402
    TrainWidget,
    checkpoint_for,
    inference_engine,
    input_hint,
    needs_psf,
)

#: Generous: each run below takes about a second, but the machine is shared.
TIMEOUT_MS = 180_000
#: The smallest SeReNet training that still exercises every update kind.
TINY = {"width": 0.25, "crop_lenslets": 0, "views_per_step": 5, "lr": 3e-3}


def add_sample(viewer, name: str) -> list:
    return [viewer.add_image(data, **kwargs) for data, kwargs, _kind in sample_layers(name)]


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    w = TrainWidget(viewer, sync=False)
    viewer.window.add_dock_widget(w, name="Train")
    return w


@pytest.fixture
def errors(monkeypatch):
    """Messages passed to ``show_error`` (by the worker layer and the widget)."""
    seen: list[str] = []
    monkeypatch.setattr(worker_module, "show_error", seen.append)
    monkeypatch.setattr(train_module, "show_error", seen.append)
    return seen


def train_and_wait(widget, qtbot, on_preview=None):
    done: list[tuple[str, str]] = []
    widget.run_button.click()
    runner = widget.runner
    assert runner is not None, widget.status_label.text()
    if on_preview is not None:
        runner.previewed.connect(on_preview)
    runner.finished.connect(lambda *args: done.append(args))
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT_MS)
    return runner, done[0]


# ----------------------------------------------------------------------------- pure helpers
def test_engine_needs_follow_modalities():
    serenet = engines.get("serenet-train")
    assert needs_psf(serenet) and "LFM PSF".lower() in input_hint(serenet).lower()
    assert inference_engine("serenet-train") == "serenet"
    assert inference_engine("rl") is None
    assert str(checkpoint_for("/a/w.safetensors")) == "/a/w.checkpoint.safetensors"


# ----------------------------------------------------------------------------- serenet-train
def test_serenet_training_round_trip(widget, qtbot, errors, tmp_path):
    viewer = widget.viewer
    lfm, _truth = add_sample(viewer, "lfm")
    original = np.array(lfm.data, copy=True)
    widget.select_engine("serenet-train")
    assert widget.engine_combo.currentText() == engines.get("serenet-train").title
    assert widget.input_layer() is lfm and widget.psf_combo.currentData() == "lfm"
    # Default weights path: outside the package, and the checkpoint follows it.
    assert widget.weights_path.text() == str(Path.home() / "lfrecon-weights" / "serenet-lfm.safetensors")
    weights = tmp_path / "trained.safetensors"
    widget.weights_path.setText(str(weights))
    assert widget.params_form.values()["checkpoint"] == str(tmp_path / "trained.checkpoint.safetensors")
    # The form's own 'output' row is hidden: the weights row above is the one place to set it.
    assert not widget.params_form.layout().isRowVisible(widget.params_form.editor("output"))
    assert widget.params_form.layout().isRowVisible(widget.params_form.editor("steps"))
    widget.params_form.set_values({**TINY, "steps": 11, "preview_every": 4})

    preview_layers: list[object] = []
    preview_counts: list[int] = []

    def on_preview(layer):
        preview_layers.append(layer)
        preview_counts.append(sum("preview" in x.name for x in viewer.layers))

    runner, (status, message) = train_and_wait(widget, qtbot, on_preview)

    assert errors == [] and status == "done", message
    # The weights exist, load for this PSF, and hold the network the form asked for.
    assert widget.trained_weights == weights and weights.is_file()
    model, header = load_model(weights, lfm.metadata["psf"])
    assert model.config.width == 0.25 and header["training"]["steps_done"] == 11
    # Loss every 10 steps (and at the last): points at steps 10 and 11, on a log axis.
    steps, values = widget.losses["loss"]
    assert steps == [10, 11] and all(v > 0 for v in values)
    line = widget.loss_ax.get_lines()[0]
    np.testing.assert_array_equal(line.get_xdata(), [10, 11])
    assert widget.loss_ax.get_yscale() == "log"
    # Previews at steps 4 and 8 went into ONE layer, replaced by the result at the end.
    assert preview_counts == [1, 1] and all(p is preview_layers[0] for p in preview_layers)
    names = [x.name for x in viewer.layers]
    assert names == ["lfm", "lfm ground truth", "lfm [serenet-train]"]
    result = viewer.layers["lfm [serenet-train]"]
    assert result.data.shape == _truth.data.shape
    np.testing.assert_allclose(result.translate, _truth.translate)  # the network's volume sits on the truth
    assert result.metadata["trained_weights"] == {"weights": str(weights), "engine": "serenet"}
    # Status: weights path, final loss, time; the input never changed.
    text = widget.status_label.text()
    assert str(weights) in text and f"final loss {values[-1]:.4g}" in text and re.search(r"\d+\.\d s on CPU", text)
    np.testing.assert_array_equal(lfm.data, original)
    assert lfm.data.flags.writeable

    # Hand-over: the docked Reconstruct widget gets the inference engine and the weights.
    reconstruct = ReconstructWidget(viewer, sync=False)
    viewer.window.add_dock_widget(reconstruct, name="Reconstruct")
    assert widget.use_button.isEnabled()
    widget.use_button.click()
    assert reconstruct.engine_name == "serenet"
    assert reconstruct.params_form.values()["weights"] == str(weights)
    assert reconstruct.input_layer() is lfm


def test_cancel_stops_within_one_step_and_keeps_the_checkpoint(widget, qtbot, errors, tmp_path):
    viewer = widget.viewer
    add_sample(viewer, "lfm")
    widget.select_engine("serenet-train")
    weights = tmp_path / "w.safetensors"
    widget.weights_path.setText(str(weights))
    # A checkpoint every step: the engine writes its state there while the worker layer may close it at Cancel.
    widget.params_form.set_values({**TINY, "steps": 100_000, "preview_every": 2, "checkpoint_every": 1})
    progress_steps: list[int] = []
    cancelled_at: list[int] = []

    def cancel_on_first_preview(layer):
        if not cancelled_at:
            cancelled_at.append(widget._last_step)
            widget.cancel_button.click()

    widget.run_button.click()
    runner = widget.runner

    def record_step(fraction, message):
        match = re.match(r"step (\d+)/", message)
        if match:
            progress_steps.append(int(match.group(1)))

    runner.progressed.connect(record_step)
    runner.previewed.connect(cancel_on_first_preview)
    done: list[tuple[str, str]] = []
    runner.finished.connect(lambda *args: done.append(args))
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT_MS)

    assert done[0][0] == "cancelled" and errors == []
    assert cancelled_at == [2]
    assert max(progress_steps) <= cancelled_at[0] + 1, "training went on for more than one step after Cancel"
    checkpoint = tmp_path / "w.checkpoint.safetensors"
    assert checkpoint.is_file() and not weights.exists()
    from napari_lfrecon.io.weights import read_header

    assert read_header(checkpoint)["step"] <= cancelled_at[0] + 1
    assert str(checkpoint) in widget.status_label.text()
    assert [x.name for x in viewer.layers] == ["lfm", "lfm ground truth", "lfm [serenet-train cancelled]"]
    assert widget.run_button.isEnabled() and not widget.use_button.isEnabled()


def test_time_series_trains_and_places_the_volume_on_one_frame(widget, qtbot, errors, tmp_path):
    viewer = widget.viewer
    lfm, truth = add_sample(viewer, "lfm")
    series = np.stack([lfm.data, 0.8 * lfm.data]).astype(np.float32)
    viewer.add_image(series, name="series", scale=(5.0, *lfm.scale), metadata={"psf": lfm.metadata["psf"]})
    widget.select_engine("serenet-train")
    widget.select_input("series")
    assert widget.psf_combo.currentData() == "series"
    widget.weights_path.setText(str(tmp_path / "series.safetensors"))
    widget.params_form.set_values({**TINY, "steps": 2, "preview_every": 0})
    messages: list[str] = []
    widget.run_button.click()
    runner = widget.runner
    runner.progressed.connect(lambda fraction, message: messages.append(message))
    done: list[tuple[str, str]] = []
    runner.finished.connect(lambda *args: done.append(args))
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT_MS)
    assert done[0][0] == "done" and errors == [], done
    assert any("2 frame(s)" in m for m in messages), messages
    result = viewer.layers["series [serenet-train]"]
    # Placed on one frame's field of view: the time axis (5 s per frame) must not shift it along z.
    np.testing.assert_allclose(result.translate, truth.translate)
    np.testing.assert_allclose(result.scale, truth.scale)


def test_bad_combinations_show_an_error_and_start_nothing(widget, qtbot, errors):
    viewer = widget.viewer
    lfm_psf = sample_layers("lfm")[0][1]["metadata"]["psf"]
    raw = sample_layers("lfm")[0][0]
    # No PSF anywhere: serenet-train cannot train.
    viewer.add_image(raw, name="bare")
    widget.select_engine("serenet-train")
    widget.params_form.set_values({"steps": 2})
    widget.run_button.click()
    assert widget.runner is None and len(errors) == 1
    assert "needs a lfm PSF" in errors[0] and "cannot train" in widget.status_label.text()
    # A widefield PSF with light-field frames: refused before anything starts.
    add_sample(viewer, "widefield")
    widget.select_input("bare")
    widget.select_psf("widefield")
    widget.run_button.click()
    assert widget.runner is None and len(errors) == 2 and "not a widefield PSF" in errors[1]
    # The right PSF but data with too many axes.
    viewer.add_image(np.zeros((2, 2, 2, 2, 2), np.float32), name="5d", metadata={"psf": lfm_psf})
    widget.select_input("5d")
    widget.run_button.click()
    assert widget.runner is None and len(errors) == 3 and "has shape (2, 2, 2, 2, 2)" in errors[2]
    assert [x.name for x in viewer.layers] == ["bare", "widefield", "widefield ground truth", "5d"]
    assert widget.run_button.isEnabled()


# ----------------------------------------------------------------------------- niiv-train (when registered)
def test_niiv_training_round_trip(widget, qtbot, errors, tmp_path):
    if "niiv-train" not in engines.available(kind="train"):
        pytest.skip("niiv-train is not registered in this build")
    viewer = widget.viewer
    z, y, x = np.meshgrid(np.arange(4), np.arange(20), np.arange(24), indexing="ij")
    stack = (0.1 + np.exp(-((y - 9.0) ** 2 + (x - 12.0) ** 2) / 20.0) * (1 + 0.2 * z)).astype(np.float32)
    layer = viewer.add_image(stack, name="aniso", scale=(0.8, 0.2, 0.2))  # anisotropy 4, from the voxel size
    original = stack.copy()
    widget.select_engine("niiv-train")
    assert widget.psf_combo.currentData() == train_module.NO_PSF and not widget.psf_combo.isEnabled()
    assert "no PSF" in widget.needs_label.text()
    widget.select_input("aniso")
    weights = tmp_path / "niiv.safetensors"
    widget.weights_path.setText(str(weights))
    tiny = {"features": 8, "blocks": 1, "mlp_width": 16, "mlp_depth": 2, "batch": 2, "crop": 16, "queries": 64}
    widget.params_form.set_values({**tiny, "steps": 10, "preview_every": 5, "patience": 0})
    _runner, (status, message) = train_and_wait(widget, qtbot)
    assert status == "done" and errors == [], message
    assert weights.is_file() and widget.losses
    assert [x.name for x in viewer.layers] == ["aniso", "aniso [niiv-train]"]  # the preview became the result
    np.testing.assert_array_equal(layer.data, original)
    reconstruct = ReconstructWidget(viewer, sync=False)
    viewer.window.add_dock_widget(reconstruct, name="Reconstruct")
    widget.use_button.click()
    assert reconstruct.engine_name == "niiv" and reconstruct.params_form.values()["weights"] == str(weights)
