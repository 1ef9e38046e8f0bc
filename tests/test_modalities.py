"""The modality registry: operator factories, frame layouts, memory models, and adding a modality in one place."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_lfrecon import modalities
from napari_lfrecon.batch.plan import frame_layout, frames_bytes, output_frame_shape
from napari_lfrecon.modalities.base import FRAME_RL_COPIES, ForwardModel, Modality
from napari_lfrecon.modalities.widefield import tile_bytes
from napari_lfrecon.physics import AxialDegradation, Convolve3D, PhaseSpaceLF, XLFMProjector
from napari_lfrecon.physics.lightfield import views_to_raw
from napari_lfrecon.psf import model as psf_model
from napari_lfrecon.psf.model import PSF


def widefield_psf() -> PSF:
    return PSF(array=np.ones((3, 5, 5), np.float32), modality="widefield", voxel_size=(1.0, 0.5, 0.5))


def lfm_psf(n_views: int = 9, nnum: int = 3, s: int = 1) -> PSF:
    array = np.random.default_rng(0).random((n_views, 2, 5, 5)).astype(np.float32)
    return PSF(array, "lfm", (1.0, 1.0, 1.0), optics={"pixels_per_lenslet": nnum, "supersample": s})


def xlfm_psf() -> PSF:
    array = np.random.default_rng(1).random((2, 20, 20)).astype(np.float32)
    centres = np.array([[5.0, 5.0], [14.0, 14.0]])
    return PSF(array, "xlfm", (1.0, 1.0, 1.0), optics={"view_size": [6, 6]}, arrays={"centres": centres})


def test_registry_lists_every_modality_in_order() -> None:
    assert modalities.available() == ("widefield", "lfm", "xlfm", "anisotropic", "diffraction")
    assert modalities.get("lfm").name == "lfm"
    with pytest.raises(KeyError, match="available: widefield, lfm"):
        modalities.get("nope")
    with pytest.raises(ValueError, match="no PSF"):
        modalities.for_psf(None)
    # every modality a PSF object may carry has a registered modality that needs it
    for name in psf_model.psf_modalities():
        assert modalities.get(name).needs_psf
    hints = {name: modalities.get(name) for name in modalities.available()}
    assert hints["widefield"].default_engine == "rl" and hints["widefield"].psf_on_data_grid
    assert hints["anisotropic"].default_engine == "niiv" and not hints["anisotropic"].needs_psf
    assert hints["xlfm"].sample_name == "xlfm" and hints["lfm"].frame_ndim == (2, 3)


@pytest.mark.parametrize("boundary", ["padded", "circular"])
def test_widefield_forward_model(boundary: str) -> None:
    psf = widefield_psf()
    model = modalities.forward_model(psf, (6, 8, 8), boundary=boundary)
    assert isinstance(model, ForwardModel) and isinstance(model.operator, Convolve3D)
    assert model.data_shape == (6, 8, 8) and model.output_shape == (6, 8, 8)
    assert model.volume_shape == ((8, 12, 12) if boundary == "padded" else (6, 8, 8))
    assert model.voxel_size == (1.0, 0.5, 0.5)
    with pytest.raises(ValueError, match=r"a 3D \(Z, Y, X\) stack"):
        modalities.forward_model(psf, (8, 8))


def test_lfm_forward_model_raw_and_views() -> None:
    psf = lfm_psf()
    raw = modalities.forward_model(psf, (12, 15))
    views = modalities.forward_model(psf, (9, 4, 5))
    assert isinstance(raw.operator, PhaseSpaceLF) and raw.layout == "lfm-raw" and views.layout == "lfm-views"
    assert raw.data_shape == views.data_shape == (9, 4, 5) and raw.volume_shape == (2, 4, 5)
    frame = np.arange(9 * 20, dtype=np.float32).reshape(9, 4, 5)
    np.testing.assert_array_equal(raw.prepare(views_to_raw(frame, 3)), frame)
    assert views.prepare(frame) is frame
    with pytest.raises(ValueError, match="whole number of lenslets"):
        modalities.forward_model(psf, (12, 16))
    with pytest.raises(ValueError, match="8 angles but the PSF has 9"):
        modalities.forward_model(psf, (8, 4, 5))


def test_xlfm_forward_model() -> None:
    psf = xlfm_psf()
    model = modalities.forward_model(psf, (20, 20))
    assert isinstance(model.operator, XLFMProjector) and model.volume_shape == (2, 6, 6)
    with pytest.raises(ValueError, match=r"the XLFM frame is \(20, 21\)"):
        modalities.forward_model(psf, (20, 21))
    with pytest.raises(ValueError, match="raw XLFM sensor frame"):
        modalities.forward_model(psf, (2, 20, 20))


def test_frame_layouts() -> None:
    wf, lf, xl = widefield_psf(), lfm_psf(), xlfm_psf()
    assert frame_layout(wf, (6, 8, 8), "ZYX") == (False, 3)
    assert frame_layout(wf, (2, 6, 8, 8), "TZYX") == (True, 3)
    assert frame_layout(xl, (3, 20, 20), "TYX") == (True, 2)
    assert frame_layout(lf, (9, 4, 5), "ZYX") == (False, 3)  # views: the angle count matches
    assert frame_layout(lf, (7, 12, 15), "ZYX") == (True, 2)  # raw frames in a series
    assert frame_layout(lf, (9, 12, 15), "TYX") == (True, 2)  # the axes say time
    assert frame_layout(None, (2, 6, 8, 8), "TZYX") == (True, 3)
    with pytest.raises(ValueError, match="a xlfm input must be one frame of 2 dimensions"):
        frame_layout(xl, (1, 2, 20, 20), "TZYX")
    with pytest.raises(ValueError, match="one channel"):
        frame_layout(wf, (2, 6, 8, 8), "CZYX")
    assert modalities.get("lfm").frame_axes(3) == "AYX" and modalities.get("lfm").frame_axes(2) == "YX"
    assert modalities.get("widefield").frame_axes(3) == "ZYX" and modalities.get("xlfm").frame_axes(2) == "YX"


def test_memory_models_and_output_shapes() -> None:
    wf, lf, xl = widefield_psf(), lfm_psf(), xlfm_psf()
    assert output_frame_shape(lf, (12, 15), "padded") == (2, 4, 5)
    assert output_frame_shape(wf, (6, 8, 8), "padded") == (6, 8, 8)
    # widefield: RL on the whole stack as one tile, plus the group's input and result
    per_frame = 4 * (6 * 8 * 8 * 2)
    assert frames_bytes(wf, (6, 8, 8), (6, 8, 8), 3, "padded") == tile_bytes((6, 8, 8), (3, 5, 5)) + 6 * per_frame
    assert tile_bytes((6, 8, 8), (3, 5, 5), "padded") > tile_bytes((6, 8, 8), (3, 5, 5), "circular")
    # light field / XLFM: copies of the PSF array (≈62 measured for LFM, ≈12 for XLFM) plus RL buffers
    per_frame = 4 * (12 * 15 + 2 * 4 * 5)
    assert frames_bytes(lf, (12, 15), (2, 4, 5), 1, "padded") == (
        64 * lf.array.nbytes + FRAME_RL_COPIES * per_frame + 2 * per_frame
    )
    per_frame = 4 * (20 * 20 + 2 * 6 * 6)
    assert modalities.for_psf(xl).frame_bytes(xl, (20, 20), (2, 6, 6)) == 16 * xl.array.nbytes + 12 * per_frame


def test_anisotropic_and_diffraction_have_no_psf_operator() -> None:
    aniso = modalities.get("anisotropic")
    degradation = aniso.degradation(4, kernel=[1.0, 2.0, 1.0])
    assert isinstance(degradation, AxialDegradation) and degradation.factor == 4
    with pytest.raises(ValueError, match="no PSF operator"):
        aniso.forward_model(None, (4, 8, 8))
    assert aniso.frame_layout(None, (2, 4, 8, 8), "TZYX") == (True, 3)
    diffraction = modalities.get("diffraction")
    with pytest.raises(NotImplementedError, match="not implemented yet"):
        diffraction.forward_model(None, (6, 8, 8))
    with pytest.raises(NotImplementedError, match="not implemented yet"):
        diffraction.frame_bytes(None, (6, 8, 8), (6, 8, 8))


class _Stripes(Modality):
    """A made-up modality: a 2D image through a per-depth 2D blur summed over depth (the XLFM operator)."""

    name = "stripes-test"
    title = "Stripes"
    expected_data = "a 2D image"
    frame_ndim = (2,)
    psf_array = (3, "(D, H, W) made up")

    def forward_model(self, psf, data_shape, *, boundary="padded"):
        op = XLFMProjector(psf.array, np.array([[4.0, 4.0]]), (3, 3), (psf.array.shape[0], 3, 3))
        return ForwardModel(op, op.volume_shape, tuple(data_shape), (slice(None),) * 3, psf.voxel_size)


def test_adding_a_modality_is_one_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(modalities, "_REGISTRY", dict(modalities._REGISTRY))
    monkeypatch.setattr(psf_model, "_ARRAY_NDIM", dict(psf_model._ARRAY_NDIM))
    monkeypatch.setattr(psf_model, "ARRAY_AXES", dict(psf_model.ARRAY_AXES))
    with pytest.raises(ValueError, match="PSF modality must be one of"):
        PSF(np.ones((2, 9, 9)), "stripes-test", (1.0, 1.0, 1.0))
    modalities.register(_Stripes())
    psf = PSF(np.ones((2, 9, 9)), "stripes-test", (1.0, 1.0, 1.0))  # the PSF object knows it now
    assert "stripes-test" in modalities.available()
    assert modalities.forward_model(psf, (9, 9)).volume_shape == (2, 3, 3)
    assert frame_layout(psf, (5, 9, 9), "TYX") == (True, 2)
    assert output_frame_shape(psf, (9, 9), "padded") == (2, 3, 3)
    with pytest.raises(ValueError, match="already"):
        psf_model.register_psf_layout("lfm", 3, "wrong")


def test_physics_never_imports_psf() -> None:
    code = (
        "import sys, pkgutil, importlib, napari_lfrecon.physics as p\n"
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(p.__path__, 'napari_lfrecon.physics.')]\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('napari_lfrecon.psf', 'napari_lfrecon.modalities')))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bench_tasks_and_samples_follow_the_registry() -> None:
    from napari_lfrecon.bench.config import TASKS
    from napari_lfrecon.samples import SAMPLES

    assert TASKS == modalities.available()  # one benchmark task per modality, in the registry's order
    for name in modalities.available():
        sample = modalities.get(name).sample_name
        assert sample is None or sample in SAMPLES


def test_psf_display_hints() -> None:
    wf, lf, xl = widefield_psf(), lfm_psf(), xlfm_psf()
    assert modalities.for_psf(wf).psf_scale(wf) == (1.0, 0.5, 0.5)
    assert modalities.for_psf(lf).psf_axis_labels == ("view", "z", "y", "x")
    assert modalities.for_psf(lf).psf_scale(lf) == (1.0, 1.0, 1.0, 1.0)
    assert modalities.for_psf(xl).psf_scale(xl) is None  # no camera pixel / magnification in its optics
    xl.optics.update(camera_pixel_um=6.5, magnification=13.0)
    assert modalities.for_psf(xl).psf_scale(xl) == (1.0, 0.5, 0.5)
