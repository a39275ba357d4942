"""The track head: half-resolution DPT features, a correlation pyramid and an iterative update transformer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vist3a_vggt.config import TrackerConfig, TrackHeadConfig
from vist3a_vggt.heads import DPTHead
from vist3a_vggt.layers import Mlp


def sample_grid(maps: Tensor, xy: Tensor, padding_mode: str = "border") -> Tensor:
    """Bilinear samples of ``maps [N,C,H,W]`` at pixel coordinates ``xy [N,h,w,2]`` (align_corners) -> ``[N,C,h,w]``."""
    height, width = maps.shape[-2:]
    scale = xy.new_tensor([2 / max(width - 1, 1), 2 / max(height - 1, 1)])
    return F.grid_sample(maps, xy.detach() * scale - 1, align_corners=True, padding_mode=padding_mode)


def sample_points(maps: Tensor, xy: Tensor) -> Tensor:
    """Features of ``maps [B,C,H,W]`` at points ``xy [B,N,2]`` -> ``[B,N,C]``."""
    return sample_grid(maps, xy[:, :, None]).squeeze(-1).transpose(1, 2)


def sincos_1d(dim: int, pos: Tensor, base: float = 10000.0) -> Tensor:
    """``[M, dim]`` = [sin, cos] of ``pos * base ** (-2i / dim)``, computed in float64."""
    omega = 1.0 / base ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    angles = pos.reshape(-1).double()[:, None] * omega[None]
    return torch.cat((angles.sin(), angles.cos()), dim=1).float()


def grid_embedding(dim: int, grid: tuple[int, int]) -> Tensor:
    """Sin-cos embedding ``[1, dim, h, w]``: the first half encodes x, the second y."""
    ys, xs = torch.meshgrid(torch.arange(grid[0], dtype=torch.float32), torch.arange(grid[1], dtype=torch.float32), indexing="ij")
    emb = torch.cat((sincos_1d(dim // 2, xs), sincos_1d(dim // 2, ys)), dim=1)
    return emb.reshape(1, *grid, dim).permute(0, 3, 1, 2)


def flow_embedding(flow: Tensor, channels: int) -> Tensor:
    """``[N,S,2]`` -> ``[N,S,2*channels]``: interleaved sin/cos of x then of y at frequencies ``k * 1000 / channels``."""
    freq = torch.arange(0, channels, 2, device=flow.device, dtype=torch.float32) * (1000.0 / channels)
    parts = []
    for axis in range(2):
        angles = flow[..., axis : axis + 1] * freq
        parts.append(torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2))
    return torch.cat(parts, dim=-1).to(flow.dtype)


class AttnBlock(nn.Module):
    """Self-attention block whose residual starts from the normed input (upstream behaviour)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x)
        x = x + self.attn(x, x, x, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class CrossAttnBlock(nn.Module):
    """Cross-attention block; the residual also starts from the normed query."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        x = self.norm1(x)
        context = self.norm_context(context)
        x = x + self.cross_attn(x, context, context, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class EfficientUpdateFormer(nn.Module):
    """Time attention per track, and space attention through learned virtual tracks, on ``[B,N,S,C]``."""

    def __init__(self, depth: int, input_dim: int, hidden: int, output_dim: int, space: bool,
                 heads: int = 8, mlp_ratio: float = 4.0, virtual: int = 64) -> None:  # fmt: skip
        super().__init__()
        self.input_norm = nn.LayerNorm(input_dim)
        self.input_transform = nn.Linear(input_dim, hidden)
        self.output_norm = nn.LayerNorm(hidden)
        self.flow_head = nn.Linear(hidden, output_dim)
        self.time_blocks = nn.ModuleList(AttnBlock(hidden, heads, mlp_ratio) for _ in range(depth))
        self.space = space
        if space:
            self.virual_tracks = nn.Parameter(torch.zeros(1, virtual, 1, hidden))
            self.space_virtual_blocks = nn.ModuleList(AttnBlock(hidden, heads, mlp_ratio) for _ in range(depth))
            self.space_point2virtual_blocks = nn.ModuleList(CrossAttnBlock(hidden, heads, mlp_ratio) for _ in range(depth))
            self.space_virtual2point_blocks = nn.ModuleList(CrossAttnBlock(hidden, heads, mlp_ratio) for _ in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        start = self.input_transform(self.input_norm(x))
        b, n, s, c = start.shape
        tokens = torch.cat((start, self.virual_tracks.expand(b, -1, s, -1)), dim=1) if self.space else start
        total = tokens.shape[1]
        for i, time_block in enumerate(self.time_blocks):
            tokens = time_block(tokens.reshape(b * total, s, c)).view(b, total, s, c)
            if self.space:
                tokens = self._space(i, tokens.permute(0, 2, 1, 3).reshape(b * s, total, c), n)
                tokens = tokens.view(b, s, total, c).permute(0, 2, 1, 3)
        return self.flow_head(self.output_norm(tokens[:, :n] + start))

    def _space(self, i: int, tokens: Tensor, n: int) -> Tensor:
        points, virtual = tokens[:, :n], tokens[:, n:]
        virtual = self.space_virtual2point_blocks[i](virtual, points)
        virtual = self.space_virtual_blocks[i](virtual)
        points = self.space_point2virtual_blocks[i](points, virtual)
        return torch.cat((points, virtual), dim=1)


class CorrPyramid:
    """Correlations of track features with average-pooled feature maps, sampled in a ``(2r+1)^2`` window."""

    def __init__(self, fmaps: Tensor, levels: int, radius: int) -> None:
        self.levels = [fmaps]
        for _ in range(levels - 1):
            b, s, c, h, w = self.levels[-1].shape
            pooled = F.avg_pool2d(self.levels[-1].reshape(b * s, c, h, w), 2, stride=2)
            self.levels.append(pooled.reshape(b, s, c, *pooled.shape[-2:]))
        offsets = torch.linspace(-radius, radius, 2 * radius + 1, device=fmaps.device, dtype=fmaps.dtype)
        self.window = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1)

    def sample(self, feats: Tensor, coords: Tensor) -> Tensor:
        """feats ``[B,S,N,C]``, coords ``[B,S,N,2]`` -> ``[B,S,N,levels*(2r+1)^2]``."""
        b, s, n, c = feats.shape
        side = self.window.shape[0]
        out = []
        for level, fmaps in enumerate(self.levels):
            h, w = fmaps.shape[-2:]
            corr = feats @ fmaps.reshape(b, s, c, h * w) / math.sqrt(c)
            xy = coords.reshape(b * s * n, 1, 1, 2) / 2**level + self.window.view(1, side, side, 2)
            sampled = sample_grid(corr.reshape(b * s * n, 1, h, w), xy, padding_mode="zeros")
            out.append(sampled.view(b, s, n, -1))
        return torch.cat(out, dim=-1)


class BaseTrackerPredictor(nn.Module):
    """Iteratively updates track coordinates and features from correlations, flows and positions."""

    def __init__(self, cfg: TrackerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        latent = cfg.latent_dim
        self.transformer_dim = 3 * latent + 4
        self.corr_mlp = Mlp(cfg.corr_levels * (2 * cfg.corr_radius + 1) ** 2, cfg.hidden_size, latent)
        self.query_ref_token = nn.Parameter(torch.zeros(1, 2, self.transformer_dim))
        self.updateformer = EfficientUpdateFormer(cfg.depth, self.transformer_dim, cfg.hidden_size, latent + 2, cfg.use_spaceatt)
        self.fmap_norm = nn.LayerNorm(latent)
        self.ffeat_norm = nn.GroupNorm(1, latent)
        self.ffeat_updater = nn.Sequential(nn.Linear(latent, latent), nn.GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(latent, 1))
        if cfg.predict_conf:
            self.conf_predictor = nn.Sequential(nn.Linear(latent, 1))

    def forward(self, queries: Tensor, fmaps: Tensor, iters: int) -> tuple[list[Tensor], Tensor, Tensor | None]:
        """queries ``[B,N,2]`` pixels, fmaps ``[B,S,C,h,w]`` -> tracks per iteration ``[B,S,N,2]``, vis, conf."""
        b, n, _ = queries.shape
        s, c, h, w = fmaps.shape[1:]
        fmaps = self.fmap_norm(fmaps.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)
        start = queries / float(self.cfg.stride)
        coords = start[:, None].repeat(1, s, 1, 1)
        feats = sample_points(fmaps[:, 0], start)[:, None].repeat(1, s, 1, 1)  # [B,S,N,C]
        pyramid = CorrPyramid(fmaps, self.cfg.corr_levels, self.cfg.corr_radius)
        pos = sample_points(grid_embedding(self.transformer_dim, (h, w)).to(fmaps).expand(b, -1, -1, -1), start)
        ref = torch.cat((self.query_ref_token[:, :1], self.query_ref_token[:, 1:].expand(-1, s - 1, -1)), dim=1)
        tracks = []
        for _ in range(iters):
            coords = coords.detach()
            x = self._tokens(pyramid.sample(feats, coords), coords, feats) + pos.reshape(b * n, 1, -1) + ref
            delta = self.updateformer(x.view(b, n, s, -1)).reshape(b * n * s, c + 2)
            flat = feats.permute(0, 2, 1, 3).reshape(b * n * s, c)
            flat = self.ffeat_updater(self.ffeat_norm(delta[:, 2:])) + flat
            feats = flat.reshape(b, n, s, c).permute(0, 2, 1, 3)
            coords = coords + delta[:, :2].reshape(b, n, s, 2).permute(0, 2, 1, 3)
            coords = torch.cat((start[:, None], coords[:, 1:]), dim=1)
            tracks.append(coords * self.cfg.stride)
        vis = torch.sigmoid(self.vis_predictor(feats).squeeze(-1))
        conf = torch.sigmoid(self.conf_predictor(feats).squeeze(-1)) if self.cfg.predict_conf else None
        return tracks, vis, conf

    def _tokens(self, corr: Tensor, coords: Tensor, feats: Tensor) -> Tensor:
        """The update transformer's input ``[B*N, S, 3C+4]``: flow embedding, correlation features, track features."""
        b, s, n, _ = coords.shape
        corr = self.corr_mlp(corr.permute(0, 2, 1, 3).reshape(b * n, s, -1))
        flow = (coords - coords[:, :1]).permute(0, 2, 1, 3).reshape(b * n, s, 2)
        scaled = flow / self.cfg.max_scale
        flow = torch.cat((flow_embedding(flow, self.cfg.latent_dim // 2), scaled, scaled), dim=-1)
        return torch.cat((flow, corr, feats.permute(0, 2, 1, 3).reshape(b * n, s, -1)), dim=-1)


class TrackHead(nn.Module):
    """Tracks query points of frame 0 through all frames."""

    def __init__(self, cfg: TrackHeadConfig) -> None:
        super().__init__()
        self.iters = cfg.iters
        self.feature_extractor = DPTHead(cfg.feature_extractor)
        self.tracker = BaseTrackerPredictor(cfg.tracker)

    def forward(self, layers: Sequence[Tensor | None], image_size: tuple[int, int], patch_start: int,
                queries: Tensor) -> tuple[list[Tensor], Tensor, Tensor | None]:  # fmt: skip
        fmaps = self.feature_extractor(layers, image_size, patch_start)
        return self.tracker(queries, fmaps, self.iters)
