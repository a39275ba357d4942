"""Tensor plumbing shared by the rewards: input checks, view selection, rendering and CLIP preprocessing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from vist3a.errors import InputError, ShapeError
from vist3a.scene import Cameras, Decoded3D

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def check_clips(name: str, what: str, x: Tensor | None, batch: int) -> Tensor:
    """``x`` as ``[B,3,V,H,W]`` with ``B = batch``; a one-line error otherwise."""
    if x is None:
        raise InputError(f"{name}: needs {what} [B,3,V,H,W]")
    if x.ndim != 5 or x.shape[1] != 3 or x.shape[0] != batch:
        raise ShapeError(f"{name}: {what}: expected [{batch},3,V,H,W] for {batch} prompts, got {list(x.shape)}")
    return x


def view_indices(total: int, views: int | None) -> list[int]:
    """``views`` indices evenly spaced over ``range(total)`` (first and last included); all when None."""
    if views is None or views >= total:
        return list(range(total))
    if views == 1:
        return [0]
    return [round(i * (total - 1) / (views - 1)) for i in range(views)]


def render_views(name: str, decoded: Decoded3D | None, index: Sequence[int], near: float, far: float) -> Tensor:
    """The decoded Gaussians rendered at the predicted cameras ``index``: ``[B,3,len(index),H,W]`` in [-1,1]."""
    from vist3a.render import render

    if decoded is None or decoded.gaussians is None or decoded.cameras is None:
        raise InputError(f"{name}: needs renders, or decoded with gaussians and cameras to render them")
    cams = decoded.cameras
    chosen = Cameras(cams.extrinsics[:, list(index)], cams.intrinsics[:, list(index)], cams.image_size)
    return render(decoded.gaussians, chosen, mode="RGB", near_plane=near, far_plane=far).frames()


def scored_views(
    name: str,
    source: Literal["frames", "renders"],
    views: int | None,
    batch: int,
    frames: Tensor | None,
    renders: Tensor | None,
    decoded: Decoded3D | None,
) -> Tensor:
    """The ``[B,3,n,H,W]`` images a prompt-image reward scores (see ``ImageRewardConfig``)."""
    if source == "frames":
        x = check_clips(name, "frames", frames, batch)
        return x[:, :, view_indices(x.shape[2], views)]
    if renders is not None:
        x = check_clips(name, "renders", renders, batch)
        return x[:, :, view_indices(x.shape[2], views)]
    if decoded is None or decoded.cameras is None:
        raise InputError(f"{name}: needs renders [B,3,V,H,W], or decoded with gaussians and cameras")
    index = view_indices(decoded.cameras.extrinsics.shape[1], views)
    return check_clips(name, "renders", render_views(name, decoded, index, 0.01, 1e10), batch)


def resize(images: Tensor, size: tuple[int, int]) -> Tensor:
    """``[N,3,H,W]`` -> ``[N,3,*size]``, bilinear with antialiasing (differentiable); unchanged if equal."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


def clip_pixels(images: Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """CLIP preprocessing in torch: ``[N,3,H,W]`` in [-1,1] -> shorter side to ``size`` (bicubic), centre crop
    ``size x size``, then ``(x - mean) / std`` in [0,1] units. Differentiable, unlike the PIL processors."""
    h, w = images.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = (images + 1) / 2
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[..., top : top + size, left : left + size]
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def per_view(images: Tensor) -> Tensor:
    """``[B,3,V,H,W]`` -> ``[B*V,3,H,W]`` (clip-major)."""
    b, c, v, h, w = images.shape
    return images.permute(0, 2, 1, 3, 4).reshape(b * v, c, h, w)
