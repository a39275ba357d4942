"""The attribute classifier: which colours and which shapes a frame shows, to judge generated videos.

Colour (8-way) and shape (4-way) are separate multi-label outputs, so a classifier trained only on ground-truth
renders of the train split also recognises the test split's held-out (colour, shape) combinations. Two
:class:`~vist3a_synth.convnet.ConvNet` branches keep them apart: colours from the RGB frame, shapes from its
brightness ``max(R, G, B)`` alone, which every colour of the world shades alike, so the shape branch cannot lean on
colour. Each output is a 1x1 convolution over its branch's feature map, max-pooled over space (an attribute is
present if some place shows it); over a clip, the frames' probabilities are averaged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from vist3a_rewards.images import per_view, resize

from vist3a.config import StrictModel
from vist3a.errors import ShapeError
from vist3a.io.atomic import atomic_write_text
from vist3a.io.checkpoint import PretrainedMixin
from vist3a_synth.captions import caption_objects
from vist3a_synth.convnet import ConvNet, frame_batch, save_half
from vist3a_synth.training import TrainOptions, rendered, train
from vist3a_synth.world import COLOURS, SHAPES, Scene

NAME = "synth-classifier"
SHIPPED = Path(__file__).parent / "weights" / NAME
ATTRIBUTES = (*COLOURS, *SHAPES)
"""The outputs, in order: the 8 colours, then the 4 shapes."""
MIN_PIXELS = 6  # an object covering fewer pixels of a frame does not count as shown there
BLUR_RADIUS = 3  # pixels each side of the training blur's kernel


class ClassifierConfig(StrictModel):
    """The attribute classifier's architecture."""

    width: int = 16
    """The shape branch's first width (``ConvNet``)."""
    colour_width: int = 8
    """The colour branch's first width."""


class AttributeClassifier(PretrainedMixin, nn.Module):
    """Frames ``[N,3,64,64]`` in [-1,1] -> logits ``[N,12]`` of :data:`ATTRIBUTES` (independent sigmoids)."""

    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.colour = nn.Sequential(ConvNet(config.colour_width), nn.Conv2d(4 * config.colour_width, len(COLOURS), 1))
        self.shape = nn.Sequential(ConvNet(config.width, channels=1), nn.Conv2d(4 * config.width, len(SHAPES), 1))

    def forward(self, frames: Tensor) -> Tensor:
        logits = torch.cat([self.colour(frames), self.shape(frames.amax(1, keepdim=True))], 1)
        return logits.amax((-2, -1))

    @torch.no_grad()
    def detect(self, videos: Tensor) -> Tensor:
        """``videos [B,3,T,H,W]`` in [-1,1] (resized to 64x64) -> the mean over frames of each attribute's
        probability ``[B,12]``."""
        if videos.ndim != 5 or videos.shape[1] != 3:
            raise ShapeError(f"{NAME}: videos: expected [B,3,T,H,W], got {list(videos.shape)}")
        b, t = videos.shape[0], videos.shape[2]
        param = next(self.parameters())
        frames = resize(per_view(videos), (64, 64)).to(param.device, param.dtype)
        return torch.cat([self(chunk) for chunk in frames.split(256)]).sigmoid().view(b, t, -1).mean(1).float()


@lru_cache(maxsize=1)
def shipped_classifier() -> AttributeClassifier:
    """The shipped classifier (``weights/synth-classifier``), loaded once."""
    return AttributeClassifier.from_pretrained(SHIPPED)


def attribute_accuracy(videos: Tensor, scenes_or_captions: Sequence[Scene | str], *,
                       classifier: AttributeClassifier | None = None) -> float:  # fmt: skip
    """The fraction of requested colours and shapes that the classifier detects in ``videos [B,3,T,H,W]`` in [-1,1].

    Item ``b`` requests the distinct colours and the distinct shapes of ``scenes_or_captions[b]``'s objects (a
    caption is parsed with the world's grammar; ValueError if it is not one). Colour and shape are judged
    separately, so binding (which shape has which colour) is not checked. ``classifier``: the shipped one if None.
    """
    return attribute_accuracies(videos, scenes_or_captions, classifier=classifier)["attributes"]


def attribute_accuracies(videos: Tensor, scenes_or_captions: Sequence[Scene | str], *,
                         classifier: AttributeClassifier | None = None) -> dict[str, float]:  # fmt: skip
    """:func:`attribute_accuracy` (``"attributes"``) and its parts: the fraction of requested ``"colours"`` and of
    requested ``"shapes"`` detected; and the control ``"unrequested"``: the fraction of the attributes not requested
    that are detected all the same (a judge or a generator that sees everything everywhere scores high on both)."""
    if len(scenes_or_captions) != videos.shape[0]:
        raise ShapeError(f"{NAME}: {len(scenes_or_captions)} prompts for {videos.shape[0]} videos")
    requested = torch.stack([_requested(item) for item in scenes_or_captions]).bool()
    detected = (classifier or shipped_classifier()).detect(videos) > 0.5
    kinds = {"attributes": slice(None), "colours": slice(len(COLOURS)), "shapes": slice(len(COLOURS), None)}
    scores = {kind: _fraction(detected[:, part], requested[:, part]) for kind, part in kinds.items()}
    return {**scores, "unrequested": _fraction(detected, ~requested)}


def _fraction(detected: Tensor, asked: Tensor) -> float:
    return (detected & asked).sum().item() / max(1, asked.sum().item())


def _requested(item: Scene | str) -> Tensor:
    pairs = caption_objects(item) if isinstance(item, str) else [(o.colour, o.shape) for o in item.objects]
    return torch.tensor([name in {c for c, _ in pairs} | {s for _, s in pairs} for name in ATTRIBUTES])


def clip_targets(labels: Tensor) -> Tensor:
    """Targets ``[N,12]`` (0/1 float) of the objects of ``labels [N,3,2]`` (colour, shape indices; -1 = none)."""
    return _objects(labels).amax(1)


def frame_targets(labels: Tensor, ids: Tensor) -> Tensor:
    """Targets ``[N,T,12]`` of each frame: the attributes of the objects of ``labels [N,3,2]`` that cover at least
    ``MIN_PIXELS`` pixels of it in ``ids [N,T,H,W]`` (k + 1 where object k shows)."""
    shown = torch.stack([(ids == k + 1).sum((-2, -1)) >= MIN_PIXELS for k in range(labels.shape[1])], -1)
    return (shown[..., None] * _objects(labels)[:, None]).amax(2)


def _objects(labels: Tensor) -> Tensor:
    """``[N,K,12]``: each object's colour and shape one-hot, zero for absent objects."""
    onehot = torch.cat([F.one_hot(labels[..., 0].clamp(min=0), len(COLOURS)),
                        F.one_hot(labels[..., 1].clamp(min=0), len(SHAPES))], -1)  # fmt: skip
    return (onehot * (labels[..., :1] >= 0)).float()


def blur(images: Tensor, sigma: Tensor) -> Tensor:
    """``images [N,C,H,W]`` each blurred by a Gaussian of its own standard deviation ``sigma [N]`` (pixels; 0 keeps
    the image), edges replicated."""
    offsets = torch.arange(-BLUR_RADIUS, BLUR_RADIUS + 1, dtype=images.dtype, device=images.device)
    weights = torch.exp(-(offsets**2) / (2 * sigma.to(images).clamp(min=1e-3)[:, None] ** 2))
    kernels = (weights / weights.sum(1, keepdim=True)).repeat_interleave(images.shape[1], 0)
    n, c, h, w = images.shape
    flat = images.reshape(1, n * c, h, w)
    pad = (BLUR_RADIUS, BLUR_RADIUS)
    flat = F.conv2d(F.pad(flat, (*pad, 0, 0), mode="replicate"), kernels[:, None, None, :], groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, *pad), mode="replicate"), kernels[:, None, :, None], groups=n * c)
    return flat.view(n, c, h, w)


def train_classifier(out: Path, options: TrainOptions, *, clips: int, width: int, eval_clips: int, device: str = "cpu",
                     on_step: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Train the classifier on ``device`` on ``batch_size`` random ground-truth frames a step from ``clips``
    train-split clips; save it to ``out/synth-classifier`` (float16) and return its test metrics, also written to
    ``out/metrics.json``.

    ``options.loss["blur"]`` (default 0): each training frame is blurred by a Gaussian whose standard deviation is
    drawn uniformly up to this many pixels, so that soft outlines, as decoders make them, do not hide a shape."""
    data, _ = rendered(out, "train", clips)
    targets = frame_targets(data["labels"], data["ids"])
    torch.manual_seed(options.seed)
    model = AttributeClassifier(ClassifierConfig(width=width)).to(device)

    def loss_fn(step: int, generator: torch.Generator) -> dict[str, Tensor]:
        images, clip, frame = frame_batch(data["frames"], generator, options.batch_size, 1)
        sigma = torch.rand(len(images), generator=generator) * options.loss.get("blur", 0.0)
        logits = model(blur(images, sigma).to(device))
        target = targets[clip, frame].to(device)
        return {"loss": F.binary_cross_entropy_with_logits(logits, target),
                "accuracy": ((logits > 0) == target.bool()).float().mean().detach()}  # fmt: skip

    train(model, loss_fn, options, out, on_step)
    save_half(model, out / NAME)
    metrics = evaluate_classifier(AttributeClassifier.from_pretrained(out / NAME), *_test_data(out, eval_clips))
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def evaluate_classifier(classifier: AttributeClassifier, frames: Tensor, labels: Tensor,
                        captions: Sequence[str]) -> dict[str, float]:  # fmt: skip
    """Clip-level accuracy on ground-truth clips ``frames`` uint8 ``[N,T,3,H,W]`` with ``labels [N,3,2]``: of the
    colour and of the shape presence decisions, the fraction of clips with every decision right, and
    :func:`attribute_accuracy` against their ``captions``."""
    videos = frames.permute(0, 2, 1, 3, 4).float() / 127.5 - 1
    right = (classifier.detect(videos) > 0.5) == clip_targets(labels).bool()
    return {"colour_accuracy": right[:, : len(COLOURS)].float().mean().item(),
            "shape_accuracy": right[:, len(COLOURS) :].float().mean().item(),
            "clips_all_right": right.all(1).float().mean().item(),
            "attribute_accuracy": attribute_accuracy(videos, captions, classifier=classifier)}  # fmt: skip


def _test_data(directory: Path, count: int) -> tuple[Tensor, Tensor, list[str]]:
    data, captions = rendered(directory, "test", count)
    return data["frames"], data["labels"], captions
