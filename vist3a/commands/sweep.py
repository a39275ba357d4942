"""``vist3a sweep-layers``: fit every candidate stitch point in one pass and pick the best."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vist3a import distributed
from vist3a.commands.options import ClipsOpt, DataOpt, DeviceOpt, PairDirOpt, out, progress
from vist3a.stitch import jobs

Criterion = Enum("Criterion", {name: name for name in ("relative_mse", "mse", "cka")}, type=str)  # type: ignore[misc]


def sweep_layers(
    data: DataOpt,
    pair: PairDirOpt = Path("."),
    clips: ClipsOpt = 64,
    heldout: Annotated[float, typer.Option(min=0.0, max=0.9, help="Fraction of clips held out for scoring.")] = 0.2,
    ridge: Annotated[float, typer.Option(min=0.0, help="Ridge on the adapter weights.")] = 1e-4,
    criterion: Annotated[Criterion, typer.Option(help="How the best point is chosen.")] = Criterion.relative_mse,
    device: DeviceOpt = "auto",
) -> None:
    """Closed-form fit of the stitch adapter at every candidate point; writes sweep.json and sweep.png."""
    with progress() as bar:
        task = bar.add_task("sweep", total=None)
        fits, best = jobs.sweep_layers(
            pair, data, clips, heldout=heldout, ridge=ridge, criterion=criterion.value, device=device,
            on_clip=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
    if not distributed.is_main():
        return
    table = Table("stitch point", "held-out rel. MSE", "held-out MSE", "CKA", "fit rel. MSE")
    for name, fit in fits.items():
        style = "bold green" if name == best else None
        table.add_row(name, f"{fit.relative_mse:.4g}", f"{fit.mse:.4g}", f"{fit.cka:.3f}", f"{fit.fit_relative_mse:.4g}", style=style)
    out.print(table)
    out.print(f"Best: {best} (by {criterion.value}); wrote {pair / jobs.SWEEP_JSON} and {pair / jobs.SWEEP_PNG}")
