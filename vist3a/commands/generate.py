"""``vist3a generate "PROMPT" --pair DIR``: text -> video -> 3D Gaussians, point maps, depth, cameras, renders."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated

import typer

from vist3a.commands.options import DeviceOpt, out, progress
from vist3a.config import DType
from vist3a.errors import InputError
from vist3a.pipeline import STAGES, Vist3aPipeline, export, load_lora
from vist3a.prompts import apply_template, load_prompts
from vist3a.stitch.workspace import parse_size


def generate(
    prompt: Annotated[str | None, typer.Argument(help="What to generate.", show_default=False)] = None,
    pair: Annotated[str | None, typer.Option(help="A pairing workspace folder (vist3a pair + stitch) or a registry pairing id (default: the registry's default pairing).", show_default=False)] = None,
    prompts: Annotated[Path | None, typer.Option(help="A text file with one prompt per line.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="New output folder (default: a new one under outputs/).")] = None,
    frames: Annotated[int | None, typer.Option(min=1, help="Video frames (default: the pairing's).")] = None,
    resolution: Annotated[str | None, typer.Option(help="Video size N or HxW (default: the pairing's).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Sampling steps (default: the pairing's, else 50).", show_default=False)] = None,
    guidance: Annotated[float | None, typer.Option(min=0.0, help="CFG scale (default: the pairing's, else 5).", show_default=False)] = None,
    seed: int = 0,
    negative_prompt: Annotated[str | None, typer.Option(show_default=False)] = None,
    template: Annotated[str | None, typer.Option(help="orbit (the paper's), none, or a text with {prompt} (default: the pairing's, else orbit).", show_default=False)] = None,
    render_frames: Annotated[int, typer.Option(min=1, help="Frames of the orbit render.")] = 60,
    dtype: Annotated[str, typer.Option(help="float32, float16 or bfloat16.")] = "float32",
    device: DeviceOpt = "auto",
    cpu_offload: Annotated[bool, typer.Option(help="Keep the generator's models on the CPU between uses.")] = False,
    lora: Annotated[str | None, typer.Option(help="A PEFT adapter for the denoiser (e.g. from vist3a align).")] = None,
) -> None:
    """Generate 3D scenes from text with a stitched pairing; each prompt gets a new folder of outputs."""
    texts = _prompts(prompt, prompts)
    if template is not None:
        apply_template(template, texts[0])  # a bad template fails before any model loads
    if dtype not in DType.__args__:  # type: ignore[attr-defined]
        raise InputError(f"--dtype must be one of {', '.join(DType.__args__)}, got {dtype!r}")  # type: ignore[attr-defined]
    root = out_dir or _new_folder(Path("outputs"), texts[0])
    if root.exists():
        raise InputError(f"{root} already exists; generate never overwrites a folder")
    extra = {"cpu_offload": True} if cpu_offload else {}
    pipeline = Vist3aPipeline.from_pair(pair, device=device, dtype=dtype, **extra)
    if lora:
        load_lora(pipeline.generator, lora)
    options = pipeline.options(frames=frames, resolution=parse_size(resolution) if resolution else None, steps=steps,
                               guidance=guidance, seed=seed, negative_prompt=negative_prompt, template=template)  # fmt: skip
    run = {**pipeline.source, "options": options.model_dump(mode="json"), "device": device, "dtype": dtype, "lora": lora}
    with progress() as bar:
        for i, text in enumerate(texts):
            folder = root if len(texts) == 1 else root / f"{i:03d}-{_slug(text)}"
            label = f"[{i + 1}/{len(texts)}]"
            task = bar.add_task(label, total=len(STAGES))

            def stage(name: str, task: int = task, label: str = label) -> None:
                bar.update(task, completed=STAGES.index(name), description=f"{label} {name}")

            generation = pipeline(text, options, stage)
            files = export(generation, folder, run, render_frames=render_frames, stage=stage)
            bar.update(task, completed=len(STAGES))
            out.print(f"{text!r} -> {folder}: {', '.join(files.values())}")


def _prompts(prompt: str | None, path: Path | None) -> list[str]:
    if (prompt is None) == (path is None):
        raise InputError("give either a PROMPT or --prompts FILE")
    return [prompt] if path is None else load_prompts(path)  # type: ignore[list-item]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "prompt"


def _new_folder(parent: Path, text: str) -> Path:
    """``parent/<time>-<slug>``, numbered if that exists already."""
    base = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(text)}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder
