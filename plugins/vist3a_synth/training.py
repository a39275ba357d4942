"""What every synthetic-world model's training shares: a rendered dataset cache and a resumable optimisation loop.

A training command renders its split once into ``DIR/data-<split>.safetensors`` (:func:`rendered`), then calls
:func:`train` with a loss function of ``(step, generator)``: the generator is seeded by ``(seed, step)``, so a run
that is stopped and rerun draws the same batches and ends with the same weights. Every ``checkpoint_every`` steps the
trainable parameters, the optimiser, the weights' moving average (``TrainOptions.ema``) and the loss history are
written atomically to ``DIR/state.safetensors``, with ``DIR/history.jsonl`` and ``DIR/curves.png`` beside them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import Tensor, nn

from vist3a.align.ema import EMA
from vist3a.config import StrictModel
from vist3a.errors import InputError
from vist3a.io.atomic import atomic_write_bytes, atomic_write_text
from vist3a.io.checkpoint import read_state, restore_training, training_tensors, write_state
from vist3a.io.plots import plot_curves
from vist3a.io.yaml_files import YamlDocument
from vist3a_synth.data import SynthClips
from vist3a_synth.world import COLOURS, SHAPES, Scene, Split

STATE_FILE, HISTORY_FILE, CURVES_FILE = "state.safetensors", "history.jsonl", "curves.png"
MAX_OBJECTS = 3
LossFn = Callable[[int, torch.Generator], dict[str, Tensor]]
"""``(step, generator) -> {"loss": scalar, other logged scalars...}``."""
NOT_RECORDED = {"steps", "checkpoint_every"}
"""Options a run may change between resumes."""
A = TypeVar("A", bound=StrictModel)


class TrainOptions(StrictModel):
    """AdamW with a linear warm-up and a cosine decay to 10% of ``lr``."""

    steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    warmup: int = 50
    batch_size: int = 8
    seed: int = 0
    checkpoint_every: int = 100
    ema: float = 0.0
    """Decay of an exponential moving average of the trainable weights (0: none). With one, the model ends holding
    the average, not the last step's weights."""
    loss: dict[str, float | str] = {}
    """The loss function's own settings (weights, views...): recorded like the others, so a resume under other
    settings is refused."""
    model: dict[str, Any] = {}
    """The architecture settings that differ from the model's defaults (a command's ``--config``), as JSON values."""


@dataclass
class TrainState:
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def train(model: nn.Module, loss_fn: LossFn, options: TrainOptions, directory: Path,
          on_step: Callable[[int, dict[str, float]], None] | None = None) -> TrainState:  # fmt: skip
    """Minimise ``loss_fn(step, generator)["loss"]`` over ``model``'s trainable parameters; resumes from ``directory``."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(params.values(), lr=options.lr, weight_decay=options.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, options))
    directory.mkdir(parents=True, exist_ok=True)
    average = EMA(params, options.ema) if options.ema else None
    state = _resume(directory / STATE_FILE, params, optimizer, schedule, options, average)
    model.train()
    while state.step < options.steps:
        losses = loss_fn(state.step, torch.Generator().manual_seed(options.seed * 1_000_003 + state.step))
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params.values(), options.grad_clip)
        optimizer.step()
        schedule.step()
        if average is not None:
            average.update(params)
        record = {key: float(value.detach()) for key, value in losses.items()}
        state.history.append(record)
        state.step += 1
        if state.step % options.checkpoint_every == 0 or state.step == options.steps:
            _save(directory, state, params, optimizer, options, average)
        if on_step is not None:
            on_step(state.step, record)
    if average is not None:
        average.copy_to(params)
    model.eval()
    return state


def _lr_factor(step: int, options: TrainOptions) -> float:
    if step < options.warmup:
        return (step + 1) / options.warmup
    progress = (step - options.warmup) / max(1, options.steps - options.warmup)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _save(directory: Path, state: TrainState, params: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer,
          options: TrainOptions, average: EMA | None) -> None:  # fmt: skip
    meta = {"step": str(state.step), "history": json.dumps(state.history),
            "options": options.model_dump_json(exclude=NOT_RECORDED)}  # fmt: skip
    tensors = training_tensors(params, optimizer)
    if average is not None:
        tensors |= average.checkpoint_tensors()
    write_state(directory / STATE_FILE, tensors, meta)
    lines = "".join(json.dumps({"step": i + 1, **record}) + "\n" for i, record in enumerate(state.history))
    atomic_write_text(directory / HISTORY_FILE, lines)
    plot_curves(state.history, directory / CURVES_FILE)


def _resume(path: Path, params: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer,
            schedule: torch.optim.lr_scheduler.LambdaLR, options: TrainOptions, average: EMA | None) -> TrainState:  # fmt: skip
    if not path.exists():
        return TrainState()
    tensors, meta = read_state(path, "training state")
    if _recorded(meta.get("options", "")) != options.model_dump(mode="json", exclude=NOT_RECORDED):
        raise InputError(f"{path}: saved with other settings; delete the folder to start over")
    restore_training(tensors, params, optimizer, path)
    if average is not None:
        average.load_checkpoint_tensors(tensors)
    state = TrainState(int(meta["step"]), json.loads(meta["history"]))
    schedule.last_epoch = state.step
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * _lr_factor(state.step, options)
    return state


def _recorded(saved: str) -> dict[str, Any] | None:
    """The options a state file recorded, with today's defaults for fields it predates; None if unreadable."""
    try:
        return TrainOptions.model_validate_json(saved).model_dump(mode="json", exclude=NOT_RECORDED)
    except ValueError:
        return None


def read_architecture(path: Path | None, model: type[A]) -> A:
    """``model`` from the YAML (or JSON) file ``path``, its defaults where the file is silent or there is no file."""
    return model() if path is None else YamlDocument.read(path).validate(model)


def overrides(architecture: StrictModel) -> dict[str, Any]:
    """The settings of ``architecture`` that differ from its defaults, as JSON values (``TrainOptions.model``)."""
    return architecture.model_dump(mode="json", exclude_defaults=True)


def rendered(directory: Path, split: Split, count: int, *, frames: int = 9, size: int = 64,
             seed: int = 0) -> tuple[dict[str, Tensor], list[str]]:  # fmt: skip
    """``count`` scenes of ``split`` with ground truth and captions, rendered once and cached in ``directory``.

    Tensors: ``frames`` uint8 ``[N,T,3,H,W]``, ``depth`` float16 ``[N,T,H,W]`` (0 = sky), ``ids`` uint8 ``[N,T,H,W]``
    (k + 1 for object k), ``intrinsics [N,T,3,3]``, ``extrinsics [N,T,4,4]`` and ``labels`` int64 ``[N,3,2]``: the
    (colour, shape) indices into ``COLOURS`` and ``SHAPES`` of each object, -1 where a scene has fewer objects.
    """
    path = directory / f"data-{split}-{count}-{frames}x{size}-seed{seed}.safetensors"
    if path.exists():
        with safe_open(str(path), "pt") as f:
            return {key: f.get_tensor(key) for key in f.keys()}, json.loads(f.metadata()["captions"])
    clips = SynthClips(count, frames, (size, size), seed, split)
    samples = [clips.sample(i) for i in range(count)]
    data = {
        "frames": torch.stack([((s.frames.transpose(0, 1) + 1) * 127.5).round().to(torch.uint8) for s in samples]),
        "depth": torch.stack([s.depth.half() for s in samples]),
        "ids": torch.stack([s.ids.to(torch.uint8) for s in samples]),
        "intrinsics": torch.stack([s.intrinsics for s in samples]),
        "extrinsics": torch.stack([s.extrinsics for s in samples]),
        "labels": torch.stack([_labels(s.scene) for s in samples]),
    }
    captions = [s.caption for s in samples]
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save(data, metadata={"captions": json.dumps(captions)}))
    return data, captions


def _labels(scene: Scene) -> Tensor:
    colours, labels = list(COLOURS), torch.full((MAX_OBJECTS, 2), -1, dtype=torch.long)
    for k, obj in enumerate(scene.objects):
        labels[k] = torch.tensor([colours.index(obj.colour), SHAPES.index(obj.shape)])
    return labels
