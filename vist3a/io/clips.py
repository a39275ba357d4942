"""Clips of ordered frames for stitching and alignment: video files, image folders or ``synthetic:N`` scenes.

Every clip is ``[3,T,H,W]`` in [-1,1], frames in video order (a causal video VAE needs smooth, ordered views).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from vist3a.errors import InputError
from vist3a.io.video import VIDEO_SUFFIXES, count_frames, read_frames

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def open_clips(source: str, *, frames: int, size: tuple[int, int], step: int = 1, seed: int = 0) -> Dataset:
    """``synthetic:N`` or a folder holding videos and/or folders of images (one sequence each)."""
    if frames < 1 or step < 1:
        raise InputError(f"frames and step must be positive, got {frames} and {step}")
    if source.startswith("synthetic:"):
        count = source.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise InputError(f"invalid data source {source!r}; expected synthetic:N with N >= 1")
        return SyntheticClips(int(count), frames, size, seed)
    return FolderClips(Path(source), frames, size, step)


def resize_crop(frames: Tensor, size: tuple[int, int]) -> Tensor:
    """uint8 ``[T,3,H,W]`` -> ``[3,T,h,w]`` in [-1,1]: scale the image to cover ``size``, then centre-crop."""
    h, w = frames.shape[-2:]
    scale = max(size[0] / h, size[1] / w)
    new = (max(size[0], round(h * scale)), max(size[1], round(w * scale)))
    x = F.interpolate(frames.float() / 127.5 - 1, size=new, mode="bilinear", antialias=True, align_corners=False)
    top, left = (new[0] - size[0]) // 2, (new[1] - size[1]) // 2
    return x[..., top : top + size[0], left : left + size[1]].clamp(-1, 1).transpose(0, 1).contiguous()


def resize_frames(frames: Tensor, size: tuple[int, int]) -> Tensor:
    """``[B,3,T,H,W]`` -> ``[B,3,T,*size]`` (bilinear, antialiased), unchanged when already that size."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    b, c, t, h, w = frames.shape
    flat = frames.transpose(1, 2).reshape(b * t, c, h, w)
    flat = F.interpolate(flat, size=size, mode="bilinear", antialias=True, align_corners=False)
    return flat.reshape(b, t, c, *size).transpose(1, 2)


@dataclass(frozen=True)
class _Window:
    sequence: Path
    indices: list[int]


class FolderClips(Dataset):
    """Non-overlapping windows of ``frames`` frames (every ``step``-th) from each video or image folder."""

    def __init__(self, root: Path, frames: int, size: tuple[int, int], step: int = 1) -> None:
        if not root.is_dir():
            raise InputError(f"{root}: no such data folder")
        self.size = size
        span = (frames - 1) * step + 1
        self.windows = [
            _Window(seq, [start + i * step for i in range(frames)])
            for seq, length in _sequences(root)
            for start in range(0, length - span + 1, span)
        ]
        if not self.windows:
            raise InputError(f"{root}: no video or image folder with at least {span} frames")

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> Tensor:
        window = self.windows[i]
        if window.sequence.is_dir():
            frames = torch.stack([_read_image(p) for p in _images(window.sequence)[window.indices[0] : window.indices[-1] + 1]])
            frames = frames[[j - window.indices[0] for j in window.indices]]
        else:
            frames = read_frames(window.sequence, window.indices)
        return resize_crop(frames, self.size)


def _sequences(root: Path) -> list[tuple[Path, int]]:
    """(video file or image folder, frame count) for every sequence under ``root`` (sorted by path)."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            found.append((path, count_frames(path)))
        elif path.is_dir() and (images := _images(path)):
            found.append((path, len(images)))
    return found


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_image(path: Path) -> Tensor:
    from PIL import Image

    try:
        with Image.open(path) as image:
            array = torch.frombuffer(bytearray(image.convert("RGB").tobytes()), dtype=torch.uint8)
            return array.reshape(image.height, image.width, 3).permute(2, 0, 1)
    except OSError as exc:
        raise InputError(f"{path}: not a readable image: {exc}") from None


class SyntheticClips(Dataset):
    """Procedural scenes (coloured spheres on a checkerboard floor) seen by an orbiting camera; deterministic."""

    def __init__(self, count: int, frames: int, size: tuple[int, int], seed: int = 0) -> None:
        self.count, self.frames, self.size, self.seed = count, frames, size, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + i)
        n = int(torch.randint(1, 4, (), generator=g))
        centres = torch.cat([(torch.rand(n, 2, generator=g) - 0.5) * 2, torch.zeros(n, 1)], dim=1)
        radii = 0.3 + 0.4 * torch.rand(n, generator=g)
        centres[:, 2] = radii  # resting on the floor z = 0
        colours = torch.rand(n, 3, generator=g)
        start, sweep = float(torch.rand((), generator=g)) * 2 * math.pi, 0.6 + 0.6 * float(torch.rand((), generator=g))
        height = 1.0 + float(torch.rand((), generator=g))
        angles = start + sweep * torch.linspace(0, 1, self.frames)
        views = [_render(self.size, a, height, centres, radii, colours) for a in angles.tolist()]
        return torch.stack(views, dim=1) * 2 - 1


def _render(size: tuple[int, int], angle: float, height: float, centres: Tensor, radii: Tensor, colours: Tensor) -> Tensor:
    """Ray-cast one ``[3,H,W]`` view in [0,1] from a camera at ``angle`` on a circle, looking at the origin."""
    h, w = size
    eye = torch.tensor([4 * math.cos(angle), 4 * math.sin(angle), height])
    forward = -eye / eye.norm()
    right = torch.linalg.cross(forward, torch.tensor([0.0, 0.0, 1.0]))
    right = right / right.norm()
    up = torch.linalg.cross(right, forward)
    ys, xs = torch.meshgrid(torch.linspace(1, -1, h) * h / w, torch.linspace(-1, 1, w), indexing="ij")
    rays = forward + 0.6 * (xs[..., None] * right + ys[..., None] * up)
    rays = rays / rays.norm(dim=-1, keepdim=True)  # [H,W,3]
    depth = torch.where(rays[..., 2] < 0, -eye[2] / rays[..., 2], torch.full_like(rays[..., 2], math.inf))
    hit = eye + depth[..., None] * rays
    checker = ((hit[..., 0].floor() + hit[..., 1].floor()) % 2).clamp(0, 1)[..., None]
    image = torch.where(depth[..., None].isfinite(), 0.35 + 0.3 * checker, torch.tensor([0.55, 0.7, 0.9]))
    for centre, radius, colour in zip(centres, radii, colours):
        oc = eye - centre
        b = (rays * oc).sum(-1)
        disc = b * b - (oc * oc).sum() + radius * radius
        t = -b - disc.clamp_min(0).sqrt()
        visible = (disc > 0) & (t > 0) & (t < depth)
        normal = (eye + t[..., None] * rays - centre) / radius
        shade = 0.25 + 0.75 * (normal @ torch.tensor([0.4, 0.3, 0.87])).clamp_min(0)
        image = torch.where(visible[..., None], colour * shade[..., None], image)
        depth = torch.where(visible, t, depth)
    return image.permute(2, 0, 1)
