"""CroCo's decoder block (self-attention, cross-attention to other views, MLP) on vist3a_vggt's building blocks."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from vist3a_vggt.layers import Attention, Mlp, Rope2D

NORM_EPS = 1e-6
"""Every CroCo LayerNorm (encoder, decoder, blocks)."""


class CrossAttention(nn.Module):
    """Queries from ``x``, keys and values from ``y``; 2-D RoPE on queries and keys with their own positions."""

    def __init__(self, dim: int, num_heads: int, rope: Rope2D | None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.projq = nn.Linear(dim, dim)
        self.projk = nn.Linear(dim, dim)
        self.projv = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def _heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, x: Tensor, y: Tensor, xpos: Tensor, ypos: Tensor) -> Tensor:
        """x ``[B,Nq,C]``, y ``[B,Nk,C]``, positions ``[B,N,2]`` integer (y, x) -> ``[B,Nq,C]``."""
        q, k, v = self._heads(self.projq(x)), self._heads(self.projk(y)), self._heads(self.projv(y))
        if self.rope is not None:
            q, k = self.rope(q, xpos), self.rope(k, ypos)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(x.shape))


class DecoderBlock(nn.Module):
    """``x += attn(norm1 x)``; ``x += cross_attn(norm2 x, norm_y y)``; ``x += mlp(norm3 x)``.

    ``y`` is the other views' tokens concatenated along the token axis (``norm_y`` acts per token, so normalising
    the concatenation equals concatenating the normalised views).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, rope: Rope2D | None, norm_mem: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.attn = Attention(dim, num_heads, rope=rope)
        self.cross_attn = CrossAttention(dim, num_heads, rope)
        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.norm3 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = nn.LayerNorm(dim, eps=NORM_EPS) if norm_mem else nn.Identity()

    def forward(self, x: Tensor, y: Tensor, xpos: Tensor, ypos: Tensor) -> Tensor:
        """x ``[B,N,C]``, y ``[B,M,C]`` with positions ``[B,N,2]`` and ``[B,M,2]``."""
        x = x + self.attn(self.norm1(x), xpos)
        x = x + self.cross_attn(self.norm2(x), self.norm_y(y), xpos, ypos)
        return x + self.mlp(self.norm3(x))
