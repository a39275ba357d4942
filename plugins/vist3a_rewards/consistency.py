"""The paper's 3D-consistency reward (Eq. 6): decoded frames against renders at the predicted cameras."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from vist3a.errors import InputError, ShapeError
from vist3a.scene import Decoded3D
from vist3a_rewards import ConsistencyConfig
from vist3a_rewards.images import check_clips, per_view, render_views, resize, view_indices


class ConsistencyReward:
    """``-mean|I_dec - I_rend| - lpips_weight * LPIPS(I_dec, I_rend)`` per clip, over the chosen views.

    L1 is in [0,1] intensity units. The frames are resized to the render size. Renders come from ``renders``
    (the same views as ``frames``) or are rendered from ``decoded.gaussians`` at ``decoded.cameras``.
    """

    name = "consistency"

    def __init__(
        self,
        *,
        views: int | None = 2,
        lpips: Any = None,
        lpips_weight: float = 0.0,
        near_plane: float = 0.01,
        far_plane: float = 1e10,
    ) -> None:
        if lpips_weight > 0 and lpips is None:
            raise InputError("consistency: lpips_weight > 0 needs an LPIPS model")
        self.views, self.lpips, self.lpips_weight, self.near, self.far = views, lpips, lpips_weight, near_plane, far_plane

    @classmethod
    def from_config(cls, cfg: ConsistencyConfig) -> ConsistencyReward:
        metric = None
        if cfg.lpips_weight > 0:
            try:
                import lpips
            except ImportError:
                raise InputError(
                    f"consistency: lpips_weight={cfg.lpips_weight} needs LPIPS; install it with: pip install lpips "
                    "(or set lpips_weight=0)"
                ) from None
            with torch.device(cfg.device):
                metric = lpips.LPIPS(net=cfg.lpips_net, pretrained=cfg.device != "meta", verbose=False)
            metric = metric.eval().requires_grad_(False)
        return cls(views=cfg.views, lpips=metric, lpips_weight=cfg.lpips_weight, near_plane=cfg.near_plane,
                   far_plane=cfg.far_plane)  # fmt: skip

    def __call__(
        self,
        *,
        prompts: Sequence[str],
        frames: Tensor | None = None,
        renders: Tensor | None = None,
        decoded: Decoded3D | None = None,
    ) -> Tensor:
        """Score ``[B]`` (<= 0, 0 = identical) of frames ``[B,3,V,H,W]`` in [-1,1] against renders ``[B,3,V,h,w]``
        or ``decoded`` (cameras ``[B,V,*]``); differentiable w.r.t. both."""
        frames = check_clips(self.name, "frames", frames, len(prompts))
        b, _, v = frames.shape[:3]
        index = view_indices(v, self.views)
        if renders is not None:
            renders = check_clips(self.name, "renders", renders, b)
            if renders.shape[2] != v:
                raise ShapeError(f"{self.name}: frames have {v} views, renders {renders.shape[2]}")
            renders = renders[:, :, index]
        else:
            cameras = None if decoded is None else decoded.cameras
            if cameras is not None and tuple(cameras.extrinsics.shape[:2]) != (b, v):
                raise ShapeError(f"{self.name}: frames are [{b},3,{v},H,W], cameras [B,V] = {list(cameras.extrinsics.shape[:2])}")
            renders = render_views(self.name, decoded, index, self.near, self.far)
        n, (h, w) = len(index), renders.shape[-2:]
        dec = resize(per_view(frames[:, :, index]), (h, w))
        rend = per_view(renders).to(dec.dtype)
        score = -(dec - rend).abs().mean(dim=(1, 2, 3)) / 2
        if self.lpips is not None and self.lpips_weight > 0:
            score = score - self.lpips_weight * self.lpips(dec, rend).flatten()
        return score.view(b, n).mean(1)
