"""The paper's multi-view quality reward (Eq. 5): a weighted sum of prompt-image rewards on the same views."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from vist3a.scene import Decoded3D
from vist3a_rewards import QualityConfig
from vist3a_rewards.images import scored_views


class QualityReward:
    """``sum(weight_i * member_i(views)) + offset``; every member scores the same chosen views."""

    name = "quality"

    def __init__(
        self,
        members: Sequence[tuple[float, Any]],
        *,
        source: Literal["frames", "renders"] = "frames",
        views: int | None = 2,
        offset: float = -2.0,
    ) -> None:
        self.members, self.source, self.views, self.offset = list(members), source, views, offset

    @classmethod
    def from_config(cls, cfg: QualityConfig) -> QualityReward:
        import vist3a

        members = [
            (m.weight, vist3a.load_reward(m.reward, m.checkpoint, **{
                **m.config, "source": "frames", "views": None, "device": cfg.device, "dtype": cfg.dtype}))
            for m in cfg.members
        ]  # fmt: skip
        return cls(members, source=cfg.source, views=cfg.views, offset=cfg.offset)

    def __call__(
        self,
        *,
        prompts: Sequence[str],
        frames: Tensor | None = None,
        renders: Tensor | None = None,
        decoded: Decoded3D | None = None,
    ) -> Tensor:
        """Score ``[B]`` of the ``source`` images ``[B,3,V,H,W]`` in [-1,1]."""
        x = scored_views(self.name, self.source, self.views, len(prompts), frames, renders, decoded)
        total = torch.full((x.shape[0],), self.offset, device=x.device)
        for weight, reward in self.members:
            total = total + weight * reward(prompts=prompts, frames=x)
        return total
