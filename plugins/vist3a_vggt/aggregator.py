"""The aggregator: DINO patch tokens plus camera/register tokens through alternating frame and global attention."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vist3a_vggt.config import AggregatorConfig, DinoConfig
from vist3a_vggt.dino import DinoVisionTransformer
from vist3a_vggt.layers import Block, Rope2D, run_block

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Aggregator(nn.Module):
    """Per frame the tokens are ``[camera, registers, patches]``; frame 0 uses slot 0 of the special tokens.

    Output ``i`` of the layer stack is ``[frame-block output, global-block output]`` of block ``i`` on channels (2C).
    """

    def __init__(self, cfg: AggregatorConfig, dino: DinoConfig) -> None:
        super().__init__()
        self.patch_embed = DinoVisionTransformer(dino)
        self.patch_size = cfg.patch_size
        self.order = list(cfg.aa_order)
        self.group = cfg.aa_block_size
        self.rope = Rope2D(cfg.rope_freq) if cfg.rope_freq > 0 else None

        def blocks() -> nn.ModuleList:
            return nn.ModuleList(
                Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.proj_bias, cfg.ffn_bias,
                      cfg.init_values, cfg.qk_norm, self.rope)  # fmt: skip
                for _ in range(cfg.depth)
            )

        self.frame_blocks = blocks()
        self.global_blocks = blocks()
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, cfg.embed_dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, cfg.num_register_tokens, cfg.embed_dim))
        self.patch_start_idx = 1 + cfg.num_register_tokens
        self.image_mean, self.image_std = IMAGENET_MEAN, IMAGENET_STD
        """The normalisation constants (AnySplat uses them rounded to bfloat16)."""

    @property
    def depth(self) -> int:
        return len(self.frame_blocks)

    def embed(self, images: Tensor) -> Tensor:
        """Images ``[B,S,3,H,W]`` in [0,1] -> DINO tokens before its first block ``[B*S, 1+R+P, C]``."""
        mean = images.new_tensor(self.image_mean).view(1, 1, 3, 1, 1)
        std = images.new_tensor(self.image_std).view(1, 1, 3, 1, 1)
        return self.patch_embed.embed(((images - mean) / std).flatten(0, 1))

    def special_tokens(self, b: int, s: int) -> Tensor:
        """The learned camera and register tokens ``[B, S, 1+R, C]`` (slot 0 for frame 0, slot 1 for the rest)."""
        tokens = torch.cat((self.camera_token, self.register_token), dim=2)
        per_frame = torch.cat((tokens[:, :1], tokens[:, 1:].expand(1, s - 1, -1, -1)), dim=1)
        return per_frame.expand(b, -1, -1, -1)

    def positions(self, n: int, grid: tuple[int, int], device: torch.device) -> Tensor | None:
        """RoPE positions ``[n, 1+R+P, 2]``: patches at (y, x) + 1, special tokens at 0."""
        if self.rope is None:
            return None
        ys, xs = torch.meshgrid(torch.arange(grid[0], device=device), torch.arange(grid[1], device=device), indexing="ij")
        patches = torch.stack((ys, xs), dim=-1).reshape(-1, 2) + 1
        pos = torch.cat((patches.new_zeros(self.patch_start_idx, 2), patches))
        return pos.expand(n, -1, -1)

    def run(self, tokens: Tensor, grid: tuple[int, int], start: int = 0, stop: int | None = None) -> tuple[Tensor, list[Tensor | None]]:
        """Blocks ``start..stop-1`` (multiples of ``aa_block_size``) on tokens ``[B,S,P,C]``.

        Returns the last tokens ``[B,S,P,C]`` and the outputs list (length ``depth``; None where not computed).
        """
        b, s, p, c = tokens.shape
        pos = self.positions(b * s, grid, tokens.device)
        outputs: list[Tensor | None] = [None] * self.depth
        stop = self.depth if stop is None else stop
        for first in range(start, stop, self.group):
            found = {}
            for kind in self.order:
                tokens, found[kind] = self._run_group(kind, tokens, pos, first)
            for i, (frame, glob) in enumerate(zip(found["frame"], found["global"])):
                outputs[first + i] = torch.cat((frame, glob), dim=-1)
        return tokens, outputs

    def _run_group(self, kind: str, tokens: Tensor, pos: Tensor | None, first: int) -> tuple[Tensor, list[Tensor]]:
        b, s, p, c = tokens.shape
        if kind == "frame":
            blocks, shape = self.frame_blocks, (b * s, p, c)
        else:
            blocks, shape = self.global_blocks, (b, s * p, c)
        x = tokens.reshape(shape)
        pos = None if pos is None else pos.reshape(*shape[:2], 2)
        found = []
        for block in blocks[first : first + self.group]:
            x = run_block(block, x, pos)
            found.append(x.view(b, s, p, c))
        return found[-1], found
