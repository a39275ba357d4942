"""Options shared by several commands, and the consoles they print to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from vist3a.devices import resolve_device

out = Console()  # results
err = Console(stderr=True)  # progress and warnings

RegistryOpt = Annotated[
    Path | None,
    typer.Option("--registry", envvar="VIST3A_REGISTRY", help="A registry YAML file that extends the packaged one."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))

PairDirOpt = Annotated[Path, typer.Option("--pair", help="The pairing workspace written by `vist3a pair`.")]
DataOpt = Annotated[
    str, typer.Option("--data", help="A folder of videos and/or image folders, or synthetic:N.", show_default=False)
]
ClipsOpt = Annotated[int, typer.Option("--clips", min=1, help="How many clips to use.")]
DeviceOpt = Annotated[
    str,
    typer.Option("--device", callback=resolve_device, help="torch device: auto (cuda when available, else cpu), cpu, cuda, cuda:N or mps."),
]


def progress():
    """A rich progress bar on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err, transient=True)  # fmt: skip
