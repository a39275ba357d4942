"""vist3a plugin: MV-DUSt3R and MV-DUSt3R+ (facebookresearch/mvdust3r) as a 3D decoder, a clean-room model with the
official parameter names; it reuses vist3a_vggt's transformer blocks and RoPE.

Licences: this code is Apache-2.0 (vist3a); no upstream code is used. Upstream's code and the released weights
(Zhenggang/MV-DUSt3R: MVD.pth, MVDp_s1.pth, MVDp_s2.pth) are CC BY-NC 4.0, non-commercial; its bundled DUSt3R and
CroCo code is CC BY-NC-SA 4.0.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from vist3a.config import ComponentConfig
from vist3a.hookspecs import hookimpl
from vist3a.specs import DecoderSpec

LICENCE = "code: Apache-2.0 (clean-room); weights: Zhenggang/MV-DUSt3R CC BY-NC 4.0 (non-commercial)"


class MVDUSt3RConfig(ComponentConfig):
    """What ``load_decoder("mvdust3r", ...)`` accepts besides checkpoint, device and dtype."""

    architecture: dict[str, Any] | None = None
    """Architecture (the ``config.json`` format) for random weights, for an official ``.pth`` (which carries no
    readable config) and for meta-device builds; None means MV-DUSt3R+ (or MV-DUSt3R for a ``.pth`` without
    ``dec_same_view_blocks``)."""
    n_ref: int | None = Field(None, gt=0)
    """Reference views (MV-DUSt3R+); None keeps the architecture's value, else 4 as upstream's demo."""


def _factory(cfg: MVDUSt3RConfig) -> Any:
    from vist3a_mvdust3r.decoder import MVDUSt3RDecoder

    return MVDUSt3RDecoder.from_config(cfg)


@hookimpl
def register_decoders(register: Any) -> None:
    register(
        DecoderSpec(
            "mvdust3r",
            "MV-DUSt3R(+): point maps and per-pixel 3D Gaussians from many views (clean-room, official parameter names)",
            _factory,
            MVDUSt3RConfig,
            licence=LICENCE,
        )
    )


@hookimpl
def register_commands(app: Any) -> None:
    from vist3a_mvdust3r.commands import convert

    app.command(name="mvdust3r-convert")(convert)
