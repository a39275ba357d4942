"""vist3a plugin: AnySplat (InternRobotics/AnySplat) as a 3D decoder, a clean-room model with the official parameter
names that reuses vist3a_vggt for its VGGT parts.

Licences: this code is Apache-2.0 (vist3a); no upstream code is used. Upstream AnySplat's code is MIT, with vendored
VGGT code (VGGT licence) and head files under CC BY-NC-SA 4.0. The lhjiang/anysplat weights: see their model card;
AnySplat starts from VGGT-1B (CC BY-NC 4.0), so treat them as non-commercial unless the card says otherwise.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from vist3a.config import ComponentConfig
from vist3a.hookspecs import hookimpl
from vist3a.specs import DecoderSpec

LICENCE = "code: Apache-2.0 (clean-room); weights: see lhjiang/anysplat (trained from VGGT-1B, CC BY-NC 4.0: assume non-commercial)"


class AnySplatConfig(ComponentConfig):
    """What ``load_decoder("anysplat", ...)`` accepts besides checkpoint, device and dtype."""

    architecture: dict[str, Any] | None = None
    """Architecture (the ``config.json`` format) for random weights, for a checkpoint without a config.json and for
    meta-device builds of an uncached hub id; None means the released AnySplat."""
    frames_chunk_size: int = Field(8, gt=0)
    """Frames the DPT heads process at a time (memory only; results are identical)."""
    voxelize: bool | None = None
    """Fuse the Gaussians per voxel (confidence-weighted); None follows the checkpoint's ``encoder_cfg.voxelize``."""


def _factory(cfg: AnySplatConfig) -> Any:
    from vist3a_anysplat.decoder import build_decoder

    return build_decoder(cfg)


@hookimpl
def register_decoders(register: Any) -> None:
    register(
        DecoderSpec(
            "anysplat",
            "AnySplat: 3D Gaussians, cameras and depth from uncalibrated views (clean-room, official parameter names)",
            _factory,
            AnySplatConfig,
            licence=LICENCE,
        )
    )


@hookimpl
def register_commands(app: Any) -> None:
    from vist3a_anysplat.commands import import_release

    app.command(name="anysplat-import-release")(import_release)
