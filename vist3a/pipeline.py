"""Text -> video latents -> stitched decoder -> 3D, for any stitched pairing (``Vist3aPipeline``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vist3a import __version__
from vist3a.config import StrictModel
from vist3a.errors import InputError
from vist3a.io.atomic import atomic_write_text
from vist3a.io.clips import resize_frames
from vist3a.io.export import depth_to_npz, pointmaps_to_ply, write_cameras_json, write_gaussians_ply
from vist3a.io.video import write_video
from vist3a.prompts import apply_template
from vist3a.protocols import Generator
from vist3a.registry import Registry, SamplingDefaults, resolve_location
from vist3a.render import render
from vist3a.render.paths import orbit_cameras
from vist3a.scene import Cameras, Decoded3D, Gaussians, PointMaps
from vist3a.stitch.stitched import StitchedDecoder
from vist3a.stitch.workspace import PairWorkspace

Progress = Callable[[str], None]
STAGES = ("sample", "decode video", "decode 3D", "render orbit")
"""The stages a generation reports, in order."""


class GenerateOptions(StrictModel):
    """Sampling options of one generation (recorded in run.json)."""

    negative_prompt: str = ""
    template: str = "orbit"
    """A name in ``vist3a.prompts.TEMPLATES`` or a text with ``{prompt}``."""
    frames: int
    resolution: tuple[int, int]
    steps: int = 50
    guidance: float = 5.0
    seed: int = 0


@dataclass
class Generation:
    """One prompt's results: RAW latents ``[1,C,T',h,w]``, the decoded video ``[1,3,T,H,W]`` in [-1,1] and the 3D."""

    prompt: str
    text: str
    latents: Tensor
    frames: Tensor
    decoded: Decoded3D


class Vist3aPipeline:
    """A generator and a stitched decoder: ``pipeline(prompt, options) -> Generation``.

    ``frames`` and ``resolution`` are the pairing's defaults; ``source`` describes where both came from (run.json).
    """

    def __init__(self, generator: Generator, stitched: StitchedDecoder, *, frames: int, resolution: tuple[int, int],
                 source: dict[str, Any], sampling: SamplingDefaults | None = None) -> None:  # fmt: skip
        self.generator, self.stitched = generator, stitched
        self.frames, self.resolution, self.source = frames, resolution, source
        self.sampling = sampling or SamplingDefaults()

    @classmethod
    def from_pair(cls, pair: str | Path | None, *, device: str = "cpu", dtype: str = "float32",
                  registry: Registry | None = None, **generator_options: Any) -> Vist3aPipeline:  # fmt: skip
        """A pairing workspace folder (``vist3a pair`` + ``vist3a stitch``), a registry pairing id, or (None) the
        registry's default pairing."""
        if pair is not None and Path(pair).is_dir():
            return cls.from_workspace(pair, device=device, dtype=dtype, **generator_options)
        registry = registry or Registry.load()
        if pair is None:
            if registry.default_pairing is None:
                raise InputError("no --pair given and the registry names no default_pairing")
            pair = registry.default_pairing
        if str(pair) not in registry.pairings:
            raise InputError(f"--pair {pair}: neither a pairing workspace folder nor a registry pairing id")
        return cls.from_registry(str(pair), registry, device=device, dtype=dtype, **generator_options)

    @classmethod
    def from_workspace(cls, directory: str | Path, *, device: str = "cpu", dtype: str = "float32",
                       **generator_options: Any) -> Vist3aPipeline:  # fmt: skip
        """The pairing workspace's generator and its ``stitched/`` decoder (from ``vist3a stitch``)."""
        import vist3a

        directory = Path(directory)
        workspace = PairWorkspace.load(directory)
        stitched_dir = directory / "stitched"
        if not stitched_dir.is_dir():
            raise InputError(f"{stitched_dir}: no stitched decoder; run `vist3a stitch --pair {directory}` first")
        ref = workspace.generator
        generator = vist3a.load_generator(ref.id, ref.checkpoint, device=device, dtype=dtype, **generator_options)
        stitched = StitchedDecoder.from_pretrained(stitched_dir, device=device)
        source = {"pair": str(directory), "generator": ref.model_dump(), "stitched": str(stitched_dir)}
        return cls(generator, stitched, frames=workspace.frames, resolution=workspace.generator_resolution, source=source)

    @classmethod
    def from_registry(cls, pairing: str, registry: Registry, *, device: str = "cpu", dtype: str = "float32",
                      **generator_options: Any) -> Vist3aPipeline:  # fmt: skip
        """A registry pairing: its generator (with its LoRA, if any) and its ``stitched_checkpoint`` folder."""
        import vist3a

        entry = registry.pairings[pairing]
        if not entry.stitched_checkpoint:
            raise InputError(
                f"pairing {pairing} has no stitched decoder yet: build one with `vist3a pair`, `sweep-layers` and "
                "`stitch`, or set its stitched_checkpoint (e.g. a converted official release) in a user registry"
            )
        generator = vist3a.load_generator(entry.generator, registry=registry, device=device, dtype=dtype, **generator_options)
        if entry.generator_lora:
            load_lora(generator, resolve_location(entry.generator_lora))
        stitched = StitchedDecoder.from_pretrained(resolve_location(entry.stitched_checkpoint), device=device)
        source = {"pair": pairing, "generator": entry.generator, "generator_lora": entry.generator_lora,
                  "stitched": entry.stitched_checkpoint}  # fmt: skip
        return cls(generator, stitched, frames=entry.frames, resolution=entry.generator_resolution, source=source,
                   sampling=entry.sampling)  # fmt: skip

    def options(self, **values: Any) -> GenerateOptions:
        """Options with the pairing's frame count, resolution and sampling defaults where ``values`` has None."""
        defaults = {"frames": self.frames, "resolution": self.resolution, **self.sampling.model_dump(exclude_none=True)}
        return GenerateOptions(**{**defaults, **{k: v for k, v in values.items() if v is not None}})

    @torch.no_grad()
    def __call__(self, prompt: str, options: GenerateOptions, stage: Progress | None = None) -> Generation:
        stage = stage or (lambda name: None)
        text = apply_template(options.template, prompt)
        stage("sample")
        seed = torch.Generator().manual_seed(options.seed)
        latents = self.generator.sample(
            [text], num_frames=options.frames, height=options.resolution[0], width=options.resolution[1],
            steps=options.steps, guidance=options.guidance, negative_prompt=options.negative_prompt, generator=seed,
        )  # fmt: skip
        stage("decode video")
        frames = self.generator.decode(latents).float().clamp(-1, 1)
        stage("decode 3D")
        decoder_frames = resize_frames(frames, self.stitched.config.decoder_resolution)
        decoded = self.stitched(latents.to(next(self.stitched.parameters()).dtype), decoder_frames)
        return Generation(prompt, text, latents, frames, decoded.detach())


def export(generation: Generation, directory: Path, run: dict[str, Any], *, render_frames: int = 60,
           fps: int = 12, stage: Progress | None = None) -> dict[str, str]:  # fmt: skip
    """Write a generation into the new folder ``directory``; returns the files written by kind.

    ``video.mp4`` (the generated video), ``scene.ply`` (3DGS, when the decoder predicts Gaussians), ``points.ply``,
    ``depth.npz``, ``cameras.json`` (nerfstudio convention), ``orbit.mp4`` (a render of the scene, or of the point
    cloud as small Gaussians) and ``run.json`` (prompt, options, files).
    """
    stage = stage or (lambda name: None)
    if directory.exists():
        raise InputError(f"{directory} already exists; generate never overwrites a folder")
    directory.mkdir(parents=True)
    decoded, files = generation.decoded.to("cpu", torch.float32), {}
    files["video"] = write_video(directory / "video.mp4", generation.frames[0].transpose(0, 1), fps=fps)
    colors = resize_frames(generation.frames, _size(decoded)).float().cpu()
    colors = ((colors + 1) / 2).permute(0, 2, 3, 4, 1)  # [B,V,H,W,3] in [0,1]
    if decoded.gaussians is not None:
        files["scene"] = write_gaussians_ply(directory / "scene.ply", decoded.gaussians)
    if decoded.points is not None:
        files["points"] = pointmaps_to_ply(directory / "points.ply", decoded, colors)
        if decoded.points.depth is not None:
            files["depth"] = depth_to_npz(directory / "depth.npz", decoded)
    if decoded.cameras is not None:
        files["cameras"] = write_cameras_json(directory / "cameras.json", decoded.cameras)
    stage("render orbit")
    scene = decoded.gaussians if decoded.gaussians is not None else points_as_gaussians(decoded.points, colors)
    if scene is not None:
        files["orbit"] = write_video(directory / "orbit.mp4", render_orbit(scene, render_frames, _size(decoded)), fps=fps)
    names = {kind: Path(path).name for kind, path in files.items()}
    record = {**run, "prompt": generation.prompt, "text": generation.text, "files": names,
              "vist3a_version": __version__, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
    atomic_write_text(directory / "run.json", json.dumps(record, indent=2, default=str) + "\n")
    return {**names, "run": "run.json"}


def load_lora(generator: Generator, source: str) -> None:
    """Attach a PEFT adapter (a folder, hub id or ``repo:subfolder``) to a generator that supports it."""
    load = getattr(generator, "load_lora", None)
    if load is None:
        raise InputError(f"{generator.name} cannot load a LoRA adapter")
    load(source)


def render_orbit(scene: Gaussians, frames: int, size: tuple[int, int]) -> Tensor:
    """``frames`` orbit views of the first scene as ``[frames,3,H,W]`` in [-1,1]."""
    cameras = orbit_cameras(scene, frames, size)
    views = []
    for v in range(frames):
        view = Cameras(cameras.extrinsics[:, v : v + 1], cameras.intrinsics[:, v : v + 1], size)
        views.append(render(scene, view, mode="RGB").frames()[0, :, 0])
    return torch.stack(views)


def points_as_gaussians(points: PointMaps | None, colors: Tensor, scale: float = 0.004) -> Gaussians | None:
    """Point maps ``[B,V,H,W,3]`` as small isotropic Gaussians coloured ``[B,V,H,W,3]`` in [0,1] (for rendering)."""
    if points is None:
        return None
    xyz = points.points.reshape(points.points.shape[0], -1, 3)
    keep = torch.isfinite(xyz).all(-1)[0]
    xyz, rgb = xyz[:, keep], colors.reshape(colors.shape[0], -1, 3)[:, keep]
    spread = (xyz - xyz.mean(1, keepdim=True)).norm(dim=-1).median()
    n = xyz.shape[1]
    sh = ((rgb - 0.5) / 0.28209479177387814)[:, :, None]  # degree-0 SH giving ``rgb``
    return Gaussians(xyz, torch.full((1, n, 3), float(spread) * scale), torch.tensor([1.0, 0, 0, 0]).expand(1, n, 4),
                     torch.full((1, n), 0.9), sh)  # fmt: skip


def _size(decoded: Decoded3D) -> tuple[int, int]:
    if decoded.cameras is not None:
        return decoded.cameras.image_size
    if decoded.points is not None:
        return tuple(decoded.points.points.shape[2:4])  # type: ignore[return-value]
    raise InputError("the stitched decoder returned neither cameras nor point maps")
