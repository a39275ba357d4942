"""The camera head and the DPT dense heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vist3a_vggt.config import CameraHeadConfig, DPTConfig
from vist3a_vggt.layers import Block, Mlp


def inverse_log(y: Tensor) -> Tensor:
    """``sign(y) * (exp(|y|) - 1)``."""
    return torch.sign(y) * torch.expm1(y.abs())


def activate(x: Tensor, kind: str) -> Tensor:
    """The point/pose activations by their upstream names."""
    if kind == "linear":
        return x
    if kind == "inv_log":
        return inverse_log(x)
    if kind == "exp":
        return x.exp()
    if kind == "relu":
        return F.relu(x)
    if kind == "sigmoid":
        return torch.sigmoid(x)
    if kind == "norm":
        return x / x.norm(dim=-1, keepdim=True)
    if kind == "norm_exp":
        d = x.norm(dim=-1, keepdim=True).clamp(min=1e-8)
        return x / d * torch.expm1(d)
    if kind == "xy_inv_log":
        xy, z = x.split([2, 1], dim=-1)
        z = inverse_log(z)
        return torch.cat((xy * z, z), dim=-1)
    raise ValueError(f"unknown activation {kind!r}")


def activate_confidence(x: Tensor, kind: str) -> Tensor:
    return {"expp1": lambda: 1 + x.exp(), "expp0": x.exp, "sigmoid": lambda: torch.sigmoid(x)}[kind]()


class CameraHead(nn.Module):
    """Refines a 9-d pose encoding ``[T(3), quat xyzw(4), fov_h, fov_w]`` from the last layer's camera tokens."""

    def __init__(self, cfg: CameraHeadConfig) -> None:
        super().__init__()
        dim, pose_dim = cfg.dim_in, 9
        self.acts = (cfg.trans_act, cfg.quat_act, cfg.fl_act)
        self.iterations = cfg.num_iterations_in_forward
        self.trunk = nn.Sequential(
            *(Block(dim, cfg.num_heads, cfg.mlp_ratio, init_values=cfg.init_values) for _ in range(cfg.trunk_depth))
        )
        self.token_norm = nn.LayerNorm(dim)
        self.trunk_norm = nn.LayerNorm(dim)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, pose_dim))
        self.embed_pose = nn.Linear(pose_dim, dim)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.adaln_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim, dim // 2, pose_dim)

    def forward(self, last_layer: Tensor) -> list[Tensor]:
        """Last aggregator output ``[B,S,P,2C]`` -> one activated pose encoding ``[B,S,9]`` per iteration."""
        tokens = self.token_norm(last_layer[:, :, 0])
        raw: Tensor | None = None
        encodings = []
        for _ in range(self.iterations):
            previous = self.empty_pose_tokens.expand(*tokens.shape[:2], -1) if raw is None else raw.detach()
            shift, scale, gate = self.poseLN_modulation(self.embed_pose(previous)).chunk(3, dim=-1)
            x = gate * (self.adaln_norm(tokens) * (1 + scale) + shift) + tokens
            delta = self.pose_branch(self.trunk_norm(self.trunk(x)))
            raw = delta if raw is None else raw + delta
            encodings.append(self._activate(raw))
        return encodings

    def _activate(self, raw: Tensor) -> Tensor:
        parts = raw.split([3, 4, 2], dim=-1)
        return torch.cat([activate(part, kind) for part, kind in zip(parts, self.acts)], dim=-1)


def uv_embedding(channels: int, grid: tuple[int, int], aspect: float, ref: Tensor, omega0: float = 100.0) -> Tensor:
    """Sin-cos embedding ``[channels, h, w]`` of a UV grid spanning the image plane normalised by its diagonal."""
    h, w = grid
    diag = (aspect**2 + 1.0) ** 0.5
    span_x, span_y = aspect / diag, 1.0 / diag
    xs = torch.linspace(-span_x * (w - 1) / w, span_x * (w - 1) / w, w, dtype=ref.dtype, device=ref.device)
    ys = torch.linspace(-span_y * (h - 1) / h, span_y * (h - 1) / h, h, dtype=ref.dtype, device=ref.device)
    uu, vv = torch.meshgrid(xs, ys, indexing="xy")
    omega = torch.arange(channels // 4, dtype=torch.float64, device=ref.device) / (channels // 4)
    omega = 1.0 / omega0**omega

    def sincos(values: Tensor) -> Tensor:
        angles = values.reshape(-1).double()[:, None] * omega[None]
        return torch.cat((angles.sin(), angles.cos()), dim=1).float()

    emb = torch.cat((sincos(uu), sincos(vv)), dim=-1).view(h, w, channels)
    return emb.permute(2, 0, 1)


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear, ``align_corners=True``."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class ResidualConvUnit(nn.Module):
    """``conv2(relu(conv1(relu(x)))) + relu(x)``: upstream's in-place ReLU makes the skip carry relu(x)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FeatureFusionBlock(nn.Module):
    """Adds the refined skip input, refines, upsamples to ``size`` (or x2) and projects with a 1x1 conv."""

    def __init__(self, features: int, has_residual: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        if has_residual:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: Tensor, skip: Tensor | None = None, size: tuple[int, int] | None = None) -> Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        size = size or (int(x.shape[-2] * 2), int(x.shape[-1] * 2))
        return self.out_conv(resize(x, size))


class DPTHead(nn.Module):
    """Dense prediction from four aggregator layers; returns ``(values, confidence)`` or features."""

    def __init__(self, cfg: DPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        oc, f = cfg.out_channels, cfg.features
        self.norm = nn.LayerNorm(cfg.dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(cfg.dim_in, c, 1) for c in oc)
        self.resize_layers = nn.ModuleList(
            [nn.ConvTranspose2d(oc[0], oc[0], 4, stride=4), nn.ConvTranspose2d(oc[1], oc[1], 2, stride=2),
             nn.Identity(), nn.Conv2d(oc[3], oc[3], 3, stride=2, padding=1)]  # fmt: skip
        )
        self.scratch = nn.Module()
        for i, c in enumerate(oc, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, f, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", FeatureFusionBlock(f, has_residual=i != 4))
        if cfg.feature_only:
            self.scratch.output_conv1 = nn.Conv2d(f, f, 3, padding=1)
        else:
            self.scratch.output_conv1 = nn.Conv2d(f, f // 2, 3, padding=1)
            self.scratch.output_conv2 = nn.Sequential(
                nn.Conv2d(f // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, cfg.output_dim, 1)
            )

    def forward(self, layers: Sequence[Tensor | None], image_size: tuple[int, int], patch_start: int,
                chunk: int = 8) -> Tensor | tuple[Tensor, Tensor]:  # fmt: skip
        """Aggregator outputs ``[B,S,P,2C]`` -> values ``[B,S,H,W,D]`` and confidence ``[B,S,H,W]``, or features
        ``[B,S,F,H/r,W/r]`` when ``feature_only``. Frames are processed ``chunk`` at a time."""
        picked = [layers[i][:, :, patch_start:] for i in self.cfg.intermediate_layer_idx]
        s = picked[0].shape[1]
        parts = [self._frames([x[:, a : a + chunk] for x in picked], image_size) for a in range(0, s, chunk)]
        if self.cfg.feature_only:
            return torch.cat(parts, dim=1)
        return torch.cat([p[0] for p in parts], dim=1), torch.cat([p[1] for p in parts], dim=1)

    def _frames(self, picked: list[Tensor], image_size: tuple[int, int]) -> Tensor | tuple[Tensor, Tensor]:
        b, s = picked[0].shape[:2]
        height, width = image_size
        grid = (height // self.cfg.patch_size, width // self.cfg.patch_size)
        out = self._fused(picked, image_size)
        size = tuple(int(g * self.cfg.patch_size / self.cfg.down_ratio) for g in grid)
        out = self._pos(resize(out, size), width / height)
        if self.cfg.feature_only:
            return out.view(b, s, *out.shape[1:])
        out = self.scratch.output_conv2(out).permute(0, 2, 3, 1)
        values = activate(out[..., :-1], self.cfg.activation)
        conf = activate_confidence(out[..., -1], self.cfg.conf_activation)
        return values.view(b, s, *values.shape[1:]), conf.view(b, s, *conf.shape[1:])

    def _fused(self, picked: list[Tensor], image_size: tuple[int, int]) -> Tensor:
        """Patch tokens ``[B,S,P,2C]`` of the four read layers -> the fused map after ``output_conv1`` ``[B*S,F',h,w]``
        at the resolution of the first (x4) stage."""
        b, s = picked[0].shape[:2]
        height, width = image_size
        grid = (height // self.cfg.patch_size, width // self.cfg.patch_size)
        features = []
        for x, project, resize_layer in zip(picked, self.projects, self.resize_layers):
            x = self.norm(x.flatten(0, 1)).transpose(1, 2).reshape(b * s, -1, *grid)
            features.append(resize_layer(self._pos(project(x), width / height)))
        return self._fuse(features)

    def _pos(self, x: Tensor, aspect: float) -> Tensor:
        if not self.cfg.pos_embed:
            return x
        return x + (0.1 * uv_embedding(x.shape[1], tuple(x.shape[-2:]), aspect, x)).to(x.dtype)

    def _fuse(self, features: list[Tensor]) -> Tensor:
        sc = self.scratch
        l1, l2, l3, l4 = (getattr(sc, f"layer{i}_rn")(x) for i, x in enumerate(features, start=1))
        out = sc.refinenet4(l4, size=l3.shape[-2:])
        out = sc.refinenet3(out, l3, size=l2.shape[-2:])
        out = sc.refinenet2(out, l2, size=l1.shape[-2:])
        return sc.output_conv1(sc.refinenet1(out, l1))
