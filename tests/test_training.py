"""The shared training loop (napari_lfrecon.training) on a tiny toy trainer, without Qt or any engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from napari_lfrecon.io.weights import load_weights, read_header
from napari_lfrecon.jobs import EngineInputError, TrainInputs, param
from napari_lfrecon.training import Trainer
from napari_lfrecon.training.data import DataFile, allowed_ndim, describe_kinds, stack_same_shape
from napari_lfrecon.training.weights import (
    OpticsMismatch,
    check_optics,
    optics_mismatches,
    optics_signature,
    read_weights,
    weights_header,
    write_weights,
)


@dataclass
class ToyParams:
    """A trainer's settings as the loop reads them."""

    output: str = field(default="toy.safetensors", metadata=param("weights file"))
    steps: int = field(default=8, metadata=param("steps", min=1))
    minutes: float = field(default=0.0, metadata=param("minutes", min=0.0))
    patience: int = field(default=0, metadata=param("patience", min=0))
    lr: float = field(default=0.05, metadata=param("learning rate", min=0.0))
    width: int = field(default=4, metadata=param("hidden width", min=1))
    seed: int = field(default=0, metadata=param("seed", min=0))
    preview_every: int = field(default=0, metadata=param("preview every", min=0))
    checkpoint: str = field(default="", metadata=param("checkpoint"))
    checkpoint_every: int = field(default=3, metadata=param("checkpoint every", min=1))
    resume: bool = field(default=True, metadata=param("resume"))
    init_weights: str = field(default="", metadata=param("weights to start from"))


class ToyNet(torch.nn.Sequential):
    """A two-layer MLP with a ``config`` the loop compares when resuming."""

    def __init__(self, width: int) -> None:
        super().__init__(torch.nn.Linear(3, width), torch.nn.Tanh(), torch.nn.Linear(width, 1))
        self.config = SimpleNamespace(to_dict=lambda: {"width": width})


class ToyTrainer(Trainer):
    """Fits y = sum(x) on random batches drawn from the step's generator."""

    engine_name = "toy-train"
    loss_window = 2

    def build(self) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        model = ToyNet(self.params.width)
        return model, torch.optim.Adam(model.parameters(), lr=self.params.lr)

    def optimise_step(self, step: int, rng: np.random.Generator) -> float:
        x = torch.as_tensor(rng.normal(size=(16, 3)), dtype=torch.float32)
        loss = torch.nn.functional.mse_loss(self.model(x)[:, 0], x.sum(1))
        self.optimiser.zero_grad()
        loss.backward()
        self.optimiser.step()
        return float(loss.detach())

    def preview(self) -> np.ndarray:
        with torch.no_grad():
            return self.model(torch.ones(1, 3)).numpy().reshape(1, 1, 1)

    def write_weights(self, path: str, training: dict[str, Any]) -> Path:
        return write_weights(path, self.model, weights_header("toy", 1, self.config(), training))


def toy_inputs() -> TrainInputs:
    return TrainInputs(np.zeros((2, 2), np.float32), command="lfrecon train toy --steps 8", data_description="none")


def run(tmp_path: Path, stop=lambda: False, **changes) -> tuple[ToyTrainer, list]:
    params = ToyParams(output=str(tmp_path / "toy.safetensors"), **changes)
    trainer = ToyTrainer(toy_inputs(), params, torch.device("cpu"))
    return trainer, list(trainer.run(stop))


def losses(updates: list) -> list[float]:
    return [u.data[1] for u in updates if u.kind == "metric" and u.data[0] == "loss"]


def test_seeded_runs_give_the_same_loss_history_and_write_weights_with_provenance(tmp_path):
    _, first = run(tmp_path / "a")
    _, second = run(tmp_path / "b")
    assert losses(first) == losses(second) and len(losses(first)) == 4
    _, other_seed = run(tmp_path / "c", seed=1)
    assert losses(other_seed) != losses(first)
    assert first[-1].kind == "result" and first[-1].data.shape == (1, 1, 1)
    header = read_header(tmp_path / "a" / "toy.safetensors")
    training = header["training"]
    assert header["engine"] == "toy" and header["config"] == {"width": 4} and "torch" in header
    assert training["command"] == "lfrecon train toy --steps 8" and training["data"] == "none"
    assert training["steps_done"] == 8 and training["stopped_by"] == "steps" and training["seed"] == 0
    assert training["loss_history_every_2_steps"] == pytest.approx(losses(first), abs=1e-5)
    assert training["params"]["width"] == 4


def test_resume_equals_a_straight_run(tmp_path):
    straight, _ = run(tmp_path / "a")
    checkpoint = str(tmp_path / "b" / "ckpt.safetensors")
    half, _ = run(tmp_path / "b", steps=4, checkpoint=checkpoint)
    assert read_header(checkpoint)["step"] == 4
    resumed, updates = run(tmp_path / "b", checkpoint=checkpoint)
    assert updates[0].message == f"resumed from {checkpoint} at step 4"
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert resumed.history == pytest.approx(straight.history)


def test_cancel_by_the_stop_flag_keeps_a_checkpoint_that_resuming_continues(tmp_path):
    checkpoint = str(tmp_path / "ckpt.safetensors")
    asked = []
    trainer, updates = run(tmp_path, stop=lambda: len(asked.append(1) or asked) >= 5, checkpoint=checkpoint)
    assert updates[-1].kind == "progress" and updates[-1].message.startswith("cancelled at step 5")
    assert read_header(checkpoint)["step"] == 5  # written at Cancel, not only every checkpoint_every steps
    assert not (tmp_path / "toy.safetensors").exists()
    straight, _ = run(tmp_path / "straight")
    resumed, _ = run(tmp_path, checkpoint=checkpoint)
    assert resumed.step == 8
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_closing_the_generator_keeps_a_checkpoint(tmp_path):
    # the job runner closes the engine's generator at the first update after Cancel (GeneratorExit)
    checkpoint = str(tmp_path / "ckpt.safetensors")
    params = ToyParams(output=str(tmp_path / "toy.safetensors"), checkpoint=checkpoint, checkpoint_every=1000)
    trainer = ToyTrainer(toy_inputs(), params, torch.device("cpu"))
    updates = trainer.run()
    for update in updates:
        if update.message.startswith("step 2/"):
            break
    updates.close()
    tensors, header = load_weights(checkpoint, engine="toy-train")
    assert header["step"] == 2 and any(k.startswith("optim.") for k in tensors)


def test_minutes_and_patience_stop_the_run(tmp_path):
    _, timed = run(tmp_path / "a", steps=10_000, minutes=1e-9)
    assert read_header(tmp_path / "a" / "toy.safetensors")["training"]["stopped_by"] == "minutes"
    assert "stopped by minutes" in timed[-1].message
    # lr 0: the loss never improves, so patience ends the run
    _, flat = run(tmp_path / "b", steps=10_000, lr=0.0, patience=4)
    training = read_header(tmp_path / "b" / "toy.safetensors")["training"]
    assert training["stopped_by"] == "convergence" and training["steps_done"] <= 8


def test_a_checkpoint_of_another_network_is_refused(tmp_path):
    checkpoint = str(tmp_path / "ckpt.safetensors")
    run(tmp_path, steps=2, checkpoint=checkpoint)
    with pytest.raises(EngineInputError, match=r"is for another network \(\{'width': 4\}\).*builds \{'width': 5\}"):
        run(tmp_path, width=5, checkpoint=checkpoint)
    write_weights(tmp_path / "other.safetensors", ToyNet(4), weights_header("toy", 1, {"width": 4}, {}))
    with pytest.raises(EngineInputError, match="cannot resume.*not 'toy-train'"):
        run(tmp_path, checkpoint=str(tmp_path / "other.safetensors"))


def fake_psf(na: float = 0.8, depths: int = 3) -> SimpleNamespace:
    return SimpleNamespace(
        optics={"na": na, "wavelength_um": 0.52},
        z_planes_um=np.linspace(-1, 1, depths),
        array=np.ones((depths, 5, 5), np.float32),
        voxel_size=(0.5, 0.1, 0.1),
    )


def test_weights_refuse_other_optics_with_every_difference_named(tmp_path):
    recorded = optics_signature(fake_psf(), ("na", "wavelength_um"))
    assert recorded["psf_shape"] == [3, 5, 5] and len(recorded["psf_sha256_16"]) == 16
    check_optics(recorded, fake_psf(na=0.8 + 1e-9), ("na", "wavelength_um"), weights_name="w", remedy="")
    with pytest.raises(OpticsMismatch) as refused:
        check_optics(recorded, fake_psf(na=1.0, depths=4), ("na",), weights_name="the toy weights", remedy="Retrain.")
    text = str(refused.value)
    assert text.startswith("the toy weights were trained for other optics: na: weights expect 0.8, the PSF has 1.0")
    assert "psf_shape: weights expect [3, 5, 5], the PSF has [4, 5, 5]" in text and text.endswith("Retrain.")
    assert isinstance(refused.value, EngineInputError)
    assert optics_mismatches({"na": None}, {"na": 0.5}, ("na",)) == ["na: weights expect None, the PSF has 0.5"]
    # a weights file of another version is refused with the command that makes new weights
    path = write_weights(tmp_path / "w.safetensors", ToyNet(2), weights_header("toy", 2, {"width": 2}, {}))
    with pytest.raises(EngineInputError, match=r"toy weights version 2 .*\(expects 1\).*lfrecon train toy"):
        read_weights(path, engine="toy", version=1, retrain="lfrecon train toy")


def test_data_kinds_describe_inputs_and_files_stack():
    assert allowed_ndim(("raw-frames", "simulated")) == [2, 3, 4] and allowed_ndim(("stacks",)) == [3]
    assert "anisotropic" in describe_kinds(("stacks",))
    with pytest.raises(KeyError, match="unknown data kind"):
        describe_kinds(("nonsense",))
    a, b = DataFile("a.tif", np.zeros((2, 4, 4))), DataFile("b.tif", np.ones((2, 4, 4)))
    assert stack_same_shape([a, b], "stacks").shape == (2, 2, 4, 4) and stack_same_shape([a], "x").shape == (2, 4, 4)
    with pytest.raises(EngineInputError, match="one shape"):
        stack_same_shape([a, DataFile("c.tif", np.zeros((3, 4, 4)))], "stacks")


def test_trainers_declare_the_engine_they_train_and_their_data_kinds():
    from napari_lfrecon import engines
    from napari_lfrecon.bench.runner import is_trainer, trainer_of
    from napari_lfrecon.cli_train import command_names
    from napari_lfrecon.training.data import DATA_KINDS

    assert engines.trainer_for("niiv") == "niiv-train" and engines.trainer_for("serenet") == "serenet-train"
    assert engines.trainer_for("rl") is None and trainer_of("rl") is None and trainer_of("niiv") == "niiv-train"
    for name in engines.available(kind="train"):
        trainer = engines.get(name)
        assert trainer.trains in engines.available(kind="reconstruct") and is_trainer(name)
        assert trainer.data_kinds and set(trainer.data_kinds) <= set(DATA_KINDS)
        assert command_names()[name] == trainer.trains  # `lfrecon train niiv`, `lfrecon train serenet`
    assert not is_trainer("rl")


def test_fine_tuning_starts_from_given_weights(tmp_path):
    pretrained, _ = run(tmp_path / "pre")
    weights = str(tmp_path / "pre" / "toy.safetensors")
    # lr 0: the fine-tuned network is exactly the one it started from
    tuned, updates = run(tmp_path / "tune", lr=0.0, steps=2, init_weights=weights)
    assert updates[0].message == f"started from {weights} (toy): 4 of 4 tensors"
    for a, b in zip(pretrained.model.parameters(), tuned.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = write_weights(tmp_path / "o.safetensors", torch.nn.Linear(2, 2), weights_header("x", 1, {}, {}))
    with pytest.raises(EngineInputError, match="shares no tensor"):
        run(tmp_path / "bad", init_weights=str(other))


@dataclass
class FitParams:
    """A per-sample fit: no weights file."""

    steps: int = 3
    lr: float = 0.05
    width: int = 4


def test_a_fit_without_output_returns_its_volume_and_writes_nothing(tmp_path):
    trainer = ToyTrainer(toy_inputs(), FitParams(), torch.device("cpu"))
    updates = list(trainer.run())
    assert updates[-1].kind == "result" and updates[-1].data.shape == (1, 1, 1)
    assert "weights written" not in updates[-1].message and list(tmp_path.iterdir()) == []


def test_the_train_widgets_decisions_come_from_the_declarations():
    from napari_lfrecon import engines
    from napari_lfrecon.controllers.train import (
        DEFAULT_WEIGHTS_DIR,
        LossCurve,
        check_input,
        check_weights_path,
        default_weights,
        inference_engine,
        input_hint,
        input_ndim,
        series_frame,
    )

    niiv = engines.get("niiv-train")
    assert inference_engine("niiv-train") == "niiv" and inference_engine("nonsense") is None
    assert input_ndim(niiv) == [3] and "no PSF" in input_hint(niiv) and "anisotropic" in input_hint(niiv)
    assert default_weights(niiv, "my stack #1") == DEFAULT_WEIGHTS_DIR / "niiv-my_stack_1.safetensors"
    with pytest.raises(ValueError, match=r"\[3\] axes.*has shape \(4, 4\)"):
        check_input(niiv, "flat", (4, 4))
    with pytest.raises(ValueError, match="must end in .safetensors"):
        check_weights_path("w.pt")
    psf = SimpleNamespace(modality="lfm", array=np.zeros((9, 3, 5, 5)))
    assert series_frame(psf, (2, 30, 30), (5.0, 1.0, 1.0), (0.0, 0.0, 0.0)) == ((30, 30), (1.0, 1.0), (0.0, 0.0))
    assert series_frame(psf, (9, 6, 6), (1.0,) * 3, (0.0,) * 3) is None  # views of one frame
    curve = LossCurve()
    curve.progress(0.5, "step 10/20, loss 0.5", 20)
    assert curve.add("loss", 0.5) and not curve.add("seconds", 3.0) and not curve.add("loss", float("nan"))
    curve.progress(0.6, "no step here", 20)
    assert curve.add("loss", 0.4) and curve.points["loss"] == ([10, 12], [0.5, 0.4]) and curve.final() == 0.4
