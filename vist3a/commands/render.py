"""``vist3a render SCENE.ply``: a video of a 3DGS scene along an orbit or along given cameras."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from vist3a.commands.options import DeviceOpt, out, progress
from vist3a.errors import InputError
from vist3a.io.export import read_cameras_json, read_gaussians_ply
from vist3a.io.video import write_video
from vist3a.render import render as render_views
from vist3a.render.paths import orbit_cameras


def render(
    scene: Annotated[Path, typer.Argument(help="A 3DGS .ply (the standard layout, as vist3a exports it).")],
    video: Annotated[Path, typer.Option("--out", help="Output video: .mp4 (or .gif).")],
    cameras: Annotated[Path | None, typer.Option(help="Render along these cameras (transforms.json) instead of an orbit.")] = None,
    frames: Annotated[int, typer.Option(min=1, help="Orbit frames.")] = 60,
    size: Annotated[int, typer.Option(min=8, help="Orbit frame height and width.")] = 256,
    fps: Annotated[int, typer.Option(min=1)] = 12,
    backend: Annotated[str, typer.Option(help="auto, torch or gsplat.")] = "auto",
    device: DeviceOpt = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing video.")] = False,
) -> None:
    """Render SCENE.ply to a video, frame by frame."""
    if video.exists() and not overwrite:
        raise InputError(f"{video} already exists; pass --overwrite to replace it")
    if backend not in ("auto", "torch", "gsplat"):
        raise InputError(f"--backend must be auto, torch or gsplat, got {backend!r}")
    gaussians = read_gaussians_ply(scene).to(device)
    path = read_cameras_json(cameras) if cameras else orbit_cameras(gaussians, frames, (size, size))
    path = path.to(device)
    images = []
    with progress() as bar, torch.no_grad():
        for v in bar.track(range(path.extrinsics.shape[1]), description="render"):
            view = type(path)(path.extrinsics[:, v : v + 1], path.intrinsics[:, v : v + 1], path.image_size)
            images.append(render_views(gaussians, view, mode="RGB", backend=backend).frames()[0, :, 0])  # type: ignore[arg-type]
    written = write_video(video, torch.stack(images), fps=fps)
    out.print(f"Wrote {written} ({len(images)} frames)")
