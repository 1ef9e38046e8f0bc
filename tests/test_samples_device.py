"""Shipped samples reconstruct onto their ground-truth grid; device selection."""

import numpy as np
import pytest
import torch

import napari_lfrecon as nl
from napari_lfrecon.device import select_device
from napari_lfrecon.samples import SAMPLE_NAMES


def _correlation(volume, truth):
    return float(np.corrcoef(volume.ravel(), truth.ravel())[0, 1])


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_reconstructs_on_the_ground_truth_grid(name):
    sample = nl.load_sample(name)
    assert {"data", "psf", "voxel_size", "ground_truth", "data_scale"} <= set(sample)
    assert len(sample["data_scale"]) == sample["data"].ndim
    if sample["psf"] is None:  # the anisotropic sample: niiv with its shipped weights
        volume = nl.reconstruct("niiv", sample["data"], voxel_size=sample["data_scale"])
        assert volume.data.shape == sample["ground_truth"].shape
        assert volume.voxel_size == pytest.approx(sample["voxel_size"])
        assert _correlation(volume.data, sample["ground_truth"]) > 0.9  # measured 0.952; cubic 0.772
        return
    first = nl.reconstruct("rl", sample["data"], sample["psf"], iterations=1)
    later = nl.reconstruct("rl", sample["data"], sample["psf"], iterations=8)
    assert later.data.shape == sample["ground_truth"].shape
    assert later.voxel_size == sample["voxel_size"]
    # RL must move towards the truth: the 8th iterate correlates clearly better with it than the 1st.
    assert _correlation(later.data, sample["ground_truth"]) > _correlation(first.data, sample["ground_truth"]) + 0.15


def test_unknown_sample_is_named():
    with pytest.raises(KeyError, match="available samples: widefield, lfm, xlfm"):
        nl.load_sample("nope")


def test_device_selection(monkeypatch):
    monkeypatch.delenv("LFRECON_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert select_device().type == expected
    assert select_device("cpu").type == "cpu"
    monkeypatch.setenv("LFRECON_DEVICE", "cpu")
    assert select_device().type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            select_device("cuda")


def test_operators_run_on_the_selected_device():
    sample = nl.load_sample("lfm")
    volume = nl.reconstruct("rl", sample["data"], sample["psf"], iterations=1, device=str(select_device()))
    assert np.isfinite(volume.data).all() and volume.metadata["device"] == str(select_device())
