"""The Reconstruct widget on lazy (dask) time series: one frame, or all frames through the batch runner to zarr."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("pytestqt")
da = pytest.importorskip("dask.array")

from napari_lfrecon import reconstruct  # noqa: E402
from napari_lfrecon.gui.reconstruct_widget import FRAMES_ALL, FRAMES_CURRENT, ReconstructWidget  # noqa: E402
from napari_lfrecon.psf.model import PSF  # noqa: E402

VOXEL = (0.4, 0.1, 0.1)
TIMEOUT_MS = 60_000
FRAMES, SHAPE = 3, (6, 14, 14)
ITERATIONS = 4


def gaussian_psf(shape=(5, 7, 7), sigma=(1.0, 0.8, 0.8)) -> PSF:
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    array = np.exp(-sum(g**2 / (2 * s**2) for g, s in zip(grids, sigma, strict=True))).astype(np.float32)
    return PSF(array / array.sum(), "widefield", VOXEL)


def series(seed=0) -> np.ndarray:
    """Frames that differ (a bead moving along x), blurred by the PSF, plus a flat background."""
    from scipy.ndimage import convolve

    psf = gaussian_psf().array
    frames = np.zeros((FRAMES, *SHAPE), np.float32)
    for t in range(FRAMES):
        volume = np.zeros(SHAPE, np.float32)
        volume[3, 7, 4 + 3 * t] = 400.0
        volume[2, 4, 9] = 200.0 + 100.0 * t
        frames[t] = convolve(volume, psf, mode="constant") + 1.0
    return frames


class FrameStore:
    """A numpy array that logs which frames each read touches and refuses reads or conversions of the whole."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim
        self.frames_read: list[int] = []
        #: Called with the number of frames read so far, after each read (in the reading thread).
        self.on_read = None
        self._lock = threading.Lock()

    def __getitem__(self, key):
        frames = range(len(self.array))[key[0] if isinstance(key, tuple) else key]
        frames = [frames] if isinstance(frames, int) else list(frames)
        if len(frames) > 1:
            raise AssertionError(f"a read of {len(frames)} frames at once: the series is being loaded whole")
        with self._lock:
            self.frames_read.extend(frames)
            count = len(self.frames_read)
        if self.on_read is not None:
            self.on_read(count)
        return self.array[key]

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("the whole series was converted to numpy")


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    w = ReconstructWidget(viewer, sync=False)
    viewer.window.add_dock_widget(w, name="Reconstruct")
    return w


@pytest.fixture
def errors(monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr("napari_lfrecon.gui.reconstruct_widget.show_error", seen.append)
    monkeypatch.setattr("napari_lfrecon.gui.worker.show_error", seen.append)
    return seen


def add_lazy_series(viewer, data):
    store = FrameStore(data)
    lazy = da.from_array(store, chunks=(1, *SHAPE), asarray=False)
    # Explicit contrast limits: otherwise napari computes them over the whole (small) lazy array.
    layer = viewer.add_image(
        lazy,
        name="movie",
        scale=(1.0, *VOXEL),
        contrast_limits=(0.0, float(data.max())),
        metadata={"psf": gaussian_psf()},
    )
    return layer, store


def run_and_wait(widget, qtbot):
    done = []
    widget.run_button.click()
    runner = widget.runner
    assert runner is not None
    runner.finished.connect(lambda status, message: done.append((status, message)))
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT_MS)
    return runner, done[0]


def test_series_is_detected_and_output_field_follows_the_choice(widget):
    viewer = widget.viewer
    add_lazy_series(viewer, series())
    assert widget.series_layout() == (True, 3)
    assert widget.frames_combo.isEnabled()
    widget.frames_combo.setCurrentIndex(widget.frames_combo.findData(FRAMES_CURRENT))
    assert not widget.output_path.isEnabled()
    widget.frames_combo.setCurrentIndex(widget.frames_combo.findData(FRAMES_ALL))
    assert widget.output_path.isEnabled()
    # A single widefield stack is no series: the choice is disabled.
    viewer.add_image(series()[0], name="stack", scale=VOXEL, metadata={"psf": gaussian_psf()})
    widget.select_input("stack")
    assert widget.series_layout() == (False, 3)
    assert not widget.frames_combo.isEnabled() and not widget.output_path.isEnabled()


def test_current_frame_reads_only_that_frame_and_matches_the_api(widget, qtbot, errors):
    viewer = widget.viewer
    data = series()
    layer, store = add_lazy_series(viewer, data)
    widget.select_input("movie")
    widget.frames_combo.setCurrentIndex(widget.frames_combo.findData(FRAMES_CURRENT))
    widget.params_form.set_values({"iterations": ITERATIONS})
    viewer.dims.set_current_step(0, 2)
    assert widget.current_frame() == 2
    store.frames_read.clear()  # napari's own slicing of the display is not the widget's doing

    runner, (status, message) = run_and_wait(widget, qtbot)
    assert status == "done", (message, errors)
    assert errors == []
    assert set(store.frames_read) <= {2} and store.frames_read, store.frames_read
    result = runner.result_layer
    assert result.data.shape == SHAPE
    expected = reconstruct("rl", data[2], gaussian_psf(), voxel_size=VOXEL, **widget.params_form.values()).data
    np.testing.assert_allclose(np.asarray(result.data), expected, rtol=1e-5, atol=1e-5 * float(expected.max()))
    # The frame really matters: another frame gives another volume.
    other = reconstruct("rl", data[0], gaussian_psf(), voxel_size=VOXEL, **widget.params_form.values()).data
    assert not np.allclose(expected, other, rtol=1e-2)
    assert tuple(result.scale) == pytest.approx(VOXEL)
    assert "t=2" in result.name


def test_all_frames_write_zarr_and_open_it_lazily(widget, qtbot, errors, tmp_path):
    viewer = widget.viewer
    data = series()
    layer, store = add_lazy_series(viewer, data)
    widget.select_input("movie")
    widget.frames_combo.setCurrentIndex(widget.frames_combo.findData(FRAMES_ALL))
    widget.params_form.set_values({"iterations": ITERATIONS})
    out = tmp_path / "movie.zarr"
    widget.output_path.setText(str(out))
    store.frames_read.clear()
    progress: list[int] = []
    widget.progress.valueChanged.connect(progress.append)

    runner, (status, message) = run_and_wait(widget, qtbot)
    assert status == "done", (message, errors)
    assert errors == []
    assert out.is_dir()
    result = runner.result_layer
    assert isinstance(result.data, da.Array)
    assert result.data.shape == (FRAMES, *SHAPE)
    assert tuple(result.scale) == pytest.approx((1.0, *VOXEL))
    # Every frame read, each on its own (FrameStore refuses multi-frame reads and numpy conversion).
    assert sorted(set(store.frames_read)) == list(range(FRAMES))
    assert progress and progress[-1] == widget.progress.maximum()
    params = widget.params_form.values()
    for t in (0, 2):
        expected = reconstruct("rl", data[t], gaussian_psf(), voxel_size=VOXEL, **params).data
        got = np.asarray(result.data[t])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(expected.max()))
    assert result.metadata["output"] == str(out)

    # A second run with the same settings resumes: nothing is recomputed.
    store.frames_read.clear()
    runner, (status, message) = run_and_wait(widget, qtbot)
    assert status == "done", (message, errors)
    assert runner.summary.chunks_computed == 0 and runner.summary.chunks_skipped == runner.summary.chunks_total
    assert store.frames_read == []


def test_all_frames_without_output_path_is_a_message(widget, qtbot, errors):
    add_lazy_series(widget.viewer, series())
    widget.select_input("movie")
    widget.frames_combo.setCurrentIndex(widget.frames_combo.findData(FRAMES_ALL))
    widget.output_path.setText("")
    assert widget.run() is None
    assert len(errors) == 1 and "output .zarr" in errors[0]
    widget.output_path.setText("/tmp/not-a-store.tif")
    assert widget.run() is None
    assert len(errors) == 2 and ".zarr" in errors[1]
    assert widget.run_button.isEnabled()


def test_cancel_all_frames_keeps_finished_chunks_and_resumes(widget, qtbot, errors, tmp_path):
    """Cancel during the second frame: the run stops after that chunk; a re-run computes only the rest."""
    data = series()
    layer, store = add_lazy_series(widget.viewer, data)
    widget.select_input("movie")
    widget.frames_combo.setCurrentIndex(widget.frames_combo.findData(FRAMES_ALL))
    widget.params_form.set_values({"iterations": ITERATIONS})
    out = tmp_path / "c.zarr"
    widget.output_path.setText(str(out))
    store.frames_read.clear()
    # Cancel from the worker thread as the second frame is read for computing (read 3: the new run's input
    # check reads the first frame once before creating the store): deterministic, unlike a click racing the run.
    store.on_read = lambda count: widget.runner.cancel() if count == 3 else None
    runner, (status, message) = run_and_wait(widget, qtbot)
    assert status == "cancelled", message
    assert "resume" in message
    assert errors == []
    assert runner.result_layer is None
    assert widget.run_button.isEnabled()
    assert len(store.frames_read) == 3  # the input check's first frame, then two frames computed: never the third

    store.on_read = None
    runner, (status, message) = run_and_wait(widget, qtbot)
    assert status == "done", (message, errors)
    summary = runner.summary
    assert (summary.chunks_total, summary.chunks_skipped, summary.chunks_computed) == (3, 2, 1)
    assert len(store.frames_read) == 4  # the resumed run read only the missing frame (and checks nothing)
    params = widget.params_form.values()
    expected = np.stack([reconstruct("rl", f, gaussian_psf(), voxel_size=VOXEL, **params).data for f in data])
    got = np.asarray(runner.result_layer.data)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(expected.max()))
