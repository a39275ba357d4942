"""Clips of ordered frames for stitching and alignment: video files, image folders or a plugin's data source.

The contract of a clip dataset: item ``i`` is a ``Tensor [3,T,H,W]`` in [-1,1], frames in video order (a causal video
VAE needs smooth, ordered views). A dataset that knows captions also has ``caption(i) -> str | None``; read it with
:func:`caption_of`, which also sees through ``torch.utils.data.Subset``.

Sources: ``SCHEME:ARG`` where a plugin registers ``SCHEME`` (``register_data_sources``, e.g. ``synthetic:8`` from
vist3a_synth), or a folder of videos and/or image folders (:class:`FolderClips`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset

from vist3a.errors import InputError
from vist3a.io.video import VIDEO_SUFFIXES, count_frames, read_frames
from vist3a.plugins import SCHEME_PATTERN, get_plugins

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def open_clips(source: str, *, frames: int, size: tuple[int, int], step: int = 1, seed: int = 0) -> Dataset:
    """Clips of ``frames`` frames at ``size`` (H, W) from ``SCHEME:ARG`` (a registered data source) or a folder.

    A registered scheme gets ``open(ARG, frames=, size=, step=, seed=)``; an unknown scheme is an InputError listing
    the known ones, unless ``source`` is an existing path. Folders hold videos and/or image folders, one sequence each.
    """
    if frames < 1 or step < 1:
        raise InputError(f"frames and step must be positive, got {frames} and {step}")
    scheme, colon, arg = source.partition(":")
    if colon and SCHEME_PATTERN.match(scheme) and not Path(source).exists():
        sources = get_plugins().data_sources()
        if scheme not in sources:
            known = "; ".join(f"{name} ({r.spec.help})" for name, r in sorted(sources.items())) or "none"  # type: ignore[union-attr]
            raise InputError(f"unknown data source {source!r}: no plugin provides the scheme {scheme!r}; known: {known}")
        return sources[scheme].spec.open(arg, frames=frames, size=size, step=step, seed=seed)  # type: ignore[union-attr]
    return FolderClips(Path(source), frames, size, step)


def caption_of(dataset: Dataset, i: int) -> str | None:
    """The caption of clip ``i`` if ``dataset`` (or the dataset under a Subset) has ``caption(i)``, else None."""
    if isinstance(dataset, Subset):
        return caption_of(dataset.dataset, dataset.indices[i])
    caption = getattr(dataset, "caption", None)
    return caption(i) if callable(caption) else None


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
    """Non-overlapping windows of ``frames`` frames (every ``step``-th) from each video or image folder.

    Captions come from a sidecar text file: ``<video stem>.txt`` beside a video, ``caption.txt`` inside an image folder.
    """

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

    def caption(self, i: int) -> str | None:
        """The stripped text of clip ``i``'s sidecar caption file, or None without one."""
        sequence = self.windows[i].sequence
        path = sequence / "caption.txt" if sequence.is_dir() else sequence.with_suffix(".txt")
        return path.read_text(encoding="utf-8").strip() if path.is_file() else None


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
