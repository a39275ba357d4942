"""``vist3a align``: reward finetuning of a pairing's generator (LoRA + EMA), resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

import vist3a
from vist3a import distributed
from vist3a.align.lora import LoraOptions
from vist3a.align.prompts import PromptSampler
from vist3a.align.rollout import RolloutConfig
from vist3a.align.trainer import CURVES_FILE, STATE_FILE, AlignConfig, enable_gradient_checkpointing
from vist3a.align.trainer import align as run_align
from vist3a.commands.options import DeviceOpt, out, progress
from vist3a.config import validate
from vist3a.errors import InputError
from vist3a.io.clips import open_clips
from vist3a.pipeline import Vist3aPipeline
from vist3a.prompts import CAMERA_TEMPLATES, load_prompts


def align(
    prompts: Annotated[Path, typer.Option(help="Training prompts, one per line.", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder; rerunning the same command resumes it.", show_default=False)],
    reward: Annotated[list[str], typer.Option(help="NAME=WEIGHT, repeatable (the paper: quality=0.0625, consistency=0.05).", show_default=False)] = [],  # noqa: B006
    pair: Annotated[str, typer.Option(help="A pairing workspace folder or a registry pairing id.")] = ".",
    steps: Annotated[int, typer.Option(min=1)] = 1000,
    lr: Annotated[float, typer.Option(min=0.0)] = 1e-4,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per step.")] = 1,
    lora_rank: Annotated[int, typer.Option(min=1)] = 8,
    lora_alpha: Annotated[float, typer.Option(min=0.0)] = 16.0,
    min_steps: Annotated[int, typer.Option(min=1, help="Fewest sampling steps per rollout.")] = 10,
    max_steps: Annotated[int, typer.Option(min=1, help="Most sampling steps per rollout.")] = 50,
    grad_steps: Annotated[int, typer.Option(min=0, help="Random rollout steps with gradients, plus the last.")] = 2,
    checkpoint_every: Annotated[int, typer.Option(min=1)] = 50,
    seed: int = 0,
    reward_option: Annotated[list[str], typer.Option(help="NAME.KEY=VALUE, repeatable: a reward's config value, e.g. consistency.lpips_weight=0.", show_default=False)] = [],  # noqa: B006
    template: Annotated[list[str], typer.Option(help="Prompt template, repeatable: a name (orbit, none) or a text with {prompt} (default: the camera-motion templates).", show_default=False)] = [],  # noqa: B006
    data: Annotated[str | None, typer.Option(help="Captioned clips for the denoising loss: a folder (a .txt caption beside each video) or SCHEME:ARG such as synthetic:64.", show_default=False)] = None,
    data_weight: Annotated[float, typer.Option(min=0.0, help="Weight of the generator's own denoising loss on --data.")] = 0.0,
    fsdp: Annotated[bool, typer.Option(help="Under torchrun/accelerate: shard the denoiser (FSDP) instead of replicating it.")] = False,
    gradient_checkpointing: Annotated[bool, typer.Option(help="Recompute the denoiser's blocks and the VAE decode in the backward pass (less memory).")] = False,
    device: DeviceOpt = "auto",
    dtype: Annotated[str, typer.Option(help="float32, float16 or bfloat16.")] = "float32",
) -> None:
    """Finetune the generator so its 3D outputs score higher; saves OUT/lora and OUT/lora_ema (PEFT)."""
    weights = _weights(reward)
    if out_dir.exists() and not (out_dir / STATE_FILE).exists():
        raise InputError(f"{out_dir} exists and is not an alignment run; choose a new folder")
    config = validate(AlignConfig, {
        "steps": steps, "lr": lr, "batch_size": batch_size, "checkpoint_every": checkpoint_every, "seed": seed,
        "data_weight": data_weight, "parallel": "fsdp" if fsdp else "ddp",
        "lora": LoraOptions(rank=lora_rank, alpha=lora_alpha),
        "rollout": validate(RolloutConfig, {"min_steps": min_steps, "max_steps": max_steps, "grad_steps": grad_steps}, "rollout options"),
    }, "align options")  # fmt: skip
    sampler = PromptSampler(load_prompts(prompts), templates=template or CAMERA_TEMPLATES, seed=seed)
    _, _, device = distributed.setup(device)
    options = _reward_options(reward_option, weights)
    rewards = {name: (vist3a.load_reward(name, device=device, **options.get(name, {})), weight) for name, weight in weights.items()}
    pipeline = Vist3aPipeline.from_pair(pair, device=device, dtype=dtype)
    if gradient_checkpointing:
        enable_gradient_checkpointing(pipeline.generator)
    clips = None if data is None else open_clips(data, frames=pipeline.frames, size=pipeline.resolution, seed=seed)
    with progress() as bar:
        task = bar.add_task("align", total=steps)
        state = run_align(pipeline, rewards, sampler, config, out_dir, data=clips,
                          on_step=lambda step, record: bar.update(task, completed=step, description=f"align loss {record['loss']:.4g}"))  # fmt: skip
    if not distributed.is_main():
        return
    final = state.history[-1]["loss"] if state.history else float("nan")
    out.print(f"Aligned for {state.step} steps (final loss {final:.4g}, {state.skipped} non-finite steps skipped); "
              f"LoRA in {out_dir / 'lora'}, EMA in {out_dir / 'lora_ema'}, curves in {out_dir / CURVES_FILE}")  # fmt: skip


def _weights(values: list[str]) -> dict[str, float]:
    weights = {}
    for value in values:
        name, sep, weight = value.partition("=")
        try:
            weights[name.strip()] = float(weight)
        except ValueError:
            raise InputError(f"--reward {value!r}: expected NAME=WEIGHT, e.g. consistency=0.05") from None
        if not sep or not name.strip():
            raise InputError(f"--reward {value!r}: expected NAME=WEIGHT, e.g. consistency=0.05")
    return weights


def _reward_options(values: list[str], weights: dict[str, float]) -> dict[str, dict[str, Any]]:
    """``NAME.KEY=VALUE`` strings -> ``{name: {key: value}}``; values are YAML scalars (``0``, ``true``, ``alex``)."""
    options: dict[str, dict[str, Any]] = {}
    for value in values:
        target, sep, raw = value.partition("=")
        name, dot, key = target.strip().partition(".")
        if not sep or not dot or not key:
            raise InputError(f"--reward-option {value!r}: expected NAME.KEY=VALUE, e.g. consistency.lpips_weight=0")
        if name not in weights:
            raise InputError(f"--reward-option {value!r}: {name!r} is not one of the --reward names ({', '.join(weights) or 'none'})")
        try:
            options.setdefault(name, {})[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise InputError(f"--reward-option {value!r}: the value is not a YAML scalar") from None
    return options
