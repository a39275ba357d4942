"""Options shared by several commands, and the consoles they print to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

out = Console()  # results
err = Console(stderr=True)  # progress and warnings

RegistryOpt = Annotated[
    Path | None,
    typer.Option("--registry", envvar="VIST3A_REGISTRY", help="A registry YAML file that extends the packaged one."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))
