"""Finding and reading MV-DUSt3R weights without ever running code from a checkpoint.

The official ``MVD.pth`` / ``MVDp_s1.pth`` / ``MVDp_s2.pth`` are pickles of ``{"args": argparse.Namespace(model=
"<constructor call>", ...), "model": state_dict}``; upstream ``eval``s the constructor string. Here they load with
``torch.load(weights_only=True)``, allow-listing only ``argparse.Namespace`` (a plain attribute container), and only
``["model"]`` is used: the architecture comes from our own validated config, never from that string.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from vist3a.errors import CheckpointError
from vist3a.io.checkpoint import CONFIG_NAME, WEIGHTS_NAME, load_state_dict, read_config
from vist3a_mvdust3r.config import MVDUSt3RArchitecture, parse_architecture, released

PICKLE_SUFFIXES = (".pth", ".pt", ".bin")
HUB_FILE = "checkpoints/MVDp_s2.pth"
"""The file a bare ``Zhenggang/MV-DUSt3R``-style hub id means (MV-DUSt3R+, stage 2)."""
CONVERT = (
    "python -c \"import torch; from safetensors.torch import save_file; "
    "save_file(torch.load('IN.pth', weights_only=False)['model'], 'DIR/model.safetensors')\""
)
"""The one-off conversion of a trusted file that weights_only cannot read (it runs the pickle: trusted files only)."""


def locate(checkpoint: str) -> Path:
    """A local file or folder, or ``repo_id[:file]`` already in the Hugging Face cache (nothing is downloaded)."""
    path = Path(checkpoint).expanduser()
    if path.exists():
        return path
    repo, _, name = checkpoint.partition(":")
    if repo.count("/") != 1 or repo.startswith((".", "~", "/")) or Path(repo).suffix in (*PICKLE_SUFFIXES, ".safetensors"):
        raise CheckpointError(f"{checkpoint}: no such file or folder")
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo, name or HUB_FILE)
    except Exception:  # not a valid repo id
        found = None
    if isinstance(found, str):
        return Path(found)
    raise CheckpointError(
        f"{checkpoint}: not a local file or folder and not in the Hugging Face cache "
        f"(download it first, e.g. `hf download {repo} {name or HUB_FILE}`, and pass the path)"
    )


def read_checkpoint(path: Path) -> tuple[dict[str, Tensor], MVDUSt3RArchitecture | None]:
    """The state dict of a folder (``model.safetensors`` + optional ``config.json``), a ``.safetensors`` file (with a
    ``config.json`` beside it, if any) or an official pickle, and the architecture its config gives (None: no config)."""
    if path.is_dir():
        if not (path / WEIGHTS_NAME).is_file():
            raise CheckpointError(f"{path}: no {WEIGHTS_NAME} in this folder (official .pth files are loaded by their path)")
        path = path / WEIGHTS_NAME
    if path.suffix in PICKLE_SUFFIXES:
        return load_official(path), None
    config = path.parent / CONFIG_NAME
    arch = parse_architecture(read_config(path.parent), str(config)) if config.is_file() else None
    return load_state_dict(path), arch


def load_official(path: str | Path) -> dict[str, Tensor]:
    """``["model"]`` of an official pickle (or a plain state-dict pickle), read with ``weights_only=True``."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except Exception as exc:  # UnpicklingError, RuntimeError, ...: anything weights_only refuses
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CheckpointError(
            f"{path}: refused: it cannot be read with torch.load(weights_only=True) ({reason}); nothing in it was run. "
            f"If you trust the file, convert it once with: {CONVERT}"
        ) from None
    state = obj.get("model", obj) if isinstance(obj, Mapping) else obj
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected {{'model': state_dict}} or a flat mapping of names to tensors")
    return with_second_decoder(dict(state))


def with_second_decoder(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Upstream's rule for DUSt3R-style checkpoints: without any ``dec_blocks2.*``, those are copies of ``dec_blocks.*``."""
    if any(k.startswith("dec_blocks2.") for k in state):
        return state
    return state | {"dec_blocks2." + k.removeprefix("dec_blocks."): v for k, v in state.items() if k.startswith("dec_blocks.")}


def inferred_architecture(state: Mapping[str, Tensor], n_ref: int | None = None) -> MVDUSt3RArchitecture:
    """The released architecture for a file without a config: MV-DUSt3R+ when it has ``dec_same_view_blocks``."""
    return released(m_ref_flag=any(k.startswith("dec_same_view_blocks.") for k in state), n_ref=n_ref)
