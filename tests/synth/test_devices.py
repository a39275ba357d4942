"""The synth training commands put every batch where the model is.

No GPU is needed to check that: on the ``meta`` device torch refuses any operation that mixes a meta tensor with a
CPU one, so one loss step with the model on ``meta`` fails on the first batch left behind on the CPU. Each test
stops the training loop after that step (and its backward pass).
"""

import pytest
import torch
import vist3a_synth.classifier
import vist3a_synth.reward
import vist3a_synth.train_vae
from vist3a_synth.generator import VAE_NAME, WEIGHTS, SynthWanGenerator, build_pipeline, load_vae
from vist3a_synth.train_decoder import sample_clips
from vist3a_synth.train_dit import caption_loss, new_transformer
from vist3a_synth.training import TrainOptions

from vist3a.cli import main
from vist3a.generators.options import DiffusersVideoConfig


class OneStep(Exception):
    """Raised by :func:`one_meta_step` once the step ran."""


def one_meta_step(model, loss_fn, options, directory, on_step=None):
    """Stands in for ``vist3a_synth.training.train``: one loss and backward pass, all on ``meta``."""
    loss = loss_fn(0, torch.Generator().manual_seed(0))["loss"]
    assert loss.device.type == "meta" and {p.device.type for p in model.parameters()} == {"meta"}
    loss.backward()
    raise OneStep


def test_the_vae_trains_on_the_device_it_is_given(monkeypatch, tmp_path):
    monkeypatch.setattr(vist3a_synth.train_vae, "run_training", one_meta_step)
    frames = torch.randint(0, 256, (2, 9, 3, 64, 64), dtype=torch.uint8)
    ids = torch.randint(0, 3, (2, 9, 64, 64), dtype=torch.uint8)
    with pytest.raises(OneStep):
        vist3a_synth.train_vae.train_vae(frames, ids, TrainOptions(batch_size=1), 16, tmp_path, device="meta")


@pytest.mark.parametrize("module, trainer", [(vist3a_synth.classifier, "train_classifier"),
                                             (vist3a_synth.reward, "train_reward")])  # fmt: skip
def test_the_image_models_train_on_the_device_they_are_given(monkeypatch, tmp_path, offline, module, trainer):
    monkeypatch.setattr(module, "train", one_meta_step)
    extra = {"views": 2} if trainer == "train_reward" else {}
    with pytest.raises(OneStep):
        getattr(module, trainer)(tmp_path, TrainOptions(batch_size=2), clips=2, width=4, eval_clips=2, device="meta",
                                 **extra)  # fmt: skip


def test_the_dit_loss_moves_its_batch_to_the_generators_device(monkeypatch, offline):
    pipe = build_pipeline(load_vae(WEIGHTS / VAE_NAME), new_transformer(16)).to("meta")
    generator = SynthWanGenerator(pipe, DiffusersVideoConfig(device="meta"))
    # MiniLM's attention-mask check reads a value, which meta tensors do not have: stand in for its embeddings.
    monkeypatch.setattr(generator, "_encode_text", lambda prompts: {"prompt_embeds": torch.zeros(len(prompts), 32, 384, device="meta")})
    loss_fn = caption_loss(generator, torch.randn(4, 16, 3, 8, 8), ["a red cube"] * 4, batch_size=2)
    with pytest.raises(OneStep):
        one_meta_step(generator.trainable(), loss_fn, None, None)


def test_decoder_batches_are_drawn_onto_the_device():
    data = {"frames": torch.zeros(3, 9, 3, 8, 8, dtype=torch.uint8), "depth": torch.zeros(3, 9, 8, 8),
            "labels": torch.zeros(3, 3, 2, dtype=torch.long)}  # fmt: skip
    batch = sample_clips(data, 2, torch.Generator().manual_seed(0), "meta")
    assert set(batch) == {"frames", "depth"} and {value.device.type for value in batch.values()} == {"meta"}


@pytest.mark.parametrize("command", [["vae"], ["dit", "--vae", "x"], ["decoder"], ["reward"], ["classifier"]])
def test_training_refuses_a_device_this_machine_lacks(entry_point_plugins, monkeypatch, tmp_path, capsys, command):
    entry_point_plugins("vist3a_synth")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "run"
    assert main(["synth", "train", *command, "--out", str(out), "--device", "cuda"]) == 2
    assert "sees 0 CUDA device(s)" in capsys.readouterr().err and not out.exists()
