"""Self-distillation of a stitched decoder: match the frozen original decoder on the same clips, resumably."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from vist3a import distributed
from vist3a.config import StrictModel
from vist3a.errors import InputError
from vist3a.io.checkpoint import read_state, restore_training, training_tensors, write_state
from vist3a.io.clips import resize_frames
from vist3a.protocols import Decoder3D, Generator
from vist3a.stitch.stitched import StitchedDecoder


class FinetuneConfig(StrictModel):
    """Optimisation settings (the paper: AdamW, lr 2e-4, cosine decay after 500 warm-up steps, clip 1.0)."""

    steps: int = 1000
    lr: float = 2e-4
    warmup_steps: int = 500
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    batch_size: int = 1
    checkpoint_every: int = 50
    seed: int = 0
    gradient_checkpointing: bool = False
    """Recompute the decoder's blocks in the backward pass (the decoder must offer ``set_gradient_checkpointing``)."""


RESUMABLE_CHANGES = {"steps", "checkpoint_every", "gradient_checkpointing"}
"""Settings a resumed run may change."""


@dataclass
class FinetuneState:
    """Progress that a resumed run continues from."""

    step: int = 0
    skipped: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def make_teacher(decoder: Decoder3D) -> Decoder3D:
    """A frozen copy of the original decoder, taken before LoRA and special tokens start to change."""
    teacher = copy.deepcopy(decoder)
    assert isinstance(teacher, nn.Module)
    return teacher.eval().requires_grad_(False)  # type: ignore[return-value]


def learning_rate(step: int, config: FinetuneConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to zero at ``steps``."""
    warmup = min(config.warmup_steps, max(config.steps - 1, 0))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(config.steps - warmup, 1)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def finetune(
    stitched: StitchedDecoder,
    teacher: Decoder3D,
    generator: Generator,
    clips: Dataset,
    config: FinetuneConfig,
    *,
    generator_size: tuple[int, int],
    state_path: Path | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> FinetuneState:
    """Train the adapter, LoRA and special tokens so that the stitched decoder reproduces ``teacher``.

    A step whose loss is not finite is skipped and counted. With ``state_path``, the trainable weights, optimizer,
    RNG and history are checkpointed atomically every ``checkpoint_every`` steps and a rerun resumes exactly.
    """
    if len(clips) == 0:
        raise InputError("no clips to finetune on")
    if config.gradient_checkpointing:
        if not hasattr(stitched.decoder, "set_gradient_checkpointing"):
            raise InputError(f"{stitched.decoder.name} does not support gradient checkpointing")
        stitched.decoder.set_gradient_checkpointing(True)
    named = {n: p for n, p in stitched.named_parameters() if p.requires_grad}
    model = _parallel(stitched)
    optimizer = torch.optim.AdamW(named.values(), lr=config.lr, weight_decay=config.weight_decay)
    state = FinetuneState()
    if state_path is not None and state_path.exists():
        state = _load(state_path, named, optimizer, config)
    stitched.train()
    while state.step < config.steps:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(state.step, config)
        losses = distillation_losses(model, teacher, generator, _batch(clips, state.step, config), generator_size)
        total = torch.stack(list(losses.values())).sum()
        optimizer.zero_grad(set_to_none=True)
        if torch.isfinite(total):
            total.backward()
            torch.nn.utils.clip_grad_norm_(named.values(), config.grad_clip)
            optimizer.step()
        else:
            state.skipped += 1
        record = {"total": total.item(), **{k: v.item() for k, v in losses.items()}}
        state.history.append(record)
        state.step += 1
        checkpoint = state.step % config.checkpoint_every == 0 or state.step == config.steps
        if state_path is not None and checkpoint and distributed.is_main():
            _save(state_path, state, named, optimizer, config)
        if on_step is not None:
            on_step(state.step, record)
    stitched.eval()
    return state


def distillation_losses(
    model: nn.Module, teacher: Decoder3D, generator: Generator, frames: Tensor, generator_size: tuple[int, int]
) -> dict[str, Tensor]:
    """The decoder's weighted per-head losses between the stitched ``model`` (or its DDP wrapper) and ``teacher``
    on frames ``[B,3,T,H,W]``."""
    stitched: StitchedDecoder = getattr(model, "module", model)
    decoder_frames = resize_frames(frames, stitched.config.decoder_resolution)
    with torch.no_grad():
        latents = generator.encode(resize_frames(frames, generator_size))
        target = teacher.forward(teacher.preprocess(decoder_frames))
    student = model(latents, decoder_frames)
    return stitched.decoder.distill_loss(student, target)


def _parallel(stitched: StitchedDecoder) -> nn.Module:
    """DistributedDataParallel over the trainable parts when several processes run, else the model itself."""
    if distributed.world_size() == 1:
        return stitched
    return nn.parallel.DistributedDataParallel(stitched)


def _batch(clips: Dataset, step: int, config: FinetuneConfig) -> Tensor:
    """This process's clips for ``step``: a fresh seeded permutation per epoch, so the order is a function of the
    step (and each process of a multi-process run takes its own slice)."""
    n, per_step = len(clips), config.batch_size * distributed.world_size()
    first = step * per_step + distributed.rank() * config.batch_size
    picks = []
    for k in range(first, first + config.batch_size):
        epoch, position = divmod(k, n)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed * 7919 + epoch))
        picks.append(clips[int(order[position])])
    return torch.stack(picks)


def _save(path: Path, state: FinetuneState, named: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer,
          config: FinetuneConfig) -> None:  # fmt: skip
    meta = {
        "step": str(state.step), "skipped": str(state.skipped), "history": json.dumps(state.history),
        "config": config.model_dump_json(exclude=RESUMABLE_CHANGES),
    }  # fmt: skip
    write_state(path, training_tensors(named, optimizer), meta)

def _load(path: Path, named: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer,
          config: FinetuneConfig) -> FinetuneState:  # fmt: skip
    tensors, meta = read_state(path, "finetune state")
    if meta.get("config") != config.model_dump_json(exclude=RESUMABLE_CHANGES):
        raise InputError(f"{path}: saved with other optimisation settings; delete it to start over")
    restore_training(tensors, named, optimizer, path)
    return FinetuneState(int(meta["step"]), int(meta["skipped"]), json.loads(meta["history"]))
