"""The shared training loop of the synthetic world's models: exact resume, curves, the rendered-data cache."""

import json

import pytest
import torch
from torch import nn
from vist3a_synth.training import STATE_FILE, TrainOptions, rendered, train
from vist3a_synth.world import COLOURS, SHAPES

from vist3a.errors import InputError
from vist3a.io.checkpoint import read_state, write_state

OPTIONS = TrainOptions(steps=6, lr=0.1, warmup=2, checkpoint_every=2)


def regression(step, generator):
    x = torch.randn(4, 3, generator=generator)
    return {"loss": (MODEL(x) - x.sum(dim=1, keepdim=True)).square().mean()}


def fresh() -> nn.Module:
    global MODEL
    torch.manual_seed(0)
    MODEL = nn.Linear(3, 1)
    return MODEL


def test_a_stopped_run_resumes_to_the_same_weights(tmp_path):
    initial = fresh().weight.detach().clone()
    straight = train(MODEL, regression, OPTIONS, tmp_path / "a")
    weights = MODEL.weight.detach().clone()
    assert not torch.equal(weights, initial) and len(straight.history) == 6

    def stop(step, record):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(fresh(), regression, OPTIONS, tmp_path / "b", on_step=stop)
    resumed = train(fresh(), regression, OPTIONS, tmp_path / "b")  # restarts from the step-2 checkpoint
    assert resumed.history == straight.history and torch.equal(MODEL.weight, weights)
    lines = (tmp_path / "b" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 7))
    assert (tmp_path / "b" / "curves.png").read_bytes().startswith(b"\x89PNG")
    for changed in ({"lr": 0.5}, {"loss": {"weight": 2.0}}):
        with pytest.raises(InputError, match="other settings"):
            train(fresh(), regression, OPTIONS.model_copy(update=changed), tmp_path / "b")


def test_an_ema_run_ends_with_the_average_and_resumes_to_it(tmp_path):
    seen = []
    average = fresh().weight.detach().clone()
    train(MODEL, regression, OPTIONS, tmp_path / "plain", on_step=lambda step, record: seen.append(MODEL.weight.detach().clone()))
    for s, weights in enumerate(seen):  # decay min((1 + s) / (10 + s), 0.5) at update s
        average += (weights - average) * (1 - min((1 + s) / (10 + s), 0.5))
    options = OPTIONS.model_copy(update={"ema": 0.5})
    train(fresh(), regression, options, tmp_path / "ema")
    averaged = MODEL.weight.detach().clone()
    assert torch.allclose(averaged, average) and not torch.allclose(average, seen[-1])

    def stop(step, record):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(fresh(), regression, options, tmp_path / "stopped", on_step=stop)
    train(fresh(), regression, options, tmp_path / "stopped")
    assert torch.equal(MODEL.weight, averaged)
    with pytest.raises(InputError, match="other settings"):
        train(fresh(), regression, OPTIONS, tmp_path / "ema")


def test_state_files_resume_by_their_recorded_settings(tmp_path):
    train(fresh(), regression, OPTIONS.model_copy(update={"steps": 2}), tmp_path)
    path = tmp_path / STATE_FILE
    tensors, meta = read_state(path, "state")
    recorded = json.loads(meta["options"])
    older = {key: value for key, value in recorded.items() if key != "model"}  # written before the field existed
    write_state(path, tensors, {**meta, "options": json.dumps(older)})
    assert train(fresh(), regression, OPTIONS.model_copy(update={"steps": 3}), tmp_path).step == 3
    with pytest.raises(InputError, match="other settings"):
        train(fresh(), regression, OPTIONS.model_copy(update={"model": {"width": 8}}), tmp_path)
    write_state(path, tensors, {**meta, "options": "not json"})
    with pytest.raises(InputError, match="other settings"):
        train(fresh(), regression, OPTIONS, tmp_path)


def test_rendered_data_is_cached_with_labels_and_captions(tmp_path):
    data, captions = rendered(tmp_path, "test", 2, frames=3, size=16)
    again, captions_again = rendered(tmp_path, "test", 2, frames=3, size=16)
    assert captions == captions_again and all(torch.equal(data[k], again[k]) for k in data)
    assert data["frames"].shape == (2, 3, 3, 16, 16) and data["frames"].dtype == torch.uint8
    assert data["labels"].shape == (2, 3, 2)
    for labels, caption, ids in zip(data["labels"], captions, data["ids"]):
        objects = int((labels[:, 0] >= 0).sum())
        assert 1 <= objects <= 3 and int(ids.max()) <= objects
        colour, shape = list(COLOURS)[labels[0, 0]], SHAPES[labels[0, 1]]
        assert colour in caption and shape in caption
