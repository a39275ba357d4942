"""``vist3a anysplat-import-release``: the official VIST3A stitched AnySplat as a stitched-decoder folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def import_release(
    file: Annotated[Path, typer.Argument(help="The official anysplat_stitched.pth (HJGO/VIST3A).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="New stitched-decoder folder.", show_default=False)],
    anysplat: Annotated[str, typer.Option(help="The AnySplat the release was trained on (folder or hub id).")] = "lhjiang/anysplat",
) -> None:
    """Convert the official stitched AnySplat (enc_blocks_2, conv3d_k5x3x3_o1024_s1x2x2_p2x1x1, LoRA r64 a32)."""
    from vist3a_anysplat.release import convert_official_stitched

    print(convert_official_stitched(file, anysplat, out))
