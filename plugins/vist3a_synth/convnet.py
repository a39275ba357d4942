"""What the world's reward and attribute classifier share: a small convolutional encoder, random frame batches and
float16 export."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import Tensor, nn


class ConvNet(nn.Sequential):
    """Images ``[N,channels,H,W]`` in [-1,1] -> features ``[N,4*width,H/16,W/16]``: four stride-2 stages of two 3x3
    convolutions each (GroupNorm, SiLU), widths ``width, 2*width, 4*width, 4*width``."""

    def __init__(self, width: int, channels: int = 3) -> None:
        widths = (width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = []
        for cin, cout in zip((channels, *widths[:-1]), widths):
            layers += [_conv(cin, cout, 2), _conv(cout, cout, 1)]
        super().__init__(*layers)


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(min(8, cout // 4), cout), nn.SiLU())


def frame_batch(frames: Tensor, generator: torch.Generator, clips: int, views: int) -> tuple[Tensor, Tensor, Tensor]:
    """``views`` random frames of each of ``clips`` random clips of ``frames`` uint8 ``[N,T,3,H,W]``.

    Returns the images ``[clips*views,3,H,W]`` in [-1,1] (clip-major), and the clip ``[clips*views]`` and frame
    ``[clips*views]`` index of each.
    """
    n, t = frames.shape[:2]
    clip = torch.randint(n, (clips,), generator=generator).repeat_interleave(views)
    frame = torch.randint(t, (clips * views,), generator=generator)
    return frames[clip, frame].float() / 127.5 - 1, clip, frame


def save_half(model: nn.Module, directory: Path) -> Path:
    """Save a ``PretrainedMixin`` model to ``directory`` with float16 weights (it loads back as float32)."""
    half = copy.deepcopy(model).half()
    return half.save_pretrained(directory, overwrite=True)  # type: ignore[operator]
