"""The Metrics dock widget in a real (Xvfb) napari viewer: readouts, plots, live updates, split-FSC."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("matplotlib")

from napari_lfrecon.gui.metrics_widget import MetricsWidget  # noqa: E402
from napari_lfrecon.metrics import psnr  # noqa: E402
from napari_lfrecon.psf.model import PSF  # noqa: E402

VOXEL = (0.5, 0.2, 0.2)
TIMEOUT_MS = 20_000


def gaussian_psf(shape=(5, 9, 9), sigma=(1.0, 1.2, 1.2)) -> PSF:
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    array = np.exp(-sum(g**2 / (2 * s**2) for g, s in zip(grids, sigma, strict=True))).astype(np.float32)
    return PSF(array / array.sum(), "widefield", VOXEL)


@pytest.fixture
def setup(make_napari_viewer):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    truth = rng.random((8, 24, 24)).astype(np.float32)
    viewer.add_image(truth, name="truth", scale=VOXEL, metadata={"ground_truth": True})
    widget = MetricsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Metrics")
    return viewer, widget, truth


def wait_result(widget, qtbot, generation=None):
    target = widget._generation if generation is None else generation
    qtbot.waitUntil(
        lambda: widget.result is not None and not widget._busy and widget._generation >= target, timeout=TIMEOUT_MS
    )


def test_readouts_and_plots_follow_engine_layers(setup, qtbot):
    viewer, widget, truth = setup
    noisy = truth + 0.1 * np.random.default_rng(1).standard_normal(truth.shape).astype(np.float32)
    # An engine's preview layer (metadata "engine") is picked as the prediction; the ground truth as reference.
    layer = viewer.add_image(
        3.0 * noisy, name="x [rl preview]", scale=VOXEL, metadata={"preview": True, "engine": "rl"}
    )
    assert widget.pred_combo.currentText() == "x [rl preview]"
    assert widget.ref_combo.currentText() == "truth"
    qtbot.waitUntil(lambda: widget.result is not None, timeout=TIMEOUT_MS)
    first = widget.result["psnr"]
    scale = widget.result["scale"]
    assert scale == pytest.approx(np.sum(3 * noisy * truth) / np.sum((3 * noisy) ** 2), rel=1e-5)
    assert first == pytest.approx(psnr(3 * noisy * scale, truth, float(truth.max() - truth.min())), rel=1e-5)
    assert "dB" in widget.labels["psnr"].text() and "µm" in widget.labels["resolution"].text()
    assert len(widget.sweep_ax.lines) >= 1 and len(widget.fsc_ax.lines) >= 2  # curve + threshold
    # Live: writing better data into the same layer (as the worker layer does) updates the numbers.
    widget.result = None
    layer.data = truth + 0.01 * np.random.default_rng(2).standard_normal(truth.shape).astype(np.float32)
    qtbot.waitUntil(lambda: widget.result is not None, timeout=TIMEOUT_MS)
    assert widget.result["psnr"] > first + 15


def test_throttle_merges_bursts(setup, qtbot):
    viewer, widget, truth = setup
    layer = viewer.add_image(truth.copy(), name="pred", scale=VOXEL, metadata={"engine": "rl"})
    qtbot.waitUntil(lambda: widget.result is not None and not widget._busy, timeout=TIMEOUT_MS)
    before = widget._generation
    for k in range(20):  # 20 previews in a burst
        layer.data = truth + 0.001 * k
    qtbot.wait(3 * 500)
    qtbot.waitUntil(lambda: not widget._busy, timeout=TIMEOUT_MS)
    assert 1 <= widget._generation - before <= 3


def test_shape_mismatch_is_reported(setup, qtbot):
    viewer, widget, truth = setup
    viewer.add_image(truth[:, :10], name="small", metadata={"engine": "rl"})
    qtbot.waitUntil(lambda: "differ in shape" in widget.labels["status"].text(), timeout=TIMEOUT_MS)
    with pytest.raises(ValueError, match="mode"):
        widget.select(mode="nonsense")


def test_split_and_reconstruct_makes_a_half_pair(setup, qtbot):
    from scipy.ndimage import convolve

    viewer, widget, truth = setup
    psf = gaussian_psf()
    counts = np.random.default_rng(3).poisson(convolve(200 * truth, psf.array, mode="constant") + 1.0)
    viewer.add_image(counts.astype(np.float32), name="stack", scale=VOXEL, metadata={"psf": psf})
    widget.measure_combo.setCurrentText("stack")
    widget.iter_spin.setValue(5)
    widget.split_and_reconstruct()
    qtbot.waitUntil(lambda: "stack [rl half 2]" in viewer.layers, timeout=TIMEOUT_MS)
    assert widget.pred_combo.currentText() == "stack [rl half 1]"
    assert widget.ref_combo.currentText() == "stack [rl half 2]"
    assert widget.mode_combo.currentText().endswith("(FSC 1/7)")
    qtbot.waitUntil(
        lambda: widget.result is not None and widget.result["fsc"]["threshold_name"] == "1/7", timeout=TIMEOUT_MS
    )
    assert widget.result["scale"] == 1.0  # halves are compared as they are
    assert 0.1 < widget.result["fsc"]["curve"][1] <= 1.0
