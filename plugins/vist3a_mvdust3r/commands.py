"""``vist3a mvdust3r-convert``: an official MV-DUSt3R(+) ``.pth`` as a config.json + model.safetensors folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def convert(
    file: Annotated[Path, typer.Argument(help="Official MVD.pth / MVDp_s1.pth / MVDp_s2.pth (read with weights_only=True).",
                                         show_default=False)],  # fmt: skip
    out: Annotated[Path, typer.Option("--out", help="New checkpoint folder.", show_default=False)],
    config: Annotated[Path | None, typer.Option(help="A config.json with the architecture (default: the released one "
                                                     "that the file's keys imply).")] = None,  # fmt: skip
    n_ref: Annotated[int | None, typer.Option(min=1, help="Reference views to store (default: 4 for MV-DUSt3R+).")] = None,
) -> None:
    """Convert an official checkpoint once, checking every weight against the architecture."""
    from vist3a.io.checkpoint import read_config
    from vist3a_mvdust3r import MVDUSt3RConfig
    from vist3a_mvdust3r.decoder import MVDUSt3RDecoder

    architecture = read_config(config.parent) if config is not None and config.name == "config.json" else None
    if config is not None and architecture is None:
        raise typer.BadParameter("--config must name a config.json file")
    decoder = MVDUSt3RDecoder.from_config(MVDUSt3RConfig(checkpoint=str(file), architecture=architecture, n_ref=n_ref))
    print(f"{decoder.arch.variant} (n_ref {decoder.model.n_ref}) -> {decoder.save_pretrained(out)}")
