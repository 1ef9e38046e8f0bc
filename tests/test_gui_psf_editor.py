"""The PSF editor dock widget in a real (Xvfb) napari viewer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from napari_lfrecon.controllers.psf_editor import (  # noqa: E402
    LAYER_NAMES,
    RECONSTRUCTION_LAYER,
    EditorSettings,
    compute_sections,
)
from napari_lfrecon.gui.psf_widget import PSFEditorWidget  # noqa: E402
from napari_lfrecon.gui.reconstruct_widget import ReconstructWidget  # noqa: E402
from napari_lfrecon.psf.model import PSF  # noqa: E402

TIMEOUT_MS = 30_000


def _small(widget: PSFEditorWidget) -> None:
    widget.n_z.setValue(9)
    widget.n_xy.setValue(24)
    widget.dz.setValue(0.4)


def _wait_idle(qtbot, widget: PSFEditorWidget) -> None:
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)


def test_sections_are_cuts_through_the_centre_and_the_otf_peaks_at_zero_frequency():
    settings = EditorSettings(n_z=9, n_xy=24, dz_um=0.4)
    sections = compute_sections(settings)
    array = sections.psf.array
    assert np.array_equal(sections.xy, array[4])
    assert np.array_equal(sections.xz, array[:, 12, :])
    assert np.array_equal(sections.yz, array[:, :, 12])
    assert np.unravel_index(np.argmax(sections.otf), sections.otf.shape) == (4, 12)
    assert sections.otf.max() == pytest.approx(0.0, abs=1e-5)  # log10 of the normalised |OTF| at 0


def test_slider_move_updates_the_layers_in_place(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = PSFEditorWidget(viewer)
    _small(widget)
    _wait_idle(qtbot, widget)
    assert all(name in viewer.layers for name in LAYER_NAMES)
    layers = [viewer.layers[name] for name in LAYER_NAMES]
    n_layers = len(viewer.layers)
    before = layers[1].data.copy()
    count = widget.computations
    widget.sliders[12].setValue(0.2)  # spherical aberration makes the XZ section asymmetric in z
    _wait_idle(qtbot, widget)
    assert widget.computations > count
    assert len(viewer.layers) == n_layers
    assert [viewer.layers[name] for name in LAYER_NAMES] == layers  # same layer objects
    after = layers[1].data
    assert not np.allclose(after, before)
    assert not np.allclose(after, after[::-1], atol=1e-3 * after.max())
    assert np.allclose(before, before[::-1], atol=1e-6 * before.max())  # unaberrated: symmetric in z
    assert widget.sections is not None and widget.sections.psf.zernike[12] == pytest.approx(0.2)


def test_presets_save_load_and_use_for_reconstruction(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    reconstruct = ReconstructWidget(viewer)
    widget = PSFEditorWidget(viewer)
    _small(widget)
    widget.preset.setCurrentText("coma")
    _wait_idle(qtbot, widget)
    assert widget.settings().zernike[7] == pytest.approx(0.1)
    path = widget.save(tmp_path / "edited")
    assert path.name == "edited.psf.safetensors"
    saved = PSF.load(path)
    assert saved.zernike[7] == pytest.approx(0.1) and saved.array.shape == (9, 24, 24)
    widget.preset.setCurrentText("none (diffraction-limited)")
    _wait_idle(qtbot, widget)
    assert not np.any(widget.settings().zernike)
    widget.load(path)
    _wait_idle(qtbot, widget)
    assert widget.settings().zernike[7] == pytest.approx(0.1)
    layer = widget.use_for_reconstruction()
    assert layer.name == RECONSTRUCTION_LAYER and isinstance(layer.metadata["psf"], PSF)
    assert tuple(layer.scale) == pytest.approx(saved.voxel_size)
    # The Reconstruct widget now lists the editor's PSF.
    choices = [reconstruct.psf_combo.itemData(i) for i in range(reconstruct.psf_combo.count())]
    assert RECONSTRUCTION_LAYER in choices


# --------------------------------------------------------------------------- light-field modes
TINY_LFM = {
    "lenslet_pitch_um": 32.5,
    "lenslet_focal_um": 650.0,
    "magnification": 20.0,
    "na": 0.5,
    "wavelength_um": 0.52,
    "immersion_index": 1.33,
    "camera_pixel_um": 6.5,
    "pixels_per_lenslet": 5,
    "supersample": 3,
    "z_from": -4.0,
    "z_to": 4.0,
    "z_step": 4.0,
    "show_z": 4.0,
}
TINY_XLFM = {
    "na": 1.0,
    "pixel_um": 1.0,
    "n_lenslets": 3,
    "sensor_h": 48,
    "sensor_w": 48,
    "view_h": 14,
    "view_w": 14,
    "z_from": -2.0,
    "z_to": 2.0,
    "z_step": 2.0,
    "show_z": 2.0,
}


def _fill(fields, values) -> None:
    for name, value in values.items():
        fields[name].setValue(value)


def _tiny_lfm_psf():
    from napari_lfrecon.psf.lfm import LFMOptics, lfm_psf

    optics = {k: v for k, v in TINY_LFM.items() if not k.startswith(("z_", "show"))}
    return lfm_psf(LFMOptics(**optics), [-4.0, 0.0, 4.0])


def test_lfm_sensor_stack_is_the_forward_image_of_a_point_on_the_centre_lenslet_axis():
    """The sensor panel must equal what the LFM forward operator makes of a point (independent path)."""
    import torch

    from napari_lfrecon.controllers.psf_editor import lfm_sensor_stack
    from napari_lfrecon.physics.lightfield import views_to_raw
    from napari_lfrecon.physics.phase_space import PhaseSpaceLF

    psf = _tiny_lfm_psf()
    sensor, pixel = lfm_sensor_stack(psf)
    assert pixel == pytest.approx(32.5 / 5 / 20.0)  # lenslet pitch / Nnum in object space
    n_views, depth, h, _ = psf.array.shape
    s, nnum = 3, 5
    lenslets = h // s  # the kernel spans 2R + 1 lenslets
    assert sensor.shape == (depth, lenslets * nnum, lenslets * nnum)
    op = PhaseSpaceLF(psf.array.astype(np.float64), s, (depth, lenslets * s, lenslets * s))
    centre = s * (lenslets // 2) + s // 2  # the centre lenslet's centre voxel
    for d in range(depth):
        volume = torch.zeros((depth, lenslets * s, lenslets * s), dtype=torch.float64)
        volume[d, centre, centre] = 1.0
        raw = views_to_raw(op(volume).numpy(), nnum)
        np.testing.assert_allclose(sensor[d], raw, rtol=1e-5, atol=1e-7 * raw.max())
    # In focus the light stays under the centre lenslet; 4 µm away it spreads over its neighbours.
    block = slice((lenslets // 2) * nnum, (lenslets // 2 + 1) * nnum)
    assert sensor[1][block, block].sum() > 0.85 * sensor[1].sum()
    assert sensor[0][block, block].sum() < 0.6 * sensor[0].sum()


def test_lfm_and_xlfm_modes_show_use_save_and_load(make_napari_viewer, qtbot, tmp_path):
    """Mode switches reuse the panel layers with µm scales; LFM/XLFM PSFs are handed over, saved and loaded."""
    from napari_lfrecon.controllers.psf_editor import MODE_LAYER_NAMES

    viewer = make_napari_viewer()
    reconstruct = ReconstructWidget(viewer)
    widget = PSFEditorWidget(viewer)
    _small(widget)
    _wait_idle(qtbot, widget)
    widefield_layers = [viewer.layers[name] for name in LAYER_NAMES]

    # ---- LFM
    _fill(widget.lfm_fields, TINY_LFM)
    widget.set_mode("lfm")
    assert not widget._zernike_scroll.isEnabled() and "not modelled" in widget.zernike_note.text()
    assert not widget.resample_combo.isEnabled() and "lenslet geometry" in widget.resample_note.text()
    _wait_idle(qtbot, widget)
    names = MODE_LAYER_NAMES["lfm"]
    assert widget.sections is not None and widget.sections.psf.modality == "lfm"
    assert all(name in viewer.layers for name in names)
    assert not any(name in viewer.layers for name in LAYER_NAMES)
    assert [viewer.layers[n] for n in names] == widefield_layers[: len(names)]  # reused and renamed
    pixel = 32.5 / 5 / 20.0
    sensor_layer, row_layer = (viewer.layers[n] for n in names)
    assert tuple(sensor_layer.scale) == pytest.approx((pixel, pixel))
    assert tuple(row_layer.scale) == pytest.approx((4.0, pixel))
    assert row_layer.data.shape[0] == 3
    assert np.allclose(row_layer.data.max(axis=1), 1.0)  # each depth scaled to its own peak
    np.testing.assert_array_equal(sensor_layer.data, widget.sections.sensor[2])  # show_z = 4 µm → last plane
    count = widget.computations
    widget.lfm_fields["show_z"].setValue(0.0)  # only the shown depth: re-sliced, not recomputed
    _wait_idle(qtbot, widget)
    assert widget.computations == count
    np.testing.assert_array_equal(sensor_layer.data, widget.sections.sensor[1])

    layer = widget.use_for_reconstruction()
    lfm = layer.metadata["psf"]
    assert lfm.modality == "lfm" and lfm.array.ndim == 4
    assert lfm is widget.sections.psf  # no recomputation for the hand-over
    assert layer.data.ndim == 3 and tuple(layer.scale) == pytest.approx((4.0, pixel, pixel))
    choices = [reconstruct.psf_combo.itemData(i) for i in range(reconstruct.psf_combo.count())]
    assert RECONSTRUCTION_LAYER in choices
    lfm_path = widget.save(tmp_path / "lf")

    # ---- XLFM
    _fill(widget.xlfm_fields, TINY_XLFM)
    widget.set_mode("xlfm")
    _wait_idle(qtbot, widget)
    names = MODE_LAYER_NAMES["xlfm"]
    assert widget.sections.psf.modality == "xlfm"
    assert all(name in viewer.layers for name in names)
    sensor_layer, row_layer, view_layer = (viewer.layers[n] for n in names)
    assert sensor_layer.data.shape == (48, 48)
    assert tuple(sensor_layer.scale) == pytest.approx((1.0, 1.0))
    assert tuple(row_layer.scale) == pytest.approx((2.0, 1.0))
    assert tuple(view_layer.scale) == pytest.approx((1.0, 1.0))
    top, left, h, w = widget.sections.zoom
    np.testing.assert_array_equal(view_layer.data, sensor_layer.data[top : top + h, left : left + w])
    # Parallax: with z > 0 the outermost view's spot moves outwards (away from the optical axis).
    stack = widget.sections.sensor[:, top : top + h, left : left + w]
    xs = np.arange(w)
    centroid = [(plane.sum(axis=0) * xs).sum() / plane.sum() for plane in stack]
    outwards = np.sign(left + w / 2 - 48 / 2)
    assert outwards * (centroid[2] - centroid[0]) > 0.3
    assert widget.use_for_reconstruction().metadata["psf"].modality == "xlfm"
    xlfm_path = widget.save(tmp_path / "x.psf.safetensors")
    assert PSF.load(xlfm_path).array.shape == (3, 48, 48)

    # ---- loading switches the mode and fills the form
    widget.load(lfm_path)
    _wait_idle(qtbot, widget)
    assert widget.mode == "lfm"
    assert widget.lfm_fields["pixels_per_lenslet"].value() == 5
    assert widget.lfm_fields["lenslet_pitch_um"].value() == pytest.approx(32.5)
    np.testing.assert_array_equal(widget.current_psf().array, lfm.array)
    widget.set_mode("widefield")
    _wait_idle(qtbot, widget)
    widget.load(xlfm_path)
    _wait_idle(qtbot, widget)
    assert widget.mode == "xlfm" and widget.xlfm_fields["n_lenslets"].value() == 3
    np.testing.assert_array_equal(widget.current_psf().array, PSF.load(xlfm_path).array)


def test_too_large_requests_are_refused_and_computations_never_block(make_napari_viewer, qtbot):
    import time

    viewer = make_napari_viewer()
    widget = PSFEditorWidget(viewer)
    _small(widget)
    _wait_idle(qtbot, widget)
    count = widget.computations
    _fill(widget.lfm_fields, {**TINY_LFM, "z_from": -400.0, "z_to": 400.0, "z_step": 0.5})
    widget.set_mode("lfm")
    _wait_idle(qtbot, widget)
    assert "too large" in widget.status.text()
    assert widget.computations == count and not widget.computing
    with pytest.raises(ValueError, match="too large"):
        widget.use_for_reconstruction()

    # A feasible request runs in a worker thread: recompute() returns at once and says "computing…".
    _fill(widget.lfm_fields, {**TINY_LFM, "z_from": -8.0, "z_to": 8.0, "z_step": 1.0})
    widget._timer.stop()
    started = time.perf_counter()
    widget.recompute()
    returned = time.perf_counter() - started
    assert widget.computing and widget.busy
    assert "computing" in widget.status.text()
    with qtbot.waitSignal(widget._job.worker.finished, timeout=TIMEOUT_MS):
        pass
    _wait_idle(qtbot, widget)
    assert widget.sections.psf.modality == "lfm" and widget.computations == count + 1
    assert returned < 0.5 * widget.sections.seconds + 0.05
    assert "computed in" in widget.status.text()


# --------------------------------------------------------------------------- widefield options
def test_widefield_options_reach_widefield_psf_and_resampling_gives_the_layers_voxel_size(
    make_napari_viewer, qtbot, monkeypatch
):
    from napari_lfrecon.controllers.psf_editor import widefield_options_supported
    from napari_lfrecon.psf import widefield

    calls = []
    real = widefield.widefield_psf

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(widefield, "widefield_psf", spy)
    viewer = make_napari_viewer()
    widget = PSFEditorWidget(viewer, sync=True)
    _small(widget)
    widget.na.setValue(0.8)
    assert widget.vectorial_hint.text() == ""
    widget.na.setValue(0.95)
    assert "0.9" in widget.vectorial_hint.text()  # the vectorial model is recommended
    assert not widget.sample_index.isEnabled() and widget.settings().sample_index is None
    _wait_idle(qtbot, widget)
    assert "model" not in calls[-1] and "sample_index" not in calls[-1]  # defaults are not passed
    if widefield_options_supported():
        widget.vectorial.setChecked(True)
        assert widget.vectorial_hint.text() == ""
        widget.mismatch.setChecked(True)
        assert widget.sample_index.isEnabled()
        widget.sample_index.setValue(1.45)
        widget.depth.setValue(20.0)
        _wait_idle(qtbot, widget)
        assert calls[-1]["model"] == "vectorial"
        assert calls[-1]["sample_index"] == pytest.approx(1.45) and calls[-1]["depth_um"] == pytest.approx(20.0)
        widget.vectorial.setChecked(False)
        widget.mismatch.setChecked(False)
        widget.na.setValue(0.8)
        _wait_idle(qtbot, widget)
        assert "model" not in calls[-1] and "sample_index" not in calls[-1]
    else:
        assert not widget.vectorial.isEnabled() and not widget.mismatch.isEnabled()
        widget.na.setValue(0.8)
        _wait_idle(qtbot, widget)

    viewer.add_image(np.zeros((6, 10, 10), np.float32), name="stack", scale=(0.8, 0.2, 0.2))
    viewer.add_image(np.zeros((10, 10), np.float32), name="plane")
    items = [widget.resample_combo.itemData(i) for i in range(widget.resample_combo.count())]
    assert "stack" in items and "plane" not in items  # only volumes define a voxel size
    assert not any(name in items for name in LAYER_NAMES)
    widget.resample_combo.setCurrentIndex(items.index("stack"))
    assert "0.8×0.2×0.2" in widget.resample_note.text()
    layer = widget.use_for_reconstruction()
    psf = layer.metadata["psf"]
    assert psf.voxel_size == pytest.approx((0.8, 0.2, 0.2))
    assert tuple(layer.scale) == pytest.approx((0.8, 0.2, 0.2))
    assert psf.array.sum() == pytest.approx(1.0, rel=1e-5)
    # the unaberrated focus stays at the centre, shape // 2
    assert np.unravel_index(np.argmax(psf.array), psf.array.shape) == tuple(s // 2 for s in psf.array.shape)
    # the extent is kept: 9 planes × 0.4 µm reach ±1.6 µm → 2 planes each side at 0.8 µm
    assert psf.array.shape[0] == 5
