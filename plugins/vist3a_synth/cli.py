"""``vist3a synth``: commands over the synthetic world. ``app`` is the typer group; others add subcommands to it."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from vist3a.commands.options import DeviceOpt
from vist3a_synth.world import SPLITS

app = typer.Typer(name="synth", help="The synthetic world: scenes with exact ground truth.", no_args_is_help=True)
train = typer.Typer(name="train", help="Train the world's small models (resumable; rerun the command to continue).",
                    no_args_is_help=True)  # fmt: skip
app.add_typer(train)
SplitName = Enum("SplitName", {name: name for name in SPLITS}, type=str)  # type: ignore[misc]


@app.command()
def preview(
    out: Annotated[Path, typer.Option("--out", help="Folder for the preview files.", show_default=False)],
    split: Annotated[SplitName, typer.Option(help="Which split's scenes.")] = SplitName.train,
    count: Annotated[int, typer.Option(min=1, max=1000, help="How many scenes.")] = 4,
    frames: Annotated[int, typer.Option(min=1, max=257, help="Frames per scene.")] = 9,
    size: Annotated[int, typer.Option(min=8, max=1024, help="Image height and width in pixels.")] = 64,
    seed: Annotated[int, typer.Option(min=0, help="Scene i is sample_scene(seed * 1e6 + i, split).")] = 0,
) -> None:
    """Render scenes: per scene video.mp4, depth.png, cameras.json, caption.txt; and contact_sheet.png."""
    from vist3a_synth.preview import CONTACT_SHEET, write_preview

    folders = write_preview(out, split.value, count, frames, size, seed)
    for folder in folders:
        print(f"{folder}: {(folder / 'caption.txt').read_text().strip()}")
    print(f"Wrote {len(folders)} scenes and {out / CONTACT_SHEET}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for every stage's outputs; rerun to continue.")] = Path("runs/demo"),
    scale: Annotated[str, typer.Option(help="quick (a smoke test, under a minute) or full (the shipped default pairing's run, about 30 minutes).")] = "full",
    seed: Annotated[int, typer.Option(min=0)] = 0,
    device: DeviceOpt = "auto",
) -> None:
    """The whole recipe on the world: pair, sweep-layers, stitch, align and generate, with the shipped base models."""
    from vist3a_synth.demo import run_demo

    for stage, path in run_demo(out, scale, seed, device).items():
        print(f"{stage:>13}: {path}")


import vist3a_synth.report_cli  # noqa: E402, F401 (adds report)
import vist3a_synth.reward_cli  # noqa: E402, F401 (adds train reward, train classifier)
import vist3a_synth.train_decoder  # noqa: E402, F401 (adds train decoder, eval-decoder)
import vist3a_synth.train_vae  # noqa: E402, F401 (adds train vae, train dit)
