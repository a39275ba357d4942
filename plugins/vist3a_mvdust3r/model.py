"""MV-DUSt3R(+) with the official state-dict names: a shared ViT encoder per view, the multi-view decoder with one
path per reference view, and per-view pointmap and Gaussian heads.

Decoder (read off upstream): path ``r`` (``r < n_ref``) holds every view's tokens. In each layer, view ``r`` of path
``r`` goes through ``dec_blocks`` and every other view through ``dec_blocks2``, each cross-attending to the other
views of the same path from the previous layer. With ``m_ref_flag`` a ``dec_same_view_blocks`` block then lets each
view of each path cross-attend to the same view in the other paths. Outputs are stacked per view with batch index
``b * n_ref + r``; in path ``r >= 1`` views 0 and ``r`` trade slots, so slot 0 always holds the path's reference.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from vist3a_vggt.dino import PatchEmbed
from vist3a_vggt.layers import Block, Rope2D, run_block

from vist3a_mvdust3r.config import MVDUSt3RArchitecture
from vist3a_mvdust3r.heads import GSHead, LinearPts3d
from vist3a_mvdust3r.layers import NORM_EPS, DecoderBlock

KEYS = ("pts3d", "conf", "rgb", "opacity", "scale", "rotation")
"""Per-slot outputs, in upstream's order (``rgb`` and after only with the Gaussian head)."""


def others(n: int, device: torch.device) -> Tensor:
    """``[n, n-1]``: row ``i`` lists ``0..n-1`` without ``i``, ascending."""
    idx = torch.arange(n, device=device).expand(n, n)
    return idx[~torch.eye(n, dtype=torch.bool, device=device)].view(n, n - 1)


def slot_order(n_ref: int, views: int, device: torch.device) -> Tensor:
    """``[n_ref, V]``: the view in each output slot of each path (views 0 and r swapped in path r)."""
    order = torch.arange(views, device=device).repeat(n_ref, 1)
    ref = torch.arange(n_ref, device=device)
    order[ref, 0], order[ref, ref] = ref, 0
    return order


class MVDUSt3R(nn.Module):
    """``AsymmetricCroCo3DStereoMultiView`` with RoPE, the linear head and optionally the Gaussian head."""

    def __init__(self, arch: MVDUSt3RArchitecture) -> None:
        super().__init__()
        a = arch.args
        self.arch, self.patch_size, self.n_ref = arch, a.patch_size, arch.n_ref
        rope = Rope2D(a.rope_base)

        def decoder_blocks() -> nn.ModuleList:
            return nn.ModuleList(
                DecoderBlock(a.dec_embed_dim, a.dec_num_heads, a.mlp_ratio, rope, a.norm_im2_in_dec) for _ in range(a.dec_depth)
            )

        self.mask_token = nn.Parameter(torch.zeros(1, 1, a.dec_embed_dim))
        self.patch_embed = PatchEmbed(a.patch_size, 3, a.enc_embed_dim)
        self.enc_blocks = nn.ModuleList(
            Block(a.enc_embed_dim, a.enc_num_heads, a.mlp_ratio, rope=rope, norm_eps=NORM_EPS) for _ in range(a.enc_depth)
        )
        self.enc_norm = nn.LayerNorm(a.enc_embed_dim, eps=NORM_EPS)
        self.decoder_embed = nn.Linear(a.enc_embed_dim, a.dec_embed_dim)
        self.dec_blocks = decoder_blocks()
        self.dec_norm = nn.LayerNorm(a.dec_embed_dim, eps=NORM_EPS)
        self.dec_same_view_blocks = decoder_blocks() if a.m_ref_flag else None
        self.dec_blocks2 = decoder_blocks()
        self.downstream_head1 = LinearPts3d(arch)
        self.downstream_head2 = LinearPts3d(arch)
        self.downstream_GS_head = nn.ModuleList([GSHead(arch), GSHead(arch)]) if a.gs else None

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Images ``[B,S,3,H,W]`` in [-1,1] -> per-slot outputs ``{key: [S, B*n_ref, H, W, k]}`` (see :data:`KEYS`)."""
        b, s = images.shape[:2]
        grid = self.grid(images.shape[-2:])
        tokens = self.encode(self.embed(images), grid)
        return self.decode(tokens.view(b, s, *tokens.shape[1:]), images, grid)

    def grid(self, size: tuple[int, int] | torch.Size) -> tuple[int, int]:
        return size[0] // self.patch_size, size[1] // self.patch_size

    def positions(self, n: int, grid: tuple[int, int], device: torch.device) -> Tensor:
        """RoPE positions ``[n, h*w, 2]``: integer (y, x) of each patch, row-major."""
        y, x = torch.meshgrid(torch.arange(grid[0], device=device), torch.arange(grid[1], device=device), indexing="ij")
        return torch.stack((y, x), dim=-1).view(1, -1, 2).expand(n, -1, -1)

    def embed(self, images: Tensor) -> Tensor:
        """Images ``[B,S,3,H,W]`` in [-1,1] -> patch tokens ``[B*S, h*w, C]``."""
        return self.patch_embed(images.flatten(0, 1))

    def encode(self, tokens: Tensor, grid: tuple[int, int], start: int = 0, stop: int | None = None) -> Tensor:
        """Encoder blocks ``start..stop-1`` on tokens ``[N, h*w, C]`` (no final norm)."""
        pos = self.positions(tokens.shape[0], grid, tokens.device)
        for block in self.enc_blocks[start:stop]:
            tokens = run_block(block, tokens, pos)
        return tokens

    def decode(self, tokens: Tensor, images: Tensor, grid: tuple[int, int]) -> dict[str, Tensor]:
        """Encoder outputs ``[B,S,h*w,C]`` (before ``enc_norm``) and images ``[B,S,3,H,W]`` in [-1,1] -> head outputs."""
        b, s = tokens.shape[:2]
        r = self.n_ref
        x = self.decoder_embed(self.enc_norm(tokens)).transpose(0, 1).unsqueeze(0).expand(r, -1, -1, -1, -1)  # [R,S,B,P,D]
        pos = self.positions(1, grid, tokens.device)
        for i, (blk1, blk2) in enumerate(zip(self.dec_blocks, self.dec_blocks2)):
            x = self._cross_view(blk1, blk2, x, pos)
            if self.dec_same_view_blocks is not None:
                x = self._same_view(self.dec_same_view_blocks[i], x, pos)
        order = slot_order(r, s, x.device)
        per_view = self.dec_norm(x.permute(1, 2, 0, 3, 4))  # [S,B,R,P,D]
        slots = per_view[order.T[:, None, :], torch.arange(b, device=x.device)[None, :, None], torch.arange(r, device=x.device)]
        imgs = images[torch.arange(b, device=x.device)[None, :, None], order.T[:, None, :]]  # [S,B,R,3,H,W]
        return self.heads(slots.flatten(1, 2), imgs.flatten(1, 2))

    def heads(self, tokens: Tensor, images: Tensor) -> dict[str, Tensor]:
        """Slot tokens ``[S,N,P,D]`` and images ``[S,N,3,H,W]`` -> ``{key: [S,N,H,W,k]}``; slot 0 uses the first
        heads, the others the second; autocast off, in the heads' dtype (float32 unless the model was cast)."""
        size = tuple(images.shape[-2:])
        dtype = self.downstream_head1.proj.weight.dtype
        tokens, images = tokens.to(dtype), images.to(dtype)
        parts = []
        with torch.autocast(tokens.device.type, enabled=False):
            for i, (tok, img) in enumerate(((tokens[:1], images[:1]), (tokens[1:], images[1:]))):
                out = getattr(self, f"downstream_head{i + 1}")(tok.flatten(0, 1), img.flatten(0, 1))
                if self.downstream_GS_head is not None:
                    out |= self.downstream_GS_head[i](tok.flatten(0, 1), size)
                parts.append({k: v.unflatten(0, tok.shape[:2]) for k, v in out.items()})
        return {k: torch.cat((parts[0][k], parts[1][k])) for k in KEYS if k in parts[0]}

    def _cross_view(self, blk1: DecoderBlock, blk2: DecoderBlock, x: Tensor, pos: Tensor) -> Tensor:
        """One layer of every path: references through ``blk1``, the other views through ``blk2``."""
        r, s = x.shape[:2]
        rest = others(s, x.device)
        refs = torch.arange(r, device=x.device)
        rows, cols = (~torch.eye(r, s, dtype=torch.bool, device=x.device)).nonzero(as_tuple=True)
        out = torch.empty_like(x)
        out[refs, refs] = _attend(blk1, x[refs, refs], x[refs[:, None], rest[refs]], pos)
        out[rows, cols] = _attend(blk2, x[rows, cols], x[rows[:, None], rest[cols]], pos)
        return out

    def _same_view(self, block: DecoderBlock, x: Tensor, pos: Tensor) -> Tensor:
        """Each view of each path cross-attends to the same view in the other paths."""
        r, s = x.shape[:2]
        keys = x[others(r, x.device)].permute(0, 2, 1, 3, 4, 5)  # [R,S,R-1,B,P,D]
        out = _attend(block, x.flatten(0, 1), keys.flatten(0, 1), pos)
        return out.view(x.shape)


def _attend(block: DecoderBlock, queries: Tensor, keys: Tensor, pos: Tensor) -> Tensor:
    """``block`` on queries ``[M,B,P,D]`` with keys ``[M,K,B,P,D]`` (K views concatenated along the tokens)."""
    m, k, b, p, d = keys.shape
    y = keys.permute(0, 2, 1, 3, 4).reshape(m * b, k * p, d)
    qpos = pos.expand(m * b, -1, -1)
    out = run_block(block, queries.reshape(m * b, p, d), y, qpos, pos.repeat(1, k, 1).expand(m * b, -1, -1))
    return out.view(m, b, p, d)
