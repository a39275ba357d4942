"""Prompt-image cosine rewards: the shared scorer and its ``transformers`` CLIPModel implementation."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vist3a.errors import CheckpointError, InputError
from vist3a.scene import Decoded3D
from vist3a_rewards import ClipConfig, ImageRewardConfig
from vist3a_rewards.images import CLIP_MEAN, CLIP_STD, clip_pixels, per_view, scored_views

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class CosineReward:
    """``scale * cos(image, prompt)`` averaged over the scored views; subclasses embed images and prompts."""

    def __init__(
        self,
        name: str,
        model: nn.Module,
        *,
        size: int,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        source: Literal["frames", "renders"] = "frames",
        views: int | None = None,
        scale: Callable[[], Tensor | float] = lambda: 1.0,
    ) -> None:
        self.name, self.model, self.size, self.mean, self.std = name, model.eval().requires_grad_(False), size, mean, std
        self.source, self.views, self.scale = source, views, scale

    def image_features(self, pixels: Tensor) -> Tensor:
        """Normalised pixels ``[N,3,size,size]`` -> embeddings ``[N,D]``."""
        raise NotImplementedError

    def text_features(self, prompts: Sequence[str]) -> Tensor:
        """Prompts -> embeddings ``[B,D]``."""
        raise NotImplementedError

    def __call__(
        self,
        *,
        prompts: Sequence[str],
        frames: Tensor | None = None,
        renders: Tensor | None = None,
        decoded: Decoded3D | None = None,
    ) -> Tensor:
        """Score ``[B]`` of the ``source`` images ``[B,3,V,H,W]`` in [-1,1] against ``prompts``; differentiable
        w.r.t. the images."""
        x = scored_views(self.name, self.source, self.views, len(prompts), frames, renders, decoded)
        b, _, n = x.shape[:3]
        param = next(self.model.parameters())
        pixels = clip_pixels(per_view(x), self.size, self.mean, self.std).to(param.device, param.dtype)
        image = F.normalize(self.image_features(pixels).float(), dim=-1).view(b, n, -1)
        with torch.no_grad():
            text = F.normalize(self.text_features(prompts).float(), dim=-1)
        return self.scale() * (image * text[:, None]).sum(-1).mean(1)


class ClipReward(CosineReward):
    """A ``transformers`` CLIPModel: ``clip`` scores the cosine, ``pickscore`` ``exp(logit_scale) * cosine``."""

    def __init__(self, name: str, model: Any, tokenizer: Any, **options: Any) -> None:
        super().__init__(name, model, **options)
        self.tokenizer = tokenizer

    def image_features(self, pixels: Tensor) -> Tensor:
        return self.model.get_image_features(pixel_values=pixels).pooler_output

    def text_features(self, prompts: Sequence[str]) -> Tensor:
        limit = self.model.config.text_config.max_position_embeddings
        tokens = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=limit, return_tensors="pt")
        device = next(self.model.parameters()).device
        return self.model.get_text_features(**{k: v.to(device) for k, v in tokens.items()}).pooler_output

    @classmethod
    def from_config(cls, cfg: ClipConfig, name: Literal["clip", "pickscore"]) -> ClipReward:
        if cfg.tiny:
            model, tokenizer = tiny_clip(cfg.device)
            size, mean, std = model.config.vision_config.image_size, CLIP_MEAN, CLIP_STD
        else:
            model, tokenizer = _load_clip(name, cfg)
            size, mean, std = _preprocessing(name, cfg.processor or cfg.checkpoint, model.config.vision_config.image_size)
        if cfg.device != "meta":
            model = model.to(device=cfg.device, dtype=DTYPES[cfg.dtype])
        scale = (lambda: model.logit_scale.exp().float()) if name == "pickscore" else (lambda: 1.0)
        return cls(name, model, tokenizer, size=size, mean=mean, std=std, scale=scale, **_view_options(cfg))


def _view_options(cfg: ImageRewardConfig) -> dict[str, Any]:
    return {"source": cfg.source, "views": cfg.views}


def tiny_clip(device: str = "cpu") -> tuple[Any, Any]:
    """A seeded random CLIPModel (32x32 images, one layer per tower) and an in-process word-level tokenizer."""
    from transformers import CLIPConfig, CLIPModel

    from vist3a.generators.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, pad_token_id=0, eos_token_id=1,
                         bos_token_id=3),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2),
        projection_dim=16,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(0)
        return CLIPModel(config), tokenizer


def _load_clip(name: str, cfg: ClipConfig) -> tuple[Any, Any]:
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    if cfg.checkpoint is None:
        raise InputError(f"{name}: set checkpoint (a hub id or a local folder) or tiny=True")
    try:
        if cfg.device == "meta":
            with torch.device("meta"):
                model = CLIPModel(CLIPConfig.from_pretrained(cfg.checkpoint))
        else:
            model = CLIPModel.from_pretrained(cfg.checkpoint, dtype=DTYPES[cfg.dtype])
        tokenizer = AutoTokenizer.from_pretrained(cfg.processor or cfg.checkpoint)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{name}: cannot load {cfg.checkpoint!r}: {str(exc).splitlines()[0]}") from None
    return model, tokenizer


def _preprocessing(name: str, source: str | None, default_size: int) -> tuple[int, Sequence[float], Sequence[float]]:
    """Crop size, mean and std from ``preprocessor_config.json`` in ``source``; CLIP's defaults if it has none."""
    from transformers.utils import cached_file

    path = cached_file(source, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
    if path is None:
        return default_size, CLIP_MEAN, CLIP_STD
    try:
        values = json.loads(open(path).read())
    except ValueError as exc:
        raise CheckpointError(f"{name}: {path}: {exc}") from None
    crop = values.get("crop_size") or values.get("size") or default_size
    if isinstance(crop, dict):
        crop = crop.get("height") or crop.get("shortest_edge") or default_size
    return int(crop), values.get("image_mean", CLIP_MEAN), values.get("image_std", CLIP_STD)
