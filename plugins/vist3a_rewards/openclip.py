"""Prompt-image cosine rewards over ``open_clip`` models: DFN5B-CLIP (``open-clip``) and HPSv2.1 (``hpsv2``).

open_clip is an optional dependency (``pip install open-clip-torch``); nothing here imports it until a reward is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from vist3a.errors import CheckpointError, InputError
from vist3a_rewards import OpenClipConfig
from vist3a_rewards.clip import DTYPES, CosineReward, _view_options
from vist3a_rewards.images import CLIP_MEAN, CLIP_STD


class OpenClipReward(CosineReward):
    """Cosine between each view and the prompt under an open_clip model (HPSv2 scores exactly this)."""

    def __init__(self, name: str, model: Any, tokenizer: Any, **options: Any) -> None:
        super().__init__(name, model, **options)
        self.tokenizer = tokenizer

    def image_features(self, pixels: Tensor) -> Tensor:
        return self.model.encode_image(pixels)

    def text_features(self, prompts: Sequence[str]) -> Tensor:
        return self.model.encode_text(self.tokenizer(list(prompts)).to(next(self.model.parameters()).device))

    @classmethod
    def from_config(cls, cfg: OpenClipConfig, name: Literal["open-clip", "hpsv2"]) -> OpenClipReward:
        open_clip = import_open_clip(name)
        model, tokenizer = tiny_open_clip(open_clip, cfg.device) if cfg.tiny else _load(open_clip, name, cfg)
        if cfg.device != "meta":
            model = model.to(device=cfg.device, dtype=DTYPES[cfg.dtype])
        size = model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        mean = getattr(model.visual, "image_mean", None) or CLIP_MEAN
        std = getattr(model.visual, "image_std", None) or CLIP_STD
        return cls(name, model, tokenizer, size=int(size), mean=mean, std=std, **_view_options(cfg))


def import_open_clip(name: str) -> Any:
    """The ``open_clip`` module, or a one-line InputError with the pip line."""
    try:
        import open_clip
    except ImportError:
        raise InputError(f"{name}: needs open_clip; install it with: pip install open-clip-torch") from None
    return open_clip


def tiny_open_clip(open_clip: Any, device: str = "cpu") -> tuple[Any, Any]:
    """A seeded random ``open_clip.CLIP`` (32x32 images, one layer per tower) and open_clip's bundled tokenizer."""
    vision = {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16}
    text = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(0)
        model = open_clip.CLIP(embed_dim=16, vision_cfg=vision, text_cfg=text)
    return model, open_clip.get_tokenizer("ViT-B-32")


def _load(open_clip: Any, name: str, cfg: OpenClipConfig) -> tuple[Any, Any]:
    if cfg.checkpoint is None:
        raise InputError(f"{name}: set checkpoint (a hub id or a local state-dict file) or tiny=True")
    local = Path(cfg.checkpoint).is_file()
    if cfg.model is None and (local or cfg.filename):
        raise InputError(f"{name}: a state-dict checkpoint needs model (an open_clip architecture, e.g. ViT-H-14)")
    arch = cfg.model or f"hf-hub:{cfg.checkpoint}"
    try:
        if cfg.device == "meta":
            with torch.device("meta"):
                model = open_clip.create_model(arch, pretrained=None)
        elif cfg.model is None:
            model = open_clip.create_model(arch)
        else:
            model = open_clip.create_model(arch, pretrained=None)
            model.load_state_dict(_state_dict(cfg))
        tokenizer = open_clip.get_tokenizer(arch)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{name}: cannot load {cfg.checkpoint!r}: {str(exc).splitlines()[0]}") from None
    return model, tokenizer


def _state_dict(cfg: OpenClipConfig) -> dict[str, Tensor]:
    """The weights in a local file, or in ``filename`` of the hub repo ``checkpoint`` (HPS nests a ``state_dict``)."""
    path = Path(cfg.checkpoint or "")
    if not path.is_file():
        from huggingface_hub import hf_hub_download

        if cfg.filename is None:
            raise InputError(f"{cfg.checkpoint!r} is not a file; set filename to load a state dict from the hub repo")
        path = Path(hf_hub_download(str(cfg.checkpoint), cfg.filename))
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state)
