"""Result names, axis units/labels and ground-truth filtering: Qt-free decisions of controllers.layers."""

from __future__ import annotations

from napari_lfrecon.controllers.layers import (
    axes_kwargs,
    describe_params,
    input_candidates,
    is_ground_truth,
    result_name,
)
from napari_lfrecon.controllers.train import preferred_trainer
from napari_lfrecon.engines import get
from napari_lfrecon.engines.rl import RLParams


def test_first_result_keeps_the_short_name():
    assert result_name("lfm", "rl", RLParams(), existing={"lfm"}) == "lfm [rl]"


def test_repeat_names_say_what_differs_instead_of_a_number():
    existing = {"lfm", "lfm [rl]"}
    assert result_name("lfm", "rl", RLParams(), existing) == "lfm [rl 30 it]"
    assert result_name("lfm", "rl", RLParams(tv_weight=0.01), existing) == "lfm [rl 30 it, tv 0.01]"
    assert result_name("lfm", "rl", RLParams(iterations=5), existing) == "lfm [rl 5 it]"


def test_preview_cadence_never_appears_in_a_name():
    assert "preview" not in describe_params(RLParams(preview_every=5))
    assert describe_params(RLParams(preview_every=5)) == "30 it"


def test_cancelled_suffix_follows_the_same_rule():
    assert result_name("x", "rl", RLParams(), {"x"}, " cancelled") == "x [rl cancelled]"
    assert result_name("x", "rl", RLParams(), {"x [rl cancelled]"}, " cancelled") == "x [rl 30 it cancelled]"


def test_axes_kwargs_label_spatial_axes_in_micrometres():
    assert axes_kwargs(3, 3) == {"units": ("µm",) * 3, "axis_labels": ("z", "y", "x")}
    assert axes_kwargs(2, 2) == {"units": ("µm", "µm"), "axis_labels": ("y", "x")}
    series = axes_kwargs(4, 3, time_first=True)
    assert series["axis_labels"] == ("t", "z", "y", "x")
    assert series["units"] == ("pixel", "µm", "µm", "µm")


def test_ground_truth_layers_are_never_candidates():
    assert is_ground_truth({"ground_truth": True}) and not is_ground_truth({}) and not is_ground_truth(None)
    assert input_candidates(["a", "a ground truth", "b"], {"a ground truth"}) == ["a", "b"]


def test_preferred_trainer_follows_the_loaded_layers():
    trainers = [get("niiv-train"), get("serenet-train")]
    assert preferred_trainer(trainers, [("lfm", 2)]) == "serenet-train", "an LFM sample trains SeReNet"
    assert preferred_trainer(trainers, [(None, 3)]) == "niiv-train", "a stack without PSF trains niiv"
    assert preferred_trainer(trainers, [(None, 3), ("lfm", 2)]) == "serenet-train", "the newest layer decides"
    assert preferred_trainer(trainers, []) is None
