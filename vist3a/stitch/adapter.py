"""The stitch adapter: trilinear temporal interpolation ``T' -> T`` then one Conv3d with replicate padding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vist3a.config import StrictModel
from vist3a.io.checkpoint import PretrainedMixin
from vist3a.stitch.spec import StitchSpec


class AdapterConfig(StrictModel):
    """Constructor arguments of :class:`StitchAdapter` (saved as its config.json)."""

    spec: str
    """Conv3d geometry, e.g. ``conv3d_k5x3x3_o1024_s1x2x2_p2x1x1``."""
    in_channels: int
    """Latent channels of the video VAE."""
    temporal_factor: int
    """The VAE's temporal compression: ``T = (T' - 1) * temporal_factor + 1``."""


class StitchAdapter(PretrainedMixin, nn.Module):
    """RAW latents ``[B,C,T',h,w]`` -> stitch-point tokens ``[B,O,T,h',w']``."""

    config_class = AdapterConfig

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.spec = StitchSpec.parse(config.spec)
        self.conv = nn.Conv3d(
            config.in_channels, self.spec.out_channels, self.spec.kernel, self.spec.stride, self.spec.padding,
            padding_mode="replicate",
        )  # fmt: skip

    def interpolate(self, latents: Tensor) -> Tensor:
        return interpolate_latents(latents, self.config.temporal_factor)

    def forward(self, latents: Tensor) -> Tensor:
        return self.conv(self.interpolate(latents))

    def design_matrix(self, latents: Tensor) -> Tensor:
        """The rows the Conv3d sees: ``[B*T*h'*w', C*kT*kH*kW]``, so ``forward == X @ W.T + b`` (reshaped)."""
        return im2col(self.interpolate(latents), self.spec)

    @torch.no_grad()
    def set_linear(self, weight: Tensor, bias: Tensor) -> None:
        """Load a fitted linear map: ``weight [C*kT*kH*kW, O]`` (design-matrix order) and ``bias [O]``."""
        self.conv.weight.copy_(weight.T.reshape(self.conv.weight.shape))
        self.conv.bias.copy_(bias)


def interpolate_latents(latents: Tensor, temporal_factor: int) -> Tensor:
    """``[B,C,T',h,w]`` -> ``[B,C,T,h,w]`` with ``T = (T'-1) * temporal_factor + 1``, trilinear,
    ``align_corners=True`` (so latent frame ``j`` lands exactly on frame ``j * temporal_factor``)."""
    _, _, frames, h, w = latents.shape
    size = ((frames - 1) * temporal_factor + 1, h, w)
    return F.interpolate(latents, size=size, mode="trilinear", align_corners=True)


def im2col(x: Tensor, spec: StitchSpec) -> Tensor:
    """Patches of ``x [B,C,T,h,w]`` with the same replicate padding as the adapter's Conv3d.

    Returns ``[B*T'*h'*w', C*kT*kH*kW]``; rows are ordered like the conv output ``[B,T',h',w']``.
    """
    pt, ph, pw = spec.padding
    x = F.pad(x, (pw, pw, ph, ph, pt, pt), mode="replicate")
    for dim, (k, s) in enumerate(zip(spec.kernel, spec.stride), start=2):
        x = x.unfold(dim, k, s)
    b, c, t, h, w = x.shape[:5]
    return x.permute(0, 2, 3, 4, 1, 5, 6, 7).reshape(b * t * h * w, -1)


def tokens_to_rows(tokens: Tensor) -> Tensor:
    """Stitch-point tokens ``[B,O,T,h,w]`` -> ``[B*T*h*w, O]``, the row order of :func:`im2col`."""
    return tokens.permute(0, 2, 3, 4, 1).reshape(-1, tokens.shape[1])
