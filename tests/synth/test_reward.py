"""The synth-clip reward and the attribute classifier: training commands, the loss, the shipped weights, bad input."""

import json
import math

import pytest
import torch
from vist3a_synth.classifier import (
    ATTRIBUTES,
    AttributeClassifier,
    attribute_accuracies,
    attribute_accuracy,
    blur,
    clip_targets,
    evaluate_classifier,
    frame_targets,
    shipped_classifier,
)
from vist3a_synth.classifier import SHIPPED as CLASSIFIER
from vist3a_synth.reward import info_nce, retrieval
from vist3a_synth.training import rendered

import vist3a
from vist3a.cli import main
from vist3a.errors import CheckpointError, ShapeError

# Measured with the shipped weights on the first 200 (classifier) and 100 (synth-clip) test clips, docs/synth.md.
CLASSIFIER_ACCURACY = {"colour_accuracy": 0.994, "shape_accuracy": 0.944, "attribute_accuracy": 0.953}
RETRIEVAL = {"image_to_text": 0.81, "text_to_image": 0.83}  # among 100 captions; among fewer it is easier
TOLERANCE = 0.06


@pytest.mark.parametrize("command", ["reward", "classifier"])
def test_training_command_runs_and_resumes(entry_point_plugins, tmp_path, capsys, command):
    entry_point_plugins("vist3a_synth")
    out = tmp_path / "run"
    args = ["synth", "train", command, "--out", str(out), "--clips", "4", "--width", "4", "--batch-size", "3",
            "--eval-clips", "3"]  # fmt: skip
    assert main([*args, "--steps", "2"]) == 0
    first = (out / "history.jsonl").read_text().splitlines()
    assert main([*args, "--steps", "3"]) == 0  # continues from step 2
    again = (out / "history.jsonl").read_text().splitlines()
    assert again[:2] == first and len(again) == 3
    metrics = json.loads((out / "metrics.json").read_text())
    assert capsys.readouterr().out.endswith(json.dumps(metrics, indent=2) + "\n")
    name = "synth-clip" if command == "reward" else "synth-classifier"
    assert {p.name for p in (out / name).iterdir()} == {"config.json", "model.safetensors"}


def test_info_nce_on_hand_made_embeddings():
    eye, scale = torch.eye(2), torch.tensor(1.0)
    distinct = torch.eye(2, dtype=torch.bool)
    expected = math.log(1 + math.exp(-1))  # logits [[1, 0], [0, 1]] both ways
    assert info_nce(eye, eye, scale, distinct).item() == pytest.approx(expected)
    assert info_nce(eye, eye.flip(0), scale, distinct).item() == pytest.approx(math.log(1 + math.e))
    same = torch.ones(2, 2, dtype=torch.bool)  # one caption twice: both texts are right for both images
    assert info_nce(eye, eye, scale, same).item() == pytest.approx(math.log(1 + math.e) - 0.5)
    assert info_nce(3 * eye, eye, torch.tensor(100.0), distinct).item() < 1e-6  # unnormalised input is normalised


def test_frame_and_clip_targets_on_a_hand_made_case():
    labels = torch.tensor([[[0, 1], [4, 3], [-1, -1]]])  # a red cube and a blue cone
    ids = torch.zeros(1, 2, 4, 4, dtype=torch.uint8)
    ids[0, 0, :2] = 1  # frame 0 shows only the cube (8 pixels), frame 1 the cone
    ids[0, 1, 2:] = 2
    ids[0, 1, 0, 0] = 1  # one pixel of the cube: too few to count
    names = [[ATTRIBUTES[i] for i in torch.nonzero(row).flatten()] for row in frame_targets(labels, ids)[0]]
    assert names == [["red", "cube"], ["blue", "cone"]]
    assert [ATTRIBUTES[i] for i in torch.nonzero(clip_targets(labels)[0]).flatten()] == ["red", "blue", "cube", "cone"]


def test_the_registered_reward_is_offline_differentiable_and_prefers_the_own_caption(entry_point_plugins, tmp_path,
                                                                                    monkeypatch):  # fmt: skip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    entry_point_plugins("vist3a_synth")
    reward = vist3a.load_reward("synth-clip", views=3)
    data, captions = rendered(tmp_path, "test", 20)
    frames = (data["frames"].permute(0, 2, 1, 3, 4).float() / 127.5 - 1).requires_grad_(True)
    own = reward(prompts=captions, frames=frames)
    own.sum().backward()
    assert own.shape == (20,) and frames.grad is not None and frames.grad.abs().sum() > 0
    with torch.no_grad():
        other = reward(prompts=captions[1:] + captions[:1], frames=frames)
    assert (own > other).float().mean() >= 0.75
    for key, value in retrieval(reward, data["frames"], captions).items():
        assert value >= RETRIEVAL[key] - TOLERANCE, key


def test_the_shipped_classifier_matches_its_reported_accuracy(tmp_path):
    data, captions = rendered(tmp_path, "test", 24)
    metrics = evaluate_classifier(shipped_classifier(), data["frames"], data["labels"], captions)
    for key, value in CLASSIFIER_ACCURACY.items():
        assert metrics[key] >= value - TOLERANCE, (key, metrics)
    videos = data["frames"][:6].permute(0, 2, 1, 3, 4).float() / 127.5 - 1
    wrong = ["a small white sphere"] * 6 if "white" not in " ".join(captions[:6]) else ["a small green cone"] * 6
    assert attribute_accuracy(videos, captions[:6]) > attribute_accuracy(videos, wrong)
    parts = attribute_accuracies(videos, wrong)
    assert parts["attributes"] == attribute_accuracy(videos, wrong)
    assert parts["colours"] == 0 and parts["attributes"] == pytest.approx(parts["shapes"] / 2)  # 1 colour, 1 shape asked
    assert parts["unrequested"] > attribute_accuracies(videos, captions[:6])["unrequested"]  # the clips' own colours


def test_training_blur_keeps_sharp_and_flat_images_and_spreads_a_point():
    images = torch.zeros(3, 2, 9, 9)
    images[:, :, 4, 4] = 1.0
    images[2] = 0.5  # flat
    out = blur(images, torch.tensor([0.0, 1.0, 1.5]))
    assert torch.equal(out[0], images[0]) and torch.allclose(out[2], images[2])
    assert out[1].sum((-2, -1)).allclose(torch.ones(2)) and out[1, 0, 4, 4] < 0.2
    assert torch.equal(out[1], out[1].flip(-1)) and torch.equal(out[1], out[1].transpose(-2, -1))
    assert out[1, 0, 4, 5].item() == pytest.approx(out[1, 0, 4, 4].item() * math.exp(-0.5), rel=1e-5)  # Gaussian, sigma 1


def test_bad_input(entry_point_plugins, tmp_path, capsys):
    entry_point_plugins("vist3a_synth")
    (tmp_path / "file").write_text("")
    for args in (["reward", "--steps", "0"], ["classifier", "--out", str(tmp_path / "file")]):
        assert main(["synth", "train", *args[:1], "--out", str(tmp_path / "r"), *args[1:]]) == 2
        err = capsys.readouterr().err
        assert err.startswith("Error:") and err.count("\n") == 1
    with pytest.raises(CheckpointError, match="no such file"):
        vist3a.load_reward("synth-clip", checkpoint=str(tmp_path))
    with pytest.raises(ShapeError):
        attribute_accuracy(torch.zeros(2, 3, 64, 64), ["a small red cube"] * 2, classifier=shipped_classifier())
    with pytest.raises(ValueError, match="not a caption"):
        attribute_accuracy(torch.zeros(1, 3, 2, 64, 64), ["a dog"], classifier=shipped_classifier())
    assert AttributeClassifier.from_pretrained(CLASSIFIER).config.width == 16
