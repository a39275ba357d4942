"""The upstream reference data in ../shared/reference, shared by the decoder tests."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

import vist3a

REFERENCE = Path(__file__).parents[2].parent / "shared" / "reference"
TOL = 1e-5


def tensors(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A fixture folder's inputs and the upstream forward's outputs."""
    return load_file(folder / "inputs.safetensors"), load_file(folder / "outputs.safetensors")


def loader(entry_point_plugins: Callable[..., Any], decoder: str) -> Callable[..., Any]:
    """``load(path, **config)`` through the installed entry point and the registry id, as users do."""
    entry_point_plugins(f"vist3a_{decoder}")
    return lambda path, **config: vist3a.load_decoder(decoder, str(path), **config)


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


def config_variant(fixture: Path, tmp_path: Path, **changes: dict) -> Path:
    """A fixture's weights beside its config with some submodule values changed (shape-preserving changes only)."""
    config = json.loads((fixture / "config.json").read_text())
    for part, values in changes.items():
        config[part].update(values)
    folder = tmp_path / "variant"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copy(fixture / "model.safetensors", folder)
    return folder
