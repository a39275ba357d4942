"""Checkpoint I/O: round trip, atomic writes, validation of config and weights, safe pickles."""

import json
import os

import pytest
import torch
from torch import nn

from vist3a.config import StrictModel
from vist3a.errors import CheckpointError, ConfigError, InputError
from vist3a.io.atomic import atomic_directory, atomic_write_text
from vist3a.io.checkpoint import PretrainedMixin, load_state_dict


class TinyConfig(StrictModel):
    width: int = 4
    depth: int = 2


class Tiny(PretrainedMixin, nn.Module):
    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.Sequential(*(nn.Linear(config.width, config.width) for _ in range(config.depth)))
        self.tied = self.layers[0]  # shared parameters must survive safetensors


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = Tiny(TinyConfig(width=3))
    return model, model.save_pretrained(tmp_path / "ckpt")


def test_round_trip(saved):
    model, path = saved
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((path / "config.json").read_text())
    assert config["_class_name"] == "Tiny" and config["width"] == 3 and "_vist3a_version" in config
    loaded = Tiny.from_pretrained(path, dtype=torch.float64)
    assert loaded.config == model.config and not loaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert b.dtype == torch.float64 and torch.equal(a.double(), b), name


def test_existing_folder_is_not_overwritten_unless_asked(saved):
    model, path = saved
    (path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="already exists"):
        model.save_pretrained(path)
    assert (path / "notes.txt").read_text() == "mine"
    model.save_pretrained(path, overwrite=True)
    assert not (path / "notes.txt").exists()
    assert [p.name for p in path.parent.iterdir()] == ["ckpt"]  # no temporary leftovers


def test_failed_write_leaves_the_old_checkpoint(saved):
    _, path = saved
    before = (path / "model.safetensors").read_bytes()
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_directory(path, overwrite=True) as tmp:
            (tmp / "model.safetensors").write_bytes(b"partial")
            raise RuntimeError("disk full")
    assert (path / "model.safetensors").read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["ckpt"]


def test_truncated_weights_give_a_clear_error(saved):
    _, path = saved
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-20])
    with pytest.raises(CheckpointError, match=r"model.safetensors: not a readable safetensors file \(truncated or corrupt\?\)"):
        Tiny.from_pretrained(path)


def test_mismatched_weights_list_the_keys(saved):
    _, path = saved
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "depth": 3, "width": 5}))
    with pytest.raises(CheckpointError) as info:
        Tiny.from_pretrained(path)
    message = str(info.value)
    assert "missing (2): layers.2.bias, layers.2.weight" in message
    assert "shape mismatch file vs model (6): layers.0.bias [3] vs [5]" in message


def test_unknown_config_key_and_wrong_class(saved):
    _, path = saved
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "widht": 3}))
    with pytest.raises(ConfigError, match=r"config.json: widht: unknown field"):
        Tiny.from_pretrained(path)
    (path / "config.json").write_text(json.dumps({**config, "_class_name": "Other"}))
    with pytest.raises(CheckpointError, match="holds a Other, not a Tiny"):
        Tiny.from_pretrained(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: invalid JSON"):
        Tiny.from_pretrained(path)
    with pytest.raises(CheckpointError, match="no such file"):
        Tiny.from_pretrained(path.parent / "absent")


class NotATensor:
    pass


def test_pickles_load_only_plain_state_dicts(tmp_path):
    good = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, good)
    assert torch.equal(load_state_dict(good)["w"], torch.ones(2))
    evil = tmp_path / "evil.pth"
    torch.save({"w": NotATensor()}, evil)
    with pytest.raises(CheckpointError, match="cannot be read safely with weights_only=True"):
        load_state_dict(evil)
    nested = tmp_path / "nested.pt"
    torch.save({"model": {"w": torch.ones(1)}}, nested)
    with pytest.raises(CheckpointError, match="expected a flat mapping of names to tensors"):
        load_state_dict(nested)
    with pytest.raises(CheckpointError, match="unsupported checkpoint format '.ckpt'"):
        (tmp_path / "x.ckpt").write_bytes(b"")
        load_state_dict(tmp_path / "x.ckpt")


def test_atomic_write_text_replaces_whole_files(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two" and os.listdir(tmp_path) == ["a.json"]


def test_atomic_writes_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        with atomic_directory(tmp_path / "folder") as folder:
            (folder / "b.txt").write_text("b")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755
