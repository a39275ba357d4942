"""vist3a plugin: VGGT (facebookresearch/vggt) as a 3D decoder, a clean-room model with the official parameter names.

Licences: this code is Apache-2.0 (vist3a). The weights keep theirs: facebook/VGGT-1B is CC BY-NC 4.0
(non-commercial); facebook/VGGT-1B-Commercial is gated behind Meta's approval. No upstream code is used.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from vist3a.config import ComponentConfig
from vist3a.hookspecs import hookimpl
from vist3a.specs import DecoderSpec

LICENCE = "code: Apache-2.0 (clean-room); weights: VGGT-1B CC BY-NC 4.0, VGGT-1B-Commercial gated (Meta approval)"


class VGGTConfig(ComponentConfig):
    """What ``load_decoder("vggt", ...)`` accepts besides checkpoint, device and dtype."""

    architecture: dict[str, Any] | None = None
    """Architecture (the ``config.json`` format) for random weights, for a checkpoint without a config.json (a bare
    ``model.pt``) and for meta-device builds of an uncached hub id; None means VGGT-1B."""
    frames_chunk_size: int = Field(8, gt=0)
    """Frames the DPT heads process at a time (memory only; results are identical)."""


def _factory(cfg: VGGTConfig) -> Any:
    from vist3a_vggt.decoder import build_decoder

    return build_decoder(cfg)


@hookimpl
def register_decoders(register: Any) -> None:
    register(
        DecoderSpec(
            "vggt",
            "VGGT: cameras, depth, point maps and tracks (clean-room, official parameter names)",
            _factory,
            VGGTConfig,
            licence=LICENCE,
        )
    )
