"""Direct reward finetuning (VIST3A section 3.2): LoRA on the denoiser, truncated-gradient rollouts, rewards on the
decoded video and on the stitched decoder's 3D output, an optional denoising loss on captioned clips, an EMA of the
LoRA, and an exactly resumable loop that runs data parallel (DDP) or sharded (FSDP) over processes."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from vist3a import distributed
from vist3a.align.ema import EMA
from vist3a.align.lora import LoraOptions, attach_lora, lora_state, save_lora, trainable
from vist3a.align.prompts import PromptSampler
from vist3a.align.rollout import RolloutConfig, plan_rollout, rollout
from vist3a.config import StrictModel
from vist3a.errors import InputError
from vist3a.io.atomic import atomic_write_text
from vist3a.io.checkpoint import read_state, restore_training, training_tensors, write_state
from vist3a.io.clips import caption_of, resize_frames
from vist3a.io.plots import plot_curves
from vist3a.pipeline import Vist3aPipeline
from vist3a.protocols import Generator, Reward, TrainableGenerator

STATE_FILE, LORA_DIR, EMA_DIR = "align_state.safetensors", "lora", "lora_ema"
HISTORY_FILE, CURVES_FILE = "history.jsonl", "curves.png"
DATA_LOSS = "data"
"""The history key of the denoising loss on captioned clips."""
RESUMABLE_CHANGES = {"steps", "checkpoint_every", "parallel"}
"""Settings a resumed run may change."""


class AlignConfig(StrictModel):
    """Optimisation settings (the paper: AdamW lr 1e-4, LoRA r8/alpha16, EMA 0.99; the code: betas (0.9, 0.95))."""

    steps: int = 1000
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    batch_size: int = 1
    ema_decay: float = 0.99
    checkpoint_every: int = 50
    seed: int = 0
    data_weight: float = 0.0
    """Weight of the generator's own denoising loss (e.g. flow matching) on captioned clips."""
    parallel: Literal["ddp", "fsdp"] = "ddp"
    """With several processes: replicate the denoiser and average gradients, or shard it with FSDP."""
    rollout: RolloutConfig = RolloutConfig()
    lora: LoraOptions = LoraOptions()


@dataclass
class AlignState:
    """Progress a resumed run continues from."""

    step: int = 0
    skipped: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def align(
    pipeline: Vist3aPipeline,
    rewards: Mapping[str, tuple[Reward, float]],
    prompts: PromptSampler,
    config: AlignConfig,
    directory: Path,
    *,
    data: Dataset | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> AlignState:
    """Minimise ``data_weight * denoising loss - sum(weight * reward)``; saves ``lora/`` and ``lora_ema/`` (PEFT),
    ``history.jsonl`` and ``curves.png`` in ``directory``.

    The stitched decoder and the VAE stay frozen; a step whose loss is not finite is skipped and counted. When
    ``torch.distributed`` is initialised, each process rolls out its own prompts and noise (the rollout plan is shared,
    so that sharded runs stay in step) and the gradients are averaged.
    """
    _check_inputs(pipeline, rewards, config, data)
    pipeline.stitched.eval().requires_grad_(False)
    denoiser = pipeline.generator.trainable()
    with torch.random.fork_rng():  # the LoRA's initial weights follow the run's seed
        torch.manual_seed(config.seed)
        attach_lora(denoiser, config.lora)
    sharded = config.parallel == "fsdp" and distributed.world_size() > 1
    if sharded:
        distributed.shard(denoiser)
    params = trainable(denoiser)
    ema = EMA(params, config.ema_decay)
    optimizer = torch.optim.AdamW(params.values(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    directory.mkdir(parents=True, exist_ok=True)
    state = _load(directory / STATE_FILE, params, optimizer, ema, config) if (directory / STATE_FILE).exists() else AlignState()
    while state.step < config.steps:
        losses = _losses(pipeline, rewards, prompts, data, config, state.step)
        total = _total(losses, rewards, config)
        optimizer.zero_grad(set_to_none=True)
        if _all_finite(total):
            total.backward()
            if not sharded:
                _average_gradients(params.values(), distributed.world_size())
            torch.nn.utils.clip_grad_norm_(params.values(), config.grad_clip)
            optimizer.step()
            ema.update(params)
        else:
            state.skipped += 1
        record = {"loss": total.item(), **{name: value.item() for name, value in losses.items()}}
        state.history.append(record)
        state.step += 1
        if state.step % config.checkpoint_every == 0 or state.step == config.steps:
            _save(directory, state, params, optimizer, ema, config, denoiser)
        if on_step is not None:
            on_step(state.step, record)
    return state


def enable_gradient_checkpointing(generator: Generator, *, decode: bool = True) -> None:
    """Recompute the denoiser's blocks (and, with ``decode``, the VAE decode) in the backward pass: less memory for
    more time. The denoiser must support diffusers' ``enable_gradient_checkpointing``."""
    denoiser = generator.trainable()  # type: ignore[attr-defined]
    if not hasattr(denoiser, "enable_gradient_checkpointing"):
        raise InputError(f"{generator.name}'s denoiser does not support gradient checkpointing")
    denoiser.enable_gradient_checkpointing()
    if decode and hasattr(generator, "set_decode_checkpointing"):
        generator.set_decode_checkpointing(True)


def _check_inputs(pipeline: Vist3aPipeline, rewards: Mapping[str, tuple[Reward, float]], config: AlignConfig,
                  data: Dataset | None) -> None:  # fmt: skip
    if not rewards and not config.data_weight:
        raise InputError("alignment needs at least one reward or a positive data weight")
    if not config.data_weight:
        return
    if data is None or len(data) == 0:  # type: ignore[arg-type]
        raise InputError("a positive data weight needs captioned clips (--data)")
    if caption_of(data, 0) is None:
        raise InputError("the data clips have no captions (put a .txt caption beside each video, or caption.txt in each image folder)")
    if not isinstance(pipeline.generator, TrainableGenerator):
        raise InputError(f"{pipeline.generator.name} has no training_loss(); set the data weight to 0")


def _total(losses: Mapping[str, Tensor], rewards: Mapping[str, tuple[Reward, float]], config: AlignConfig) -> Tensor:
    terms = [-weight * losses[name] for name, (_, weight) in rewards.items()]
    if config.data_weight:
        terms.append(config.data_weight * losses[DATA_LOSS])
    return torch.stack(terms).sum()


def _seed(config: AlignConfig, *parts: int) -> torch.Generator:
    """A generator seeded by the run's seed and ``parts`` (step, stream), the same on every resume."""
    value = config.seed
    for part in parts:
        value = value * 1_000_003 + part
    return torch.Generator().manual_seed(value)


def _all_finite(loss: Tensor) -> bool:
    """Whether the loss is finite in every process (all skip a step together, so their weights stay equal)."""
    finite = torch.isfinite(loss.detach()).float()
    if distributed.world_size() > 1:
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
    return bool(finite)


def _average_gradients(parameters, world: int) -> None:
    """Data parallelism by hand: every process steps with the mean of all processes' gradients."""
    if world == 1:
        return
    for parameter in parameters:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        torch.distributed.all_reduce(parameter.grad)
        parameter.grad /= world


def _losses(pipeline: Vist3aPipeline, rewards: Mapping[str, tuple[Reward, float]], prompts: PromptSampler,
            data: Dataset | None, config: AlignConfig, step: int) -> dict[str, Tensor]:  # fmt: skip
    """Each reward's mean over one rollout and, with a data weight, the denoising loss on drawn clips.

    The rollout plan depends on the step alone; prompts, noise and clips differ between processes.
    """
    rank, world = distributed.rank(), distributed.world_size()
    own = _seed(config, step, 1 + rank)
    texts = prompts.batch(step * world + rank, config.batch_size)
    plan = plan_rollout(config.rollout, _seed(config, step, 0))
    height, width = pipeline.resolution
    latents = rollout(pipeline.generator, texts, plan, num_frames=pipeline.frames, height=height, width=width,
                      negative_prompt=config.rollout.negative_prompt, noise=own)  # fmt: skip
    frames = pipeline.generator.decode(latents).float()
    decoded = pipeline.stitched(latents, resize_frames(frames, pipeline.stitched.config.decoder_resolution))
    losses = {name: reward(prompts=texts, frames=frames, decoded=decoded).mean() for name, (reward, _) in rewards.items()}
    if config.data_weight:
        losses[DATA_LOSS] = _data_loss(pipeline, data, config.batch_size, own)
    return losses


def _data_loss(pipeline: Vist3aPipeline, data: Dataset, batch: int, seed: torch.Generator) -> Tensor:
    """The generator's denoising loss on ``batch`` clips drawn from ``data`` with their captions."""
    indices = torch.randint(len(data), (batch,), generator=seed).tolist()  # type: ignore[arg-type]
    clips = torch.stack([data[i] for i in indices])
    with torch.no_grad():
        latents = pipeline.generator.encode(clips)
    captions = [caption_of(data, i) or "" for i in indices]
    return pipeline.generator.training_loss(latents, captions, generator=seed)  # type: ignore[attr-defined]


def _save(directory: Path, state: AlignState, params: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer,
          ema: EMA, config: AlignConfig, denoiser: torch.nn.Module) -> None:  # fmt: skip
    """Gather the (possibly sharded) training state in every process; the main process writes it."""
    tensors = training_tensors(params, optimizer) | ema.checkpoint_tensors()
    tensors, lora, averaged = distributed.full_tensors(tensors), lora_state(denoiser), lora_state(denoiser, ema)
    if distributed.is_main():
        meta = {"step": str(state.step), "skipped": str(state.skipped), "history": json.dumps(state.history),
                "config": config.model_dump_json(exclude=RESUMABLE_CHANGES)}  # fmt: skip
        save_lora(denoiser, directory / LORA_DIR, lora, overwrite=True)
        save_lora(denoiser, directory / EMA_DIR, averaged, overwrite=True)
        atomic_write_text(directory / HISTORY_FILE, "".join(json.dumps({"step": i + 1, **r}) + "\n" for i, r in enumerate(state.history)))
        plot_curves(state.history, directory / CURVES_FILE)
        write_state(directory / STATE_FILE, tensors, meta)
    distributed.barrier()


def _load(path: Path, params: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer, ema: EMA,
          config: AlignConfig) -> AlignState:  # fmt: skip
    tensors, meta = read_state(path, "alignment state")
    if meta.get("config") != config.model_dump_json(exclude=RESUMABLE_CHANGES):
        raise InputError(f"{path}: saved with other settings; delete it to start over")
    restore_training(tensors, params, optimizer, path)
    ema.load_checkpoint_tensors(tensors)
    return AlignState(int(meta["step"]), int(meta["skipped"]), json.loads(meta["history"]))
