"""The light-field and XLFM calibrations as engines: run through the one runner, streamed, cancellable (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_lfrecon import engines
from napari_lfrecon.jobs import CalibrateInputs, EngineInputError, JobCancelled, make_params, run_job
from napari_lfrecon.psf.calibrate_lightfield import LightFieldCalibration, synthetic_radiometry
from napari_lfrecon.psf.calibrate_xlfm import XLFMCalibration, synthetic_white

CPU = torch.device("cpu")
XLFM_CENTRES = np.array([[20.3, 20.6], [20.1, 60.2], [59.7, 40.4], [60.4, 80.1], [21.0, 99.5]])


def _lightfield_inputs(optics=None) -> CalibrateInputs:
    white = synthetic_radiometry((120, 130), 9.37, 0.6, (60.3, 64.8), seed=2)
    dark = np.full(white.shape, 10.0, np.float32)
    return CalibrateInputs(
        data=(0.4 * white + dark).astype(np.float32),
        optics=optics or {},
        frames={"radiometry": white + dark, "dark": dark},
    )


def _run(name: str, inputs: CalibrateInputs, should_stop=None, **params):
    engine = engines.get(name)
    updates = []
    result = run_job(
        engine,
        inputs,
        make_params(engine.Params, params),
        device=CPU,
        should_stop=should_stop,
        on_update=updates.append,
    )
    return result, updates


def test_both_calibrations_are_registered_calibrate_engines():
    assert {"lightfield-calibrate", "xlfm-calibrate"} <= set(engines.available(kind="calibrate"))
    for name in ("lightfield-calibrate", "xlfm-calibrate"):
        assert engines.get(name).inputs_type is CalibrateInputs


def test_lightfield_engine_streams_progress_and_returns_the_grid():
    inputs = _lightfield_inputs()
    frames_before = {k: v.copy() for k, v in inputs.frames.items()}
    calibration, updates = _run("lightfield-calibrate", inputs)
    assert isinstance(calibration, LightFieldCalibration)
    assert calibration.pitch_px == pytest.approx(9.37, abs=0.01)
    assert not hasattr(calibration, "volume"), "a lenslet grid is not a volume"
    fractions = [u.fraction for u in updates if u.kind == "progress"]
    assert len(fractions) >= 5 and fractions == sorted(fractions) and fractions[-1] == 1.0
    for name, frame in frames_before.items():
        np.testing.assert_array_equal(inputs.frames[name], frame)


def test_lightfield_engine_compares_with_the_nominal_pitch():
    # 60 µm lenslets on 6.4 µm pixels: nominal 9.375 px, close to the measured 9.37 px
    calibration, _ = _run("lightfield-calibrate", _lightfield_inputs({"lenslet_pitch_um": 60, "camera_pixel_um": 6.4}))
    assert calibration.nominal_pitch_px == pytest.approx(9.375)
    with pytest.raises(EngineInputError, match="measured pitch 9.3.*expected 15.38"):
        _run("lightfield-calibrate", _lightfield_inputs({"lenslet_pitch_um": 100, "camera_pixel_um": 6.5}))


def test_lightfield_engine_refuses_frames_of_another_size_before_any_work():
    inputs = _lightfield_inputs()
    inputs.frames["radiometry"] = inputs.frames["radiometry"][:60]
    with pytest.raises(EngineInputError, match="same size"):
        _run("lightfield-calibrate", inputs)
    with pytest.raises(EngineInputError, match="radiometry"):
        _run("lightfield-calibrate", CalibrateInputs(data=np.zeros((64, 64), np.float32)))


@pytest.mark.parametrize("name", ["lightfield-calibrate", "xlfm-calibrate"])
def test_cancel_is_honoured_within_one_step(name):
    if name == "lightfield-calibrate":
        inputs = _lightfield_inputs()
    else:
        inputs = CalibrateInputs(data=synthetic_white((84, 124), XLFM_CENTRES, 7.0, seed=3))
    seen = []
    engine = engines.get(name)
    with pytest.raises(JobCancelled):
        run_job(
            engine,
            inputs,
            make_params(engine.Params, {}),
            device=CPU,
            should_stop=lambda: len(seen) >= 1,
            on_update=seen.append,
        )
    assert len(seen) == 1, "no update after the one during which Cancel was pressed"


def test_xlfm_engine_streams_and_returns_the_view_centres():
    image = synthetic_white((84, 124), XLFM_CENTRES, 7.0, seed=3)
    calibration, updates = _run("xlfm-calibrate", CalibrateInputs(data=image), view_height=15, view_width=15)
    assert isinstance(calibration, XLFMCalibration) and not hasattr(calibration, "volume")
    nearest = np.linalg.norm(calibration.centres[:, None] - XLFM_CENTRES[None], axis=-1).min(axis=1)
    assert calibration.n_lenslets == 5 and nearest.max() < 0.1
    assert calibration.view_size == (15, 15)
    assert [u.kind for u in updates] == ["progress", "progress"]


def test_xlfm_engine_reports_a_frame_without_views():
    noise = np.random.default_rng(0).normal(100, 1, (64, 64)).astype(np.float32)
    with pytest.raises(ValueError, match="no lenslet views found"):
        _run("xlfm-calibrate", CalibrateInputs(data=noise))
    with pytest.raises(EngineInputError, match="missing"):
        _run("xlfm-calibrate", CalibrateInputs(data=noise, optics={"na": 0.5}))
