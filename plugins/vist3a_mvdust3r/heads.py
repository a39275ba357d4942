"""The per-view heads: the linear pointmap head (with its RGB skip branch) and the Gaussian head.

Both turn decoder tokens ``[B,N,C]`` of an ``(H/p) x (W/p)`` grid into per-pixel maps by a linear layer and a
pixel shuffle by the patch size ``p``, and return channels-last maps ``[B,H,W,k]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vist3a_mvdust3r.config import MVDUSt3RArchitecture

GS_NORM_EPS = 1e-5
"""The Gaussian head's LayerNorm keeps torch's default eps (applied after the decoder's own final norm)."""
ROTATION_EPS = 1e-5
SCALE_FACTOR = 0.1


def unpatchify(x: Tensor, grid: tuple[int, int], patch: int) -> Tensor:
    """Tokens ``[B,N,k*p*p]`` on ``grid`` -> maps ``[B,k,H,W]``."""
    b = x.shape[0]
    return F.pixel_shuffle(x.transpose(-1, -2).reshape(b, -1, *grid), patch)


class RunningBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that always normalises with its running statistics, also in training mode: distilling a stitched
    decoder must not re-estimate them (or depend on the batch)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class MiddleBlock(nn.Module):
    """Conv (same padding), BatchNorm with running statistics and, optionally, SELU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, activation: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm = RunningBatchNorm2d(out_channels)
        self.A = nn.SELU() if activation else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.A(self.norm(self.conv(x)))


class LinearPts3d(nn.Module):
    """``proj`` to ``(xyz, conf)`` per pixel; with the skip branch, ``xyz += skip_proj([img, xyz]) * scale``."""

    def __init__(self, arch: MVDUSt3RArchitecture) -> None:
        super().__init__()
        args, skip = arch.args, arch.implicit.skip_proj
        self.patch_size, self.depth_mode, self.conf_mode = args.patch_size, args.depth_mode[0], args.conf_mode
        self.proj = nn.Linear(args.dec_embed_dim, 4 * args.patch_size**2)
        self.skip_scale = skip.skip_proj_scale
        self.skip_proj = None
        if args.skip:
            d = skip.skip_dim
            self.skip_proj = nn.Sequential(
                MiddleBlock(6, d, activation=True), MiddleBlock(d, d, 5, activation=True),
                MiddleBlock(d, d, 5, activation=True), MiddleBlock(d, 3),
            )  # fmt: skip

    def forward(self, tokens: Tensor, img: Tensor) -> dict[str, Tensor]:
        """tokens ``[B,N,C]``, img ``[B,3,H,W]`` in [-1,1] -> ``pts3d [B,H,W,3]``, ``conf [B,H,W]``."""
        h, w = img.shape[-2:]
        feat = unpatchify(self.proj(tokens), (h // self.patch_size, w // self.patch_size), self.patch_size)
        xyz, conf = feat[:, :3], feat[:, 3]
        if self.skip_proj is not None:
            xyz = xyz + self.skip_proj(torch.cat((img, xyz), dim=1)) * self.skip_scale
        return {"pts3d": self._points(xyz.permute(0, 2, 3, 1)), "conf": self._confidence(conf)}

    def _points(self, xyz: Tensor) -> Tensor:
        if self.depth_mode == "linear":
            return xyz
        d = xyz.norm(dim=-1, keepdim=True)
        direction = xyz / d.clip(min=1e-8)
        return direction * (d.square() if self.depth_mode == "square" else torch.expm1(d))

    def _confidence(self, x: Tensor) -> Tensor:
        mode, vmin, vmax = self.conf_mode
        if mode == "exp":
            return vmin + x.exp().clip(max=vmax - vmin)
        return (vmax - vmin) * torch.sigmoid(x) + vmin


def _mlp(dim: int, hidden: int, out: int, depth: int) -> nn.Sequential:
    """Bias-free ``Linear, ReLU`` x depth, then ``Linear`` (upstream's ``build_pytorch_mlp``)."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(dim if i == 0 else hidden, hidden, bias=False), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(hidden, out, bias=False))


class GSHead(nn.Module):
    """Per-pixel Gaussian attributes from normed tokens: SH colour (raw), opacity (sigmoid), scale (0.1 x, may be
    negative) and rotation (normalised quaternion, wxyz as gsplat takes it)."""

    def __init__(self, arch: MVDUSt3RArchitecture) -> None:
        super().__init__()
        args, cfg = arch.args, arch.implicit.gs_head
        self.patch_size = args.patch_size
        dim, p2 = args.dec_embed_dim, args.patch_size**2
        self.norm = nn.LayerNorm(dim, eps=GS_NORM_EPS)
        sh = 3 * (args.sh_degree + 1) ** 2
        self.mlp_rgb = _mlp(dim, cfg.mlp_dim, sh * p2, cfg.mlp_depth)
        self.mlp_opacity = _mlp(dim, cfg.mlp_dim, p2, cfg.mlp_depth)
        self.mlp_scale2 = _mlp(dim, cfg.mlp_dim, 3 * p2, cfg.mlp_depth)
        self.mlp_rotation = _mlp(dim, cfg.mlp_dim, 4 * p2, cfg.mlp_depth)

    def forward(self, tokens: Tensor, image_size: tuple[int, int]) -> dict[str, Tensor]:
        """tokens ``[B,N,C]`` -> ``rgb [B,H,W,3(d+1)^2]``, ``opacity [B,H,W,1]``, ``scale [B,H,W,3]``, ``rotation [B,H,W,4]``."""
        x = self.norm(tokens)
        grid = (image_size[0] // self.patch_size, image_size[1] // self.patch_size)

        def pixels(mlp: nn.Module) -> Tensor:
            return unpatchify(mlp(x), grid, self.patch_size).permute(0, 2, 3, 1)

        return {
            "rgb": pixels(self.mlp_rgb),
            "opacity": torch.sigmoid(pixels(self.mlp_opacity)),
            "scale": pixels(self.mlp_scale2) * SCALE_FACTOR,
            "rotation": F.normalize(pixels(self.mlp_rotation), dim=-1, eps=ROTATION_EPS),
        }
