"""Transformer building blocks shared by the DINOv2 encoder, the aggregator and the camera head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def run_block(block: nn.Module, *args: Tensor | None) -> Tensor:
    """``block(*args)``, recomputed in the backward pass instead of stored when the block's
    ``gradient_checkpointing`` flag is on and gradients are enabled."""
    if getattr(block, "gradient_checkpointing", False) and torch.is_grad_enabled():
        return checkpoint(block, *args, use_reentrant=False)
    return block(*args)


class Mlp(nn.Module):
    """``fc2(gelu(fc1(x)))`` with exact (erf) GELU."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel learned scale ``x * gamma``."""

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Rope2D(nn.Module):
    """2-D rotary embedding: the first half of each head is rotated by the y position, the second by x.

    Rotate-half form with angles ``pos * base ** (-2i / d)`` duplicated over both halves of each part.
    """

    def __init__(self, base: float = 100.0) -> None:
        super().__init__()
        self.base = base

    def _cos_sin(self, dim: int, length: int, ref: Tensor) -> tuple[Tensor, Tensor]:
        inv_freq = 1.0 / self.base ** (torch.arange(0, dim, 2, device=ref.device).float() / dim)
        angles = torch.arange(length, device=ref.device, dtype=torch.float32)[:, None] * inv_freq[None]
        angles = torch.cat((angles, angles), dim=-1).to(ref.dtype)
        return angles.cos(), angles.sin()

    @staticmethod
    def _rotate(x: Tensor, pos: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        c, s = cos[pos][:, None], sin[pos][:, None]  # [B,1,N,d]
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * c + rotated * s

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        """x ``[B,heads,N,D]``, pos ``[B,N,2]`` integer (y, x) -> rotated x."""
        dim = x.shape[-1] // 2
        cos, sin = self._cos_sin(dim, int(pos.max()) + 1, x)
        y_part, x_part = x.chunk(2, dim=-1)
        return torch.cat((self._rotate(y_part, pos[..., 0], cos, sin), self._rotate(x_part, pos[..., 1], cos, sin)), dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention with optional per-head q/k LayerNorm and 2-D RoPE (applied after the norm)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, proj_bias: bool = True,
                 qk_norm: bool = False, rope: Rope2D | None = None, norm_eps: float = 1e-5) -> None:  # fmt: skip
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        head_dim = dim // num_heads
        self.q_norm = nn.LayerNorm(head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.rope = rope

    def forward(self, x: Tensor, pos: Tensor | None = None) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None and pos is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x)))``, then ``x + ls2(mlp(norm2(x)))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, proj_bias: bool = True,
                 ffn_bias: bool = True, init_values: float | None = None, qk_norm: bool = False,
                 rope: Rope2D | None = None, norm_eps: float = 1e-5) -> None:  # fmt: skip
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, proj_bias, qk_norm, rope)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), bias=ffn_bias)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: Tensor, pos: Tensor | None = None) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), pos))
        return x + self.ls2(self.mlp(self.norm2(x)))
