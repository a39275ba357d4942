"""vist3a plugin: differentiable rewards for alignment (VIST3A Sec. 3.2): CLIP, PickScore, open_clip models
(DFN-CLIP, HPSv2.1), the paper's multi-view quality composite and the 3D-consistency reward.

Importing this module is light (pydantic only); models load when a reward is built. See docs/rewards.md.
Licences: this code is Apache-2.0 (vist3a, clean-room). Weights keep their own licences (registry.yaml).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from vist3a.config import ComponentConfig, StrictModel
from vist3a.hookspecs import hookimpl
from vist3a.specs import RewardSpec

LICENCE = "code: Apache-2.0 (clean-room); weights: see the registry entry you load"


class ImageRewardConfig(ComponentConfig):
    """Which images a prompt-image reward scores."""

    source: Literal["frames", "renders"] = "frames"
    """``frames``: the decoded video frames; ``renders``: the 3D renders (given, or rendered from ``decoded``)."""
    views: int | None = Field(None, gt=0)
    """Views scored per clip, evenly spaced from the first to the last (deterministic); None = all."""


class ClipConfig(ImageRewardConfig):
    """A ``transformers`` CLIPModel (``clip``, ``pickscore``)."""

    processor: str | None = None
    """Hub id or folder with the tokenizer and ``preprocessor_config.json``; None = the checkpoint."""
    tiny: bool = False
    """Random weights at a tiny size with an in-process tokenizer (tests); ignores ``checkpoint``."""


class OpenClipConfig(ImageRewardConfig):
    """An ``open_clip`` model (``open-clip``, ``hpsv2``); needs ``pip install open-clip-torch``."""

    model: str | None = None
    """open_clip architecture name (e.g. ``ViT-H-14``); None = read it from the hub checkpoint (``hf-hub:``)."""
    filename: str | None = None
    """A state-dict file inside the hub checkpoint (e.g. ``HPS_v2.1_compressed.pt``); needs ``model``."""
    tiny: bool = False
    """Random weights at a tiny size with open_clip's bundled tokenizer (tests); ignores ``checkpoint``."""


class HpsConfig(OpenClipConfig):
    """HPSv2.1: open_clip ViT-H-14 with the HPS weights (``checkpoint``: ``xswu/HPSv2`` or a local ``.pt``)."""

    model: str | None = "ViT-H-14"
    filename: str | None = "HPS_v2.1_compressed.pt"


class Member(StrictModel):
    """One term of the quality composite: ``weight * reward``."""

    reward: str
    """A reward id (registry entry or spec name)."""
    checkpoint: str | None = None
    """Overrides the entry's default weights."""
    weight: float = 1.0
    config: dict[str, Any] = Field(default_factory=dict)
    """Extra fields for the member's config (``source`` and ``views`` are set by the composite)."""


class QualityConfig(ComponentConfig):
    """``sum(weight * member) + offset``; the paper's R_quality = s_clip + s_hps - 2 by default."""

    source: Literal["frames", "renders"] = "frames"
    views: int | None = Field(2, gt=0)
    """Views scored per clip (the paper samples 2); None = all."""
    members: tuple[Member, ...] = (Member(reward="dfn-clip"), Member(reward="hpsv2.1"))
    offset: float = -2.0


class ConsistencyConfig(ComponentConfig):
    """R_cons = -L1 - lpips_weight * LPIPS between decoded frames and renders at the predicted cameras."""

    views: int | None = Field(2, gt=0)
    """Views compared per clip (the paper uses 2); None = all."""
    lpips_weight: float = Field(0.25, ge=0)
    """The paper's 0.25 needs ``pip install lpips``; 0 needs nothing."""
    lpips_net: Literal["alex", "vgg", "squeeze"] = "alex"
    near_plane: float = Field(0.01, gt=0)
    far_plane: float = Field(1e10, gt=0)


def _clip(cfg: ClipConfig) -> Any:
    from vist3a_rewards.clip import ClipReward

    return ClipReward.from_config(cfg, "clip")


def _pickscore(cfg: ClipConfig) -> Any:
    from vist3a_rewards.clip import ClipReward

    return ClipReward.from_config(cfg, "pickscore")


def _open_clip(cfg: OpenClipConfig) -> Any:
    from vist3a_rewards.openclip import OpenClipReward

    return OpenClipReward.from_config(cfg, "open-clip")


def _hpsv2(cfg: HpsConfig) -> Any:
    from vist3a_rewards.openclip import OpenClipReward

    return OpenClipReward.from_config(cfg, "hpsv2")


def _quality(cfg: QualityConfig) -> Any:
    from vist3a_rewards.quality import QualityReward

    return QualityReward.from_config(cfg)


def _consistency(cfg: ConsistencyConfig) -> Any:
    from vist3a_rewards.consistency import ConsistencyReward

    return ConsistencyReward.from_config(cfg)


@hookimpl
def register_rewards(register: Any) -> None:
    specs = (
        ("clip", "CLIP score: cosine between each view and the prompt (transformers CLIPModel)", _clip, ClipConfig),
        ("pickscore", "PickScore: exp(logit_scale) x CLIP cosine (transformers CLIPModel)", _pickscore, ClipConfig),
        ("open-clip", "CLIP score with an open_clip model, e.g. DFN5B-CLIP (optional open-clip-torch)", _open_clip,
         OpenClipConfig),
        ("hpsv2", "HPSv2.1 human-preference score (open_clip ViT-H-14; optional open-clip-torch)", _hpsv2, HpsConfig),
        ("quality", "Weighted sum of prompt-image rewards plus an offset (paper: s_clip + s_hps - 2)", _quality,
         QualityConfig),
        ("consistency", "-L1 - lambda*LPIPS between decoded frames and renders at the predicted cameras",
         _consistency, ConsistencyConfig),
    )  # fmt: skip
    for name, description, factory, config in specs:
        register(RewardSpec(name, description, factory, config, licence=LICENCE))
