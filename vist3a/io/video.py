"""Reading and writing videos (PyAV / FFmpeg)."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import torch
from torch import Tensor

from vist3a.errors import InputError
from vist3a.io.atomic import atomic_write_bytes, temporary_file

logger = logging.getLogger("vist3a")

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi"}


def count_frames(path: str | Path) -> int:
    """Number of frames in a video (from the container, or by decoding when it does not say)."""

    with _open(path) as container:
        stream = container.streams.video[0]
        return stream.frames or sum(1 for _ in container.decode(stream))


def read_frames(path: str | Path, indices: list[int]) -> Tensor:
    """The frames at sorted ``indices`` as uint8 ``[T,3,H,W]``."""
    wanted, found = set(indices), {}
    with _open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                found[i] = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
            if i >= max(indices):
                break
    if len(found) != len(wanted):
        raise InputError(f"{path}: has fewer than {max(indices) + 1} frames")
    return torch.stack([found[i] for i in indices])


def write_video(path: str | Path, frames: Tensor, fps: int = 8) -> Path:
    """Write frames ``[T,3,H,W]`` in [-1,1] (float) or uint8, atomically; returns the path written.

    ``.gif`` is written with Pillow; anything else as H.264 through PyAV (FFmpeg), falling back to a ``.gif``
    beside it (with a warning) when FFmpeg cannot encode here.
    """
    path = Path(path)
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise InputError(f"write_video: expected frames [T,3,H,W], got {list(frames.shape)}")
    if frames.is_floating_point():
        frames = ((frames.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    images = frames.permute(0, 2, 3, 1).cpu().numpy()
    if path.suffix.lower() == ".gif":
        return _write_gif(path, images, fps)
    try:
        return _write_mp4(path, images, fps)
    except (ImportError, OSError, ValueError) as exc:  # no FFmpeg build or encoder here
        gif = path.with_suffix(".gif")
        logger.warning("cannot encode %s (%s); writing %s instead", path.name, exc, gif.name)
        return _write_gif(gif, images, fps)


def _write_mp4(path: Path, images, fps: int) -> Path:
    import av

    images = images[:, : images.shape[1] // 2 * 2, : images.shape[2] // 2 * 2]  # yuv420p needs even sizes
    fd, tmp = temporary_file(path)
    os.close(fd)
    try:
        with av.open(tmp, mode="w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.height, stream.width = images.shape[1], images.shape[2]
            stream.pix_fmt = "yuv420p"
            for image in images:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _write_gif(path: Path, images, fps: int) -> Path:
    from PIL import Image

    buffer = io.BytesIO()
    first, *rest = (Image.fromarray(image) for image in images)
    first.save(buffer, format="GIF", save_all=True, append_images=rest, duration=round(1000 / fps), loop=0)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _open(path: str | Path):
    import av

    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"{path}: not a readable video: {exc}") from None
