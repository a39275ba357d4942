"""Direct reward finetuning (VIST3A section 3.2): LoRA on the denoiser, truncated-gradient rollouts, rewards on the
decoded video and on the stitched decoder's 3D output, an EMA of the LoRA, and an exactly resumable loop."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from vist3a import distributed
from vist3a.align.ema import EMA
from vist3a.align.lora import LoraOptions, attach_lora, save_lora
from vist3a.align.prompts import PromptSampler
from vist3a.align.rollout import RolloutConfig, plan_rollout, rollout
from vist3a.config import StrictModel
from vist3a.errors import InputError
from vist3a.io.checkpoint import read_state, restore_training, training_tensors, write_state
from vist3a.io.clips import resize_frames
from vist3a.pipeline import Vist3aPipeline
from vist3a.protocols import Reward

STATE_FILE, LORA_DIR, EMA_DIR = "align_state.safetensors", "lora", "lora_ema"
RESUMABLE_CHANGES = {"steps", "checkpoint_every"}
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
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> AlignState:
    """Maximise ``sum(weight * reward)`` over rollouts; saves ``lora/`` and ``lora_ema/`` (PEFT) in ``directory``.

    The stitched decoder and the VAE stay frozen; a step whose loss is not finite is skipped and counted. When
    ``torch.distributed`` is initialised, each process rolls out its own prompts and the gradients are averaged.
    """
    if not rewards:
        raise InputError("alignment needs at least one reward")
    rank, world = distributed.rank(), distributed.world_size()  # under torchrun: data parallel, one process a device
    pipeline.stitched.eval().requires_grad_(False)
    denoiser = pipeline.generator.trainable()
    with torch.random.fork_rng():  # the LoRA's initial weights follow the run's seed
        torch.manual_seed(config.seed)
        params = attach_lora(denoiser, config.lora)
    ema = EMA(params, config.ema_decay)
    optimizer = torch.optim.AdamW(params.values(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    directory.mkdir(parents=True, exist_ok=True)
    state = _load(directory / STATE_FILE, params, optimizer, ema, config) if (directory / STATE_FILE).exists() else AlignState()
    while state.step < config.steps:
        texts = prompts.batch(state.step * world + rank, config.batch_size)  # each process its own prompts and noise
        losses = _rewards(pipeline, rewards, texts, config, state.step * world + rank)
        total = -torch.stack([weight * losses[name] for name, (_, weight) in rewards.items()]).sum()
        optimizer.zero_grad(set_to_none=True)
        if _all_finite(total):
            total.backward()
            _average_gradients(params.values(), world)
            torch.nn.utils.clip_grad_norm_(params.values(), config.grad_clip)
            optimizer.step()
            ema.update(params)
        else:
            state.skipped += 1
        record = {"loss": total.item(), **{name: value.item() for name, value in losses.items()}}
        state.history.append(record)
        state.step += 1
        if (state.step % config.checkpoint_every == 0 or state.step == config.steps) and distributed.is_main():
            _save(directory, state, params, optimizer, ema, config, denoiser)
        if on_step is not None:
            on_step(state.step, record)
    return state


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


def _rewards(pipeline: Vist3aPipeline, rewards: Mapping[str, tuple[Reward, float]], texts: list[str],
             config: AlignConfig, step: int) -> dict[str, Tensor]:  # fmt: skip
    """One rollout for ``texts`` (drawn from the step's seed), decoded to video and 3D, and each reward's mean."""
    seed = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    plan = plan_rollout(config.rollout, seed)
    height, width = pipeline.resolution
    latents = rollout(pipeline.generator, texts, plan, num_frames=pipeline.frames, height=height, width=width,
                      negative_prompt=config.rollout.negative_prompt, noise=seed)  # fmt: skip
    frames = pipeline.generator.decode(latents).float()
    decoded = pipeline.stitched(latents, resize_frames(frames, pipeline.stitched.config.decoder_resolution))
    return {name: reward(prompts=texts, frames=frames, decoded=decoded).mean() for name, (reward, _) in rewards.items()}


def _save(directory: Path, state: AlignState, params: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer,
          ema: EMA, config: AlignConfig, denoiser: torch.nn.Module) -> None:  # fmt: skip
    tensors = training_tensors(params, optimizer) | {f"ema.{k}": v for k, v in ema.state_dict().items()}
    meta = {"step": str(state.step), "skipped": str(state.skipped), "history": json.dumps(state.history),
            "config": config.model_dump_json(exclude=RESUMABLE_CHANGES)}  # fmt: skip
    save_lora(denoiser, directory / LORA_DIR, overwrite=True)
    save_lora(denoiser, directory / EMA_DIR, ema=ema, overwrite=True)
    write_state(directory / STATE_FILE, tensors, meta)


def _load(path: Path, params: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer, ema: EMA,
          config: AlignConfig) -> AlignState:  # fmt: skip
    tensors, meta = read_state(path, "alignment state")
    if meta.get("config") != config.model_dump_json(exclude=RESUMABLE_CHANGES):
        raise InputError(f"{path}: saved with other settings; delete it to start over")
    restore_training(tensors, params, optimizer, path)
    ema.load_state_dict({k.removeprefix("ema."): v for k, v in tensors.items() if k.startswith("ema.")})
    return AlignState(int(meta["step"]), int(meta["skipped"]), json.loads(meta["history"]))
