"""Sample-data contributions: each measurement opens with its PSF; ground truth hidden and on the result grid."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lfrecon.gui import _sample_data
from napari_lfrecon.gui._geometry import output_translate
from napari_lfrecon.psf.model import PSF


def fake_sample(name):
    psf = PSF(np.ones((3, 5, 5), np.float32), "xlfm", (2.0, 0.5, 0.5), z_planes_um=np.array([-2.0, 0.0, 2.0]))
    return {
        "name": name,
        "description": "fake",
        "data": np.ones((5, 5), np.float32),
        "psf": psf,
        "voxel_size": (2.0, 0.5, 0.5),
        "data_scale": (1.0, 1.0),
        "ground_truth": np.zeros((3, 8, 8), np.float32),
    }


def test_layers_carry_the_psf_and_the_sampling(monkeypatch):
    monkeypatch.setattr("napari_lfrecon.samples.load_sample", fake_sample)
    (data, kwargs, kind), (truth, truth_kwargs, truth_kind) = _sample_data.make_xlfm_sample()
    assert kind == truth_kind == "image"
    assert isinstance(kwargs["metadata"]["psf"], PSF)
    assert kwargs["metadata"]["sample"] == "xlfm" and kwargs["scale"] == (1.0, 1.0)
    assert truth_kwargs["visible"] is False
    assert truth_kwargs["scale"] == (2.0, 0.5, 0.5)
    expected = output_translate((5, 5), (1.0, 1.0), (0.0, 0.0), (3, 8, 8), (2.0, 0.5, 0.5), np.array([-2.0, 0, 2]))
    assert truth_kwargs["translate"] == expected and expected[0] == -2.0


def test_mismatched_sampling_is_refused(monkeypatch):
    def bad(name):
        sample = fake_sample(name)
        sample["data_scale"] = (1.0, 1.0, 1.0)
        return sample

    monkeypatch.setattr("napari_lfrecon.samples.load_sample", bad)
    with pytest.raises(ValueError, match="data_scale"):
        _sample_data.make_lfm_sample()


@pytest.mark.parametrize("name", ["widefield", "lfm", "xlfm"])
def test_shipped_samples_open_with_their_psf(name):
    from napari_lfrecon.samples import sample_dir

    if not (sample_dir() / f"{name}.tif").is_file():
        pytest.skip(f"sample file {name}.tif not generated yet (scripts/make_sample_data.py)")
    layers = getattr(_sample_data, f"make_{name}_sample")()
    data, kwargs, _ = layers[0]
    psf = kwargs["metadata"]["psf"]
    assert isinstance(psf, PSF) and len(kwargs["scale"]) == data.ndim
    expected_modality = {"widefield": "widefield", "lfm": "lfm", "xlfm": "xlfm"}[name]
    assert psf.modality == expected_modality
