"""AnySplat's network with the official state-dict names: VGGT's aggregator, camera and depth heads plus the Gaussian
parameter head that also reads the RGB frames."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from vist3a_vggt.aggregator import IMAGENET_MEAN, IMAGENET_STD
from vist3a_vggt.heads import DPTHead, resize
from vist3a_vggt.model import VGGT

from vist3a_anysplat.config import AnySplatArchitecture, GaussianHeadConfig


class GaussianParamHead(DPTHead):
    """DPT fusion, upsampled to full resolution, plus ``input_merger`` (7x7 conv + ReLU on the [0,1] frames), then the
    UV embedding and ``output_conv2`` (3x3 conv, ReLU, 1x1 conv); no activation."""

    def __init__(self, cfg: GaussianHeadConfig) -> None:
        super().__init__(cfg)
        width = cfg.features // 2  # upstream's fixed 128 (head_features_1 = head_features_2) for its features 256
        self.input_merger = nn.Sequential(nn.Conv2d(3, width, 7, padding=3), nn.ReLU())
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, cfg.output_dim, 1)
        )

    def forward(self, layers: list[Tensor | None], images: Tensor, patch_start: int, chunk: int = 8) -> Tensor:  # type: ignore[override]
        """Aggregator outputs ``[B,S,P,2C]`` and frames ``[B,S,3,H,W]`` in [0,1] -> raw parameters ``[B,S,D,H,W]``."""
        picked = [layers[i][:, :, patch_start:] for i in self.cfg.intermediate_layer_idx]
        s = images.shape[1]
        return torch.cat([self._maps([x[:, a : a + chunk] for x in picked], images[:, a : a + chunk]) for a in range(0, s, chunk)], dim=1)

    def _maps(self, picked: list[Tensor], images: Tensor) -> Tensor:
        b, s, _, height, width = images.shape
        out = resize(self._fused(picked, (height, width)), (height, width)) + self.input_merger(images.flatten(0, 1))
        out = self.scratch.output_conv2(self._pos(out, width / height))
        return out.view(b, s, *out.shape[1:])


class EncoderAnySplat(VGGT):
    """VGGT (aggregator, camera head, depth head) plus ``gaussian_param_head``; ``arch`` is the VGGT part."""

    def __init__(self, arch: AnySplatArchitecture) -> None:
        super().__init__(arch.vggt())
        self.anysplat = arch
        self.aggregator.image_mean, self.aggregator.image_std = _bfloat16(IMAGENET_MEAN), _bfloat16(IMAGENET_STD)
        self.gaussian_param_head = GaussianParamHead(arch.resolved(arch.gaussian_param_head))

    def forward(self, images: Tensor, query_points: Tensor | None = None) -> dict[str, Tensor]:
        """Images ``[B,S,3,H,W]`` in [0,1] -> ``pose_enc``, ``pose_enc_list``, ``depth [B,S,H,W,1]``, ``depth_conf`` and
        the raw ``gaussian_params [B,S,D,H,W]``."""
        outputs = self.aggregate(images)
        return {**self.heads(outputs, tuple(images.shape[-2:])), "gaussian_params": self.gaussian_params(outputs, images)}

    def gaussian_params(self, outputs: list[Tensor | None], images: Tensor) -> Tensor:
        """The Gaussian head on the aggregator outputs and frames ``[B,S,3,H,W]`` in [0,1], autocast off."""
        dtype = next(self.parameters()).dtype
        layers = [None if x is None else x.to(dtype) for x in outputs]
        with torch.autocast(images.device.type, enabled=False):
            return self.gaussian_param_head(layers, images.to(dtype), self.aggregator.patch_start_idx, self.frames_chunk_size)


class AnySplat(nn.Module):
    """The official top level: ``encoder`` holds every parameter (the splatting decoder has none)."""

    def __init__(self, encoder: EncoderAnySplat) -> None:
        super().__init__()
        self.encoder = encoder


def _bfloat16(values: tuple[float, ...]) -> tuple[float, ...]:
    """``values`` rounded to bfloat16: upstream casts the aggregator, normalisation buffers included, to bf16."""
    return tuple(torch.tensor(values, device="cpu").bfloat16().float().tolist())
