"""``vist3a stitch``: closed-form adapter at the chosen point, then self-distillation; ``--eval`` reports errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vist3a import distributed
from vist3a.commands.options import ClipsOpt, DataOpt, DeviceOpt, PairDirOpt, out, progress
from vist3a.stitch import jobs
from vist3a.stitch.finetune import FinetuneConfig
from vist3a.stitch.stitched import LoraSettings


def stitch(
    data: DataOpt,
    pair: PairDirOpt = Path("."),
    layer: Annotated[str | None, typer.Option(help="Stitch point (default: the sweep's best).")] = None,
    clips: ClipsOpt = 64,
    steps: Annotated[int, typer.Option(min=0, help="Distillation steps.")] = 1000,
    lr: Annotated[float, typer.Option(min=0.0)] = 2e-4,
    warmup: Annotated[int, typer.Option(min=0, help="Warm-up steps before the cosine decay.")] = 500,
    batch_size: Annotated[int, typer.Option(min=1)] = 1,
    lora_rank: Annotated[int, typer.Option(min=0, help="LoRA rank after the stitch point; 0 disables LoRA.")] = 64,
    lora_alpha: Annotated[float, typer.Option()] = 32.0,
    gradient_checkpointing: Annotated[bool, typer.Option(help="Recompute decoder blocks in the backward pass.")] = False,
    device: DeviceOpt = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing stitched/ folder.")] = False,
    evaluate: Annotated[bool, typer.Option("--eval", help="Only report student-vs-teacher error per head.")] = False,
) -> None:
    """Train the stitched decoder to reproduce the original decoder; saves PAIR/stitched/."""
    if evaluate:
        table = Table("head", "weighted L1")
        for head, value in jobs.evaluate(pair, data, clips, device).items():
            table.add_row(head, f"{value:.5g}")
        out.print(table)
        return
    config = FinetuneConfig(steps=steps, lr=lr, warmup_steps=warmup, batch_size=batch_size,
                            gradient_checkpointing=gradient_checkpointing)  # fmt: skip
    lora = LoraSettings(rank=lora_rank, alpha=lora_alpha) if lora_rank > 0 else None
    with progress() as bar:
        task = bar.add_task("distil", total=steps)
        path, state = jobs.stitch(
            pair, data, clips, config, layer=layer, lora=lora, device=device, overwrite=overwrite,
            on_step=lambda step, record: bar.update(task, completed=step, description=f"distil loss {record['total']:.4g}"),
        )  # fmt: skip
    if not distributed.is_main():
        return
    final = f"final loss {state.history[-1]['total']:.4g}" if state.history else "no steps"
    out.print(f"Stitched decoder saved to {path} ({final}, {state.skipped} non-finite steps skipped)")
