"""``vist3a pair GEN DEC``: check a pairing offline and write its workspace (pair.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from vist3a.commands.options import RegistryOpt, err, out
from vist3a.registry import Registry
from vist3a.stitch.workspace import ComponentRef, create_pair, parse_size


def pair(
    generator: Annotated[str, typer.Argument(help="Generator: registry id, spec name or PLUGIN:PATH.")],
    decoder: Annotated[str, typer.Argument(help="3D decoder: registry id, spec name or PLUGIN:PATH.")],
    resolution: Annotated[str | None, typer.Option(help="Frame size the video VAE sees: N or HxW.")] = None,
    decoder_resolution: Annotated[str | None, typer.Option(help="Frame size the decoder sees: N or HxW.")] = None,
    frames: Annotated[int | None, typer.Option(min=1, help="Frames per clip (the VAE's frame rule applies).")] = None,
    temporal_kernel: Annotated[int, typer.Option(min=1, help="Temporal kernel of the adapter's Conv3d.")] = 5,
    out_dir: Annotated[Path, typer.Option("--out", help="Workspace folder.")] = Path("."),
    overwrite: Annotated[bool, typer.Option(help="Replace an existing pair.yaml.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """Check that GEN's latents can feed DEC, list the candidate stitch points with their adapters, write pair.yaml."""
    workspace, rejected = create_pair(
        ComponentRef.parse(generator), ComponentRef.parse(decoder), registry=Registry.load(registry),
        generator_resolution=parse_size(resolution) if resolution else None,
        decoder_resolution=parse_size(decoder_resolution) if decoder_resolution else None,
        frames=frames, temporal_kernel=temporal_kernel,
    )  # fmt: skip
    path = workspace.save(out_dir, overwrite=overwrite)
    gen_h, gen_w = workspace.generator_resolution
    dec_h, dec_w = workspace.decoder_resolution
    table = Table(Column("stitch point", no_wrap=True), "tokens", "channels", "prefix", Column("adapter", no_wrap=True),
                  title=f"{workspace.generator} ({gen_h}x{gen_w}, {workspace.frames} frames) -> {workspace.decoder} ({dec_h}x{dec_w})")  # fmt: skip
    for p in workspace.stitch_points:
        name = f"[bold]{p.name}*[/bold]" if p.name == workspace.default_stitch_point else p.name
        table.add_row(name, f"{p.grid[0]}x{p.grid[1]}", str(p.channels), str(p.prefix_tokens), p.spec)
    out.print(table)
    if workspace.default_stitch_point:
        out.print(f"* the registry's default stitch point for {workspace.pairing}")
    for name, reason in rejected:
        err.print(f"[yellow]skipped[/yellow] {name}: {reason}")
    out.print(f"Wrote {path}")
