"""``vist3a synth train reward`` and ``vist3a synth train classifier``: the world's synth-clip reward and attribute
classifier (see docs/synth.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from vist3a.commands.options import DeviceOpt
from vist3a_synth.cli import train

OutOpt = Annotated[Path, typer.Option("--out", help="Run folder (data cache, state, curves, the model).",
                                      show_default=False, file_okay=False)]  # fmt: skip
ClipsOpt = Annotated[int, typer.Option(min=2, help="Train-split clips to render and train on.")]
WidthOpt = Annotated[int, typer.Option(min=4, help="The image encoder's first width.")]
BatchOpt = Annotated[int, typer.Option(min=2, help="Clips per step.")]
LrOpt = Annotated[float, typer.Option(min=0.0, help="Peak learning rate.")]
SeedOpt = Annotated[int, typer.Option(min=0, help="Seed of the initial weights and batches.")]
EvalOpt = Annotated[int, typer.Option(min=2, help="Clips per split scored at the end.")]


@train.command("reward")
def reward(out: OutOpt, steps: Annotated[int, typer.Option(min=1, help="Optimisation steps.")] = 1200,
           clips: ClipsOpt = 2000, width: WidthOpt = 24, batch_size: BatchOpt = 48,
           views: Annotated[int, typer.Option(min=1, help="Random frames per clip and step.")] = 2,
           lr: LrOpt = 2e-3, seed: SeedOpt = 0, eval_clips: EvalOpt = 100, device: DeviceOpt = "auto") -> None:  # fmt: skip
    """Train synth-clip contrastively; writes OUT/synth-clip and the test/train caption retrieval to OUT/metrics.json."""
    from vist3a_synth.reward import train_reward
    from vist3a_synth.training import TrainOptions

    options = TrainOptions(steps=steps, lr=lr, batch_size=batch_size, seed=seed)
    _run("synth-clip", steps, lambda on_step: train_reward(out, options, clips=clips, views=views, width=width,
                                                            eval_clips=eval_clips, device=device, on_step=on_step))  # fmt: skip


@train.command("classifier")
def classifier(out: OutOpt, steps: Annotated[int, typer.Option(min=1, help="Optimisation steps.")] = 4000,
               clips: ClipsOpt = 2000, width: WidthOpt = 16,
               batch_size: Annotated[int, typer.Option(min=2, help="Frames per step.")] = 64, lr: LrOpt = 2e-3,
               blur: Annotated[float, typer.Option(min=0.0, help="Largest training blur (Gaussian sigma, pixels).")] = 1.5,
               seed: SeedOpt = 0, eval_clips: EvalOpt = 200, device: DeviceOpt = "auto") -> None:  # fmt: skip
    """Train the attribute classifier on ground-truth train renders; writes OUT/synth-classifier and its test-split
    accuracy to OUT/metrics.json."""
    from vist3a_synth.classifier import train_classifier
    from vist3a_synth.training import TrainOptions

    options = TrainOptions(steps=steps, lr=lr, batch_size=batch_size, seed=seed, loss={"blur": blur})
    _run("synth-classifier", steps, lambda on_step: train_classifier(out, options, clips=clips, width=width,
                                                                     eval_clips=eval_clips, device=device,
                                                                     on_step=on_step))  # fmt: skip


def _run(name: str, steps: int, job: Any) -> None:
    from vist3a.commands.options import progress

    with progress() as bar:
        task = bar.add_task(name, total=steps)
        metrics = job(lambda step, record: bar.update(task, completed=step))
    print(json.dumps(metrics, indent=2))
