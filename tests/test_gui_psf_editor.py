"""The PSF editor dock widget in a real (Xvfb) napari viewer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from napari_lfrecon.gui.psf_widget import (  # noqa: E402
    LAYER_NAMES,
    RECONSTRUCTION_LAYER,
    EditorSettings,
    PSFEditorWidget,
    compute_sections,
)
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
