"""The Reconstruct widget and the worker layer, driven through a real (Xvfb) napari viewer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from napari_lfrecon import engines  # noqa: E402
from napari_lfrecon.engines.base import Engine, Update, param  # noqa: E402
from napari_lfrecon.gui import worker as worker_module  # noqa: E402
from napari_lfrecon.gui.reconstruct_widget import PSF_FROM_FILE, ReconstructWidget  # noqa: E402
from napari_lfrecon.psf.model import PSF  # noqa: E402

VOXEL = (0.4, 0.1, 0.1)
TRANSLATE = (1.0, -2.0, 3.0)
#: Generous: a tiny RL run takes well under a second, but the CI machine is shared.
TIMEOUT_MS = 30_000


def gaussian_psf(shape=(7, 11, 11), sigma=(1.2, 1.0, 1.0)) -> PSF:
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    array = np.exp(-sum(g**2 / (2 * s**2) for g, s in zip(grids, sigma, strict=True))).astype(np.float32)
    return PSF(array / array.sum(), "widefield", VOXEL)


def bead_stack(shape=(10, 20, 20), seed=0) -> np.ndarray:
    """Beads blurred by the Gaussian PSF (direct convolution via scipy), plus a flat background."""
    from scipy.ndimage import convolve

    rng = np.random.default_rng(seed)
    volume = np.zeros(shape, np.float32)
    for _ in range(6):
        volume[tuple(rng.integers(2, n - 2) for n in shape)] = 500.0
    return (convolve(volume, gaussian_psf().array, mode="constant") + 1.0).astype(np.float32)


def add_measurement(viewer, data, name="beads", psf=None):
    return viewer.add_image(
        data,
        name=name,
        scale=VOXEL[-data.ndim :],
        translate=TRANSLATE[-data.ndim :],
        metadata={"psf": psf or gaussian_psf()},
    )


def run_and_wait(widget, qtbot, timeout=TIMEOUT_MS):
    """Click Run and wait until the runner reports the end (its worker's ``finished`` was handled)."""
    done = []
    widget.run_button.click()
    runner = widget.runner
    assert runner is not None
    runner.finished.connect(lambda status, message: done.append(status))
    qtbot.waitUntil(lambda: bool(done), timeout=timeout)
    return runner


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    w = ReconstructWidget(viewer, sync=False)
    viewer.window.add_dock_widget(w, name="Reconstruct")
    return w


@pytest.fixture
def errors(monkeypatch):
    """Messages passed to ``show_error`` (by the worker layer and the widget)."""
    seen: list[str] = []
    monkeypatch.setattr(worker_module, "show_error", seen.append)
    monkeypatch.setattr("napari_lfrecon.gui.reconstruct_widget.show_error", seen.append)
    return seen


def test_rl_run_streams_one_preview_and_adds_a_scaled_result(widget, qtbot, errors):
    viewer = widget.viewer
    data = bead_stack()
    original = data.copy()
    layer = add_measurement(viewer, data)
    assert widget.input_layer() is layer
    assert widget.psf_combo.currentData() == "beads", "the input layer's own PSF must be selected"
    widget.select_engine("rl")
    widget.params_form.set_values({"iterations": 4})

    preview_counts: list[int] = []
    preview_layers: list[object] = []

    def count_previews(preview_layer):
        preview_counts.append(sum("preview" in lay.name for lay in viewer.layers))
        preview_layers.append(preview_layer)

    widget.run_button.click()
    widget.runner.previewed.connect(count_previews)
    done = []
    widget.runner.finished.connect(lambda *a: done.append(a))
    assert not widget.run_button.isEnabled() and widget.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT_MS)

    assert errors == []
    assert done == [("done", widget.runner.message)]
    # RL previews iterations 1..3 of 4, thinned to one per PREVIEW_INTERVAL_S on the worker and to the newest
    # on the main thread (a run this short may end before the first is shown); each replaced the data of the
    # same single layer.
    assert len(preview_counts) <= 3 and set(preview_counts) <= {1}
    assert all(p is preview_layers[0] for p in preview_layers)
    names = [lay.name for lay in viewer.layers]
    assert names == ["beads", "beads [rl]"]
    result = viewer.layers["beads [rl]"]
    assert result.data.shape == data.shape
    np.testing.assert_allclose(result.scale, VOXEL)
    np.testing.assert_allclose(result.translate, TRANSLATE)  # same grid as the input → same placement
    meta = result.metadata
    assert meta["engine"] == "rl"
    assert meta["params"]["iterations"] == 4
    assert meta["seconds"] > 0
    assert meta["device"].startswith("CPU")
    assert meta["psf"].startswith("widefield PSF (7, 11, 11)")
    assert meta["input_layer"] == "beads"
    # The input is untouched: same values, still writeable by the user, same array object.
    np.testing.assert_array_equal(layer.data, original)
    assert layer.data is data and data.flags.writeable
    # RL keeps flux and sharpens: the reconstruction's peak is above the blurred data's.
    assert result.data.max() > data.max()
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()
    assert widget.progress.value() == widget.progress.maximum()


def test_params_form_values_reach_the_engine(widget, qtbot):
    add_measurement(widget.viewer, bead_stack())
    widget.params_form.editor("iterations").setValue(3)
    widget.params_form.editor("boundary").setCurrentIndex(1)  # circular
    widget.params_form.editor("preview_every").setValue(0)
    runner = run_and_wait(widget, qtbot)
    params = runner.result_layer.metadata["params"]
    assert params["iterations"] == 3
    assert params["boundary"] == "circular"
    assert params["preview_every"] == 0
    assert "3 iterations" in runner.message


@dataclass
class SlowParams:
    steps: int = field(default=1000, metadata=param("number of steps", min=1))
    seconds_per_step: float = field(default=0.05, metadata=param("sleep per step", min=0.0))


def test_preview_layer_is_added_empty_before_the_engine_starts_and_becomes_the_result(widget, qtbot, errors):
    viewer = widget.viewer
    add_measurement(viewer, bead_stack())
    widget.select_engine("rl")
    widget.params_form.set_values({"iterations": 6})
    before = len(viewer.layers)
    widget.run_button.click()
    runner = widget.runner
    # napari's costly add_image happens at Run, before the engine competes for the CPU; nothing previewed yet
    placeholder = runner.preview_layer
    assert placeholder is not None and placeholder in viewer.layers and len(viewer.layers) == before + 1
    assert placeholder.data.shape == (10, 20, 20) and not np.any(placeholder.data)
    previewed = []
    runner.previewed.connect(previewed.append)
    done = []
    runner.finished.connect(lambda *a: done.append(a))
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT_MS)
    assert errors == [] and done[0][0] == "done"
    assert all(layer is placeholder for layer in previewed)
    assert runner.result_layer is placeholder and len(viewer.layers) == before + 1
    assert "preview" not in placeholder.metadata and np.any(placeholder.data)


def test_cancel_before_any_preview_leaves_no_empty_layer(widget, qtbot, errors):
    viewer = widget.viewer
    add_measurement(viewer, bead_stack())
    widget.select_engine("rl")
    widget.params_form.set_values({"iterations": 500})
    before = [layer.name for layer in viewer.layers]
    widget.run_button.click()
    runner = widget.runner
    assert runner.preview_layer is not None and not np.any(runner.preview_layer.data)  # the empty placeholder
    widget.cancel_button.click()  # at once: the engine is still setting up (no preview sent yet, as a rule)
    done = []
    runner.finished.connect(lambda *a: done.append(a))
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT_MS)
    assert done[0][0] == "cancelled" and errors == []
    added = [layer for layer in viewer.layers if layer.name not in before]
    # the placeholder is removed; a layer is kept only if a real preview reached it (then it is the cancelled one)
    assert all("cancelled" in layer.name and np.any(layer.data) for layer in added), [x.name for x in added]
    assert runner.preview_layer is None


class SlowEngine(Engine):
    """A test engine whose steps are slow and counted, to measure how fast Cancel takes effect."""

    name = "slow-test"
    title = "slow test engine"
    modalities = ("widefield",)
    Params = SlowParams
    started_steps: list[float] = []

    def run(self, inputs, params, *, device, should_stop=lambda: False):
        volume = np.zeros(inputs.data.shape, np.float32)
        for k in range(params.steps):
            SlowEngine.started_steps.append(time.perf_counter())
            time.sleep(params.seconds_per_step)
            volume += 1
            yield Update("progress", (k + 1) / params.steps, f"step {k + 1}")
            if should_stop():
                return
            yield Update("preview", (k + 1) / params.steps, "", volume.copy())
        yield Update("result", 1.0, "done", volume)


def test_cancel_stops_within_one_step_and_adds_no_result(make_napari_viewer, qtbot, monkeypatch, errors):
    monkeypatch.setitem(engines._REGISTRY, SlowEngine.name, SlowEngine)
    monkeypatch.setattr(SlowEngine, "started_steps", [])
    viewer = make_napari_viewer()
    widget = ReconstructWidget(viewer, sync=False)
    add_measurement(viewer, bead_stack())
    widget.select_engine("slow-test")
    assert list(widget.params_form.values()) == ["steps", "seconds_per_step"], "form rebuilt for the engine"
    clicked_at: list[float] = []

    def cancel_after_two(preview_layer):
        if len(clicked_at) == 0 and preview_layer.data[0, 0, 0] >= 2:
            clicked_at.append(time.perf_counter())
            widget.cancel_button.click()

    widget.run_button.click()
    runner = widget.runner
    runner.previewed.connect(cancel_after_two)
    done = []
    runner.finished.connect(lambda *a: done.append(a))
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT_MS)

    assert done[0][0] == "cancelled"
    assert clicked_at
    started_after_cancel = [t for t in SlowEngine.started_steps if t > clicked_at[0]]
    assert len(started_after_cancel) <= 1, "the engine went on for more than one step after Cancel"
    # (how many steps ran before the click depends on main-thread latency under load, not on Cancel)
    assert len(SlowEngine.started_steps) < 40, "the run was not cancelled before its end"
    assert runner.result_layer is None
    names = [lay.name for lay in viewer.layers]
    assert names == ["beads", "beads [slow-test cancelled]"], "only the last preview is kept, clearly named"
    kept = viewer.layers["beads [slow-test cancelled]"]
    assert kept.metadata["cancelled"] is True and kept.metadata["engine"] == "slow-test"
    assert errors == []
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_cancel_a_long_rl_run(widget, qtbot, errors):
    viewer = widget.viewer
    add_measurement(viewer, bead_stack())
    widget.params_form.set_values({"iterations": 5000})
    widget.run_button.click()
    runner = widget.runner
    runner.previewed.connect(lambda layer: widget.cancel_button.click())
    done = []
    runner.finished.connect(lambda *a: done.append(a))
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT_MS)
    assert done[0][0] == "cancelled"
    assert "beads [rl]" not in viewer.layers
    assert [lay.name for lay in viewer.layers] == ["beads", "beads [rl cancelled]"]
    assert viewer.layers["beads [rl cancelled]"].metadata["fraction"] < 0.1
    assert errors == []


def test_all_zero_data_shows_the_reason_and_run_works_again(widget, qtbot, errors):
    viewer = widget.viewer
    add_measurement(viewer, np.zeros((10, 20, 20), np.float32), name="empty")
    runner = run_and_wait(widget, qtbot)
    assert runner.status == "failed"
    assert len(errors) == 1 and "all zeros" in errors[0]
    assert "Traceback" not in errors[0]
    assert [lay.name for lay in viewer.layers] == ["empty"]
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()
    assert "all zeros" in widget.status_label.text()

    add_measurement(viewer, bead_stack(), name="beads")
    widget.select_input("beads")
    widget.params_form.set_values({"iterations": 2})
    runner = run_and_wait(widget, qtbot)
    assert runner.status == "done" and "beads [rl]" in viewer.layers


BAD_INPUTS = [
    ("no layer", "no input"),
    ("no psf", "no PSF"),
    ("nan", "NaN"),
    ("2d", "3D (Z, Y, X)"),
    ("bad psf file", "no PSF file"),
]


def test_bad_input_is_a_message_not_a_traceback(widget, qtbot, errors):
    """One viewer for all cases (a viewer costs ~0.5 s); each case starts from an empty layer list."""
    viewer = widget.viewer
    for case, expected in BAD_INPUTS:
        viewer.layers.clear()
        errors.clear()
        if case == "no psf":
            viewer.add_image(bead_stack(), name="plain")
        elif case == "nan":
            data = bead_stack()
            data[3, 4, 5] = np.nan
            add_measurement(viewer, data)
        elif case == "2d":
            add_measurement(viewer, bead_stack()[0])
        elif case == "bad psf file":
            add_measurement(viewer, bead_stack())
            widget.psf_combo.setCurrentIndex(widget.psf_combo.findData(PSF_FROM_FILE))
            widget.psf_path.setText("/nonexistent/beads.psf.safetensors")
        runner = widget.run()
        if runner is not None:  # caught by the engine, in the worker: wait for it
            done = []
            runner.finished.connect(lambda *a, done=done: done.append(a))
            qtbot.waitUntil(lambda done=done: bool(done), timeout=TIMEOUT_MS)
        assert len(errors) == 1, (case, errors)
        assert expected in errors[0], (case, errors[0])
        assert "Traceback" not in errors[0]
        assert widget.run_button.isEnabled(), case
        assert not any("[rl" in lay.name for lay in viewer.layers), case


def test_engine_warnings_become_notifications(widget, qtbot, monkeypatch, errors):
    warned: list[str] = []
    monkeypatch.setattr(worker_module, "show_warning", warned.append)
    data = bead_stack()
    data[0, 0, :5] = -3.0  # as after a dark subtraction
    add_measurement(widget.viewer, data)
    widget.params_form.set_values({"iterations": 2})
    runner = run_and_wait(widget, qtbot)
    assert runner.status == "done"
    assert any("negative" in w for w in warned), warned
    assert errors == []


def test_camera_fields_convert_to_electrons(widget, qtbot):
    add_measurement(widget.viewer, bead_stack() * 2 + 100)  # ADU: gain 0.5 e-/ADU, offset 100
    widget.offset_spin.setValue(100)
    widget.gain_spin.setValue(0.5)
    widget.params_form.set_values({"iterations": 2})
    runner = run_and_wait(widget, qtbot)
    assert runner.status == "done"
    assert runner.result_layer.metadata["camera"] == {"offset": 100.0, "gain": 0.5, "read_noise": 0.0}
    # Same electrons as the unconverted beads → same flux in the reconstruction (RL keeps total counts).
    flux = float(runner.result_layer.data.sum())
    assert flux == pytest.approx(float(bead_stack().sum()), rel=0.05)


def test_psf_follows_the_selected_input(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = ReconstructWidget(viewer)
    add_measurement(viewer, bead_stack(), name="a", psf=gaussian_psf(sigma=(1.0, 1.0, 1.0)))
    add_measurement(viewer, bead_stack(), name="b", psf=gaussian_psf(sigma=(2.0, 1.5, 1.5)))
    viewer.add_image(np.ones((4, 4, 4), np.float32), name="plain")
    assert [widget.input_combo.itemData(i) for i in range(widget.input_combo.count())] == ["a", "b", "plain"]
    widget.select_input("a")
    assert widget.psf_combo.currentData() == "a"
    assert widget.selected_psf() is viewer.layers["a"].metadata["psf"]
    widget.select_input("b")
    assert widget.selected_psf() is viewer.layers["b"].metadata["psf"]
    viewer.layers.remove("b")
    assert widget.input_combo.findData("b") < 0 and widget.psf_combo.findData("b") < 0


def test_sync_mode_runs_the_same_stream_without_a_thread(make_napari_viewer, monkeypatch):
    monkeypatch.setenv(worker_module.SYNC_ENV, "1")
    viewer = make_napari_viewer()
    widget = ReconstructWidget(viewer)
    add_measurement(viewer, bead_stack())
    widget.params_form.set_values({"iterations": 2})
    runner = widget.run()
    assert runner.worker is None and runner.status == "done"
    assert [lay.name for lay in viewer.layers] == ["beads", "beads [rl]"]


def test_anisotropic_sample_preselects_niiv_and_the_result_has_the_exact_voxel_size(make_napari_viewer, errors):
    from napari_lfrecon.gui._sample_data import sample_layers

    viewer = make_napari_viewer()
    widget = ReconstructWidget(viewer, sync=True)
    for data, kwargs, _kind in sample_layers("anisotropic"):
        viewer.add_image(data, **kwargs)
    widget.select_input("anisotropic")
    assert widget.engine_name == "niiv", "the sample's engine hint selects niiv"
    assert not widget.psf_combo.isEnabled(), "niiv needs no PSF"
    # a non-default z sampling: the result's scale must follow what the engine resolved during the run
    widget.params_form.set_values({"z_scale": 0.25, "passes": "xz"})
    runner = widget.run()
    assert runner is not None and runner.status == "done", widget.status_label.text()
    dz, dy, dx = viewer.layers["anisotropic"].scale
    assert runner.result_layer.data.shape == (32, 128, 128)
    np.testing.assert_allclose(runner.result_layer.scale, (dz / 8 / 0.25, dy, dx))
    assert errors == []
