"""The engine contract: every registered engine, run on tiny data through the one runner.

For each entry of ``engines.available()``: the result comes last and (for
reconstruction and training engines) is a ``Volume`` carrying a voxel size;
Cancel is honoured within one step; the input array is never modified; bad
parameters raise the project's own error. A new engine must add a tiny-input
builder to ``TINY`` below, or ``test_every_engine_has_tiny_inputs`` fails.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_lfrecon import engines
from napari_lfrecon.jobs import (
    CalibrateInputs,
    EngineInputError,
    Inputs,
    LfreconError,
    TrainInputs,
    Volume,
    make_params,
    param_specs,
    prepare_inputs,
    run_job,
)
from napari_lfrecon.psf.model import PSF
from napari_lfrecon.samples import load_sample

CPU = torch.device("cpu")
Case = tuple[Inputs, dict]


def _gaussian_psf(shape=(7, 9, 9), sigma=(1.5, 1.0, 1.0)) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    psf = np.exp(-sum(g**2 / (2 * s**2) for g, s in zip(grids, sigma, strict=True)))
    return (psf / psf.sum()).astype(np.float32)


def _widefield(tmp: Path) -> Case:
    rng = np.random.default_rng(0)
    data = rng.poisson(20.0 + 50.0 * rng.random((8, 16, 16))).astype(np.float32)
    psf = PSF(array=_gaussian_psf(), modality="widefield", voxel_size=(0.4, 0.2, 0.2))
    return Inputs(data=data, psf=psf, voxel_size=(0.4, 0.2, 0.2)), {"iterations": 3}


def _lfm_crop() -> tuple[np.ndarray, PSF]:
    sample = load_sample("lfm")
    nnum = int(sample["psf"].optics["pixels_per_lenslet"])
    return np.asarray(sample["data"][: 16 * nnum, : 16 * nnum], dtype=np.float32), sample["psf"]


def _serenet(tmp: Path) -> Case:
    data, psf = _lfm_crop()
    return Inputs(data=data, psf=psf), {}


def _serenet_train(tmp: Path) -> Case:
    from napari_lfrecon.engines.serenet_data import measurement_to_views

    data, psf = _lfm_crop()
    frames = measurement_to_views(data, psf)[None]
    params = {"output": str(tmp / "s.safetensors"), "steps": 2, "crop_lenslets": 0, "preview_every": 0, "width": 0.25}
    return TrainInputs(data=frames, psf=psf, command="test"), params


def _anisotropic_crop() -> tuple[np.ndarray, tuple[float, float, float]]:
    sample = load_sample("anisotropic")
    return np.asarray(sample["data"][:4, :24, :24], dtype=np.float32), tuple(sample["data_scale"])


def _niiv(tmp: Path) -> Case:
    data, voxel = _anisotropic_crop()
    return Inputs(data=data, voxel_size=voxel), {}


def _niiv_train(tmp: Path) -> Case:
    data, voxel = _anisotropic_crop()
    params = {"output": str(tmp / "n.safetensors"), "steps": 2, "crop": 16, "batch": 2, "queries": 64}
    params.update(preview_every=0, model="small")
    return TrainInputs(data=data, voxel_size=voxel, command="test"), params


def _bead(tmp: Path) -> Case:
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in (9, 15, 15)], indexing="ij")
    blob = np.exp(-(grids[0] ** 2 / 4.0 + grids[1] ** 2 / 2.0 + grids[2] ** 2 / 2.0))
    data = np.random.default_rng(0).poisson(3000 * blob + 50).astype(np.float32)
    optics = {"na": 0.8, "wavelength_um": 0.52, "immersion_index": 1.0}
    return CalibrateInputs(data=data, voxel_size=(0.3, 0.13, 0.13), optics=optics), {"iterations": 2, "max_mode": 5}


def _lightfield_calibrate(tmp: Path) -> Case:
    from napari_lfrecon.psf.calibrate_lightfield import synthetic_radiometry

    white = synthetic_radiometry((120, 120), 15.0, 0.5, (60.0, 60.0), seed=1)
    return CalibrateInputs(data=white, frames={"radiometry": white}), {}


def _xlfm_calibrate(tmp: Path) -> Case:
    from napari_lfrecon.psf.calibrate_xlfm import synthetic_white
    from napari_lfrecon.psf.xlfm import default_lenslet_layout

    centres = 48.0 + 30.0 * np.asarray(default_lenslet_layout(7), dtype=np.float64)
    return CalibrateInputs(data=synthetic_white((96, 96), centres, 10.0, seed=1)), {}


TINY: dict[str, Callable[[Path], Case]] = {
    "rl": _widefield,
    "serenet": _serenet,
    "serenet-train": _serenet_train,
    "niiv": _niiv,
    "niiv-train": _niiv_train,
    "bead-fit": _bead,
    "lightfield-calibrate": _lightfield_calibrate,
    "xlfm-calibrate": _xlfm_calibrate,
}
NAMES = engines.available()


def test_every_engine_has_tiny_inputs():
    assert set(NAMES) <= set(TINY), f"add tiny inputs for {sorted(set(NAMES) - set(TINY))} to this test"


def _case(name: str, tmp_path: Path):
    engine = engines.get(name)
    inputs, values = TINY[name](tmp_path)
    assert isinstance(inputs, engine.inputs_type), f"{name} takes {engine.inputs_type.__name__}"
    return engine, inputs, make_params(engine.Params, values)


@pytest.mark.parametrize("name", NAMES)
def test_result_comes_last_with_its_voxel_size_and_input_is_untouched(name, tmp_path):
    engine, inputs, params = _case(name, tmp_path)
    before = np.array(inputs.data, copy=True)
    updates = list(engine.run(prepare_inputs(engine, inputs), params, device=CPU))
    kinds = [u.kind for u in updates]
    assert kinds.count("result") == 1 and kinds[-1] == "result", kinds
    assert all(0.0 <= float(u.fraction) <= 1.0 for u in updates)
    np.testing.assert_array_equal(inputs.data, before)
    result = run_job(engine, inputs, params, device=CPU)
    np.testing.assert_array_equal(inputs.data, before)
    if engine.kind == "calibrate":
        assert not isinstance(result, np.ndarray)  # calibration objects, not bare arrays
        result = result.volume() if hasattr(result, "volume") else None
    if result is not None:
        assert isinstance(result, Volume)
        assert len(result.voxel_size) == 3 and all(v > 0 and math.isfinite(v) for v in result.voxel_size)
        assert result.data.dtype == np.float32 and np.all(np.isfinite(result.data))
        assert result.metadata.get("engine", name) == name


@pytest.mark.parametrize("name", NAMES)
def test_cancel_is_honoured_within_one_step(name, tmp_path):
    engine, inputs, params = _case(name, tmp_path)
    seen: list[str] = []
    stop = False

    def should_stop() -> bool:
        return stop

    generator = engine.run(prepare_inputs(engine, inputs), params, device=CPU, should_stop=should_stop)
    for update in generator:
        seen.append(update.kind)
        if not stop:
            stop = True  # cancel right after the first update
            after = len(seen)
    # at most the step in flight (its progress, metric, preview) and a "cancelled …" message; never a result
    assert seen[after:].count("progress") <= 2 and len(seen) - after <= 4, seen
    assert "result" not in seen[after:] or seen == ["result"], seen


@pytest.mark.parametrize("name", NAMES)
def test_bad_parameters_raise_the_projects_error(name):
    engine = engines.get(name)
    with pytest.raises(EngineInputError, match="unknown parameter"):
        make_params(engine.Params, {"no_such_parameter": 1})
    for spec in param_specs(engine.Params):
        if spec["type"] in (int, float):
            with pytest.raises(EngineInputError, match=spec["name"]):
                make_params(engine.Params, {spec["name"]: float("nan")})
            if spec["min"] is not None:
                with pytest.raises(EngineInputError, match=spec["name"]):
                    make_params(engine.Params, {spec["name"]: spec["min"] - 1})
        elif spec["type"] is bool:
            with pytest.raises(EngineInputError, match=spec["name"]):
                make_params(engine.Params, {spec["name"]: "maybe"})
        elif spec["choices"]:
            with pytest.raises(EngineInputError, match=spec["name"]):
                make_params(engine.Params, {spec["name"]: "not-a-choice"})


@pytest.mark.parametrize("name", NAMES)
def test_a_psf_of_another_modality_is_refused_before_any_work(name, tmp_path):
    engine, inputs, params = _case(name, tmp_path)
    if "widefield" in engine.modalities:
        if "lfm" in engine.modalities:
            pytest.skip(f"{name} handles every PSF modality")
        wrong = load_sample("lfm")["psf"]
    else:
        wrong = PSF(array=_gaussian_psf(), modality="widefield", voxel_size=(0.4, 0.2, 0.2))
    calls = []
    engine.run = lambda *a, **k: calls.append(a)  # type: ignore[method-assign]
    with pytest.raises(LfreconError, match="handles"):
        run_job(engine, dataclasses.replace(inputs, psf=wrong), params, device=CPU)
    assert calls == []


def test_runner_converts_camera_adu_once_and_keeps_the_input():
    from napari_lfrecon.camera import Camera

    engine = engines.get("rl")
    inputs, values = _widefield(Path("."))
    raw = inputs.data * 2.0 + 100.0
    kept = raw.copy()
    prepared = prepare_inputs(engine, dataclasses.replace(inputs, data=raw), Camera(offset=100.0, gain=0.5))
    np.testing.assert_allclose(prepared.data, inputs.data, rtol=1e-6)
    assert prepared.read_noise == 0.0 and not prepared.data.flags.writeable
    np.testing.assert_array_equal(raw, kept)
