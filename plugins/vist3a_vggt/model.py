"""The VGGT network with the official state-dict names, and its official forward split into resumable stages."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vist3a_vggt.aggregator import Aggregator
from vist3a_vggt.config import VGGTArchitecture
from vist3a_vggt.heads import CameraHead, DPTHead
from vist3a_vggt.track import TrackHead


class VGGT(nn.Module):
    """Aggregator, camera head, point head, depth head and track head (absent heads are None)."""

    def __init__(self, arch: VGGTArchitecture) -> None:
        super().__init__()
        self.arch = arch
        self.aggregator = Aggregator(arch.aggregator, arch.patch_embed)
        self.camera_head = CameraHead(arch.camera_head) if arch.camera_head else None
        self.point_head = DPTHead(arch.point_head) if arch.point_head else None
        self.depth_head = DPTHead(arch.depth_head) if arch.depth_head else None
        self.track_head = TrackHead(arch.track_head) if arch.track_head else None
        self.frames_chunk_size = 8

    @property
    def patch_size(self) -> int:
        return self.arch.aggregator.patch_size

    def forward(self, images: Tensor, query_points: Tensor | None = None) -> dict[str, Tensor]:
        """The official forward: images ``[B,S,3,H,W]`` (or ``[S,3,H,W]``) in [0,1], query points ``[B,N,2]`` pixels.

        Returns ``pose_enc [B,S,9]``, ``pose_enc_list`` (one per iteration), ``depth [B,S,H,W,1]``, ``depth_conf``,
        ``world_points [B,S,H,W,3]``, ``world_points_conf [B,S,H,W]``, ``images`` and, with query points,
        ``track [B,S,N,2]``, ``vis`` and ``conf [B,S,N]``.
        """
        if images.ndim == 4:
            images = images[None]
        if query_points is not None and query_points.ndim == 2:
            query_points = query_points[None]
        outputs = self.aggregate(images)
        return {**self.heads(outputs, tuple(images.shape[-2:]), query_points), "images": images}

    def aggregate(self, images: Tensor) -> list[Tensor | None]:
        """Images ``[B,S,3,H,W]`` in [0,1] -> every aggregator layer's output ``[B,S,P,2C]``."""
        b, s, _, h, w = images.shape
        dino = self.aggregator.patch_embed
        patches = dino.patch_tokens(dino.run(self.aggregator.embed(images)))
        grid = (h // self.patch_size, w // self.patch_size)
        return self.run_aggregator(self.with_special_tokens(patches.view(b, s, -1, patches.shape[-1])), grid)

    def with_special_tokens(self, patches: Tensor, special: Tensor | None = None) -> Tensor:
        """Patch tokens ``[B,S,P,C]`` -> ``[B,S,1+R+P,C]`` with ``special`` ``[B,S,1+R,C]`` or the learned tokens."""
        if special is None:
            special = self.aggregator.special_tokens(*patches.shape[:2])
        return torch.cat((special.to(patches.dtype), patches), dim=2)

    def run_aggregator(self, tokens: Tensor, grid: tuple[int, int], start: int = 0) -> list[Tensor | None]:
        """Aggregator layers ``start..`` on ``[B,S,P,C]`` -> the outputs list (None for layers before ``start``)."""
        return self.aggregator.run(tokens, grid, start)[1]

    def heads(self, outputs: list[Tensor | None], image_size: tuple[int, int], query_points: Tensor | None = None) -> dict[str, Tensor]:
        """Every head on the aggregator outputs, in the heads' parameter dtype with autocast off."""
        dtype = next(self.parameters()).dtype
        device_type = outputs[-1].device.type
        layers = [None if x is None else x.to(dtype) for x in outputs]
        start = self.aggregator.patch_start_idx
        found: dict[str, Tensor] = {}
        with torch.autocast(device_type, enabled=False):
            if self.camera_head is not None:
                encodings = self.camera_head(layers[-1])
                found["pose_enc"], found["pose_enc_list"] = encodings[-1], torch.stack(encodings)
            if self.depth_head is not None:
                found["depth"], found["depth_conf"] = self.depth_head(layers, image_size, start, self.frames_chunk_size)
            if self.point_head is not None:
                found["world_points"], found["world_points_conf"] = self.point_head(layers, image_size, start, self.frames_chunk_size)
            if self.track_head is not None and query_points is not None:
                tracks, found["vis"], conf = self.track_head(layers, image_size, start, query_points.to(dtype))
                found["track"] = tracks[-1]
                if conf is not None:
                    found["conf"] = conf
        return found
