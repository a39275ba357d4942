"""Preview files for a few scenes of a split: video, depth strip, cameras and caption per scene, one contact sheet."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import Tensor

from vist3a.errors import InputError
from vist3a.io.atomic import atomic_write_bytes, atomic_write_text
from vist3a.io.export import write_cameras_json
from vist3a.io.video import write_video
from vist3a_synth.data import SynthClips, SynthSample
from vist3a_synth.world import Split

CONTACT_SHEET = "contact_sheet.png"
CAPTION_ROW = 14  # pixels of caption text above each row of the contact sheet


def write_preview(out: Path, split: Split, count: int, frames: int, size: int, seed: int = 0) -> list[Path]:
    """Write ``out/scene_XXX/{video.mp4, depth.png, cameras.json, caption.txt}`` and ``out/contact_sheet.png``;
    returns the scene folders."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    clips = SynthClips(count, frames, (size, size), seed, split)
    samples = [clips.sample(i) for i in range(count)]
    folders = [_write_scene(out / f"scene_{i:03d}", sample) for i, sample in enumerate(samples)]
    _save_png(out / CONTACT_SHEET, _contact_sheet(samples))
    return folders


def _write_scene(folder: Path, sample: SynthSample) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_video(folder / "video.mp4", sample.frames.transpose(0, 1))
    _save_png(folder / "depth.png", Image.fromarray(_depth_strip(sample.depth).numpy(), mode="L"))
    write_cameras_json(folder / "cameras.json", sample.cameras)
    atomic_write_text(folder / "caption.txt", sample.caption + "\n")
    return folder


def _depth_strip(depth: Tensor) -> Tensor:
    """``[T,H,W]`` depth -> uint8 ``[H,T*W]``: inverse depth scaled to the clip's range (near is bright, sky black)."""
    valid = depth > 0
    inverse = torch.where(valid, 1 / depth.clamp_min(1e-6), torch.inf)
    lo, hi = inverse.min(), torch.where(valid, inverse, 0).max()
    grey = torch.where(valid, 40 + 215 * (inverse - lo) / (hi - lo).clamp_min(1e-6), 0)
    return grey.round().to(torch.uint8).permute(1, 0, 2).flatten(1)


def _contact_sheet(samples: list[SynthSample]) -> Image.Image:
    """One row per scene (its frames left to right) under its caption."""
    _, t, h, w = samples[0].frames.shape
    sheet = Image.new("RGB", (t * w, len(samples) * (h + CAPTION_ROW)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, sample in enumerate(samples):
        top = row * (h + CAPTION_ROW)
        draw.text((2, top + 1), sample.caption, fill="black")
        strip = ((sample.frames + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(2, 1, 3, 0).flatten(1, 2)
        sheet.paste(Image.fromarray(strip.numpy()), (0, top + CAPTION_ROW))
    return sheet


def _save_png(path: Path, image: Image.Image) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
