"""DINOv2 ViT with registers, as VGGT uses it to embed each frame (``aggregator.patch_embed``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vist3a_vggt.config import DinoConfig
from vist3a_vggt.layers import Block, run_block


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens ``[N, h*w, C]``."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoVisionTransformer(nn.Module):
    """Token layout ``[cls, registers, patches]``; the positional embedding covers cls and patches only."""

    def __init__(self, cfg: DinoConfig) -> None:
        super().__init__()
        self.patch_size = cfg.patch_size
        self.antialias = cfg.interpolate_antialias
        self.offset = cfg.interpolate_offset
        self.num_prefix = 1 + cfg.num_register_tokens
        grid = cfg.img_size // cfg.patch_size
        dim = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, cfg.num_register_tokens, dim)) if cfg.num_register_tokens else None
        self.blocks = nn.ModuleList(
            Block(dim, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.proj_bias, cfg.ffn_bias, cfg.init_values,
                  cfg.qk_norm, norm_eps=1e-6)  # fmt: skip
            for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mask_token = nn.Parameter(torch.zeros(1, dim))

    def patch_pos_embed(self, h: int, w: int) -> Tensor:
        """The patch part of the positional embedding for an ``h x w`` grid ``[1, h*w, C]``.

        Kept as is only for the stored square grid; otherwise resized bicubic (antialiased when configured).
        """
        table = self.pos_embed[:, 1:]
        side = math.isqrt(table.shape[1])
        if h == w == side:
            return table
        grid = table.float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
        if self.offset:
            resize = {"scale_factor": ((h + self.offset) / side, (w + self.offset) / side)}
        else:
            resize = {"size": (h, w)}
        grid = F.interpolate(grid, mode="bicubic", antialias=self.antialias, **resize)
        return grid.permute(0, 2, 3, 1).reshape(1, h * w, -1).to(table.dtype)

    def prefix(self, n: int) -> Tensor:
        """The learned prefix tokens as the first block sees them ``[n, 1+R, C]`` (cls carries its pos-embed)."""
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(n, -1, -1)
        if self.register_tokens is None:
            return cls
        return torch.cat((cls, self.register_tokens.expand(n, -1, -1)), dim=1)

    def embed(self, images: Tensor) -> Tensor:
        """Normalised images ``[N,3,H,W]`` -> tokens before the first block ``[N, 1+R+h*w, C]``."""
        n, _, height, width = images.shape
        patches = self.patch_embed(images) + self.patch_pos_embed(height // self.patch_size, width // self.patch_size)
        return torch.cat((self.prefix(n), patches), dim=1)

    def run(self, x: Tensor, start: int = 0, stop: int | None = None) -> Tensor:
        """Blocks ``start..stop-1`` (0-based) on tokens ``[N, L, C]``."""
        for block in self.blocks[start:stop]:
            x = run_block(block, x)
        return x

    def patch_tokens(self, x: Tensor) -> Tensor:
        """The final normed patch tokens ``[N, h*w, C]`` from the last block's output."""
        return self.norm(x)[:, self.num_prefix :]
